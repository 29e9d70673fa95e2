"""Untuned TVM vs tuned TVM vs ONNX Runtime vs PyTorch on a zoo model, written as JSON.

    python examples/benchmark_tuning.py --model cnn --trials 200 --out tuning-benchmark.json

Tuning uses a fresh database under the output's folder, so the tuning time is real;
every backend runs in its own process with the same inputs (see dlc.runtime.bench).
"""

import argparse
import json
import time
from pathlib import Path

from dlc.compiler.build import CompileConfig, TuningOptions, compile_model
from dlc.exporters.pytorch import ExportConfig, export_checkpoint
from dlc.fileio import write_json
from dlc.runtime.bench import BenchConfig, benchmark, machine_info
from dlc.training import TrainConfig, checkpoint, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("tuning-benchmark.json"))
    args = parser.parse_args()
    work = args.out.parent / f".{args.out.stem}-work"
    work.mkdir(parents=True, exist_ok=True)

    # A trained model, so the PyTorch column runs the same weights.
    ckpt = train(TrainConfig(model=args.model)).checkpoint
    checkpoint.save(ckpt, work / "model.pt")
    export_checkpoint(ckpt, work / "model.onnx", ExportConfig(force=True))

    untuned = compile_model(work / "model.onnx", work / "untuned.dlc", CompileConfig(
        force=True, tuning=TuningOptions(database=work / "no-tuning")))
    start = time.perf_counter()
    tuned = compile_model(work / "model.onnx", work / "tuned.dlc", CompileConfig(
        force=True, tuning=TuningOptions(trials=args.trials, database=work / f"tuning-{args.trials}")))
    tuning_seconds = time.perf_counter() - start

    config = BenchConfig(runs=args.runs, checkpoint=work / "model.pt")
    results = {"tvm_untuned": benchmark(work / "untuned.dlc", BenchConfig(backends=("tvm",), runs=args.runs)),
               "tuned_and_references": benchmark(work / "tuned.dlc", config)}
    p50 = {"tvm_untuned": results["tvm_untuned"].results[0].latency_ms["p50"]}
    p50 |= {("tvm_tuned" if r.backend == "tvm" else r.backend): r.latency_ms["p50"]
            for r in results["tuned_and_references"].results}
    report = {
        "model": args.model, "machine": machine_info(), "trials": args.trials,
        "tuning_seconds": round(tuning_seconds, 1), "tuning": tuned.tuning,
        "p50_ms": p50, "tuned_vs_onnxruntime": round(p50["tvm_tuned"] / p50["onnxruntime"], 3),
        "tuned_speedup_over_untuned": round(p50["tvm_untuned"] / p50["tvm_tuned"], 2),
        "library_bytes": {"untuned": untuned.library_bytes, "tuned": tuned.library_bytes},
        "runs": {k: v.to_dict() for k, v in results.items()},
    }
    write_json(args.out, report)
    print(json.dumps({k: report[k] for k in ("p50_ms", "tuned_vs_onnxruntime", "tuning_seconds")}, indent=1))


if __name__ == "__main__":
    main()
