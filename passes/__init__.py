"""ONNX → ONNX graph passes (fuse, quantize, prune, lower). The pass infrastructure lands with issue #4."""
