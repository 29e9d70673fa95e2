"""dlc: train in PyTorch, export to ONNX, compile with Apache TVM, measure, serve, deploy."""

__version__ = "0.1.0"
