"""One artifact for every size (`dlc compile --dynamic`) against one per size (static), p50 per batch, as JSON.

    python examples/benchmark_dynamic.py --out dynamic-benchmark.json

Per model (zoo models exported with a symbolic batch, untrained weights): a static artifact
compiled for each batch size and one dynamic artifact (batch up to --max-batch), each run
at each batch size with `dlc bench`'s machinery (the tvm backend in a process of its own,
the same inputs for both); the ratio dynamic / static says what keeping the dims symbolic
costs: TVM then schedules loops of unknown extent and plans memory for the bound.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,cnn,resnet,mobilenet,transformer")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("dynamic-benchmark.json"))
    args = parser.parse_args()
    from dlc.fileio import write_json
    from dlc.runtime.bench import machine_info

    work = args.out.parent / f".{args.out.stem}-work"
    work.mkdir(parents=True, exist_ok=True)
    batches = [int(b) for b in args.batches.split(",")]
    rows = {name: measure(name, batches, args, work) for name in args.models.split(",")}
    write_json(args.out, {"machine": machine_info(), "runs": args.runs, "max_batch": args.max_batch,
                          "models": rows})
    print(f"{'model':12} {'batch':>5} {'static ms':>10} {'dynamic ms':>11} {'dynamic/static':>15}")
    for name, row in rows.items():
        for batch, cell in row["p50_ms"].items():
            print(f"{name:12} {batch:>5} {cell['static']:>10.4f} {cell['dynamic']:>11.4f} {cell['ratio']:>15.2f}")


def measure(name: str, batches: list[int], args, work: Path) -> dict:
    from dlc.child import run_in_child
    from dlc.compiler.build import CompileConfig
    from dlc.exporters.pytorch import ExportConfig, export_checkpoint
    from dlc.onnxio import batch_dim, io_specs, load_model
    from dlc.runtime.bench import BenchConfig, benchmark
    from dlc.specs import random_inputs
    from dlc.training import checkpoint

    onnx_path = work / f"{name}.onnx"
    export_checkpoint(checkpoint.untrained(name), onnx_path, ExportConfig(dynamic_batch=True, force=True))
    symbol = batch_dim(load_model(onnx_path))
    dynamic = work / f"{name}.dynamic.dlc"
    run_in_child("dlc.compiler.build:compile_model", onnx_path, dynamic,
                 CompileConfig(force=True, max_shape={symbol: args.max_batch}))
    cells = {}
    for batch in batches:
        specs = io_specs(load_model(onnx_path))[0]
        inputs = work / f"{name}.b{batch}.npz"
        np.savez(inputs, **random_inputs(specs, seed=batch, sizes={symbol: batch}))
        static = work / f"{name}.b{batch}.dlc"
        run_in_child("dlc.compiler.build:compile_model", onnx_path, static,
                     CompileConfig(force=True, shapes={s.name: [batch, *s.shape[1:]] for s in specs}))
        p50 = {}
        for kind, artifact in (("static", static), ("dynamic", dynamic)):
            report = benchmark(artifact, BenchConfig(backends=("tvm",), runs=args.runs, inputs=inputs))
            p50[kind] = report.results[0].latency_ms["p50"]
        cells[batch] = {**p50, "ratio": round(p50["dynamic"] / p50["static"], 3)}
    return {"batch_symbol": symbol, "p50_ms": cells}


if __name__ == "__main__":
    main()
