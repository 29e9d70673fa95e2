from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlc.cli._common import console


def explain(
    checkpoint_path: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="A checkpoint of an image model "
                                                    "from `dlc train`.", show_default=False)],
    index: Annotated[str, typer.Option(help="Comma-separated test-set indices to explain.")] = "0,1,2,3",
    inputs: Annotated[Path | None, typer.Option(help="Explain these images instead (.npz with an array x of "
                                                     "N x C x H x W).")] = None,
    target: Annotated[int | None, typer.Option(help="Class to explain [default: the predicted one].")] = None,
    steps: Annotated[int, typer.Option(min=2, help="Integration steps for integrated gradients.")] = 64,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="PNG to write [default: CHECKPOINT "
                                                "with .explain.png].")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing output.")] = False,
):
    """Write gradient saliency and integrated-gradients maps of an image model as PNG (and JSON)."""
    from dlc import checkpoint, zoo
    from dlc.errors import DlcError
    from dlc.explain import attribute
    from dlc.fileio import check_output, write_json
    from dlc.plots import save_attributions

    output = output or checkpoint_path.with_suffix(".explain.png")
    check_output(output, force)
    ckpt = checkpoint.load(checkpoint_path)
    if zoo.get(ckpt.model).task != "classify":
        raise DlcError(f"dlc explain attributes a classifier's decision; {ckpt.model!r} is a "
                       f"{zoo.get(ckpt.model).task} model: pass a checkpoint of an image classifier")
    images, labels, indices = _images(ckpt, index, inputs)
    results = attribute(ckpt.build_module(), images, labels, indices, target, steps)
    save_attributions(results, output)
    report = write_json(output.with_suffix(".json"), {"checkpoint": str(checkpoint_path), "steps": steps,
                                                       "inputs": [a.to_dict() for a in results]})
    worst = max(a.completeness_error for a in results)
    console.print(f"wrote {output} ({len(results)} inputs; integrated-gradients completeness error ≤ {worst:.2e})"
                  f"   report: {report}")


def _images(ckpt, index: str, inputs: Path | None):
    from dlc.data import load_dataset
    from dlc.errors import DlcError
    from dlc.runtime.specs import TensorSpec, load_inputs

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
