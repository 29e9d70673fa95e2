"""TVM on an ONNX file without an artifact of one's own: a session built in memory, and a
benchmark that compiles the file first. Both build for this machine with `dlc compile`'s
defaults (untuned, unless the tuning database of the model already holds records)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path


def compile_session(onnx_path: str | Path, shapes: dict[str, list[int]] | None = None):
    """A TvmSession over `onnx_path` compiled for this CPU in memory (nothing written, not verified)."""
    from dlc.compiler.build import build_executable, load_for_tvm
    from dlc.onnxio import io_specs
    from dlc.runtime.tvm_session import TvmSession
    from dlc.specs import static_specs
    from dlc.target import resolve_target

    model, _ = load_for_tvm(onnx_path)
    inputs = static_specs(io_specs(model)[0], shapes)
    return TvmSession(build_executable(model, inputs, resolve_target("host")), inputs, io_specs(model)[1])


def benchmark(model: str | Path, config, on_result: Callable | None = None):
    """`dlc.runtime.bench.benchmark`; for an ONNX file, backends that run artifacts get one compiled here first.

    The artifact is compiled and verified exactly as `dlc compile` does, into a temporary
    directory that is removed afterwards.
    """
    from dlc.artifact import is_artifact
    from dlc.compiler.build import compile_model
    from dlc.runtime import bench
    from dlc.runtime.backends import get_backend

    if is_artifact(model) or all(get_backend(b).reads != "artifact" for b in config.backends):
        return bench.benchmark(model, config, on_result)
    with tempfile.TemporaryDirectory(prefix="dlc-bench-") as tmp:
        artifact = Path(tmp) / f"{Path(model).stem}.dlc"
        compile_model(model, artifact)
        return bench.benchmark(model, replace(config, artifact=artifact), on_result)
