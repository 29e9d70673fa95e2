"""The whole pipeline in one call: train → export → compile → bench, all in one directory."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlc.compiler.build import CompileConfig, CompileReport, compile_model
from dlc.exporters.pytorch import ExportConfig, ExportReport, export_checkpoint
from dlc.fileio import write_json
from dlc.runtime.bench import BenchConfig, BenchReport, benchmark
from dlc.training import EpochStats, TrainConfig, TrainResult, checkpoint, train

STAGES = ("train", "export", "compile", "bench")


@dataclass(frozen=True)
class QuickstartConfig:
    workdir: Path = Path("dlc-quickstart")
    model: str = "cnn"
    epochs: int = 30
    runs: int = 200
    seed: int = 0


@dataclass
class QuickstartResult:
    workdir: Path
    train: TrainResult
    export: ExportReport
    compile: CompileReport
    bench: BenchReport
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"workdir": str(self.workdir), "seconds": round(self.seconds, 1),
                "train": {k: v for k, v in self.train.summary().items() if k != "history"},
                "export": self.export.to_dict(), "compile": self.compile.to_dict(), "bench": self.bench.to_dict()}


def run_quickstart(config: QuickstartConfig = QuickstartConfig(),
                   on_stage: Callable[[str], None] = lambda stage: None,
                   on_epoch: Callable[[EpochStats], None] | None = None) -> QuickstartResult:
    """Runs every stage, overwriting the previous quickstart's files in `config.workdir`."""
    start, work = time.perf_counter(), Path(config.workdir)
    work.mkdir(parents=True, exist_ok=True)
    ckpt_path, onnx_path, artifact = work / "model.pt", work / "model.onnx", work / "model.dlc"

    on_stage("train")
    trained = train(TrainConfig(model=config.model, epochs=config.epochs, seed=config.seed), on_epoch)
    checkpoint.save(trained.checkpoint, ckpt_path)
    on_stage("export")
    exported = export_checkpoint(trained.checkpoint, onnx_path, ExportConfig(force=True))
    on_stage("compile")
    compiled = compile_model(onnx_path, artifact, CompileConfig(force=True))
    on_stage("bench")
    measured = benchmark(artifact, BenchConfig(runs=config.runs, checkpoint=ckpt_path))
    result = QuickstartResult(work, trained, exported, compiled, measured, time.perf_counter() - start)
    write_json(work / "quickstart.json", result.to_dict())
    return result
