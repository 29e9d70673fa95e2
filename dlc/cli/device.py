from __future__ import annotations

from typing import Annotated

import typer

from dlc.cli._common import console

app = typer.Typer(help="Emulated devices to deploy to.", no_args_is_help=True)


@app.command("emulate")
def emulate(
    board: Annotated[str, typer.Option(help="raspberry-pi-3, raspberry-pi-4 or raspberry-pi-5.")] = "raspberry-pi-4",
    port: Annotated[int, typer.Option(help="RPC port on 127.0.0.1.")] = 9190,
    key: Annotated[str | None, typer.Option(help="Device key [default: the board name].")] = None,
    tracker: Annotated[str | None, typer.Option(help="Register with this RPC tracker, HOST:PORT.")] = None,
):
    """Build (once) an arm64 Debian userland and serve TVM RPC from it under qemu, until Ctrl-C."""
    from dlc.runtime.board import start_board

    with console.status(f"starting the emulated {board}") as status:
        running = start_board(board, port, key, tracker, log=lambda line: status.update(line))
    console.print(f"emulated {board} ready: TVM RPC at {running.address}, key {running.key!r} "
                  f"(log: {running.log_path})")
    console.print(f"deploy with: dlc deploy MODEL.dlc --rpc {running.address} --key {running.key}")
    try:
        running.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
