"""Transfer learning and resuming: start from a checkpoint, freeze named layers, replace the head.

Weights are copied by name where the shapes agree (a head sized for other classes is left
to its fresh initialization and reported); frozen layers keep `requires_grad=False` and run
in eval mode while the rest trains, so their weights and batch-norm statistics stay
bit-identical.
"""

from __future__ import annotations

from pathlib import Path

from dlc.errors import InvalidModelError, UnknownNameError


def start_from(model, path: Path, model_name: str) -> dict[str, list[str]]:
    """Copies matching weights of checkpoint `path` into `model`; says what was copied and skipped."""
    from dlc.training import checkpoint

    source = checkpoint.load(path)
    require_same_model(source, model_name, path)
    own = model.state_dict()
    copied = {k: v for k, v in source.state_dict.items() if k in own and own[k].shape == v.shape}
    if not copied:
        raise InvalidModelError(f"checkpoint {path} has no weight of the shape this model needs (its model "
                                f"arguments {source.model_args} differ from these); nothing would be transferred: "
                                "train with the checkpoint's --arg values, or leave --init-from out")
    model.load_state_dict(copied, strict=False)
    return {"copied": sorted(copied), "skipped": sorted(set(own) - set(copied))}


def require_same_model(source, model_name: str, path: Path) -> None:
    if source.model != model_name:
        raise InvalidModelError(f"checkpoint {path} holds a {source.model!r} model but --model is {model_name!r}; "
                                f"pass --model {source.model} or a checkpoint of a {model_name!r}")


def freeze(model, prefixes: tuple[str, ...]) -> list[str]:
    """Turns off gradients below each named submodule; returns the frozen parameter names."""
    names = dict(model.named_modules())
    unknown = [p for p in prefixes if p not in names or not p]
    if unknown:
        top = [n for n in names if n and "." not in n]
        raise UnknownNameError(f"no layer named {', '.join(map(repr, unknown))} to freeze; this model's layers: "
                               f"{', '.join(top)} (nested ones as e.g. {top[0]}.0)")
    frozen = []
    for prefix in prefixes:
        for name, param in names[prefix].named_parameters(prefix=prefix):
            param.requires_grad_(False)
            frozen.append(name)
    return frozen


def keep_frozen_in_eval(model, prefixes: tuple[str, ...]) -> None:
    """After `model.train()`: frozen layers stay in eval mode (batch norm stops updating its statistics)."""
    for prefix in prefixes:
        model.get_submodule(prefix).eval()


def reset_head(model) -> str:
    """Re-initializes the model's last Linear layer (its classifier head); returns its name."""
    import torch

    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise InvalidModelError("this model has no Linear head to replace; leave --new-head out")
    name, head = linears[-1]
    head.reset_parameters()
    return name
