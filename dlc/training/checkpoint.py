"""dlc checkpoints: a state_dict plus what is needed to rebuild the model.

The file is a plain dict of tensors, strings and numbers, so it loads with
`torch.load(path, weights_only=True)`: loading a checkpoint never runs pickled code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlc import zoo
from dlc.errors import DlcError, InvalidModelError, UnknownNameError, first_line
from dlc.fileio import atomic_path, require_file
from dlc.sources import is_module_reference
from dlc.version import __version__

FORMAT = "dlc-checkpoint"
ALLOW_CODE = "DLC_ALLOW_CODE"  # "1": a checkpoint of a user's own model may run that model's file
FORMAT_VERSION = 1


def permit_code(allowed: bool) -> None:
    """`--allow-code`: this process and its children may rebuild checkpoints of users' own models."""
    import os

    if allowed:
        os.environ[ALLOW_CODE] = "1"


@dataclass
class Checkpoint:
    model: str
    model_args: dict[str, Any]
    state_dict: dict[str, Any]
    input_shape: list[int]  # per sample, without the batch dimension
    dataset: str | None = None
    preprocess: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    normalize: dict[str, list[float]] | None = None  # per-channel mean/std the module applies to its input
    training_state: dict[str, Any] | None = None  # epoch and optimizer state, for `dlc train --resume`
    source_sha256: str | None = None  # a user's own model: the sha256 of the file its code is in
    pruned: dict[str, Any] | None = None  # `dlc prune`: how; its layers are narrower than model_args build

    def build_module(self):
        """The module with these weights, in eval mode (wrapped in its input normalization, if any).

        A user's own model is rebuilt by running its file: only when the user allows it
        (ALLOW_CODE in the environment, which `--allow-code` sets), since a checkpoint from
        elsewhere names any file it likes, and only if that file is the one it was trained with."""
        import os

        from dlc.sources import require_unchanged

        if self.model not in zoo.names() and os.environ.get(ALLOW_CODE) != "1":
            raise DlcError(f"this checkpoint was trained from your own model {self.model}; rebuilding it runs that "
                           "file's code, which dlc does not do unasked: pass --allow-code (or set "
                           f"{ALLOW_CODE}=1) if you trust it")
        require_unchanged(self.model, self.source_sha256)
        module = zoo.create(self.model, self.model_args)
        if self.pruned:
            narrow_to(module, self.state_dict)
        module.load_state_dict(self.state_dict)
        if self.normalize:
            from dlc.zoo.layers import Normalized

            module = Normalized(module, self.normalize["mean"], self.normalize["std"])
        return module.eval()





def narrow_to(module, state_dict: dict[str, Any]) -> None:
    """Gives each Conv, Linear and BatchNorm layer of `module` the widths of its weights in `state_dict`.

    A pruned model is its zoo architecture with fewer channels per layer: rebuilt from its name and
    arguments, then narrowed here, so the checkpoint stays plain tensors (no pickled modules)."""
    import torch
    from torch import nn

    for name, layer in module.named_modules():
        weight = state_dict.get(f"{name}.weight" if name else "weight")
        if weight is None or not isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm1d,
                                                    nn.BatchNorm2d, nn.LayerNorm)):
            continue
        if isinstance(layer, nn.Linear):
            layer.out_features, layer.in_features = weight.shape
        elif isinstance(layer, nn.LayerNorm):
            layer.normalized_shape = tuple(weight.shape)
        elif isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.num_features = weight.shape[0]
        else:
            depthwise = layer.groups > 1 and layer.groups == layer.in_channels == layer.out_channels
            layer.out_channels = weight.shape[0]
            layer.groups = weight.shape[0] if depthwise else layer.groups
            layer.in_channels = weight.shape[1] * layer.groups
        for key, tensor in layer.named_parameters(recurse=False):
            setattr(layer, key, nn.Parameter(torch.empty_like(state_dict[f"{name}.{key}" if name else key])))
        for key, tensor in layer.named_buffers(recurse=False):
            full = f"{name}.{key}" if name else key
            if full in state_dict:
                layer.register_buffer(key, torch.empty_like(state_dict[full]))


def untrained(model: str, args: dict[str, Any] | None = None, seed: int = 0) -> Checkpoint:
    """A checkpoint of zoo model `model` with freshly initialized (seeded) weights."""
    import torch

    spec = zoo.get(model)
    model_args = zoo.resolve_args(spec, args)
    torch.manual_seed(seed)
    module = zoo.create(model, model_args)
    return Checkpoint(model, model_args, module.state_dict(), list(spec.sample_shape(model_args)))


def save(ckpt: Checkpoint, path: str | Path) -> Path:
    import torch

    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "dlc_version": __version__,
               **ckpt.__dict__}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load(path: str | Path) -> Checkpoint:
    """Loads and checks a checkpoint; the model name must be in the zoo."""
    import torch

    p = require_file(path, "checkpoint", "train one with `dlc train -o model.pt`")
    try:
        data = torch.load(p, weights_only=True, map_location="cpu")
    except Exception as e:  # torch.load raises IndexError, UnpicklingError, RuntimeError... on junk
        reason = first_line(e).split(". ")[0]
        raise InvalidModelError(f"{p} is not a dlc checkpoint (torch.load with weights_only=True: {reason}); pass "
                                "a checkpoint written by `dlc train`, or a zoo model name") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidModelError(f"{p} is not a dlc checkpoint (no '{FORMAT}' header); "
                                f"create one with `dlc train -o {p.name}`")
    model = data.get("model")
    if model not in zoo.names() and not (isinstance(model, str) and is_module_reference(model)
                                         and isinstance(data.get("source_sha256"), str)):
        raise UnknownNameError(
            f"checkpoint {p} is for model {model!r}, which this dlc does not have; "
            f"known models: {', '.join(zoo.names())} (retrain with `dlc train --model NAME`)")
    fields = Checkpoint.__dataclass_fields__
    return Checkpoint(**{k: v for k, v in data.items() if k in fields})

