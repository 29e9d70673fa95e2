"""TVM before and after dlc's default schedules, tuned, ONNX Runtime and PyTorch eager, per model, as JSON.

    python examples/benchmark_compile.py --out compile-benchmark.json                    # every model, untuned
    python examples/benchmark_compile.py --tune-minutes 5 --models resnet224,encoder     # and tuned

Models: every zoo model at its default size, the zoo ResNet and MobileNet at 1x3x224x224
("resnet224", "mobilenet224") and a Transformer encoder, hidden 256, 4 layers, sequence
128 ("encoder"); weights are the untrained ones (latency does not depend on them).

Per model: compile time (`dlc compile`'s own stages, in a fresh process each); p50/p99 of TVM with TVM's own CPU pipeline (`--schedules none`,
"before"), with the default schedules, tuned (`--tune-minutes` per model, a fresh database
each), ONNX Runtime and PyTorch eager, each backend in its own process on the same inputs;
the share of FLOPs in scheduled kernels; the GFLOP/s of the largest kernels (timed in the
VM, see dlc.runtime.profile) and the call overhead (p50 of the default column minus the time in
its kernels). Also the machine's sgemm peak: numpy's BLAS on all cores.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ZOO = ("mlp", "cnn", "resnet", "mobilenet", "lstm", "gru", "transformer", "autoencoder", "gan")
LARGE = {"resnet224": ("resnet", {"input_shape": [3, 224, 224]}),
         "mobilenet224": ("mobilenet", {"input_shape": [3, 224, 224]}),
         "encoder": ("transformer", {"width": 256, "heads": 4, "layers": 4, "input_shape": [128, 16]})}
BUDGET_TRIALS = 100_000  # with --tune-minutes the clock, not the trials, ends tuning


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join([*ZOO, *LARGE]))
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--tune-minutes", type=float, default=0.0, help="per model; 0 = no tuned column")
    parser.add_argument("--out", type=Path, default=Path("compile-benchmark.json"))
    args = parser.parse_args()
    from dlc.fileio import write_json
    from dlc.runtime.bench import machine_info

    work = args.out.parent / f".{args.out.stem}-work"
    work.mkdir(parents=True, exist_ok=True)
    rows = {name: measure(name, work, args) for name in args.models.split(",")}
    report = {"machine": machine_info(), "sgemm_peak_gflops": sgemm_peak(), "runs": args.runs,
              "tune_minutes_per_model": args.tune_minutes, "models": rows}
    write_json(args.out, report)
    print_table(report)


def measure(name: str, work: Path, args) -> dict:
    """One model through export, three compiles and the benchmark of every column."""
    from dlc.child import run_in_child
    from dlc.runtime.bench import BenchConfig, benchmark

    onnx_path, checkpoint_path = export(name, work)
    compiled = {}
    for column, config in columns(name, work, args):  # each in a fresh process, as `dlc compile` runs
        report = run_in_child("dlc.compiler.build:compile_model", onnx_path, work / f"{name}.{column}.dlc", config)
        compiled[column] = (report, round(sum(report.seconds.values()), 2))
    latency = {}
    for column in compiled:
        backends = ("tvm", "onnxruntime", "pytorch") if column == "default" else ("tvm",)
        result = benchmark(work / f"{name}.{column}.dlc", BenchConfig(backends=backends, runs=args.runs,
                                                                      checkpoint=checkpoint_path))
        for r in result.results:
            latency[f"tvm_{column}" if r.backend == "tvm" else r.backend] = r.latency_ms
    default = compiled["default"][0]
    kernels = kernel_times(work / f"{name}.default.dlc")
    in_kernels = sum(k["ms"] for k in kernels.values())
    return {"compile_seconds": {column: seconds for column, (_, seconds) in compiled.items()},
            "tuning": compiled["tuned"][0].tuning if "tuned" in compiled else None,
            "p50_ms": {k: v["p50"] for k, v in latency.items()}, "p99_ms": {k: v["p99"] for k, v in latency.items()},
            "vs_onnxruntime": {k: round(v["p50"] / latency["onnxruntime"]["p50"], 3) for k, v in latency.items()},
            "scheduled_flops_share": default.schedules["scheduled_flops_share"],
            "schedules": default.schedules["kernels"],
            "largest_kernels": largest_kernels(kernels, default.schedules),
            # What a call costs beyond its kernels: the Relax VM's dispatch and allocation, dlc's session.
            "default_kernels_ms": round(in_kernels, 4),
            "default_call_overhead_ms": round(latency["tvm_default"]["p50"] - in_kernels, 4)}


def columns(name: str, work: Path, args):
    from dlc.compiler.build import CompileConfig, TuningOptions

    fresh = TuningOptions(database=work / f"{name}.no-tuning")  # never picks up records from elsewhere
    yield "before", CompileConfig(force=True, schedules="none", tuning=fresh)
    yield "default", CompileConfig(force=True, tuning=fresh)
    if args.tune_minutes > 0:
        database = work / f"{name}.tuning"
        shutil.rmtree(database, ignore_errors=True)  # a fresh database: the budget is all this model gets
        yield "tuned", CompileConfig(force=True, tuning=TuningOptions(trials=BUDGET_TRIALS, database=database,
                                                                      minutes=args.tune_minutes))


def export(name: str, work: Path) -> tuple[Path, Path]:
    from dlc.exporters.pytorch import ExportConfig, export_checkpoint
    from dlc.training import checkpoint

    model, model_args = LARGE.get(name, (name, {}))
    ckpt = checkpoint.untrained(model, model_args)
    checkpoint.save(ckpt, work / f"{name}.pt")
    export_checkpoint(ckpt, work / f"{name}.onnx", ExportConfig(force=True))
    return work / f"{name}.onnx", work / f"{name}.pt"


def kernel_times(artifact: Path) -> dict[str, dict]:
    """Every kernel's time per model run in the VM, timed in a process of its own (see dlc.runtime.profile)."""
    from dlc.child import run_in_child

    return run_in_child("dlc.runtime.profile:kernel_times", str(artifact), without_torch=True)


def largest_kernels(times: dict[str, dict], schedules: dict, top: int = 3) -> list[dict]:
    """The `top` kernels by FLOPs: their time in the VM and GFLOP/s."""
    rows = []
    for kernel in schedules["per_kernel"][:top]:
        timed = times.get(kernel["name"], {"ms": None, "calls": 0})
        ms, calls = timed["ms"], timed["calls"]
        rows.append({"name": kernel["name"], "schedule": kernel["schedule"], "mflops": round(kernel["flops"] / 1e6, 2),
                     "calls": calls, "ms": ms, "gflops": round(calls * kernel["flops"] / ms / 1e6, 1) if ms else None})
    return rows


def sgemm_peak(n: int = 2048) -> float:
    """numpy's float32 matmul on every core, GFLOP/s (best of 5), in a process without OpenBLAS overrides."""
    import os
    import subprocess
    import sys

    code = ("import numpy as np, time\n"
            f"a = np.random.rand({n}, {n}).astype(np.float32); b = a.copy(); a @ b\n"
            "times = []\n"
            "for _ in range(5):\n"
            "    t = time.perf_counter(); a @ b; times.append(time.perf_counter() - t)\n"
            f"print(2 * {n} ** 3 / min(times) / 1e9)\n")
    # These machines may set OpenBLAS overrides for old CPUs; they slow numpy, so not here.
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return round(float(out.stdout.strip()), 1)


def print_table(report: dict) -> None:
    columns = ("tvm_before", "tvm_default", "tvm_tuned", "onnxruntime", "pytorch")
    print(f"{report['machine']['cpu']}; sgemm peak {report['sgemm_peak_gflops']} GFLOP/s; p50 ms "
          f"(x ONNX Runtime)")
    print("| model | " + " | ".join(columns) + " | FLOPs scheduled | largest kernel GFLOP/s | call overhead ms |")
    print("|" + " --- |" * (len(columns) + 4))
    for name, row in report["models"].items():
        cells = [f"{row['p50_ms'][c]:.4f} ({row['vs_onnxruntime'][c]:.2f}x)" if c in row["p50_ms"] else "-"
                 for c in columns]
        kernel = row["largest_kernels"][0] if row["largest_kernels"] else {}
        print(f"| {name} | " + " | ".join(cells) + f" | {100 * row['scheduled_flops_share']:.0f}% | "
              f"{kernel.get('gflops')} | {row['default_call_overhead_ms']:.4f} |")


if __name__ == "__main__":
    main()
