"""Framework → ONNX: PyTorch export with validation against the framework's own outputs."""
