"""Tensor specs and the input check every session shares."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from dlc.errors import InputMismatchError

Dim = int | str  # a str is a symbolic dimension (e.g. "batch") that accepts any size

# The one default for symbolic dimensions. Where one static shape is needed (compile, inspect,
# a benchmark's inputs) a symbolic dimension becomes STATIC_DIM: one request's batch.
# Sample inputs that check a transformation (passes, lowering, tracing an export) use
# SAMPLE_DIM instead: a size of 1 hides broadcasting mistakes, and torch.export specializes it.
STATIC_DIM = 1
SAMPLE_DIM = 2


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[Dim, ...]
    dtype: str  # numpy dtype name, e.g. "float32"

    def __str__(self) -> str:
        return f"{self.name}: {self.dtype}[{','.join(map(str, self.shape))}]"

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict) -> "TensorSpec":
        return cls(d["name"], tuple(d["shape"]), d["dtype"])

    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def problems(self, array: np.ndarray) -> list[str]:
        found = []
        if array.dtype.name != self.dtype:
            found.append(f"{self.name!r} has dtype {array.dtype.name}, expected {self.dtype}")
        if len(array.shape) != len(self.shape) or any(
                isinstance(want, int) and want != got for want, got in zip(self.shape, array.shape)):
            found.append(f"{self.name!r} has shape {list(array.shape)}, expected {list(self.shape)}")
        return found


def check_inputs(specs: list[TensorSpec], inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Returns `inputs` if they match `specs`; otherwise raises one error listing every mismatch.

    Every model call goes through here, so the common case (contiguous arrays that fit)
    is decided first without building anything: a 20 µs model must not pay 4 µs for it.
    """
    if len(inputs) == len(specs) and all(_fits(spec, inputs.get(spec.name)) for spec in specs):
        return inputs
    by_name = {s.name: s for s in specs}
    problems = [f"missing input {name!r}" for name in by_name if name not in inputs]
    problems += [f"{name!r} is not an input" for name in inputs if name not in by_name]
    for name, array in inputs.items():
        if name in by_name:
            problems += by_name[name].problems(np.asarray(array))
    if problems:
        expected = "; ".join(str(s) for s in specs)
        raise InputMismatchError(f"inputs do not match the model: {'; '.join(problems)} "
                                 f"(the model takes {expected})")
    return {name: np.ascontiguousarray(inputs[name]) for name in by_name}


def check_sizes(specs: list[TensorSpec], inputs: dict[str, np.ndarray], bounds: dict[str, int]) -> dict[str, int]:
    """The size of each symbolic dimension in `inputs` (checked by check_inputs): one size per symbol across the
    inputs, within its bound. Memory was planned for the bounds: a larger size must never reach the kernels."""
    sizes: dict[str, int] = {}
    for spec in specs:
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, int):
                continue
            size = inputs[spec.name].shape[axis]
            if sizes.setdefault(dim, size) != size:
                raise InputMismatchError(f"inputs disagree on {dim}: {sizes[dim]} and {size} ({spec.name} axis "
                                         f"{axis}); every input's {dim} must be one size")
            if dim not in bounds:
                raise InputMismatchError(f"{spec.name} axis {axis} ({dim}) has no bound in this artifact; "
                                         "recompile it with --max-shape for every symbolic dim")
            if size > bounds[dim] or size < 1:
                raise InputMismatchError(f"{spec.name} has {dim}={size}, outside 1..{bounds[dim]}, the sizes this "
                                         f"artifact was compiled for; recompile with a larger --max-shape {dim}=N")
    return sizes


def _fits(spec: TensorSpec, array) -> bool:
    # dtype == a cached np.dtype: `array.dtype.name` builds a string, 2 µs a call
    return (isinstance(array, np.ndarray) and array.dtype == _np_dtype(spec.dtype) and array.flags.c_contiguous
            and len(array.shape) == len(spec.shape)
            and all(want == got or not isinstance(want, int) for want, got in zip(spec.shape, array.shape)))


@functools.lru_cache(maxsize=None)
def _np_dtype(name: str) -> np.dtype:
    return np.dtype(name)


def load_inputs(path, specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """Named arrays from an .npz file, checked against `specs` (every mismatch reported at once)."""
    from dlc.fileio import require_file

    path = require_file(path, "inputs file", "pass an .npz holding one array per model input")
    try:
        with np.load(path, allow_pickle=False) as z:
            given = {k: z[k] for k in z.files}
    except (ValueError, OSError) as e:
        raise InputMismatchError(f"{path} is not an .npz file of arrays ({e}); "
                                 "write one with numpy.savez(path, input=array)") from e
    return check_inputs(specs, given)


def random_inputs(specs: list[TensorSpec], seed: int = 0, batch: int = STATIC_DIM,
                  sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Reproducible sample inputs; a symbolic dimension becomes its size in `sizes`, else `batch`."""
    rng = np.random.default_rng(seed)
    sizes = sizes or {}
    out = {}
    for spec in specs:
        shape = tuple(d if isinstance(d, int) else sizes.get(d, batch) for d in spec.shape)
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            out[spec.name] = rng.random(shape, dtype=np.float32).astype(dtype)
        elif dtype.kind in "iu":
            out[spec.name] = rng.integers(0, 10, shape).astype(dtype)
        else:
            out[spec.name] = rng.integers(0, 2, shape).astype(dtype)
    return out


def static_specs(specs: list[TensorSpec], shapes: dict[str, list[int]] | None) -> list[TensorSpec]:
    """Input specs with every dimension fixed: from `shapes`, else STATIC_DIM for a symbolic first dim."""
    shapes = _known(specs, shapes)
    return [_static_spec(s, shapes.get(s.name)) for s in specs]


def dynamic_specs(specs: list[TensorSpec], shapes: dict[str, list[int]] | None,
                  bounds: dict[str, int]) -> list[TensorSpec]:
    """Input specs with the inputs `shapes` names fixed and every other symbolic dimension kept; each symbol
    left needs an upper bound in `bounds` (what memory is planned for)."""
    shapes = _known(specs, shapes)
    result = [_static_spec(s, shapes[s.name]) if s.name in shapes else s for s in specs]
    symbols = {d for s in result for d in s.shape if not isinstance(d, int)}
    unnamed = [s.name for s in result if "?" in s.shape]
    if unnamed:
        raise InputMismatchError(f"input {unnamed[0]} has a dimension without a name, which --max-shape cannot "
                                 "bound; pin it with --shape, or export with named dims (dlc export --dynamic "
                                 "NAME:AXIS=SYMBOL)")
    if not symbols:
        raise InputMismatchError("--dynamic keeps symbolic dimensions, and the model's inputs have none left "
                                 f"({'; '.join(map(str, result))}): compile without --dynamic")
    missing, unknown = sorted(symbols - set(bounds)), sorted(set(bounds) - symbols)
    if missing:
        raise InputMismatchError(f"--dynamic keeps {', '.join(missing)} symbolic: give each an upper bound, e.g. "
                                 f"--max-shape {missing[0]}=512")
    if unknown:
        raise InputMismatchError(f"--max-shape names {', '.join(unknown)}, which no input has as a symbolic "
                                 f"dimension; the symbols are: {', '.join(sorted(symbols))}")
    return result


def golden_sizes(bounds: dict[str, int]) -> list[dict[str, int]]:
    """The sizes a dynamic artifact is verified at: every symbol at 1, at an odd size within, at its bound."""
    levels = [lambda b: 1, lambda b: max(1, b // 2 + 1), lambda b: b]
    cases = [{symbol: level(bound) for symbol, bound in bounds.items()} for level in levels]
    return [case for i, case in enumerate(cases) if case not in cases[:i]]


def _known(specs: list[TensorSpec], shapes: dict[str, list[int]] | None) -> dict[str, list[int]]:
    shapes = dict(shapes or {})
    unknown = sorted(set(shapes) - {s.name for s in specs})
    if unknown:
        raise InputMismatchError(f"--shape names unknown input(s) {', '.join(unknown)}; "
                                 f"the model's inputs are: {', '.join(s.name for s in specs)}")
    return shapes


def _static_spec(spec: TensorSpec, given: list[int] | None) -> TensorSpec:
    if given is not None:
        if len(given) != len(spec.shape) or any(isinstance(d, int) and d != g for d, g in zip(spec.shape, given)):
            raise InputMismatchError(f"--shape {spec.name}={','.join(map(str, given))} does not fit "
                                     f"the model's {spec}; keep its rank and fixed sizes")
        return TensorSpec(spec.name, tuple(given), spec.dtype)
    if spec.is_static():
        return spec
    if all(isinstance(d, int) for d in spec.shape[1:]):
        return TensorSpec(spec.name, (STATIC_DIM, *spec.shape[1:]), spec.dtype)
    example = ",".join(str(d) if isinstance(d, int) else "N" for d in spec.shape)
    raise InputMismatchError(f"input {spec} has symbolic dimensions; fix them with --shape {spec.name}={example}")


ALIGNMENT = 64  # bytes; what TVM allocates with and its kernels assume


def is_aligned(array: np.ndarray) -> bool:
    return (array.ctypes.data % ALIGNMENT == 0 and array.flags.c_contiguous and array.flags.writeable
            and array.flags.aligned)


def aligned(array: np.ndarray) -> np.ndarray:
    """`array` itself if it is 64-byte aligned, else an aligned copy (so TVM can read it without copying)."""
    if is_aligned(array):
        return array
    raw = np.empty(array.nbytes + ALIGNMENT, dtype=np.uint8)
    start = (-raw.ctypes.data) % ALIGNMENT
    out = raw[start:start + array.nbytes].view(array.dtype).reshape(array.shape)
    out[...] = array
    return out
