"""`dlc report`'s HTML: one self-contained file (inline CSS and SVG, a few lines of inline script to sort the
table), which opens without a network. Every figure carries a `data-figure` attribute naming what it shows."""

from __future__ import annotations

import html
import math
from typing import Any

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1180px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0}th,td{padding:4px 10px;border-bottom:1px solid #eee;text-align:right}
th{background:#f4f4f4;cursor:pointer;user-select:none}td:first-child,th:first-child{text-align:left}
td.text{text-align:left}.regression{color:#b00;font-weight:600}.improvement{color:#070;font-weight:600}
.note{color:#666;font-size:12px}.figures{display:flex;flex-wrap:wrap;gap:18px}svg{background:#fff}
svg text{font:11px system-ui,sans-serif;fill:#333}
"""
SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function (th, column) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var ascending = th.dataset.order !== 'asc';
    th.dataset.order = ascending ? 'asc' : 'desc';
    rows.sort(function (a, b) {
      var x = a.cells[column].dataset.value || a.cells[column].textContent;
      var y = b.cells[column].dataset.value || b.cells[column].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var order = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""


def render(report: dict[str, Any]) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>dlc report: {e(', '.join(report['models']))}</title><style>{STYLE}</style></head><body>",
             f"<h1>dlc report — {_count(len(report['models']), 'model')} × "
             f"{_count(len(report['devices']), 'device')}</h1>",
             f"<p class='note'>dlc {e(report['dlc_version'])}; {report['runs']} runs per row. "
             f"{e(_machines(report))}</p>",
             "<h2>Models × devices × backends</h2>", _table(report)]
    if report.get("baseline") is not None:
        parts += ["<h2>Against the baseline</h2>", _baseline(report["baseline"])]
    parts.append("<h2>Latency distributions</h2><div class='figures'>")
    for device in report["devices"]:
        rows = [r for r in report["rows"] if r["device"] == device]
        parts.append(_distribution(device, rows))
    parts.append("</div><h2>Rooflines</h2><div class='figures'>")
    for device in report["devices"]:
        peak = report["peaks"].get(device)
        profiles = [p for p in report["profiles"] if p["device"] == device]
        parts.append(_roofline(device, peak, profiles) if peak else
                     f"<p data-figure='roofline {e(device)}'>no peak measured for {e(device)}</p>")
    parts.append("</div><h2>Per-layer: top 10 kernels</h2><div class='figures'>")
    for profile in report["profiles"]:
        parts.append(_top_kernels(profile))
    parts.append(f"</div><script>{SCRIPT}</script></body></html>")
    return "\n".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _machines(report) -> str:
    peaks = report.get("peaks") or {}
    described = []
    for device, peak in peaks.items():
        if peak:
            cpu = (peak.get("device") or {}).get("cpu") or (peak.get("device") or {}).get("board") or peak.get("key")
            described.append(f"{device}: {cpu}, peak {peak['gflops']:.1f} GFLOP/s, {peak['gbps']:.1f} GB/s")
    return "; ".join(described)


def _table(report) -> str:
    e = html.escape
    head = ["model", "device", "backend", "accuracy", "size KiB", "p50 ms", "95% CI", "p99 ms", "outliers",
            "peak MB"]
    has_change = any("change" in r for r in report["rows"])
    if has_change:
        head.append("vs baseline")
    out = ["<table class='sortable' data-figure='table'><thead><tr>", *(f"<th>{e(h)}</th>" for h in head),
           "</tr></thead><tbody>"]
    for r in report["rows"]:
        lat = r["latency_ms"]
        memory = "-" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.0f}"
        acc = r.get("accuracy")
        accuracy = f"{100 * acc['value']:.2f}%" if acc and acc["metric"] == "top-1" else \
            (f"{acc['metric']} {acc['value']:.4g}" if acc else "-")
        cells = [f"<td class='text'>{e(r['model'])}</td>", f"<td class='text'>{e(r['device'])}</td>",
                 f"<td class='text' title='{e(r.get('note') or '')}'>{e(r['backend'])}"
                 + ("<sup>*</sup>" if r.get("note") else "") + "</td>",
                 f"<td class='text' title='{e(acc['from']) if acc else ''}'>{e(accuracy)}</td>",
                 f"<td>{r['size_bytes'] / 1024:.1f}</td>", f"<td>{lat['p50']:.4f}</td>",
                 f"<td data-value='{lat['p50_ci95_low']}'>{lat['p50_ci95_low']:.4f}–{lat['p50_ci95_high']:.4f}</td>",
                 f"<td>{lat['p99']:.4f}</td>", f"<td>{lat['outliers']}</td>",
                 f"<td>{memory}</td>"]
        if has_change:
            change = r.get("change", "-")
            cells.append(f"<td class='text {e(change)}'>{e(change)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    notes = sorted({r["note"] for r in report["rows"] if r.get("note")})
    out += [f"<p class='note'>* {e(note)}</p>" for note in notes]
    return "".join(out)


def _baseline(changes) -> str:
    e = html.escape
    if not changes:
        return "<p data-figure='baseline'>no row of this report is in the baseline</p>"
    out = ["<table data-figure='baseline'><thead><tr><th>model</th><th>device</th><th>backend</th>"
           "<th>p50 before</th><th>p50 now</th><th>ratio</th><th>p (Mann-Whitney)</th><th>change</th></tr></thead>"
           "<tbody>"]
    for c in changes:
        ratio = "-" if c["ratio"] is None else f"{c['ratio']:.3f}"
        p = "-" if c["p_value"] is None else f"{c['p_value']:.2g}"
        out.append(f"<tr><td class='text'>{e(c['model'])}</td><td class='text'>{e(c['device'])}</td>"
                   f"<td class='text'>{e(c['backend'])}</td><td>{c['p50_before_ms']:.4f}</td><td>{c['p50_ms']:.4f}"
                   f"</td><td>{ratio}</td><td>{p}</td><td class='text {e(c['change'])}'>{e(c['change'])}</td></tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _distribution(device: str, rows) -> str:
    """Box plots (quartiles, whiskers at the 5th/95th percentiles, the median) with every sample as a dot."""
    import numpy as np

    e = html.escape
    width, left, row_h = 560, 210, 34
    height = 40 + row_h * len(rows)
    values = [v for r in rows for v in r["samples_ms"]] or [0.0, 1.0]
    hi = float(np.percentile(values, 99.5)) * 1.05 or 1.0

    def x(v):
        return left + (width - left - 20) * min(v, hi) / hi

    out = [f"<svg data-figure='distribution {e(device)}' width='{width}' height='{height}' "
           f"xmlns='http://www.w3.org/2000/svg' role='img'><title>latency on {e(device)}</title>",
           f"<text x='10' y='16' font-weight='600'>{e(device)}: latency per run (ms)</text>"]
    for i, r in enumerate(rows):
        y = 30 + i * row_h
        samples = np.asarray(r["samples_ms"] or [r["latency_ms"]["p50"]])
        p5, q1, med, q3, p95 = np.percentile(samples, [5, 25, 50, 75, 95])
        color = COLORS[i % len(COLORS)]
        out.append(f"<text x='10' y='{y + 16}'>{e(r['model'])} · {e(r['backend'])}</text>")
        out.append(f"<line x1='{x(p5):.1f}' x2='{x(p95):.1f}' y1='{y + 12}' y2='{y + 12}' stroke='{color}'/>")
        out.append(f"<rect x='{x(q1):.1f}' y='{y + 4}' width='{max(1.0, x(q3) - x(q1)):.1f}' height='16' "
                   f"fill='{color}' fill-opacity='0.25' stroke='{color}'/>")
        out.append(f"<line x1='{x(med):.1f}' x2='{x(med):.1f}' y1='{y + 2}' y2='{y + 22}' stroke='{color}' "
                   "stroke-width='2'/>")
        for v in samples[:: max(1, len(samples) // 60)]:
            out.append(f"<circle cx='{x(v):.1f}' cy='{y + 27}' r='1.5' fill='{color}' fill-opacity='0.6'/>")
    axis_y = height - 8
    for k in range(5):
        v = hi * k / 4
        out.append(f"<text x='{x(v):.1f}' y='{axis_y}' text-anchor='middle'>{v:.3g}</text>")
    out.append("</svg>")
    return "".join(out)


def _roofline(device: str, peak, profiles) -> str:
    """Log-log: arithmetic intensity (FLOP/byte) against GFLOP/s; the roof min(peak, intensity × bandwidth)."""
    e = html.escape
    width, height, left, bottom, top = 560, 380, 60, 40, 30
    points = [(k["intensity"], k["gflops"], p["model"], k["name"]) for p in profiles for k in p["kernels"][:10]
              if k.get("intensity") and k.get("gflops")]
    xs = [pt[0] for pt in points] + [peak["gflops"] / peak["gbps"]]
    ys = [pt[1] for pt in points] + [peak["gflops"]]
    x_lo, x_hi = 10 ** math.floor(math.log10(min(xs) / 2)), 10 ** math.ceil(math.log10(max(xs) * 4))
    y_lo, y_hi = 10 ** math.floor(math.log10(max(min(ys) / 2, 1e-3))), 10 ** math.ceil(math.log10(max(ys) * 2))

    def px(v):
        return left + (width - left - 20) * (math.log10(v) - math.log10(x_lo)) / (math.log10(x_hi) -
                                                                                  math.log10(x_lo))

    def py(v):
        return height - bottom - (height - bottom - top) * (math.log10(v) - math.log10(y_lo)) / (
            math.log10(y_hi) - math.log10(y_lo))

    ridge = peak["gflops"] / peak["gbps"]
    out = [f"<svg data-figure='roofline {e(device)}' width='{width}' height='{height}' "
           f"xmlns='http://www.w3.org/2000/svg' role='img'><title>roofline of {e(device)}</title>",
           f"<text x='10' y='16' font-weight='600'>{e(device)}: {peak['gflops']:.1f} GFLOP/s, "
           f"{peak['gbps']:.1f} GB/s</text>",
           f"<polyline fill='none' stroke='#444' stroke-width='2' points='{px(x_lo):.1f},"
           f"{py(max(x_lo * peak['gbps'], y_lo)):.1f} {px(ridge):.1f},{py(peak['gflops']):.1f} "
           f"{px(x_hi):.1f},{py(peak['gflops']):.1f}'/>"]
    models = list(dict.fromkeys(pt[2] for pt in points))
    for intensity, gflops, model, name in points:
        color = COLORS[models.index(model) % len(COLORS)]
        out.append(f"<circle cx='{px(intensity):.1f}' cy='{py(max(gflops, y_lo)):.1f}' r='4' fill='{color}' "
                   f"fill-opacity='0.75'><title>{e(model)}: {e(name)} {gflops:.2f} GFLOP/s at {intensity:.2f} "
                   "FLOP/B</title></circle>")
    for k, model in enumerate(models):
        out.append(f"<rect x='{width - 170}' y='{top + 14 * k}' width='10' height='10' "
                   f"fill='{COLORS[k % len(COLORS)]}'/><text x='{width - 155}' y='{top + 9 + 14 * k}'>"
                   f"{e(model)}</text>")
    decade = x_lo
    while decade <= x_hi:
        out.append(f"<text x='{px(decade):.1f}' y='{height - bottom + 16}' text-anchor='middle'>{decade:g}</text>")
        decade *= 10
    decade = y_lo
    while decade <= y_hi:
        out.append(f"<text x='{left - 6}' y='{py(decade) + 4:.1f}' text-anchor='end'>{decade:g}</text>")
        decade *= 10
    out.append(f"<text x='{width / 2:.0f}' y='{height - 6}' text-anchor='middle'>FLOP per byte</text>"
               f"<text x='14' y='{height / 2:.0f}' transform='rotate(-90 14 {height / 2:.0f})' "
               "text-anchor='middle'>GFLOP/s</text></svg>")
    return "".join(out)


def _top_kernels(profile) -> str:
    e = html.escape
    kernels = profile["kernels"][:10]
    width, left, bar_h = 560, 250, 18
    height = 44 + bar_h * len(kernels)
    longest = max((k["ms"] for k in kernels), default=1.0) or 1.0
    out = [f"<svg data-figure='kernels {e(profile['model'])} {e(profile['device'])}' width='{width}' "
           f"height='{height}' xmlns='http://www.w3.org/2000/svg' role='img'>",
           f"<title>top kernels of {e(profile['model'])} on {e(profile['device'])}</title>",
           f"<text x='10' y='16' font-weight='600'>{e(profile['model'])} on {e(profile['device'])}: kernels sum to "
           f"{100 * (profile['kernel_sum_vs_e2e'] or 0):.0f}% of {profile['e2e_p50_ms']:.4f} ms</text>"]
    for i, k in enumerate(kernels):
        y = 28 + i * bar_h
        ops = "+".join(main_ops_first(k["ops"] or [])) or "compiler-inserted"
        bar = (width - left - 70) * k["ms"] / longest
        out.append(f"<text x='10' y='{y + 12}'>{e(_short(k['name'], 24))} · {e(_short(ops, 12))}</text>"
                   f"<rect x='{left}' y='{y + 2}' width='{max(bar, 1.0):.1f}' height='{bar_h - 5}' fill='#1f77b4'>"
                   f"<title>{e(k['name'])}: {e(', '.join(k['nodes']))}</title></rect>"
                   f"<text x='{left + bar + 4:.1f}' y='{y + 12}'>{k['ms']:.4f} ms</text>")
    out.append("</svg>")
    return "".join(out)


COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "ConvInteger", "MatMulInteger", "LSTM", "GRU")


def main_ops_first(ops: list[str]) -> list[str]:
    """The distinct ops of a kernel, those that do the arithmetic first (a Conv before its Quantize or Relu)."""
    distinct = list(dict.fromkeys(ops))
    return sorted(distinct, key=lambda op: op not in COMPUTE_OPS)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"

