"""Full vs channel-pruned models on ONNX Runtime and TVM (untuned and tuned), per model, as JSON.

    python examples/benchmark_prune.py --out prune-benchmark.json                  # resnet224, mobilenet224
    python examples/benchmark_prune.py --tune-minutes 3 --out prune-tuned.json     # and a tuned TVM column
    python examples/benchmark_prune.py --models cnn --runs 20 --out small.json

Per model: the untrained zoo model exported (latency does not depend on the weights), pruned
by `dlc prune` (--ratio, default 0.5 of the channels of every layer, l1 importance; --round-to), both
compiled with TVM's default schedules (and, with --tune-minutes, tuned for that many minutes
each with a fresh database), then p50/p99 of ONNX Runtime and TVM on each, each backend in
its own process, in one run. Also parameters, FLOPs and file sizes before and after.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

DEFAULT_MODELS = ("resnet224", "mobilenet224")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--round-to", type=int, default=1, help="kept channels a multiple of this (dlc prune's)")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--tune-minutes", type=float, default=0.0, help="per model and variant; 0 = untuned only")
    parser.add_argument("--out", type=Path, default=Path("prune-benchmark.json"))
    args = parser.parse_args()
    from dlc.fileio import write_json
    from dlc.runtime.bench import machine_info

    work = args.out.parent / f".{args.out.stem}-work"
    work.mkdir(parents=True, exist_ok=True)
    rows = {name: measure(name, work, args) for name in args.models.split(",")}
    report = {"machine": machine_info(), "ratio": args.ratio, "round_to": args.round_to, "runs": args.runs,
              "tune_minutes_per_compile": args.tune_minutes, "models": rows}
    write_json(args.out, report)
    print_table(report)


def measure(name: str, work: Path, args) -> dict:
    from benchmark_compile import export
    from dlc.child import run_in_child
    from dlc.pruning import PruneConfig, prune_file
    from dlc.runtime.bench import BenchConfig, benchmark

    full, _ = export(name, work)
    pruned = work / f"{name}.pruned.onnx"
    report = prune_file(full, pruned, PruneConfig(ratio=args.ratio, round_to=args.round_to, runs=10, force=True))
    row = {key: {"full": report.before[key], "pruned": report.after[key]}
           for key in ("parameters", "flops", "file_bytes")}
    row["p50_ms"], row["p99_ms"] = {}, {}
    for variant, source in (("full", full), ("pruned", pruned)):
        for column, config in compile_configs(f"{name}.{variant}", work, args.tune_minutes):
            artifact = work / f"{name}.{variant}.{column}.dlc"
            run_in_child("dlc.compiler.build:compile_model", source, artifact, config)
            backends = ("tvm", "onnxruntime") if column == "default" else ("tvm",)
            for r in benchmark(artifact, BenchConfig(backends=backends, runs=args.runs)).results:
                key = f"tvm_{column}" if r.backend == "tvm" else r.backend
                row["p50_ms"].setdefault(key, {})[variant] = r.latency_ms["p50"]
                row["p99_ms"].setdefault(key, {})[variant] = r.latency_ms["p99"]
    row["speedup"] = {k: round(v["full"] / v["pruned"], 3) for k, v in row["p50_ms"].items()}
    row["flops_share"] = round(row["flops"]["pruned"] / row["flops"]["full"], 4)
    return row


def compile_configs(stem: str, work: Path, tune_minutes: float):
    from dlc.compiler.build import CompileConfig, TuningOptions

    yield "default", CompileConfig(force=True, tuning=TuningOptions(database=work / f"{stem}.no-tuning"))
    if tune_minutes > 0:
        database = work / f"{stem}.tuning"
        shutil.rmtree(database, ignore_errors=True)  # a fresh database: the budget is all this variant gets
        yield "tuned", CompileConfig(force=True, tuning=TuningOptions(trials=100_000, database=database,
                                                                      minutes=tune_minutes))


def print_table(report: dict) -> None:
    print(f"{report['machine']['cpu']}; {report['ratio']:.0%} of the channels removed, --round-to "
          f"{report['round_to']}; p50 ms full → pruned (speedup)")
    columns = [k for k in ("onnxruntime", "tvm_default", "tvm_tuned")
               if any(k in row["p50_ms"] for row in report["models"].values())]
    print("| model | FLOPs pruned/full | " + " | ".join(columns) + " |")
    print("|" + " --- |" * (2 + len(columns)))
    for name, row in report["models"].items():
        cells = [f"{row['p50_ms'][c]['full']:.3f} → {row['p50_ms'][c]['pruned']:.3f} ({row['speedup'][c]:.2f}x)"
                 for c in columns]
        print(f"| {name} | {row['flops_share']:.0%} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
