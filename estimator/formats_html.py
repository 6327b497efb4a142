"""The HTML report: one self-contained file a hardware engineer can mail around.

No scripts, no fonts, no stylesheets or images from anywhere: the CSS is inline and the charts are inline SVG drawn
here (bars and lines from the report's numbers; native <title> tooltips). It opens in any browser with no network.
Nothing here computes a figure the report does not already hold, except the chart geometry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from .feasibility import Feasibility
from .formats import _percent, _rate
from .formats_text import (
    REPORT_HEADERS,
    budget_line,
    conventions,
    feasibility_pairs,
    layer_feasibility_table,
    report_cells,
    si,
    summary_pairs,
)
from .report import SCHEMA, Report

DENSE_COLOUR = "#8d99ae"
EFFECTIVE_COLOUR = "#e07a1f"
RATE_COLOUR = "#2f6fbf"
SERIES = ("#2f6fbf", "#e07a1f", "#2a9d8f", "#c0392b", "#8e44ad", "#7f8c8d", "#b7950b", "#d35400")
DASHES = ("", "7 4", "2 3", "9 3 2 3")  # after every colour has been used once: the same colours, dashed


def _series_style(index: int) -> tuple[str, str]:
    """(colour, stroke-dasharray) of line `index`: distinct for len(SERIES) × len(DASHES) lines."""
    return SERIES[index % len(SERIES)], DASHES[(index // len(SERIES)) % len(DASHES)]
CHART_WIDTH = 880
CHAR_WIDTH = 7  # px per character of the 12 px labels, for the name column's width

CSS = """
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1d2330;
       max-width: 1000px; margin: 24px auto; padding: 0 20px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 2px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #dde2ea;
     padding-bottom: 4px; } h3 { font-size: 14px; margin: 18px 0 6px; }
.sub { color: #5b6577; margin: 0 0 16px; word-break: break-all; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.card { border: 1px solid #dde2ea; border-radius: 6px; padding: 8px 12px; min-width: 150px; background: #f8f9fb; }
.card .label { color: #5b6577; font-size: 12px; } .card .value { font-size: 19px; font-weight: 600; }
.verdict { display: inline-block; padding: 6px 12px; border-radius: 6px; font-weight: 600; margin: 6px 0; }
.verdict.ok { background: #e3f4e8; color: #17603a; border: 1px solid #9fd4b1; }
.verdict.no { background: #fbe5e3; color: #8f1d14; border: 1px solid #eba9a2; }
.verdict.unknown { background: #fdf3dc; color: #7a5200; border: 1px solid #e9cf8f; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { padding: 4px 9px; border-bottom: 1px solid #e6e9ef; text-align: left; vertical-align: top; }
th { background: #f2f4f7; font-weight: 600; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: 600; border-top: 2px solid #c9d0db; }
table.kv th { background: none; color: #5b6577; font-weight: normal; width: 220px; }
ul { margin: 4px 0; padding-left: 22px; } li { margin: 2px 0; }
.warn li { color: #8a4b00; } .muted { color: #5b6577; }
svg { display: block; margin: 4px 0 12px; max-width: 100%; height: auto; }
svg text { font: 12px -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: #1d2330; }
svg .axis { stroke: #9aa3b2; } svg .grid { stroke: #e6e9ef; } svg .tick { fill: #5b6577; font-size: 11px; }
footer { margin-top: 32px; color: #7a8496; font-size: 12px; border-top: 1px solid #dde2ea; padding-top: 8px; }
@media print { body { margin: 0; } h2 { break-after: avoid; } svg, table { break-inside: avoid; } }
"""


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _compact(value: float) -> str:
    """Short axis labels: 1.2k, 3.5M, 0.25."""
    magnitude = abs(value)
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= scale:
            return f"{value / scale:.3g}{prefix}"
    return f"{value:.3g}"


def _nice_ticks(top: float, count: int = 5) -> list[float]:
    """0 … ≥ top in 1/2/5 × 10^k steps."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    ticks = [0.0]
    while ticks[-1] < top * (1 - 1e-12):
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def _label_width(names: Sequence[str]) -> tuple[int, int]:
    """Width of the name column, and how many characters of a name fit in it."""
    chars = min(max((len(n) for n in names), default=4), 30)
    return chars * CHAR_WIDTH + 16, chars


def _short(name: str, chars: int) -> str:
    """Cut in the middle: exported names differ at both ends (/block3/…/Leaky_output_0)."""
    if len(name) <= chars:
        return name
    head = (chars - 1) // 2
    return name[:head] + "…" + name[len(name) - (chars - 1 - head):]


def _svg_open(height: int, title: str, chart_id: str) -> list[str]:
    return [f'<svg id="{chart_id}" width="{CHART_WIDTH}" height="{height}" '
            f'viewBox="0 0 {CHART_WIDTH} {height}" role="img" aria-label="{_e(title)}">']


def _x_axis(left: int, right: int, top: int, bottom: int, ticks: list[float], fmt) -> list[str]:
    out = []
    span = ticks[-1] or 1.0
    for tick in ticks:
        x = left + (right - left) * tick / span
        out.append(f'<line class="grid" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}"/>')
        out.append(f'<text class="tick" x="{x:.1f}" y="{bottom + 15}" text-anchor="middle">{_e(fmt(tick))}</text>')
    out.append(f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{bottom}"/>')
    return out


def _legend(x: int, y: int, items: Sequence[tuple[str, str]], dashes: Sequence[str] = ()) -> tuple[list[str], int]:
    """Coloured keys in rows that wrap at the chart's width (a dashed line for a dashed series); returns the
    elements and the height they take."""
    out, start, rows = [], x, 1
    for index, (label, colour) in enumerate(items):
        width = 17 + min(len(label), 40) * CHAR_WIDTH + 18
        if x > start and x + width > CHART_WIDTH:
            x, y, rows = start, y + 18, rows + 1
        dash = dashes[index] if index < len(dashes) else ""
        if dash:
            out.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 12}" y2="{y - 4}" stroke="{colour}" stroke-width="3" '
                       f'stroke-dasharray="{dash}"/>')
        else:
            out.append(f'<rect x="{x}" y="{y - 10}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{x + 17}" y="{y}">{_e(_short(label, 40))}</text>')
        x += width
    return out, 18 * rows


def ops_chart(report: Report) -> str:
    """Horizontal grouped bars: dense and effective ops per sample for each layer."""
    names = [row.name for row in report.layers]
    label_w, chars = _label_width(names)
    left, right, top = label_w, CHART_WIDTH - 70, 34
    group = 34 if report.samples is not None else 22
    bottom = top + group * len(names) + 6
    values = [v for row in report.layers for v in (row.dense_ops, row.effective_ops) if v is not None]
    ticks = _nice_ticks(max(values, default=0.0))
    span = ticks[-1]
    title = f"Neuron ops per {report.per}, by layer"
    out = _svg_open(bottom + 26, title, "chart-ops")
    out.append(f"<title>{_e(title)}</title>")
    legend = [("dense ops", DENSE_COLOUR)]
    if report.samples is not None:
        legend.append((f"effective ops ({report.convention} convention)", EFFECTIVE_COLOUR))
    out += _legend(left, 16, legend)[0]
    out += _x_axis(left, right, top, bottom, ticks, _compact)
    for index, row in enumerate(report.layers):
        y = top + index * group + 4
        out.append(f'<text x="{left - 8}" y="{y + group / 2 + 1:.1f}" text-anchor="end">'
                   f'<title>{_e(row.name)}</title>{_e(_short(row.name, chars))}</text>')
        if row.cost_per_update is None:
            out.append(f'<text class="tick" x="{left + 6}" y="{y + group / 2 + 1:.1f}">uncosted: not in the totals'
                       "</text>")
            continue
        bars = [("dense", row.dense_ops, DENSE_COLOUR)]
        if report.samples is not None:
            bars.append(("effective", row.effective_ops, EFFECTIVE_COLOUR))
        height = (group - 8) / len(bars)
        for offset, (kind, value, colour) in enumerate(bars):
            if value is None:
                continue
            width = (right - left) * value / span
            by = y + offset * height
            out.append(f'<rect class="bar {kind}" x="{left}" y="{by:.1f}" width="{width:.1f}" '
                       f'height="{height - 1:.1f}" fill="{colour}"><title>{_e(row.name)}: {kind} ops per {report.per} '
                       f'{_e(_plain(value))}</title></rect>')
            out.append(f'<text class="tick" x="{left + width + 4:.1f}" y="{by + height / 2 + 3:.1f}">'
                       f"{_e(_compact(value))}</text>")
    out.append("</svg>")
    return "\n".join(out)


def rate_chart(report: Report) -> str:
    """Horizontal bars: firing rate of each layer over the whole replay."""
    rows = [row for row in report.layers]
    names = [row.name for row in rows]
    label_w, chars = _label_width(names)
    left, right, top, group = label_w, CHART_WIDTH - 70, 12, 24
    bottom = top + group * len(rows) + 6
    ticks = _nice_ticks(max((row.firing_rate or 0.0 for row in rows), default=0.0) or 0.1)
    span = ticks[-1]
    title = "Firing rate by layer (spikes per neuron per time step)"
    out = _svg_open(bottom + 26, title, "chart-rate")
    out.append(f"<title>{_e(title)}</title>")
    out += _x_axis(left, right, top, bottom, ticks, lambda t: f"{t:.3g}")
    for index, row in enumerate(rows):
        y = top + index * group + 4
        out.append(f'<text x="{left - 8}" y="{y + group / 2 + 1:.1f}" text-anchor="end">'
                   f'<title>{_e(row.name)}</title>{_e(_short(row.name, chars))}</text>')
        if row.firing_rate is None:
            out.append(f'<text class="tick" x="{left + 6}" y="{y + group / 2 + 1:.1f}">no spike count</text>')
            continue
        width = (right - left) * row.firing_rate / span
        out.append(f'<rect class="bar rate" x="{left}" y="{y}" width="{width:.1f}" height="{group - 9}" '
                   f'fill="{RATE_COLOUR}"><title>{_e(row.name)}: firing rate {row.firing_rate:.6g}</title></rect>')
        out.append(f'<text class="tick" x="{left + width + 4:.1f}" y="{y + group / 2 + 1:.1f}">'
                   f"{_rate(row.firing_rate)}</text>")
    out.append("</svg>")
    return "\n".join(out)


def step_series(report: Report) -> list[tuple[str, list[float]]]:
    """Per layer, the firing rate at each time step: spikes at step t / (samples × neurons)."""
    series = []
    for row in report.layers:
        if row.spikes_per_step and row.neurons_per_sample and report.samples:
            slots = report.samples * row.neurons_per_sample
            series.append((row.name, [count / slots for count in row.spikes_per_step]))
    return series


def step_chart(report: Report) -> str | None:
    """Lines: firing rate per time step, one line per layer (None when the replay recorded no steps)."""
    series = step_series(report)
    if not series or max(len(values) for _, values in series) < 2:
        return None
    styles = [_series_style(i) for i in range(len(series))]
    keys = [(name, colour) for (name, _), (colour, _) in zip(series, styles, strict=True)]
    legend, legend_height = _legend(56, 16, keys, [dash for _, dash in styles])
    left, right, top = 56, CHART_WIDTH - 20, 16 + legend_height
    bottom = top + 210
    steps = max(len(values) for _, values in series)
    y_ticks = _nice_ticks(max((v for _, values in series for v in values), default=0.0) or 0.1, 4)
    span = y_ticks[-1]
    title = "Firing rate per time step (spikes / (samples × neurons))"
    out = _svg_open(bottom + 40, title, "chart-steps")
    out.append(f"<title>{_e(title)}</title>")
    out += legend
    for tick in y_ticks:
        y = bottom - (bottom - top) * tick / span
        out.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}"/>')
        out.append(f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:.3g}</text>')
    out.append(f'<line class="axis" x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}"/>')

    def x_of(step: int) -> float:
        return left + (right - left) * step / (steps - 1)

    label_every = max(1, math.ceil(steps / 12))
    for step in range(0, steps, label_every):
        out.append(f'<text class="tick" x="{x_of(step):.1f}" y="{bottom + 15}" text-anchor="middle">{step}</text>')
    out.append(f'<text class="tick" x="{(left + right) / 2:.0f}" y="{bottom + 32}" text-anchor="middle">'
               "time step</text>")
    for (name, values), (colour, dash) in zip(series, styles, strict=True):
        points = " ".join(f"{x_of(t):.1f},{bottom - (bottom - top) * v / span:.1f}" for t, v in enumerate(values))
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="2"{dashed} '
                   f'points="{points}"><title>{_e(name)}</title></polyline>')
        if steps <= 40:  # markers while they stay readable
            for t, v in enumerate(values):
                out.append(f'<circle cx="{x_of(t):.1f}" cy="{bottom - (bottom - top) * v / span:.1f}" r="2.5" '
                           f'fill="{colour}"><title>{_e(name)}, step {t}: {v:.4g}</title></circle>')
    out.append("</svg>")
    return "\n".join(out)


def _plain(value: float | int) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int], total_last: bool = False,
           cls: str = "") -> str:
    head = "".join(f'<th class="num">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>"
                   for i, h in enumerate(headers))
    body = []
    for index, row in enumerate(rows):
        cells = "".join(f'<td class="num">{_e(c)}</td>' if i in numeric else f"<td>{_e(c)}</td>"
                        for i, c in enumerate(row))
        mark = ' class="total"' if total_last and index == len(rows) - 1 else ""
        body.append(f"<tr{mark}>{cells}</tr>")
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>"


def _kv(pairs: Sequence[tuple[str, str]]) -> str:
    rows = "\n".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in pairs)
    return f'<table class="kv"><tbody>\n{rows}\n</tbody></table>'


def _list(items: Sequence[str], cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<ul{attr}>\n" + "\n".join(f"<li>{_e(i)}</li>" for i in items) + "\n</ul>"


def _cards(report: Report) -> str:
    t = report.totals
    cards = [(f"Neuron Dense Ops / {report.per}",
              _plain(t.neuron_dense_ops) if t.neuron_dense_ops is not None else "-"),
             (f"Effective Neuron Ops / {report.per}",
              _plain(t.effective_neuron_ops) if t.effective_neuron_ops is not None else "- (no replay)")]
    if t.neuron_dense_ops and t.effective_neuron_ops is not None:
        cards.append(("effective / dense", _percent(t.effective_neuron_ops / t.neuron_dense_ops)))
    cards.append(("neuron layers", str(len(report.layers))))
    if report.samples is not None:
        cards.append(("replay", f"{report.samples} × {report.time_steps} steps"))
    f = report.feasibility
    if f is not None and f.step_rate_hz is not None:
        cards.append((f"dense ops/s at {f.step_rate_hz:g} Hz", si(f.dense_ops_per_s, "ops/s")))
        if f.effective_ops_per_s is not None:
            cards.append((f"effective ops/s at {f.step_rate_hz:g} Hz", si(f.effective_ops_per_s, "ops/s")))
    if f is not None and f.energy is not None:
        e = f.energy
        if e.effective_watts is not None or e.dense_watts is not None:
            which = "effective" if e.effective_watts is not None else "dense"
            cards.append((f"neuron power, {which}", si(e.effective_watts if which == "effective" else e.dense_watts,
                                                        "W")))
    if not t.complete:  # the figures leave uncosted layers out: each one is a floor, and the cards say so
        lower = ("Neuron Dense Ops", "Effective Neuron Ops", "dense ops/s", "effective ops/s", "neuron power")
        cards = [(label, f"≥ {value}" if label.startswith(lower) and value[:1].isdigit() else value)
                 for label, value in cards]
        cards.append(("uncosted layers", f"{len(report.uncosted)}: left out, figures are lower bounds"))
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="label">{_e(label)}</div><div class="value">{_e(value)}</div></div>'
        for label, value in cards) + "</div>"


def _feasibility_section(f: Feasibility) -> list[str]:
    out = ["<h2>Feasibility</h2>", _kv(feasibility_pairs(f))]
    out.append("<h3>Per layer</h3>" if f.layers else '<p class="muted">No layer could be costed.</p>')
    headers, rows = layer_feasibility_table(f)
    if rows:
        out.append(_table(headers, rows, set(range(1, len(headers)))))
    out.append("<h3>Assumptions</h3>")
    out.append(_list(f.assumptions))
    if f.warnings:
        out.append("<h3>Feasibility warnings</h3>")
        out.append(_list(f.warnings, "warn"))
    return out


def page(title: str, subtitle: str, body: Sequence[str]) -> str:
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">{_e(subtitle)}</p>',
        *body,
        f"<footer>neuronops · {_e(SCHEMA)} · a self-contained file: no scripts, no external resources</footer>",
        "</body>",
        "</html>",
    ]) + "\n"


def format_html(report: Report) -> str:
    body = [_cards(report)]
    f = report.feasibility
    if f is not None and f.budget is not None:
        line = budget_line(f)
        mood = {True: "ok", False: "no", None: "unknown"}[f.budget.feasible]
        body.append(f'<div class="verdict {mood}">{_e(line)}</div>')
    body.append("<h2>Summary</h2>")
    body.append(_kv(summary_pairs(report)))
    if report.uncosted or report.warnings:
        body.append("<h2>Uncosted layers and warnings</h2>")
        if report.uncosted:
            body.append(_list([f"{u.name}: {u.reason} (at {u.location})" for u in report.uncosted], "warn"))
        if report.warnings:
            body.append(_list(report.warnings, "warn"))
    body.append("<h2>Charts</h2>")
    body.append(f"<h3>Neuron ops per {report.per}, by layer</h3>\n{ops_chart(report)}")
    if report.samples is not None:
        body.append(f"<h3>Firing rate by layer</h3>\n{rate_chart(report)}")
        steps = step_chart(report)
        if steps is not None:
            body.append(f"<h3>Firing rate per time step</h3>\n{steps}")
    else:
        body.append('<p class="muted">Effective ops and firing rates need a replay of recorded inputs '
                    "(--inputs).</p>")
    body.append("<h2>Layers</h2>")
    body.append(_table(REPORT_HEADERS, report_cells(report), set(range(3, 10)), total_last=True))
    if f is not None:
        body += _feasibility_section(f)
    if report.notes:
        body.append("<h2>Notes</h2>")
        body.append(_list(report.notes))
    body.append("<h2>Conventions</h2>")
    body.append(_list(conventions(report)))
    style = f"{report.style} export" + (f", {report.convention} convention" if report.samples is not None else "")
    return page(f"neuronops report: {report.model}", style, body)
