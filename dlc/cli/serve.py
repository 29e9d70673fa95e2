from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from dlc.cli._common import console


def serve(
    repository: Annotated[Path, typer.Argument(help="A model repository (NAME/VERSION/model.dlc or model.onnx), "
                                               "a .dlc artifact or an .onnx file.", show_default=False)],
    host: Annotated[str, typer.Option(help="Address to bind; loopback unless you mean to expose it.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    token: Annotated[str | None, typer.Option(help="Require 'Authorization: Bearer TOKEN' [default: "
                                              "$DLC_SERVE_TOKEN if set].", show_default=False)] = None,
    max_queue: Annotated[int, typer.Option(min=1, help="Requests queued per model before 503.")] = 64,
    max_batch: Annotated[int, typer.Option(min=1, help="Dynamic batching: samples one model run may take "
                                           "(1 = off; a model compiled for batch B takes up to B).")] = 1,
    max_delay_ms: Annotated[float, typer.Option(min=0.0, help="Dynamic batching: how long a request waits for "
                                                "others to join its batch.")] = 2.0,
    max_body_mb: Annotated[float, typer.Option(min=0.001, help="Largest request body accepted.")] = 16.0,
):
    """Serve models over HTTP with the KServe v2 protocol (Triton's clients work unchanged)."""
    import uvicorn

    from dlc.runtime.serving.app import ServeConfig, create_app
    from dlc.runtime.serving.repository import discover

    repo = discover(repository)
    with console.status(f"loading {sum(len(v) for v in repo.models.values())} model version(s)"):
        repo.load_all()
    for versions in repo.models.values():
        for m in versions.values():
            state = f"ready ({m.platform})" if m.ready else f"FAILED: {m.error}"
            console.print(f"model {m.name} version {m.version}: {state}   {m.path}")
    config = ServeConfig(max_queue=max_queue, max_batch=max_batch, max_delay_ms=max_delay_ms, max_body_bytes=int(max_body_mb * (1 << 20)),
                         token=token or os.environ.get("DLC_SERVE_TOKEN") or None)
    console.print(f"serving on http://{host}:{port}/v2 (KServe v2){' with a bearer token' if config.token else ''}; "
                  f"Ctrl-C stops after the requests in flight")
    uvicorn.run(create_app(repo, config), host=host, port=port, log_level="warning",
                timeout_graceful_shutdown=30)
