"""Training data from files: arrays in .npz or .csv, and image folders (one subfolder per class).

    data.npz     arrays `x` (samples, ...) and `y` (integer labels; for regression, float targets)
    data.csv     one sample per row, the last column the label (or target); a header row is skipped
    folder/      folder/<class>/*.png|jpg|jpeg; classes in sorted name order; images become
                 float32 [channels, H, W] in 0..1 (grey if every image is, else RGB), all resized
                 to the first image's size
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlc.errors import InvalidDataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def load_arrays(path: Path, integer_labels: bool = True) -> tuple[np.ndarray, np.ndarray, str]:
    """(x float32, y int64 labels, or float32 targets without `integer_labels`; how x was made) from an .npz,
    a .csv or an image folder."""
    if path.is_dir():
        return _image_folder(path)
    if path.suffix == ".npz":
        return _npz(path, integer_labels)
    if path.suffix == ".csv":
        return _csv(path, integer_labels)
    raise InvalidDataError(f"{path} is not an .npz, .csv or image folder; pass one of those with --data")


def _npz(path: Path, integer_labels: bool):
    try:
        with np.load(path, allow_pickle=False) as z:
            x, y = z["x"], z["y"]
    except (KeyError, ValueError, OSError) as e:
        raise InvalidDataError(f"{path} needs arrays 'x' and 'y' ({e}); save with numpy.savez(path, x=..., y=...)") from e
    return (*_checked(path, x, y, integer_labels), "as stored in the .npz")


def _csv(path: Path, integer_labels: bool):
    try:
        table = np.genfromtxt(path, delimiter=",", skip_header=_has_header(path), dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise InvalidDataError(f"{path} is not a numeric CSV ({e}); one sample per row, the label last") from e
    if table.shape[1] < 2 or np.isnan(table).any():
        raise InvalidDataError(f"{path} needs numeric rows of features then a label, without gaps")
    return (*_checked(path, table[:, :-1], table[:, -1], integer_labels), "CSV columns as given")


def _has_header(path: Path) -> int:
    first = path.read_text().splitlines()[:1]
    try:
        for value in first[0].split(",") if first else []:
            float(value)
    except ValueError:
        return 1
    return 0


def _checked(path: Path, x: np.ndarray, y: np.ndarray, integer_labels: bool):
    if len(x) != len(y) or len(x) == 0:
        raise InvalidDataError(f"{path}: x has {len(x)} samples and y {len(y)}; they must match and be non-empty")
    if not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)):
        raise InvalidDataError(f"{path}: y must be numbers, without NaN or infinity")
    if not integer_labels:
        return x.astype(np.float32), y.astype(np.float32)
    if not np.all(np.equal(np.mod(y, 1), 0)) or y.min() < 0:
        raise InvalidDataError(f"{path}: labels must be non-negative integers (for float targets, train with "
                               "--task regress)")
    return x.astype(np.float32), y.astype(np.int64)


def _image_folder(path: Path):
    from PIL import Image, UnidentifiedImageError

    classes = sorted(p for p in path.iterdir() if p.is_dir())
    files = [(f, label) for label, c in enumerate(classes) for f in sorted(c.iterdir())
             if f.suffix.lower() in IMAGE_SUFFIXES]
    if len(classes) < 2 or not files:
        raise InvalidDataError(f"{path} has {len(classes)} class folder(s) with {len(files)} image(s); an image "
                            f"folder needs a subfolder per class (at least two) holding .png/.jpg files")
    images = []
    for f, _ in files:
        try:
            with Image.open(f) as im:
                images.append(im.copy())
        except (UnidentifiedImageError, OSError) as e:
            raise InvalidDataError(f"cannot read image {f} ({e}); remove or replace it") from e
    mode = "L" if all(im.mode in ("L", "1", "I;16") for im in images) else "RGB"
    size = images[0].size
    arrays = [np.asarray(im.convert(mode).resize(size), dtype=np.float32) / 255.0 for im in images]
    x = np.stack([a[None] if mode == "L" else a.transpose(2, 0, 1) for a in arrays])
    names = ", ".join(c.name for c in classes)
    return x, np.array([label for _, label in files], np.int64), f"{mode} pixels / 255, {size[0]}x{size[1]}, classes {names}"
