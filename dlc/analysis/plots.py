"""PNG figures: training curves and attribution maps, drawn with matplotlib's Agg backend (no display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlc.fileio import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_training_curves(history, path: Path, title: str) -> Path:
    """Loss (train and validation) and, for classifiers, accuracy per epoch."""
    plt = _pyplot()
    epochs = [h.epoch for h in history]
    has_accuracy = history and history[0].val_accuracy is not None
    fig, axes = plt.subplots(1, 2 if has_accuracy else 1, figsize=(9 if has_accuracy else 5, 3.5), squeeze=False)
    axes[0][0].plot(epochs, [h.train_loss for h in history], label="train")
    axes[0][0].plot(epochs, [h.val_loss for h in history], label="validation")
    axes[0][0].set(xlabel="epoch", ylabel="loss", title=f"{title}: loss")
    axes[0][0].legend()
    if has_accuracy:
        axes[0][1].plot(epochs, [h.train_accuracy for h in history], label="train")
        axes[0][1].plot(epochs, [h.val_accuracy for h in history], label="validation")
        axes[0][1].set(xlabel="epoch", ylabel="accuracy", title=f"{title}: accuracy")
        axes[0][1].legend()
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


def save_attributions(attributions, path: Path) -> Path:
    """One row per input: the image, its saliency map, its integrated gradients (red +, blue −)."""
    plt = _pyplot()
    rows = len(attributions)
    fig, axes = plt.subplots(rows, 3, figsize=(7.5, 2.5 * rows), squeeze=False)
    for row, a in zip(axes, attributions):
        image = a.image[0] if a.image.shape[0] == 1 else a.image.transpose(1, 2, 0)
        label = "" if a.label is None else f", label {a.label}"
        row[0].imshow(image, cmap="gray")
        row[0].set_title(f"#{a.index}: predicted {a.predicted}{label}", fontsize=9)
        row[1].imshow(a.saliency, cmap="hot")
        row[1].set_title(f"saliency (class {a.target})", fontsize=9)
        bound = float(np.abs(a.integrated_gradients).max()) or 1.0
        row[2].imshow(a.integrated_gradients, cmap="bwr", vmin=-bound, vmax=bound)
        row[2].set_title("integrated gradients", fontsize=9)
        for ax in row:
            ax.axis("off")
    return _save(fig, path)
