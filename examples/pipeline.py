"""The quickstart pipeline through dlc's Python API, one stage per call.

    python examples/pipeline.py [WORKDIR]
"""

import sys
from pathlib import Path

import numpy as np

from dlc.compiler.build import CompileConfig, compile_model
from dlc.exporters.pytorch import ExportConfig, export_checkpoint
from dlc.runtime.backends import open_session
from dlc.runtime.bench import BenchConfig, benchmark
from dlc.training import TrainConfig, checkpoint, train
from dlc.training.data import load_dataset

work = Path(sys.argv[1] if len(sys.argv) > 1 else "pipeline-out")
work.mkdir(parents=True, exist_ok=True)

# 1. Train the zoo MLP on scikit-learn's digits (bundled, no download).
result = train(TrainConfig(model="mlp", epochs=20))
checkpoint.save(result.checkpoint, work / "mlp.pt")
print(f"test accuracy {result.test_accuracy:.2%}")

# 2. Export to ONNX with a symbolic batch; ONNX Runtime is checked against PyTorch.
exported = export_checkpoint(result.checkpoint, work / "mlp.onnx", ExportConfig(dynamic_batch=True, force=True))
print(f"export max |diff| {exported.max_abs_diff:.2e}")

# 3. Compile for this CPU with batch 8; the artifact is verified against ONNX Runtime.
compiled = compile_model(work / "mlp.onnx", work / "mlp.dlc", CompileConfig(shapes={"input": [8, 1, 8, 8]}, force=True))
print(f"compiled, max |TVM - ONNX Runtime| {compiled.max_abs_diff:.2e}")

# 4. Run the artifact like any other session: test-set accuracy through TVM, batch by batch.
data = load_dataset("digits", seed=0)
session = open_session("tvm", work / "mlp.dlc")
n = len(data.x_test) // 8 * 8
predictions = np.concatenate([session.run({"input": data.x_test[i:i + 8]})["logits"].argmax(1)
                              for i in range(0, n, 8)])
print(f"TVM test accuracy {(predictions == data.y_test[:n]).mean():.2%} on {n} images")

# 5. Benchmark the artifact against ONNX Runtime, each in a fresh process.
report = benchmark(work / "mlp.dlc", BenchConfig(backends=("tvm", "onnxruntime"), runs=50))
for r in report.results:
    print(f"{r.backend:12s} p50 {r.latency_ms['p50']:.4f} ms")
