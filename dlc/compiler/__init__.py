"""The compiler driver: targets, op coverage, and ONNX → TVM Relax → artifact."""
