from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from dlc.cli._common import console
from dlc.cli.signing import TRUST_HELP, require_key


def serve(
    repository: Annotated[Path, typer.Argument(help="A model repository (NAME/VERSION/model.dlc or model.onnx), "
                                               "a .dlc artifact or an .onnx file.", show_default=False)],
    host: Annotated[str, typer.Option(help="Address to bind; loopback unless you mean to expose it.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    token: Annotated[str | None, typer.Option(help="Require 'Authorization: Bearer TOKEN' [default: "
                                              "$DLC_SERVE_TOKEN if set].", show_default=False)] = None,
    max_queue: Annotated[int, typer.Option(min=1, help="Requests queued per model before 503.")] = 64,
    max_batch: Annotated[int, typer.Option(min=1, help="Dynamic batching: samples one model run may take "
                                           "(1 = off; a model compiled for batch B takes up to B).")] = 1,
    max_delay_ms: Annotated[float, typer.Option(min=0.0, help="Dynamic batching: how long a request waits for "
                                                "others to join its batch.")] = 2.0,
    max_body_mb: Annotated[float, typer.Option(min=0.001, help="Largest request body accepted.")] = 16.0,
    read_timeout: Annotated[float, typer.Option(min=0.1, help="Seconds a request's headers, and then its body, "
                                                "may take to arrive before 408.")] = 30.0,
    max_connections: Annotated[int, typer.Option(min=1, help="Open connections and requests beyond which "
                                                 "new ones get 503.")] = 512,
    trust: Annotated[Path | None, typer.Option(help=TRUST_HELP + " Unsigned artifacts fail to load; ONNX files "
                                               "(no native code) serve as they are.", show_default=False)] = None,
):
    """Serve models over HTTP with the KServe v2 protocol (Triton's clients work unchanged)."""
    import uvicorn

    from dlc.runtime.serving.app import ServeConfig, create_app, header_deadline_protocol
    from dlc.runtime.serving.repository import discover

    require_key(trust)
    repo = discover(repository)
    with console.status(f"loading {sum(len(v) for v in repo.models.values())} model version(s)"):
        repo.load_all(trust)
    for versions in repo.models.values():
        for m in versions.values():
            state = f"ready ({m.platform})" if m.ready else f"FAILED: {m.error}"
            console.print(f"model {m.name} version {m.version}: {state}   {m.path}")
    config = ServeConfig(max_queue=max_queue, max_batch=max_batch, max_delay_ms=max_delay_ms,
                         max_body_bytes=int(max_body_mb * (1 << 20)), read_timeout=read_timeout,
                         max_connections=max_connections, token=token or os.environ.get("DLC_SERVE_TOKEN") or None)
    app = uvicorn.Config(create_app(repo, config), log_level="warning", timeout_graceful_shutdown=30,
                         limit_concurrency=config.max_connections, http=header_deadline_protocol(config.read_timeout))
    listening = _listen(host, port)  # before saying so: a port in use is one error line
    if not config.token and not _loopback(host):
        console.print(f"warning: anyone who can reach {host}:{port} can run these models; pass --token (or set "
                      "DLC_SERVE_TOKEN) to require one")
    console.print(f"serving on http://{host}:{port}/v2 (KServe v2){' with a bearer token' if config.token else ''}; "
                  f"Ctrl-C stops after the requests in flight")
    uvicorn.Server(app).run(sockets=[listening])


def _listen(host: str, port: int):
    import socket

    from dlc.errors import DlcError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        raise DlcError(f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port or --host") from None
    return sock


def _loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
