from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlc.cli._common import ALLOW_CODE_HELP, bench_table, console
from dlc.cli.signing import TRUST_HELP, require_key
from dlc.runtime.backends import BACKENDS


def bench(
    model: Annotated[Path, typer.Argument(help="An artifact directory from `dlc compile`, or an ONNX file "
                                               "(TVM then compiles it in memory, untuned).")],
    checkpoint: Annotated[Path | None, typer.Option(help="Training checkpoint: adds the pytorch backend.")] = None,
    backends: Annotated[str | None, typer.Option(help=f"Comma-separated subset of {','.join(BACKENDS)} "
                                                      "[default: all that apply].")] = None,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs first, at least; more follow until the timings "
                                                    "settle (two windows of 10 within 5 %; none after 10 s).")] = 10,
    runs: Annotated[int, typer.Option(min=1, help="Timed runs per backend.")] = 100,
    threads: Annotated[int | None, typer.Option(min=1, help="Intra-op threads for every backend.")] = None,
    inputs: Annotated[Path | None, typer.Option(help=".npz with one array per model input "
                                                     "[default: the artifact's golden inputs].")] = None,
    remote: Annotated[Path | None, typer.Option(help="An artifact built for a device: adds a row timed on "
                                                     "that device (with --rpc or --tracker/--key).")] = None,
    rpc: Annotated[str | None, typer.Option(help="The device's TVM RPC server, HOST:PORT.")] = None,
    tracker: Annotated[str | None, typer.Option(help="A TVM RPC tracker, HOST:PORT.")] = None,
    key: Annotated[str, typer.Option(help="The device key.")] = "",
    report: Annotated[Path | None, typer.Option(help="JSON report [default: MODEL.bench.json].")] = None,
    trust: Annotated[Path | None, typer.Option(help=TRUST_HELP, show_default=False)] = None,
    allow_code: Annotated[bool, typer.Option(help=ALLOW_CODE_HELP)] = False,
):
    """Benchmark TVM, ONNX Runtime and PyTorch side by side on the same inputs."""
    from dlc.compiler.session import benchmark
    from dlc.fileio import beside, write_json
    from dlc.runtime.backends import default_backends
    from dlc.runtime.bench import BenchConfig
    from dlc.runtime.rpc import DeviceAddress
    from dlc.training.checkpoint import permit_code

    permit_code(allow_code)
    require_key(trust)
    chosen = tuple(b.strip() for b in backends.split(",")) if backends else default_backends(checkpoint is not None)
    config = BenchConfig(backends=chosen, warmup=warmup, runs=runs, threads=threads, checkpoint=checkpoint,
                         inputs=inputs, remote_artifact=remote, trust=trust,
                         device=DeviceAddress(rpc, tracker, key) if remote else None)
    with console.status("benchmarking") as status:
        result = benchmark(model, config, on_result=lambda r: status.update(f"benchmarked {r.backend}"))
    console.print(bench_table(result))
    path = write_json(report or beside(model, ".bench.json"), result.to_dict())
    console.print(f"report: {path}")
