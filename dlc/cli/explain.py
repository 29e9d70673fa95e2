from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlc.cli._common import ALLOW_CODE_HELP, console


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
    allow_code: Annotated[bool, typer.Option(help=ALLOW_CODE_HELP)] = False,
):
    """Write gradient saliency and integrated-gradients maps of an image model as PNG (and JSON)."""
    from dlc.analysis.explain import explain_checkpoint
    from dlc.analysis.plots import save_attributions
    from dlc.fileio import beside, check_output, write_json
    from dlc.training.checkpoint import permit_code

    permit_code(allow_code)
    output = output or beside(checkpoint_path, ".explain.png")
    check_output(output, force)
    results = explain_checkpoint(checkpoint_path, index, inputs, target, steps)
    save_attributions(results, output)
    report = write_json(output.with_suffix(".json"), {"checkpoint": str(checkpoint_path), "steps": steps,
                                                       "inputs": [a.to_dict() for a in results]})
    worst = max(a.completeness_error for a in results)
    console.print(f"wrote {output} ({len(results)} inputs; integrated-gradients completeness error ≤ {worst:.2e})"
                  f"   report: {report}")
