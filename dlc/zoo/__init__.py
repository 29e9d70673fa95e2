"""The model zoo: architectures registered by name, each with its arguments and input shape.

The registry itself imports no torch, so listing models (and `dlc --help`) stays fast;
`create` imports the module that defines the architecture.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from dlc.errors import UnknownNameError


@dataclass(frozen=True)
class ModelSpec:
    """How to build one zoo model and what it consumes."""

    name: str
    builder: str  # "module:callable", imported on first use
    description: str
    defaults: dict[str, Any]
    input_shape_arg: str  # the argument holding the per-sample input shape
    input_names: tuple[str, ...] = ("input",)
    output_names: tuple[str, ...] = ("logits",)
    tolerance: float = 1e-4  # max abs difference accepted between torch and ONNX Runtime
    tags: tuple[str, ...] = field(default=())
    task: str = "classify"  # classify (cross-entropy), reconstruct (MSE to the input), generate (GAN)
    dataset: str = "digits"  # what `dlc train` uses unless told otherwise
    recipe: dict[str, Any] = field(default_factory=dict)  # TrainConfig defaults for this model (lr, epochs...)

    def sample_shape(self, args: dict[str, Any]) -> tuple[int, ...]:
        return tuple(args[self.input_shape_arg])


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    _REGISTRY[spec.name] = spec
    return spec


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> ModelSpec:
    """A zoo model's spec; for a user's own model (`net.py:build`, `package.module:Net`), a spec of its own."""
    from dlc.sources import is_module_reference

    if name in _REGISTRY:
        return _REGISTRY[name]
    if is_module_reference(name) and not name.endswith(".pt2"):
        return ModelSpec(name=name, builder=name, description="your own model", defaults={"input_shape": None},
                         input_shape_arg="input_shape", output_names=("output",))
    raise UnknownNameError(f"unknown model {name!r}; choose one of: {', '.join(names())}, or your own as "
                           "FILE.py:NAME or PACKAGE.MODULE:NAME") from None


def resolve_args(spec: ModelSpec, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults merged with `overrides`; an unknown argument name is an error."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(spec.defaults))
    if unknown:
        raise UnknownNameError(
            f"model {spec.name!r} has no argument(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(spec.defaults))}"
        )
    return {**spec.defaults, **overrides}


def create(name: str, args: dict[str, Any] | None = None):
    """Builds the torch module for zoo model `name` with `args` over its defaults (a user's own: as it builds)."""
    spec = get(name)
    if name not in _REGISTRY:
        from dlc.sources import load_module_source

        resolve_args(spec, args)  # its only argument is the input shape the data set gives
        return load_module_source(name).module
    module_name, attr = spec.builder.split(":")
    builder = getattr(importlib.import_module(module_name), attr)
    return builder(**resolve_args(spec, args))


register(ModelSpec(
    name="mlp",
    builder="dlc.zoo.vision:MLP",
    description="multi-layer perceptron: flatten, hidden layers with ReLU and dropout",
    defaults={"input_shape": [1, 8, 8], "hidden": [128, 64], "num_classes": 10, "dropout": 0.1},
    input_shape_arg="input_shape",
))

register(ModelSpec(
    name="cnn",
    builder="dlc.zoo.vision:CNN",
    description="small LeNet-style CNN: two conv+batch-norm+ReLU blocks, max-pool, two linear layers",
    defaults={"input_shape": [1, 8, 8], "width": 16, "num_classes": 10, "dropout": 0.2},
    input_shape_arg="input_shape",
))

register(ModelSpec(
    name="resnet",
    builder="dlc.zoo.vision:ResNet",
    description="small ResNet: 3x3 stem, stages of residual basic blocks with batch norm, global average pool",
    defaults={"input_shape": [1, 8, 8], "widths": [16, 32, 64], "blocks_per_stage": 1, "num_classes": 10},
    input_shape_arg="input_shape",
))

register(ModelSpec(
    name="mobilenet",
    builder="dlc.zoo.vision:MobileNet",
    description="small MobileNetV2: inverted residual blocks of depthwise-separable convolutions, ReLU6",
    defaults={"input_shape": [1, 8, 8], "stem": 16, "blocks": [[16, 1], [24, 2], [24, 1], [32, 2]],
              "expand": 4, "num_classes": 10, "dropout": 0.2},
    input_shape_arg="input_shape",
))

register(ModelSpec(
    name="lstm",
    builder="dlc.zoo.sequence:LSTMClassifier",
    description="LSTM sequence classifier: the last step's output feeds a linear head",
    defaults={"input_shape": [16, 4], "hidden": 32, "layers": 1, "bidirectional": False, "num_classes": 4,
              "dropout": 0.0},
    input_shape_arg="input_shape",
    dataset="sequences",
))

register(ModelSpec(
    name="gru",
    builder="dlc.zoo.sequence:GRUClassifier",
    description="GRU sequence classifier (bidirectional by default): last step's output, linear head",
    defaults={"input_shape": [16, 4], "hidden": 32, "layers": 1, "bidirectional": True, "num_classes": 4,
              "dropout": 0.0},
    input_shape_arg="input_shape",
    dataset="sequences",
))

register(ModelSpec(
    name="transformer",
    builder="dlc.zoo.sequence:TransformerClassifier",
    description="Transformer encoder classifier: multi-head self-attention, LayerNorm, GELU MLP, mean pool",
    defaults={"input_shape": [16, 4], "width": 32, "heads": 4, "layers": 2, "num_classes": 4, "dropout": 0.1},
    input_shape_arg="input_shape",
    dataset="sequences",
    recipe={"schedule": "cosine"},  # attention needs the decay to settle; constant lr plateaus near chance
))

register(ModelSpec(
    name="autoencoder",
    builder="dlc.zoo.generative:Autoencoder",
    description="fully connected autoencoder: image → 8-number code → image, trained on reconstruction",
    defaults={"input_shape": [1, 8, 8], "hidden": 64, "code": 8},
    input_shape_arg="input_shape",
    output_names=("reconstruction",),
    task="reconstruct",
))

register(ModelSpec(
    name="gan",
    builder="dlc.zoo.generative:GAN",
    description="GAN on digits: MLP generator (exported) and discriminator trained adversarially",
    defaults={"latent_shape": [16], "image_shape": [1, 8, 8], "hidden": 64},
    input_shape_arg="latent_shape",
    input_names=("latent",),
    output_names=("image",),
    task="generate",
))
