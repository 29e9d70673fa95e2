from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlc.cli._common import console
from dlc.cli.signing import TRUST_HELP, require_key


def profile(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory from `dlc compile` (for a device: compiled "
                                                  "with --target for it).")],
    rpc: Annotated[str | None, typer.Option(help="Profile on the device whose TVM RPC server is HOST:PORT.")] = None,
    tracker: Annotated[str | None, typer.Option(help="...or on a device of this TVM RPC tracker, HOST:PORT "
                                                     "(with --key).")] = None,
    key: Annotated[str, typer.Option(help="The device key.")] = "",
    runs: Annotated[int, typer.Option(min=1, help="Timed runs of the model, and of each kernel.")] = 50,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs of the model first.")] = 5,
    top: Annotated[int, typer.Option(min=1, help="Kernels in the printed table (all are in the JSON).")] = 10,
    roofline: Annotated[bool, typer.Option(help="Place each kernel on the device's roofline (`dlc device peak`, "
                                                "measured once per device and cached).")] = True,
    onnxruntime: Annotated[bool, typer.Option(help="ONNX Runtime's per-node profile beside it (host only).")] = True,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds allowed on a device.")] = 900.0,
    report: Annotated[Path | None, typer.Option(help="JSON report [default: ARTIFACT.profile.json, replaced].")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing --report file.")] = False,
    trust: Annotated[Path | None, typer.Option(help=TRUST_HELP, show_default=False)] = None,
):
    """Time every compiled kernel, map it to the ONNX nodes it computes, and place it on the device's roofline."""
    from dlc.fileio import beside, check_output, write_json
    from dlc.profiling import profile_with_peak
    from dlc.runtime.profile import ProfileConfig
    from dlc.runtime.rpc import DeviceAddress

    require_key(trust)
    device = None
    if rpc or tracker or key:
        device = DeviceAddress(rpc, tracker, key)
        device.check()
    out = report or beside(artifact, ".profile.json")
    check_output(out, force=force or report is None)  # dlc's own default file is replaced; a path you name is not
    config = ProfileConfig(runs=runs, warmup=warmup, top=top, onnxruntime=onnxruntime, device=device, trust=trust,
                           timeout=timeout)
    with console.status(f"profiling {artifact}") as status:
        result = profile_with_peak(artifact, config, roofline, log=status.update)
    console.print(profile_table(result, top))
    for line in profile_summary(result):
        console.print(line)
    console.print(f"report: {write_json(out, result)}")


def profile_table(result, top: int):
    from rich.table import Table

    peak = result.get("peak")
    table = Table(title=f"{result['artifact']} on {result['where']} — top {min(top, len(result['kernels']))} of "
                        f"{len(result['kernels'])} kernels")
    columns = ["kernel", "ms", "share", "ONNX nodes", "GFLOP/s", "FLOP/B"]
    columns += ["% roofline"] if peak else []
    columns += ["ORT ms"] if "onnxruntime" in result else []
    for column in columns:
        table.add_column(column, justify="left" if column in ("kernel", "ONNX nodes") else "right")
    for k in result["kernels"][:top]:
        row = [k["name"], f"{k['ms']:.4f}", f"{100 * k['share']:.1f}%", _ops(k), f"{k['gflops']:.1f}",
               "-" if k["intensity"] is None else f"{k['intensity']:.1f}"]
        if peak:
            row.append("-" if k.get("roofline_fraction") is None else f"{100 * k['roofline_fraction']:.0f}%")
        if "onnxruntime" in result:
            row.append("-" if k.get("onnxruntime_ms") is None else f"{k['onnxruntime_ms']:.4f}")
        table.add_row(*row)
    return table


def _ops(kernel) -> str:
    from dlc.analysis.report_html import main_ops_first

    if not kernel["nodes"]:
        return "(inserted by the compiler)"
    return f"{'+'.join(main_ops_first(kernel['ops']))} ({len(kernel['nodes'])})"


def profile_summary(result) -> list[str]:
    e2e = result["e2e_ms"]
    outside = result["outside_kernels_ms"]
    lines = [f"end to end p50 {e2e['p50']:.4f} ms (95% CI {e2e['p50_ci95_low']:.4f}–{e2e['p50_ci95_high']:.4f}); "
             f"kernels sum to {result['kernel_sum_ms']:.4f} ms ({100 * result['kernel_sum_vs_e2e']:.0f}%)"
             + (f", outside them (the VM) {outside:.4f} ms" if outside >= 0 else
                f", {-outside:.4f} ms more than the whole (noise, and timing each call costs a little)")]
    if result["kernels"]:  # also outside the table, which a narrow terminal squeezes
        lines.append("slowest kernels: " + ", ".join(f"{k['name']} ({_ops(k)}, {100 * k['share']:.0f}%)"
                                                     for k in result["kernels"][:3]))
    missing = result["nodes_without_kernel"]
    lines.append(f"{result['nodes'] - len(missing)} of {result['nodes']} ONNX nodes in kernels"
                 + (f"; without a kernel: {', '.join(f'{n}: {why}' for n, why in list(missing.items())[:5])}"
                    + (" ..." if len(missing) > 5 else "") if missing else ""))
    if result.get("peak"):
        peak = result["peak"]
        lines.append(f"roofline: {peak['gflops']:.1f} GFLOP/s, {peak['gbps']:.1f} GB/s from memory (a kernel whose "
                     f"data sit in the caches can pass 100%); furthest below it: "
                     f"{', '.join(result['furthest_below_roofline'])}")
    if "onnxruntime" in result:
        ort = result["onnxruntime"]
        lines.append(f"ONNX Runtime {ort['version']}: end to end p50 {ort['e2e_ms']['p50']:.4f} ms; ORT ms: its "
                     f"profiler's node times ({ort['profiled_node_sum_ms']:.4f} ms in all, profiling slows them) "
                     "scaled to that")
    return lines
