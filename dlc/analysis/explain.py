"""Why an image model decided what it did: gradient saliency and integrated gradients.

    saliency              |∂ logit_c / ∂ x|, the largest over channels (Simonyan et al., 2013)
    integrated gradients  (x − x₀) · mean over α∈(0,1] of ∂ logit_c / ∂ x at x₀ + α(x − x₀), with a
                          black image x₀ and `steps` midpoints (Sundararajan et al., 2017); their sum
                          equals logit_c(x) − logit_c(x₀) up to the integration error, which is reported

c is the predicted class unless a target is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlc.errors import DlcError


@dataclass
class Attribution:
    index: int
    label: int | None
    predicted: int
    target: int
    image: np.ndarray  # [C, H, W]
    saliency: np.ndarray  # [H, W]
    integrated_gradients: np.ndarray  # [H, W], summed over channels
    completeness_error: float  # |Σ IG − (logit(x) − logit(x₀))|

    def to_dict(self) -> dict:
        return {"index": self.index, "label": self.label, "predicted": self.predicted, "target": self.target,
                "integrated_gradients_sum": float(self.integrated_gradients.sum()),
                "completeness_error": self.completeness_error}


def attribute(module, images: np.ndarray, labels=None, indices=None, target: int | None = None,
              steps: int = 64) -> list[Attribution]:
    """Saliency and integrated gradients of `module` (an image classifier in eval mode) for each image."""
    import torch

    if images.ndim != 4:
        raise DlcError(f"dlc explain needs an image model (inputs C x H x W); this one takes {list(images.shape[1:])}")
    results = []
    for i, image in enumerate(images):
        x = torch.from_numpy(image[None]).requires_grad_(True)
        logits = module(x)
        c = int(logits.argmax(1)) if target is None else target
        (grad,) = torch.autograd.grad(logits[0, c], x)
        ig, gap = _integrated_gradients(module, torch.from_numpy(image[None]), c, steps)
        results.append(Attribution(indices[i] if indices is not None else i,
                                   None if labels is None else int(labels[i]), int(logits.argmax(1)), c, image,
                                   grad[0].abs().amax(0).numpy(), ig, gap))
    return results


def _integrated_gradients(module, x, target: int, steps: int) -> tuple[np.ndarray, float]:
    import torch

    baseline = torch.zeros_like(x)
    alphas = (torch.arange(steps, dtype=torch.float32)[:, None, None, None] + 0.5) / steps  # midpoint rule
    path = (baseline + alphas * (x - baseline)).requires_grad_(True)
    (grads,) = torch.autograd.grad(module(path)[:, target].sum(), path)
    ig = ((x - baseline) * grads.mean(0, keepdim=True))[0]
    with torch.no_grad():
        gap = module(x)[0, target] - module(baseline)[0, target]
    return ig.sum(0).detach().numpy(), abs(float(ig.sum()) - float(gap))


def explain_checkpoint(checkpoint_path, index: str = "0,1,2,3", inputs=None, target: int | None = None,
                       steps: int = 64) -> list[Attribution]:
    """Attributions for a classifier checkpoint: test-set images by index ("0,1,2"), or an .npz's `x`."""
    from dlc import zoo
    from dlc.training import checkpoint

    ckpt = checkpoint.load(checkpoint_path)
    task = zoo.get(ckpt.model).task
    if task != "classify":
        raise DlcError(f"dlc explain attributes a classifier's decision; {ckpt.model!r} is a {task} model: "
                       "pass a checkpoint of an image classifier")
    images, labels, indices = _images(ckpt, index, inputs)
    return attribute(ckpt.build_module(), images, labels, indices, target, steps)


def _images(ckpt, index: str, inputs):
    """The images to explain, their labels and test-set indices (None for an .npz of images)."""
    from dlc.specs import TensorSpec, load_inputs
    from dlc.training.data import load_dataset

    if inputs is not None:
        spec = TensorSpec("x", ("N", *ckpt.input_shape), "float32")
        return load_inputs(inputs, [spec])["x"], None, None
    data = load_dataset(ckpt.dataset or "digits")
    try:
        chosen = [int(i) for i in index.split(",") if i.strip()]
    except ValueError:
        chosen = []
    if not chosen or any(not 0 <= i < len(data.x_test) for i in chosen):
        raise DlcError(f"--index {index!r} must list test-set indices between 0 and {len(data.x_test) - 1}")
    return data.x_test[chosen], data.y_test[chosen], chosen
