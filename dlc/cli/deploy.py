from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlc.cli._common import console
from dlc.cli.signing import TRUST_HELP, require_key


def deploy(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory from `dlc compile --target ...`.")],
    rpc: Annotated[str | None, typer.Option(help="The device's TVM RPC server, HOST:PORT.")] = None,
    tracker: Annotated[str | None, typer.Option(help="A TVM RPC tracker, HOST:PORT (with --key).")] = None,
    key: Annotated[str, typer.Option(help="The device key (e.g. raspberry-pi-4).")] = "",
    number: Annotated[int, typer.Option(min=1, help="Calls per timed repeat.")] = 10,
    repeat: Annotated[int, typer.Option(min=1, help="Timed repeats.")] = 5,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds allowed for one attempt.")] = 300.0,
    retries: Annotated[int, typer.Option(min=0, help="Further attempts after a device failure.")] = 1,
    report: Annotated[Path | None, typer.Option(help="JSON report [default: ARTIFACT.deploy.json].")] = None,
    trust: Annotated[Path | None, typer.Option(help=TRUST_HELP, show_default=False)] = None,
):
    """Upload an artifact to a device over TVM RPC, check its golden outputs there, and time it."""
    from dlc.fileio import beside, write_json
    from dlc.runtime.deploy import DeployConfig
    from dlc.runtime.deploy import deploy as run_deploy

    require_key(trust)
    config = DeployConfig(rpc=rpc, tracker=tracker, key=key, number=number, repeat=repeat, timeout=timeout,
                          retries=retries, trust=trust)
    with console.status(f"deploying {artifact} to {rpc or tracker}"):
        result = run_deploy(artifact, config)
    device = result.device
    console.print(f"ran on {device.get('board') or key or rpc} ({device.get('arch')}, "
                  f"{'emulated ' if device.get('emulated') else ''}{device.get('cpu', '')}): golden outputs match, "
                  f"max abs diff {result.max_abs_diff:.2e}")
    console.print(f"latency on the device: mean {result.latency_ms['mean']:.3f} ms, median "
                  f"{result.latency_ms['median']:.3f} ms ({repeat} x {number} runs; attempts: {result.attempts})")
    path = write_json(report or beside(artifact, ".deploy.json"), result.to_dict())
    console.print(f"report: {path}")
