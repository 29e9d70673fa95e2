"""Looking into models: what an ONNX file holds and costs (inspect, flops), why a classifier
decided as it did (explain), and the pictures of both (plots)."""
