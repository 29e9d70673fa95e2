"""Calibration and validation samples for `dlc quantize`, each checked against the model's inputs.

    --checkpoint CKPT   its data set: calibrate on the training split, validate on the test split
    --calibration .npz  one array per input name (or x, with optional integer labels y), samples
                        along axis 0; validation runs on the same samples (say so in the report)
    --calibration DIR   an image folder, one subfolder per class (labels from the folder names)
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlc.errors import InvalidDataError
from dlc.specs import TensorSpec


@dataclass
class Data:
    """Calibration feeds (one sample each) and a validation set (feeds, labels or None)."""

    calibrate: list[dict[str, np.ndarray]]
    validate: list[dict[str, np.ndarray]]
    labels: np.ndarray | None
    task: str  # classify, reconstruct, or another task (a generator's) that has no metric to measure
    source: str
    held_out: bool = True  # validated on other samples than those calibrated on

    @property
    def has_metric(self) -> bool:
        return self.task in ("classify", "reconstruct") and bool(self.validate)


def model_task(proto) -> str:
    """The task of a model `dlc export` wrote (its zoo model, in the metadata); "classify" for any other."""
    from dlc import zoo

    name = {p.key: p.value for p in proto.metadata_props}.get("dlc.model")
    return zoo.get(name).task if name in zoo.names() else "classify"


def load_data(checkpoint: Path | None, calibration: Path | None, specs: list[TensorSpec],
              task: str = "classify") -> Data:
    """Calibration and validation samples from the checkpoint's data set, an .npz or an image folder.

    `task` is the model's (see `model_task`): an .npz or a folder validates a reconstruction model
    by MSE to its input; a generator's samples calibrate, and have no metric (`Data.has_metric`)."""
    if checkpoint is not None:
        return _checkpoint_data(checkpoint, specs)
    path = Path(calibration)
    if not path.exists():
        raise InvalidDataError(f"calibration data {path} does not exist; pass an .npz (one array per input name, "
                               "or x and optional y labels) or an image folder (one subfolder per class)")
    if path.is_dir():
        from dlc.training.datafiles import load_arrays

        x, y, _ = load_arrays(path)
        data = _samples({_single(specs, path): x}, y, specs, str(path))
    else:
        data = _npz_data(path, specs)
    if task != "classify":  # measured against the input itself (or not at all): labels mean nothing here
        data.task, data.labels = task, None
    return data


def require_metric(data: Data | None) -> None:
    """--max-drop needs validation samples with a metric."""
    if data is None:
        raise InvalidDataError("--max-drop needs a validation set: pass --checkpoint CKPT or --calibration DATA")
    if not data.has_metric:
        raise InvalidDataError(f"a {data.task} model (a GAN's generator) has no accuracy to measure: leave out "
                               "--max-drop")


def _checkpoint_data(path: Path, specs: list[TensorSpec]) -> Data:
    from dlc.training import checkpoint
    from dlc.training.data import load_dataset

    ckpt = checkpoint.load(path)
    task = (ckpt.metrics or {}).get("task", "classify")
    if task not in ("classify", "reconstruct") or ckpt.dataset is None:
        raise InvalidDataError(f"{path} was trained for {task!r} on {ckpt.dataset!r}: dlc measures the accuracy of "
                               "classification and reconstruction; pass --calibration data.npz instead")
    splits = load_dataset(ckpt.dataset, task=task)
    name = _single(specs, path)
    data = _samples({name: splits.x_train}, None, specs, f"{path} ({ckpt.dataset}, training split)")
    validate = _samples({name: splits.x_test}, splits.y_test if task == "classify" else None, specs, "")
    return Data(data.calibrate, validate.validate, validate.labels, task, data.source)


def _npz_data(path: Path, specs: list[TensorSpec]) -> Data:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise InvalidDataError(f"{path} is not a readable .npz ({e}); save it with numpy.savez") from e
    names = {s.name for s in specs}
    labels = arrays.pop("y", arrays.pop("labels", None))
    if "x" in arrays and "x" not in names:
        arrays = {_single(specs, path): arrays.pop("x"), **arrays}
    missing = sorted(names - arrays.keys())
    if missing:
        raise InvalidDataError(f"{path} has no array for input(s) {', '.join(missing)} (it has: "
                               f"{', '.join(sorted(arrays)) or 'none'}); save one array per input name, samples "
                               "along axis 0")
    return _samples({k: arrays[k] for k in names}, labels, specs, str(path))


def _single(specs: list[TensorSpec], where) -> str:
    if len(specs) != 1:
        raise InvalidDataError(f"the model has {len(specs)} inputs ({', '.join(s.name for s in specs)}); {where} "
                               "holds one: pass an .npz with one array per input name")
    return specs[0].name


def _samples(arrays: dict[str, np.ndarray], labels, specs: list[TensorSpec], source: str) -> Data:
    """One feed per sample (batch 1), every array checked against its input's shape and dtype."""
    counts = {len(a) if np.ndim(a) else 0 for a in arrays.values()}
    if counts == {0} or len(counts) != 1:
        sizes = ", ".join(f"{k}: {len(a) if np.ndim(a) else 0}" for k, a in arrays.items())
        raise InvalidDataError(f"calibration data needs the same number (≥ 1) of samples for every input along "
                               f"axis 0, got {sizes}")
    for spec in specs:
        _check_array(spec, arrays[spec.name])
    count = counts.pop()
    if labels is not None:
        _check_labels(np.asarray(labels), count)
    feeds = [{s.name: arrays[s.name][i:i + 1].astype(s.dtype) for s in specs} for i in range(count)]
    return Data(feeds, feeds, None if labels is None else np.asarray(labels).astype(np.int64), "classify", source,
                held_out=False)


def _check_array(spec: TensorSpec, array: np.ndarray) -> None:
    per_sample = list(spec.shape[1:])
    got = list(array.shape[1:])
    fits = len(got) == len(per_sample) and all(not isinstance(d, int) or d == g for d, g in zip(per_sample, got))
    kind_ok = np.issubdtype(array.dtype, np.floating) == np.issubdtype(np.dtype(spec.dtype), np.floating) and \
        array.dtype.kind in "fiub"
    if not fits or not kind_ok:
        expected = "×".join(str(d) for d in ["N", *per_sample])
        shape = "×".join(map(str, array.shape))
        raise InvalidDataError(f"calibration data for input {spec.name!r} is {array.dtype}[{shape}], the model "
                               f"expects {spec.dtype}[{expected}] (samples along axis 0)")

    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise InvalidDataError(f"calibration data for input {spec.name!r} holds NaN or infinite values; "
                               "pass finite samples")


def _check_labels(labels: np.ndarray, count: int) -> None:
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != count or (count and labels.min() < 0):
        raise InvalidDataError(f"the labels must be {count} non-negative integer class indices (one per sample, "
                               f"1-D), not {labels.dtype}[{'×'.join(map(str, labels.shape))}]")
