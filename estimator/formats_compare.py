"""Formatting a comparison of saved reports: models side by side, and which of them fit. Nothing here computes.

Terminal table, Markdown and HTML put one model per column (side by side); CSV and JSON put one model per row.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from .compare import Compared, Comparison
from .formats import CONVENTION_TEXT, _number, _percent, _rate, _table
from .formats_html import CHART_WIDTH, DENSE_COLOUR, EFFECTIVE_COLOUR, _e, _kv, _list, _nice_ticks, _short, page
from .formats_html import _compact as compact
from .formats_html import _table as html_table
from .formats_text import CONVENTIONS_COMMON, _cell, _md_table, joules, si, tables_text
from .report import PER_STEP, Report

COMPARE_SCHEMA = "neuronops.compare/2"


def _per(report: Report, value: float | None) -> str:
    """A total, marked when it is not per sample (a stepwise model reported per time step)."""
    return _number(value) + (f" per {report.per}" if report.per == PER_STEP and value is not None else "")


def metric_rows(comparison: Comparison) -> list[tuple[str, list[str]]]:
    """(metric, one cell per model): the side-by-side view."""
    models = comparison.models

    def row(label: str, cell: Callable[[Compared], str]) -> tuple[str, list[str]]:
        return label, [cell(m) for m in models]

    rows = [
        row("model", lambda m: m.report.model),
        row("export style", lambda m: m.report.style),
        row("convention", lambda m: m.report.convention if m.report.samples is not None else "- (no replay)"),
        row("cost tables", lambda m: ", ".join(m.report.cost_tables) or "none recorded"),  # digests: assumptions
        row("replay", lambda m: f"{m.report.samples} × {m.report.time_steps} steps" if m.report.samples is not None
            else "none"),
        row("neuron layers", lambda m: str(len(m.report.layers))),
        row("neurons per sample", lambda m: _number(m.neurons)),
        row("dense ops / sample", lambda m: _per(m.report, m.report.totals.neuron_dense_ops)),
        row("effective ops / sample", lambda m: _per(m.report, m.report.totals.effective_neuron_ops)),
        row("firing rate", lambda m: _rate(m.firing_rate)),
        row("totals complete", lambda m: "yes" if m.report.totals.complete else
            f"no ({len(m.report.uncosted)} uncosted)"),
    ]
    feas = [m.feasibility for m in models]
    if any(f is not None and f.step_rate_hz is not None for f in feas):
        rows += [
            row("step rate", lambda m: f"{m.feasibility.step_rate_hz:g} Hz"
                if m.feasibility and m.feasibility.step_rate_hz is not None else "-"),
            row("dense ops/s", lambda m: si(m.feasibility.dense_ops_per_s, "ops/s") if m.feasibility else "-"),
            row("effective ops/s", lambda m: si(m.feasibility.effective_ops_per_s, "ops/s") if m.feasibility
                else "-"),
        ]
    if any(f is not None and f.energy is not None for f in feas):
        def energy(m: Compared, pick: Callable[[Any], Any], unit: str) -> str:
            e = m.feasibility.energy if m.feasibility else None
            if e is None:
                return "-"
            return joules(pick(e)) if unit == "J" else si(pick(e), unit)

        rows += [
            row("energy table", lambda m: m.feasibility.energy.table.name
                if m.feasibility and m.feasibility.energy else "-"),
            row("energy / sample, dense", lambda m: energy(m, lambda e: e.dense_pj_per_sample, "J")),
            row("energy / sample, effective", lambda m: energy(m, lambda e: e.effective_pj_per_sample, "J")),
            row("power, dense", lambda m: energy(m, lambda e: e.dense_watts, "W")),
            row("power, effective", lambda m: energy(m, lambda e: e.effective_watts, "W")),
        ]
    if any(f is not None and f.budget is not None for f in feas):
        def budget(m: Compared, cell: Callable[[Any], str]) -> str:
            b = m.feasibility.budget if m.feasibility else None
            return "-" if b is None else cell(b)

        rows += [
            row("budget", lambda m: budget(m, lambda b: f"{si(b.ops_per_s, 'ops/s')} on {b.basis} ops")),
            row("share of budget", lambda m: budget(m, lambda b: "-" if b.utilisation is None
                                                    else _percent(b.utilisation))),
            row("headroom", lambda m: budget(m, lambda b: f"{b.headroom:.3g}×" if b.headroom is not None else "-")),
            row("verdict", lambda m: budget(m, lambda b: b.verdict.upper()
                                            + ("" if b.complete or b.feasible is None else " (optimistic)"))),
        ]
    return rows


def answer(comparison: Comparison) -> list[str]:
    """Which of these variants fits, in words: every model is named once, under fit, do not fit or no verdict."""
    if not comparison.budgeted:
        return ["no budget given: pass --step-rate and --budget for a verdict per model"]
    lines = [f"fit the budget: {', '.join(comparison.fits) if comparison.fits else 'none'}",
             f"do not fit: {', '.join(comparison.misses) if comparison.misses else 'none'}"]
    reasons: dict[str, list[str]] = {}  # why there is no verdict → the models it applies to
    for m in comparison.models:
        if m.reason is not None:
            reasons.setdefault(m.reason, []).append(m.label)
    lines += [f"no verdict for {', '.join(labels)}: {reason}" for reason, labels in reasons.items()]
    if comparison.best:
        line = f"most headroom{' (tied)' if len(comparison.best) > 1 else ''}: {', '.join(comparison.best)}"
        if comparison.ranking_caveat:  # the ranking is only as meaningful as the models are alike
            line += f" ({comparison.ranking_caveat})"
        lines.append(line)
    return lines


def assumptions(comparison: Comparison) -> list[str]:
    """Every convention and assumption behind the figures, each once."""
    seen: dict[str, None] = {}
    for m in comparison.models:
        if m.report.samples is not None:  # (no replay: no effective ops, no convention to explain)
            seen.setdefault(f"convention {CONVENTION_TEXT[m.report.convention]}", None)
    for text in CONVENTIONS_COMMON:
        seen.setdefault(text, None)
    tables: dict[str, list[str]] = {}  # cost tables → the models costed with them
    for m in comparison.models:
        tables.setdefault(tables_text(m.report), []).append(m.label)
    for used, labels in tables.items():
        text = f"cost tables (later ones override earlier ones): {used}"
        seen.setdefault(text if len(tables) == 1 else f"{', '.join(labels)}: {text}", None)
    seen.setdefault("firing rate of a model = all its spikes / (samples × Σ neurons × time steps)", None)
    holders: dict[str, list[str]] = {}  # assumption → the models it belongs to
    for m in comparison.models:
        if m.feasibility is not None:
            for text in m.feasibility.assumptions:
                holders.setdefault(text, []).append(m.label)
    for text, labels in holders.items():
        seen.setdefault(text if len(labels) == len(comparison.models) else f"{', '.join(labels)}: {text}", None)
    return list(seen)


def warnings(comparison: Comparison) -> list[str]:
    out = list(comparison.warnings)
    for m in comparison.models:
        out += [f"{m.label}: {w}" for w in m.report.warnings]
        if m.feasibility is not None:
            out += [f"{m.label}: {w}" for w in m.feasibility.warnings]
    return list(dict.fromkeys(out))


def compare_table(comparison: Comparison) -> str:
    labels = [m.label for m in comparison.models]
    rows = [[label, *cells] for label, cells in metric_rows(comparison)]
    out = [f"comparing {len(labels)} report(s)", ""]
    out += _table(["", *labels], rows, right=set(range(1, len(labels) + 1)))
    out.append("")
    out += answer(comparison)
    out += [f"warning: {w}" for w in warnings(comparison)]
    out += [f"assumption: {a}" for a in assumptions(comparison)]
    return "\n".join(out) + "\n"


def compare_markdown(comparison: Comparison) -> str:
    labels = [m.label for m in comparison.models]
    rows = [[label, *cells] for label, cells in metric_rows(comparison)]
    out = [f"# neuronops comparison of {len(labels)} report(s)", ""]
    out += _md_table(["", *labels], rows, right=set(range(1, len(labels) + 1)))
    out += ["", "## Which fits", ""] + [f"- {line}" for line in answer(comparison)]
    if warnings(comparison):
        out += ["", "## Warnings", ""] + [f"- {w}" for w in warnings(comparison)]
    out += ["", "## Conventions and assumptions", ""] + [f"- {a}" for a in assumptions(comparison)]
    return "\n".join(out) + "\n"


def model_dict(m: Compared) -> dict[str, Any]:
    t = m.report.totals
    return {
        "report": m.label, "model": m.report.model, "style": m.report.style, "convention": m.report.convention,
        "cost_tables": list(m.report.cost_tables),
        "cost_table_sha256": list(m.report.cost_table_sha256),
        "samples": m.report.samples, "time_steps": m.report.time_steps, "layers": len(m.report.layers),
        "neurons_per_sample": m.neurons, "neuron_dense_ops": t.neuron_dense_ops,
        "effective_neuron_ops": t.effective_neuron_ops, "firing_rate": m.firing_rate, "complete": t.complete,
        "uncosted": [u.name for u in m.report.uncosted],
        "feasibility": m.feasibility.to_dict() if m.feasibility is not None else None,
        "verdict": m.verdict,
        "no_verdict": m.reason,
    }


def compare_json(comparison: Comparison) -> str:
    return json.dumps({
        "schema": COMPARE_SCHEMA,
        "models": [model_dict(m) for m in comparison.models],
        "fits": list(comparison.fits), "misses": list(comparison.misses), "unknown": list(comparison.unknown),
        "best": list(comparison.best), "best_caveat": comparison.ranking_caveat if comparison.best else None,
        "warnings": warnings(comparison), "assumptions": assumptions(comparison),
    }, indent=2) + "\n"


CSV_COLUMNS = ["report", "model", "style", "convention", "cost_tables", "samples", "time_steps", "layers",
               "neurons_per_sample", "neuron_dense_ops", "effective_neuron_ops", "firing_rate", "complete",
               "step_rate_hz", "dense_ops_per_s", "effective_ops_per_s", "dense_pj_per_sample",
               "effective_pj_per_sample", "dense_watts", "effective_watts", "budget_ops_per_s", "budget_basis",
               "utilisation", "headroom", "verdict", "no_verdict"]


def compare_csv(comparison: Comparison) -> str:
    """One row per model under one header row; '#' lines above it carry the answer, warnings and assumptions."""
    buffer = io.StringIO()
    for line in answer(comparison) + [f"warning: {w}" for w in warnings(comparison)] + \
            [f"assumption: {a}" for a in assumptions(comparison)]:
        buffer.write(f"# {' '.join(line.split())}\n")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for m in comparison.models:
        f, t = m.feasibility, m.report.totals
        e = f.energy if f else None
        b = f.budget if f else None
        writer.writerow([_cell(v) for v in (
            m.label, m.report.model, m.report.style, m.report.convention, "; ".join(m.report.cost_tables),
            m.report.samples, m.report.time_steps, len(m.report.layers), m.neurons, t.neuron_dense_ops,
            t.effective_neuron_ops, m.firing_rate, t.complete,
            f.step_rate_hz if f else None, f.dense_ops_per_s if f else None, f.effective_ops_per_s if f else None,
            e.dense_pj_per_sample if e else None, e.effective_pj_per_sample if e else None,
            e.dense_watts if e else None, e.effective_watts if e else None,
            b.ops_per_s if b else None, b.basis if b else None, b.utilisation if b else None,
            b.headroom if b else None, b.verdict if b else None, m.reason,
        )])
    return buffer.getvalue()


def chart_labels(labels: Sequence[str], chars: int) -> list[str]:
    """Names for the chart, at most `chars` long, that keep the reports apart.

    Report files of variants share most of their name (leaky_sub_fc1__unrolled__torchscript.json and
    leaky_sub_fc1__stepwise__torchscript.json): cutting each in the middle drops the very part that differs. So the
    start and the end every label shares are dropped (at a separator, never inside a word; an ellipsis marks them),
    and a name still too long keeps the part where it departs from the label most like it.
    """
    names = list(labels)
    if all(len(name) <= chars for name in names):
        return names
    if len(set(names)) < 2:
        return [_short(name, chars) for name in names]
    head = len(os.path.commonprefix(names))
    while head and names[0][head - 1].isalnum():  # the shared start ends after a separator
        head -= 1
    if any(len(name) == head for name in names):  # some label would be left empty
        head = 0
    rests = [name[head:] for name in names]
    tail = len(os.path.commonprefix([rest[::-1] for rest in rests]))
    while tail and rests[0][len(rests[0]) - tail].isalnum():  # the shared end starts with a separator
        tail -= 1
    if any(len(rest) == tail for rest in rests):
        tail = 0
    cores = [rest[:len(rest) - tail] for rest in rests]
    shown = []
    for core in cores:
        text = ("…" if head else "") + core + ("…" if tail else "")
        if len(text) > chars:
            # the window starts at the word where this label departs from its nearest neighbour
            depart = max(len(os.path.commonprefix([core, other])) for other in cores if other != core)
            while depart and core[depart - 1].isalnum():
                depart -= 1
            width = chars - 2  # room for an ellipsis at each end
            start = max(0, min(depart, len(core) - width))
            text = (("…" if head or start else "") + core[start:start + width]
                    + ("…" if tail or start + width < len(core) else ""))
        shown.append(text)
    return shown


def _ops_chart(comparison: Comparison) -> str:
    """Bars per model: dense and effective ops/s (or per sample without a step rate), the budget as a line."""
    per_s = all(m.feasibility is not None and m.feasibility.step_rate_hz is not None for m in comparison.models)

    def values(m: Compared) -> tuple[float | None, float | None]:
        if per_s:
            return m.feasibility.dense_ops_per_s, m.feasibility.effective_ops_per_s  # type: ignore[union-attr]
        return m.report.totals.neuron_dense_ops, m.report.totals.effective_neuron_ops

    budgets = {m.feasibility.budget.ops_per_s for m in comparison.models
               if per_s and m.feasibility and m.feasibility.budget}
    budget = budgets.pop() if len(budgets) == 1 else None
    labels = [m.label for m in comparison.models]
    names = chart_labels(labels, 30)
    chars = max(len(name) for name in names)
    left, right, top, group = chars * 7 + 16, CHART_WIDTH - 70, 50, 34
    bottom = top + group * len(labels) + 6
    top_value = max([v for m in comparison.models for v in values(m) if v is not None] + [budget or 0])
    ticks = _nice_ticks(top_value)
    span = ticks[-1]
    unit = "ops/s" if per_s else "ops per sample"
    out = [f'<svg id="chart-compare" width="{CHART_WIDTH}" height="{bottom + 26}" '
           f'viewBox="0 0 {CHART_WIDTH} {bottom + 26}" role="img" aria-label="neuron {unit} by model">',
           f"<title>neuron {unit} by model</title>"]
    legend_x = left
    for label, colour in ((f"dense {unit}", DENSE_COLOUR), (f"effective {unit}", EFFECTIVE_COLOUR)):
        out.append(f'<rect x="{legend_x}" y="6" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{legend_x + 17}" y="16">{_e(label)}</text>')
        legend_x += 17 + len(label) * 7 + 18
    for tick in ticks:
        x = left + (right - left) * tick / span
        out.append(f'<line class="grid" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}"/>')
        out.append(f'<text class="tick" x="{x:.1f}" y="{bottom + 15}" text-anchor="middle">{compact(tick)}</text>')
    out.append(f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{bottom}"/>')
    for index, m in enumerate(comparison.models):
        y = top + index * group + 4
        name = names[index]
        out.append(f'<text x="{left - 8}" y="{y + group / 2 + 1:.1f}" text-anchor="end">'
                   f"<title>{_e(m.label)}</title>{_e(name)}</text>")
        for offset, (kind, value, colour) in enumerate(zip(("dense", "effective"), values(m),
                                                           (DENSE_COLOUR, EFFECTIVE_COLOUR), strict=True)):
            if value is None:
                continue
            width = (right - left) * value / span
            by = y + offset * 13
            out.append(f'<rect class="bar {kind}" x="{left}" y="{by}" width="{width:.1f}" height="12" '
                       f'fill="{colour}"><title>{_e(m.label)}: {kind} {si(value, unit)}</title></rect>')
            out.append(f'<text class="tick" x="{left + width + 4:.1f}" y="{by + 10}">{compact(value)}</text>')
    if budget is not None:
        x = left + (right - left) * budget / span
        out.append(f'<line class="budget" x1="{x:.1f}" y1="{top - 2}" x2="{x:.1f}" y2="{bottom}" stroke="#c0392b" '
                   'stroke-width="2" stroke-dasharray="5 3"/>')
        out.append(f'<text x="{x:.1f}" y="{top - 6}" text-anchor="middle" style="fill: #c0392b">budget '
                   f"{compact(budget)} ops/s</text>")
    out.append("</svg>")
    return "\n".join(out)


def compare_html(comparison: Comparison) -> str:
    labels = [m.label for m in comparison.models]
    rows = [[label, *cells] for label, cells in metric_rows(comparison)]
    body = []
    if comparison.verdict is not None:  # the worst verdict: green only when every model fits
        mood = {"feasible": "ok", "not feasible": "no", "unknown": "unknown"}[comparison.verdict]
        body.append(f'<div class="verdict {mood}">{_e("; ".join(answer(comparison)))}</div>')
    else:
        body.append(f'<p class="muted">{_e(answer(comparison)[0])}</p>')
    body.append("<h2>Side by side</h2>")
    body.append(html_table(["", *labels], rows, set(range(1, len(labels) + 1))))
    body.append("<h2>Neuron ops by model</h2>")
    body.append(_ops_chart(comparison))
    if warnings(comparison):
        body.append("<h2>Warnings</h2>")
        body.append(_list(warnings(comparison), "warn"))
    body.append("<h2>Conventions and assumptions</h2>")
    body.append(_list(assumptions(comparison)))
    body.append("<h2>Reports compared</h2>")
    body.append(_kv([(m.label, m.report.model) for m in comparison.models]))
    return page(f"neuronops comparison of {len(labels)} report(s)", ", ".join(labels), body)


COMPARE_FORMATS: dict[str, Callable[[Comparison], str]] = {
    "table": compare_table, "json": compare_json, "csv": compare_csv, "markdown": compare_markdown,
    "html": compare_html,
}
