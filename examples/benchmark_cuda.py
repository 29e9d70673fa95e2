"""TVM on a CUDA GPU beside PyTorch eager on the same GPU (and ONNX Runtime on that machine's CPU), per model, as JSON.

Two steps, because compiling needs no GPU and the GPU machine needs no TVM compiler:

    python examples/benchmark_cuda.py prepare --target cuda-sm90 --out cuda-models   # anywhere
    python examples/benchmark_cuda.py run cuda-models --out cuda-benchmark.json        # on the GPU machine

prepare: the models of benchmark_compile.py (every zoo model at its default size, ResNet and
MobileNet at 224x224, the encoder) exported and compiled by `dlc compile --target` for the
GPU: TVM's DLight GPU schedules, untuned.

run: each artifact, on the GPU,
- verified: its outputs on the golden inputs against ONNX Runtime's (recorded at compile
  time), with `dlc compile`'s default tolerance;
- timed as `dlc bench` times it (tvm and onnxruntime, each in a process of its own; TVM's
  time includes copying inputs to the GPU and outputs back, ONNX Runtime runs on the CPU),
  with TVM's load time (the library's CUDA C is compiled by NVRTC as it loads);
- TVM's GPU time alone: the VM's `time_evaluator` with the inputs already on the GPU;
- PyTorch eager on the same GPU, the model rebuilt from the same seeded weights: inputs
  already on the GPU (synchronized after each call), and from numpy to numpy.
The report is rewritten after every model, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmark_compile import LARGE, ZOO, export  # the same models, exported the same way

MODELS_FILE = "models.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    prepare_step = steps.add_parser("prepare", help="export and compile every model for a CUDA target")
    prepare_step.add_argument("--target", default="cuda-sm90")
    prepare_step.add_argument("--models", default=",".join([*ZOO, *LARGE]))
    prepare_step.add_argument("--out", type=Path, default=Path("cuda-models"))
    run_step = steps.add_parser("run", help="verify and time the compiled models on this machine's GPU")
    run_step.add_argument("folder", type=Path)
    run_step.add_argument("--runs", type=int, default=200)
    run_step.add_argument("--out", type=Path, default=Path("cuda-benchmark.json"))
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.models.split(","), args.target, args.out)
    else:
        run(args.folder, args.runs, args.out)


def prepare(models: list[str], target: str, folder: Path) -> None:
    from dlc.child import run_in_child
    from dlc.compiler.build import CompileConfig

    folder.mkdir(parents=True, exist_ok=True)
    work = folder / ".work"
    work.mkdir(exist_ok=True)
    for name in models:
        onnx_path, _ = export(name, work)
        report = run_in_child("dlc.compiler.build:compile_model", onnx_path, folder / f"{name}.dlc",
                              CompileConfig(force=True, target=target))
        print(f"{name}: compiled for {target} in {sum(report.seconds.values()):.1f} s", flush=True)
    (folder / MODELS_FILE).write_text(json.dumps({name: LARGE.get(name, (name, {})) for name in models}))


def run(folder: Path, runs: int, out: Path) -> None:
    from dlc.fileio import write_json
    from dlc.runtime.bench import machine_info
    from dlc.target import cuda_present

    if not cuda_present():
        sys.exit("error: TVM finds no CUDA GPU here (is the NVIDIA driver and CUDA 13's runtime on the library path?)")
    models = json.loads((folder / MODELS_FILE).read_text())
    report = {"machine": machine_info(), "gpu": _gpu_name(), "runs": runs, "models": {}}
    for name, (zoo_model, model_args) in models.items():
        try:
            row = _measure(folder / f"{name}.dlc", zoo_model, model_args, runs)
        except Exception as e:  # one model's failure is its row, and the others are still measured
            row = {"error": f"{type(e).__name__}: {' '.join(str(e).split())[:500]}"}
        report["models"][name] = row
        write_json(out, report)
        print(name, json.dumps({k: row.get(k) for k in ("error", "verified", "max_abs_diff_vs_onnxruntime", "p50_ms",
                                                       "tvm_gpu_only_ms", "pytorch_cuda_ms") if k in row}), flush=True)


def _measure(path: Path, zoo_model: str, model_args: dict, runs: int) -> dict:
    from dlc.artifact import Artifact
    from dlc.numerics import Tolerance, compare
    from dlc.runtime.bench import BenchConfig, benchmark

    artifact = Artifact.load(path)
    golden_in, golden_out = artifact.golden()
    bench = benchmark(artifact.path, BenchConfig(backends=("tvm", "onnxruntime"), runs=runs))
    tvm_result = next(r for r in bench.results if r.backend == "tvm")
    check = compare(tvm_result.outputs, golden_out, Tolerance())
    row = {"target": artifact.target.name, "inputs": {k: list(v.shape) for k, v in golden_in.items()},
           "verified": check.ok, "max_abs_diff_vs_onnxruntime": check.max_abs_diff,
           "p50_ms": {r.backend: r.latency_ms["p50"] for r in bench.results},
           "p99_ms": {r.backend: r.latency_ms["p99"] for r in bench.results},
           "tvm_load_seconds": tvm_result.load_seconds,  # NVRTC compiles the kernels' CUDA C as the library loads
           "tvm_gpu_only_ms": _tvm_gpu_time(artifact, golden_in, runs),
           "pytorch_cuda_ms": _torch_cuda(zoo_model, model_args, artifact, golden_in, runs)}
    return row


def _tvm_gpu_time(artifact, golden_in, runs: int) -> float:
    """ms per call of the artifact with its inputs already on the GPU (median of 10 repeats)."""
    from dlc.runtime.tvm_session import TvmSession

    times = TvmSession.from_artifact(artifact).time_on_device(golden_in, number=max(1, runs // 10), repeat=10)
    return round(float(np.median(times)), 4)


def _torch_cuda(zoo_model: str, model_args: dict, artifact, golden_in, runs: int) -> dict:
    """PyTorch eager on the GPU: p50 ms with inputs on the GPU, and from numpy to numpy; its max abs diff."""
    import torch

    from dlc.numerics import compare
    from dlc.training import checkpoint

    module = checkpoint.untrained(zoo_model, model_args).build_module().cuda().eval()
    host = [torch.from_numpy(golden_in[s.name]) for s in artifact.inputs]
    on_gpu = [x.cuda() for x in host]

    def resident():
        module(*on_gpu)

    def numpy_to_numpy():
        result = module(*(x.cuda() for x in host))
        return [v.cpu().numpy() for v in (result if isinstance(result, (tuple, list)) else (result,))]

    with torch.no_grad():
        golden_out = artifact.golden()[1]
        outputs = dict(zip((s.name for s in artifact.outputs), numpy_to_numpy()))
        return {"resident_p50": _p50(resident, runs, torch.cuda.synchronize),
                "numpy_p50": _p50(numpy_to_numpy, runs, torch.cuda.synchronize),
                "max_abs_diff_vs_onnxruntime": compare(outputs, golden_out).max_abs_diff}


def _p50(call, runs: int, synchronize) -> float:
    for _ in range(10):
        call()
    synchronize()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        synchronize()
        times.append((time.perf_counter() - start) * 1000.0)
    return round(float(np.percentile(times, 50)), 4)


def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "unknown"


if __name__ == "__main__":
    main()
