"""`dlc optimize`: an ONNX file through a verified pass pipeline into a new ONNX file.

The model is checked (ONNX checker, pass names, sample inputs) before any pass runs;
the passes work in memory; the result is checked again and written to a temporary
path that is renamed into place only when every pass stayed within its tolerance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlc.fileio import check_output
from dlc.onnxio import io_specs, load_model, save_model, staged_model
from dlc.specs import SAMPLE_DIM, load_inputs, random_inputs


@dataclass(frozen=True)
class OptimizeConfig:
    level: int = 2
    passes: tuple[str, ...] = ()  # explicit pass names; replaces the level when given
    opset: int | None = None  # convert to this opset first (e.g. 20 to let fuse-gelu fire)
    float16: bool = False  # append to-float16
    float16_io: bool = False  # ...and make inputs/outputs float16 too
    atol: float | None = None  # override every pass's tolerance
    rtol: float | None = None
    verify: bool = True
    inputs: Path | None = None  # an .npz of sample inputs; default: seeded random, symbolic dims = 2
    seed: int = 0
    force: bool = False


@dataclass
class OptimizeReport:
    source: Path
    output: Path
    passes: list  # PassRecord
    before: dict[str, Any]
    after: dict[str, Any]
    sample_inputs: dict[str, list[int]]
    seconds: float
    pipeline: str = field(default="")

    def unknown_shapes_note(self) -> str | None:
        """What shape inference could not do, when it matters: fusions that need shapes were skipped."""
        for r in self.passes:
            if r.name == "infer-shapes" and r.stats.get("unknown_shapes"):
                return (f"{r.stats['unknown_shapes']} tensor shape(s) could not be inferred (e.g. "
                        f"{', '.join(r.stats['unknown_examples'])}); fusions that need them were skipped")
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"source": str(self.source), "output": str(self.output), "pipeline": self.pipeline,
                "before": self.before, "after": self.after,
                "verification": {"reference": "onnxruntime (graph optimizations off)",
                                 "sample_inputs": self.sample_inputs},
                "passes": [r.to_dict() for r in self.passes], "seconds": round(self.seconds, 3)}


def build_pipeline(config: OptimizeConfig) -> tuple[list, str]:
    """The passes `config` asks for, and a one-line description of them."""
    from dlc import passes
    from dlc.passes.cleanup import ConvertOpsetPass
    from dlc.passes.float16 import ToFloat16Pass

    chosen = passes.from_names(list(config.passes)) if config.passes else passes.level(config.level)
    described = ",".join(config.passes) if config.passes else f"-O{config.level}"
    if config.opset is not None:
        chosen.insert(0, ConvertOpsetPass(config.opset))
        described = f"convert-opset({config.opset}) + {described}"
    if config.float16 or config.float16_io:
        chosen.append(ToFloat16Pass(keep_io_types=not config.float16_io))
        described += " + to-float16" + ("" if config.float16_io else " (float32 I/O)")
    return chosen, described


def optimize_file(source: str | Path, out: str | Path, config: OptimizeConfig = OptimizeConfig()) -> OptimizeReport:
    """Runs the configured pipeline on `source` and writes the result to `out` (atomically)."""
    import onnx_ir as ir

    from dlc.passes import Verifier, run_passes
    from dlc.passes.cleanup import require_inferable_shapes

    source, out, start = Path(source), Path(out), time.perf_counter()
    check_output(out, config.force)
    proto = load_model(source)  # the checker's message comes before any pass runs
    require_inferable_shapes(proto)  # ...and a tensor whose shape cannot be inferred, by name
    pipeline, described = build_pipeline(config)
    inputs = _sample_inputs(proto, config)
    model = ir.serde.deserialize_model(proto)
    verifier = Verifier(model, inputs) if config.verify else None
    model, records = run_passes(model, pipeline, verifier, _tolerance(config))
    result = ir.serde.serialize_model(model)
    with staged_model(out) as staged:
        save_model(result, staged)
    return OptimizeReport(source, out, records, summarize(proto, source), summarize(result, out),
                          {k: list(v.shape) for k, v in inputs.items()}, time.perf_counter() - start, described)


def _tolerance(config: OptimizeConfig):
    """--atol/--rtol replace every pass's own tolerance; None keeps them."""
    from dlc.passes import Tolerance

    if config.atol is None and config.rtol is None:
        return None
    default = Tolerance()
    return Tolerance(default.atol if config.atol is None else config.atol,
                     default.rtol if config.rtol is None else config.rtol)


def _sample_inputs(proto, config: OptimizeConfig) -> dict[str, np.ndarray]:
    specs = io_specs(proto)[0]
    if config.inputs is None:
        return random_inputs(specs, seed=config.seed, batch=SAMPLE_DIM)
    return load_inputs(config.inputs, specs)


def summarize(proto, path: Path) -> dict[str, Any]:
    """Node count, op histogram, parameters and file size: the before/after columns of a report."""
    from dlc.analysis.inspect import graph_contents

    contents = graph_contents(proto)
    size = path.stat().st_size if path.exists() else proto.ByteSize()
    return {"nodes": sum(contents["ops"].values()), "ops": contents["ops"], "parameters": contents["parameters"],
            "weight_bytes": sum(contents["weight_bytes"].values()), "file_bytes": size}
