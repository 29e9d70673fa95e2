"""What `dlc optimize -O2` changes: node count, size, ONNX Runtime and TVM latency, as JSON.

    python examples/benchmark_optimize.py --models cnn,resnet,mobilenet --runs 300 --out optimize-benchmark.json
    python examples/benchmark_optimize.py --models "" --onnx some-model.onnx

Each zoo model is exported twice: as traced (`--no-optimize`, what other exporters and
older tools hand over: batch norm, Constant/Shape/Expand chains) and with torch's own
ONNX optimizer. The traced export then goes through -O2. For any other ONNX file the
file as given is compared with its -O2 result. Every variant is compiled for the host
(untuned TVM, so the numbers show what the graph changes do, not tuning) and benchmarked
on TVM and ONNX Runtime, each in its own process with the same inputs.
"""

import argparse
import json
from pathlib import Path

from dlc.compiler.build import CompileConfig, TuningOptions, compile_model
from dlc.errors import DlcError
from dlc.exporters.pytorch import ExportConfig, export_checkpoint
from dlc.fileio import write_json
from dlc.onnxio import load_model
from dlc.optimization import OptimizeConfig, optimize_file, summarize
from dlc.runtime.bench import BenchConfig, benchmark, machine_info
from dlc.training import checkpoint


def measure(onnx_path: Path, work: Path, runs: int) -> dict:
    """Size and structure of one ONNX variant, and its p50/p99 latency on TVM and ONNX Runtime.

    A variant TVM cannot import is still measured on ONNX Runtime; the row says why TVM is missing.
    """
    row = {k: v for k, v in summarize(load_model(onnx_path), onnx_path).items() if k != "ops"}
    artifact = work / f"{onnx_path.stem}.dlc"
    try:
        compiled = compile_model(onnx_path, artifact, CompileConfig(force=True, tuning=TuningOptions(database=work / "no-tuning")))
    except DlcError as e:
        row |= {"tvm_error": str(e), "tvm_p50_ms": None, "tvm_p99_ms": None}
        report = benchmark(onnx_path, BenchConfig(backends=("onnxruntime",), runs=runs))
    else:
        row["library_bytes"] = compiled.library_bytes
        report = benchmark(artifact, BenchConfig(backends=("tvm", "onnxruntime"), runs=runs))
    for r in report.results:
        row[f"{r.backend}_p50_ms"] = round(r.latency_ms["p50"], 4)
        row[f"{r.backend}_p99_ms"] = round(r.latency_ms["p99"], 4)
        if r.backend == "tvm":
            row["tvm_max_abs_diff_vs_onnxruntime"] = r.max_abs_diff
    return row


def speedup(before: float | None, after: float | None) -> float | None:
    return round(before / after, 3) if before and after else None


def zoo_variants(name: str, args: dict, work: Path) -> dict[str, Path]:
    ckpt = checkpoint.untrained(name, args)
    variants = {"traced": work / f"{name}-traced.onnx", "torch-optimized": work / f"{name}-torch.onnx"}
    export_checkpoint(ckpt, variants["traced"], ExportConfig(force=True, optimize=False))
    export_checkpoint(ckpt, variants["torch-optimized"], ExportConfig(force=True))
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn,resnet,mobilenet", help="comma-separated zoo models")
    parser.add_argument("--input-shape", default=None, help="C,H,W for every zoo model (default: each one's own)")
    parser.add_argument("--onnx", type=Path, action="append", default=[], help="any ONNX file (repeatable)")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("optimize-benchmark.json"))
    args = parser.parse_args()
    work = args.out.parent / f".{args.out.stem}-work"
    work.mkdir(parents=True, exist_ok=True)
    model_args = {"input_shape": [int(d) for d in args.input_shape.split(",")]} if args.input_shape else {}

    sources = {name: zoo_variants(name, model_args, work) for name in filter(None, args.models.split(","))}
    sources |= {path.stem: {"as given": path} for path in args.onnx}
    results = {}
    for name, variants in sources.items():
        base = variants.get("traced") or variants["as given"]
        optimized = optimize_file(base, work / f"{name}-O2.onnx", OptimizeConfig(level=2, force=True))
        variants["dlc -O2"] = optimized.output
        rows = {variant: measure(path, work, args.runs) for variant, path in variants.items()}
        before = rows.get("traced") or rows["as given"]
        after = rows["dlc -O2"]
        results[name] = {"variants": rows, "optimize_seconds": round(optimized.seconds, 3),
                         "O2_effect": {"nodes": [before["nodes"], after["nodes"]],
                                       "file_bytes": [before["file_bytes"], after["file_bytes"]],
                                       "tvm_speedup": speedup(before["tvm_p50_ms"], after["tvm_p50_ms"]),
                                       "tvm_before": before.get("tvm_error", "compiled"),
                                       "onnxruntime_speedup": speedup(before["onnxruntime_p50_ms"],
                                                                      after["onnxruntime_p50_ms"])}}
    write_json(args.out, {"machine": machine_info(), "runs": args.runs, "models": results})
    print(json.dumps({name: r["O2_effect"] for name, r in results.items()}, indent=1))


if __name__ == "__main__":
    main()
