"""float32 vs static int8, on TVM and ONNX Runtime side by side, per model, as JSON.

    python examples/benchmark_quantize.py --out quantize-benchmark.json     # resnet224, mobilenet224, encoder
    python examples/benchmark_quantize.py --models cnn --runs 50 --out small.json
    python examples/benchmark_quantize.py --target x86-64-avx2 --out avx2.json      # TVM as on an AVX2-only CPU
    python examples/benchmark_quantize.py --reduce-range --out r7.json              # 7-bit weights (vpmaddubsw)

Per model: the untrained zoo model exported (latency does not depend on the weights),
quantized by `dlc quantize` (static int8, MinMax, per-channel weights, uint8 activations,
calibrated on 8 seeded random samples; `--reduce-range`: 7-bit weights), both compiled
with the default schedules (no tuning: the same schedules for both), then p50/p99 of TVM
and ONNX Runtime on each, each backend in its own process. Also the file sizes, how many
conv/matmul kernels run in int8 and on which instructions: the dot-product instructions
(vpdpbusd, vpmaddubsw, vpmaddwd) TVM's library holds, counted in its disassembly when
binutils' objdump is there, and the CPU's int8 features that ONNX Runtime's MLAS kernels
choose from. `--target` compiles TVM's libraries for another CPU this
one can run (x86-64-avx2: without AVX-512 and VNNI); ONNX Runtime still uses this CPU's.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

DEFAULT_MODELS = ("resnet224", "mobilenet224", "encoder")
CALIBRATION_SAMPLES = 8
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "avx512bw", "avx2", "asimddp", "asimd")
DOT_MNEMONICS = ("vpdpbusd", "vpmaddubsw", "vpmaddwd")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("quantize-benchmark.json"))
    parser.add_argument("--target", default="host", help="TVM's target (a dlc target name, run on this machine)")
    parser.add_argument("--reduce-range", action="store_true", help="7-bit weights (dlc quantize --reduce-range)")
    args = parser.parse_args()
    from dlc.fileio import write_json
    from dlc.runtime.bench import machine_info
    from dlc.target import host_cpu_flags

    work = args.out.parent / f".{args.out.stem}-work"
    work.mkdir(parents=True, exist_ok=True)
    flags = host_cpu_flags()
    rows = {name: measure(name, work, args.runs, args.target, args.reduce_range) for name in args.models.split(",")}
    report = {"machine": machine_info(), "cpu_int8_features": [f for f in INT8_FLAGS if f in flags],
              "tvm_target": args.target, "runs": args.runs, "calibration_samples": CALIBRATION_SAMPLES,
              "weight_bits": 7 if args.reduce_range else 8, "models": rows}
    write_json(args.out, report)
    print_table(report)


def measure(name: str, work: Path, runs: int, target: str = "host", reduce_range: bool = False) -> dict:
    import json

    import numpy as np

    from benchmark_compile import export
    from dlc.child import run_in_child
    from dlc.compiler.build import CompileConfig, TuningOptions
    from dlc.onnxio import io_specs, load_model
    from dlc.quantization import QuantizeConfig, quantize_file
    from dlc.runtime.bench import BenchConfig, benchmark

    float_onnx, _ = export(name, work)
    spec = io_specs(load_model(float_onnx))[0][0]
    rng = np.random.default_rng(0)
    shape = [CALIBRATION_SAMPLES, *[d if isinstance(d, int) else 1 for d in spec.shape[1:]]]
    np.savez(work / f"{name}.calibration.npz", x=rng.random(shape, dtype=np.float32))
    int8_onnx = work / f"{name}.int8.onnx"
    quantized = quantize_file(float_onnx, int8_onnx, QuantizeConfig(calibration=work / f"{name}.calibration.npz",
                                                                     reduce_range=reduce_range, force=True))
    row = {"file_bytes": {"float32": quantized.before["file_bytes"], "int8": quantized.after["file_bytes"]},
           "p50_ms": {}, "p99_ms": {}}
    fresh = TuningOptions(database=work / f"{name}.no-tuning")  # never picks up records from elsewhere
    for kind, source in (("float32", float_onnx), ("int8", int8_onnx)):
        artifact = work / f"{name}.{kind}.dlc"
        report = run_in_child("dlc.compiler.build:compile_model", source, artifact,
                              CompileConfig(target=target, force=True, tuning=fresh))
        result = benchmark(artifact, BenchConfig(backends=("tvm", "onnxruntime"), runs=runs))
        for r in result.results:
            row["p50_ms"][f"{r.backend}_{kind}"] = r.latency_ms["p50"]
            row["p99_ms"][f"{r.backend}_{kind}"] = r.latency_ms["p99"]
        if kind == "int8":
            manifest = json.loads((artifact / "manifest.json").read_text())
            row["int8_kernels"] = manifest["schedules"]["arithmetic"]
            row["schedules"] = report.schedules["kernels"]
            row["tvm_dot_instructions"] = {m: count_instructions(artifact / "model.so", m) for m in DOT_MNEMONICS}
    p50 = row["p50_ms"]
    row["int8_speedup"] = {backend: round(p50[f"{backend}_float32"] / p50[f"{backend}_int8"], 3)
                           for backend in ("tvm", "onnxruntime")}
    return row


def count_instructions(library: Path, mnemonic: str) -> int | None:
    """How many times `mnemonic` appears in the library's disassembly; None without objdump."""
    if shutil.which("objdump") is None:
        return None
    listing = subprocess.run(["objdump", "-d", str(library)], capture_output=True, text=True, check=True).stdout
    return sum(1 for line in listing.splitlines() if f"\t{mnemonic} " in line or line.endswith(f"\t{mnemonic}"))


def print_table(report: dict) -> None:
    print(f"{report['machine']['cpu']}; int8 features {', '.join(report['cpu_int8_features']) or 'none'}; TVM target "
          f"{report['tvm_target']}; {report['weight_bits']}-bit weights; p50 ms")
    print("| model | TVM fp32 | TVM int8 | TVM int8 speedup | ORT fp32 | ORT int8 | ORT int8 speedup "
          "| file fp32 → int8 | int8 kernels | dot products in TVM's library |")
    print("|" + " --- |" * 10)
    for name, row in report["models"].items():
        p50, speed, size = row["p50_ms"], row["int8_speedup"], row["file_bytes"]
        print(f"| {name} | {p50['tvm_float32']:.3f} | {p50['tvm_int8']:.3f} | {speed['tvm']:.2f}x | "
              f"{p50['onnxruntime_float32']:.3f} | {p50['onnxruntime_int8']:.3f} | {speed['onnxruntime']:.2f}x | "
              f"{size['float32'] / 1024:.0f} → {size['int8'] / 1024:.0f} KiB | {row['int8_kernels']} | "
              f"{', '.join(f'{m} {n}' for m, n in row['tvm_dot_instructions'].items() if n) or '-'} |")


if __name__ == "__main__":
    main()
