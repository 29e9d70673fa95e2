from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlc.cli._common import console
from dlc.errors import DlcError

app = typer.Typer(help="Devices: emulate a board, measure a device's peak.", no_args_is_help=True)


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


@app.command("peak")
def peak(
    rpc: Annotated[str | None, typer.Option(help="Measure the device whose TVM RPC server is HOST:PORT.")] = None,
    tracker: Annotated[str | None, typer.Option(help="...or a device of this TVM RPC tracker, HOST:PORT "
                                                     "(with --key).")] = None,
    key: Annotated[str, typer.Option(help="The device key.")] = "",
    target: Annotated[str, typer.Option(help="The device's target (`dlc targets`) [default: host].")] = "host",
    refresh: Annotated[bool, typer.Option(help="Measure again instead of reading the cache.")] = False,
    compare: Annotated[bool, typer.Option(help="Also time numpy's sgemm and copy here (host only).")] = False,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds allowed on a device.")] = 900.0,
    report: Annotated[Path | None, typer.Option(help="Also write the result to this JSON file.")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing --report file.")] = False,
):
    """The device's peak float32 GFLOP/s and memory bandwidth, measured with TVM-compiled kernels and cached."""
    from dlc.compiler.peak import cache_path, device_peak, numpy_reference
    from dlc.fileio import check_output, write_json
    from dlc.runtime.rpc import DeviceAddress

    device = None
    if rpc or tracker or key:
        device = DeviceAddress(rpc, tracker, key)
        device.check()
        if target == "host":
            raise DlcError("a device needs its target: add --target (e.g. --target raspberry-pi-4; see `dlc targets`)")
    if compare and device is not None:
        raise DlcError("--compare times numpy on this machine: use it without --rpc/--tracker")
    if report:
        check_output(report, force)  # an existing file, a folder or an unwritable place: refused before measuring
    with console.status("measuring the peak") as status:
        result = device_peak(target, device, refresh=refresh, timeout=timeout, log=status.update)
        if compare:
            result["numpy"] = numpy_reference(log=status.update)
    where = "cached" if result["cached"] else "measured"
    console.print(f"{result['key']}: {result['gflops']:.1f} GFLOP/s float32 ({result['threads']} threads, best FMA "
                  f"shape of {len(result['fma_gflops_by_shape'])}), {result['gbps']:.1f} GB/s copy "
                  f"({where} {result['measured_at']}; cache: {cache_path()})")
    if compare:
        ref = result["numpy"]
        console.print(f"numpy here: sgemm {ref['sgemm_gflops']:.1f} GFLOP/s (TVM peak / sgemm "
                      f"{result['gflops'] / ref['sgemm_gflops']:.2f}), copy {ref['copy_gbps']:.1f} GB/s "
                      f"(TVM / numpy {result['gbps'] / ref['copy_gbps']:.2f})")
    if report:
        console.print(f"report: {write_json(report, result)}")
