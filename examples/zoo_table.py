"""Every zoo model through dlc: parameters, FLOPs, quality after its default recipe, TVM vs ONNX Runtime.

    python examples/zoo_table.py --out zoo-table.json            # full default recipes
    python examples/zoo_table.py --models mlp,lstm --max-steps 5  # a quick look

Each model is trained with its recipe (`dlc train` defaults), exported, inspected for
parameters and FLOPs, compiled for the host (untuned TVM; LSTM/GRU lowered by dlc) and
benchmarked at batch 1 on TVM and ONNX Runtime, each in its own process. Quality is test
accuracy for classifiers and test loss (MSE for the autoencoder, the discriminator's loss
for the GAN) otherwise. Prints a Markdown table and writes everything as JSON.
"""

import argparse
import json
from pathlib import Path

from dlc import zoo
from dlc.analysis.inspect import inspect_model
from dlc.compiler.build import CompileConfig, TuningOptions, compile_model
from dlc.exporters.pytorch import export_checkpoint
from dlc.fileio import write_json
from dlc.runtime.bench import BenchConfig, benchmark, machine_info
from dlc.training import TrainConfig, checkpoint, train


def measure(name: str, work: Path, runs: int, max_steps: int | None) -> dict:
    trained = train(TrainConfig(model=name, max_steps=max_steps))
    checkpoint.save(trained.checkpoint, work / f"{name}.pt")
    onnx_path = export_checkpoint(trained.checkpoint, work / f"{name}.onnx").path
    info = inspect_model(onnx_path)
    compiled = compile_model(onnx_path, work / f"{name}.dlc", CompileConfig(force=True, tuning=TuningOptions(database=work / "no-tuning")))
    bench = benchmark(work / f"{name}.dlc", BenchConfig(backends=("tvm", "onnxruntime"), runs=runs))
    p50 = {r.backend: round(r.latency_ms["p50"], 4) for r in bench.results}
    return {"task": trained.task, "parameters": info.parameters, "flops": info.flops, "macs": info.macs,
            "test_accuracy": trained.test_accuracy, "test_loss": round(trained.test_loss, 4),
            "epochs_run": len(trained.history), "train_seconds": round(trained.seconds, 1),
            "p50_ms": p50, "tvm_vs_onnxruntime": round(p50["tvm"] / p50["onnxruntime"], 2),
            "tvm_max_abs_diff": compiled.max_abs_diff,
            "lowered": json.loads((work / f"{name}.dlc" / "manifest.json").read_text()).get("lowered")}


def markdown(rows: dict) -> str:
    lines = ["| model | parameters | MFLOPs | quality | TVM p50 ms | ORT p50 ms | TVM/ORT |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in rows.items():
        quality = f"{r['test_accuracy']:.1%} acc" if r["test_accuracy"] is not None else f"loss {r['test_loss']}"
        lines.append(f"| {name} | {r['parameters']:,} | {r['flops'] / 1e6:.3f} | {quality} | {r['p50_ms']['tvm']} | "
                     f"{r['p50_ms']['onnxruntime']} | {r['tvm_vs_onnxruntime']}× |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(zoo.names()))
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--max-steps", type=int, default=None, help="cut training short (quick looks, tests)")
    parser.add_argument("--out", type=Path, default=Path("zoo-table.json"))
    args = parser.parse_args()
    work = args.out.parent / f".{args.out.stem}-work"
    work.mkdir(parents=True, exist_ok=True)
    rows = {name: measure(name, work, args.runs, args.max_steps) for name in args.models.split(",")}
    write_json(args.out, {"machine": machine_info(), "runs": args.runs, "max_steps": args.max_steps, "models": rows})
    print(markdown(rows))


if __name__ == "__main__":
    main()
