"""Formatting reports and layer listings as text. Computing happens elsewhere; nothing here changes a number."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict

from .layers import MatchResult, NeuronLayer
from .report import PER_STEP, Report

CONVENTION_TEXT = {
    "spikes": "spikes: effective ops = spikes emitted × cost per update",
    "neurobench": "neurobench: effective ops = cost × (neurons at step 0 + membranes that changed at later steps)",
}


def _number(value: int | float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    if float(value).is_integer():
        return f"{int(value):,}"
    if abs(value) < 10**-digits * 10:  # 0.006 ops per sample is not 0.01 (nor 0.00): its own significant digits
        return f"{value:.2g}"
    return f"{value:,.{digits}f}"


def _rate(value: float | None) -> str:
    """A firing rate: 4 decimals, or significant digits when it is smaller than that shows (3e-05, not 0.0000)."""
    if value is None:
        return "-"
    return f"{value:.2g}" if 0 < value < 0.001 else f"{value:.4f}"


def _percent(share: float | None) -> str:
    """A share as a percentage: 0.1 % steps, significant digits where those would show 0.0 % for a share that is
    not zero, and a power of ten where the digits would run on."""
    if share is None:
        return "-"
    if 0 < abs(share) < 0.001:
        return f"{share * 100:.2g}%"
    if abs(share) >= 1e4:
        return f"{share * 100:.3g}%"
    return f"{share:,.1%}"


def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                                                  strict=True))).rstrip()

    return [line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows]


def format_table(report: Report) -> str:
    replayed = report.samples is not None  # without a replay there are no effective ops, spikes or convention
    headers = ["layer", "kind", "reset", "neurons/sample", "steps", "cost", "dense ops"]
    if replayed:
        headers += ["effective ops", "spikes", "firing rate"]
    rows = []
    for row in report.layers:
        cells = [row.name, row.kind or "?", row.reset or "?", _number(row.neurons_per_sample),
                 _number(row.time_steps), _number(row.cost_per_update), _number(row.dense_ops)]
        if replayed:
            cells += [_number(row.effective_ops), _number(row.spikes), _rate(row.firing_rate)]
        rows.append(cells)
    total = ["total", "", "", "", "", "", _number(report.totals.neuron_dense_ops)]
    rows.append(total + ([_number(report.totals.effective_neuron_ops), "", ""] if replayed else []))
    out = [f"model: {report.model}  ({report.style}, {len(report.layers)} neuron layer(s))"]
    per = f"per {report.per}" + (" of one sample (no --steps or --inputs)" if report.per == PER_STEP else "")
    if replayed:
        out.append(f"replay: {report.samples} samples × {report.time_steps} time steps")
        out.append(f"convention: {CONVENTION_TEXT[report.convention]}")
        out.append(f"dense and effective ops are {per}; spikes are totals over the whole run")
    else:
        out.append("replay: none (no --inputs): effective ops need recorded inputs")
        out.append(f"dense ops are {per}")
    out.append("")
    out.extend(_table(headers, rows, right=set(range(3, len(headers)))))
    if report.uncosted:
        out.append("")
        out.append("uncosted (not in the totals):")
        out.extend(f"  {u.name}: {u.reason} [{u.location}]" for u in report.uncosted)
    if report.feasibility is not None:
        from .formats_text import feasibility_text

        out.extend(feasibility_text(report.feasibility))
    if report.warnings or report.notes:
        out.append("")  # set apart from the table (or the feasibility lines) above
    for warning in report.warnings:
        out.append(f"warning: {warning}")
    for note in report.notes:
        out.append(f"note: {note}")
    return "\n".join(out) + "\n"


def format_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2) + "\n"


def format_csv(report: Report) -> str:
    from .formats_text import format_csv as csv_report  # imported when used: keeps `neuronops layers` fast

    return csv_report(report)


def format_markdown(report: Report) -> str:
    from .formats_text import format_markdown as markdown_report

    return markdown_report(report)


def format_html(report: Report) -> str:
    from .formats_html import format_html as html_report

    return html_report(report)


REPORT_FORMATS: dict[str, Callable[[Report], str]] = {
    "table": format_table, "json": format_json, "csv": format_csv, "markdown": format_markdown, "html": format_html,
}


def format_layers(path: str, match: MatchResult, warnings: Sequence[str] = ()) -> str:
    headers = ["layer", "kind", "reset", "style", "neurons/sample", "steps", "recognised by", "where"]
    rows = [[
        layer.name, layer.kind or "?", layer.reset or "?", layer.style, _number(layer.neurons_per_sample),
        _number(layer.time_steps) if layer.time_steps is not None else "(driven)", layer.kind_source, layer.location,
    ] for layer in match.layers]
    out = [f"model: {path}  ({match.style})"]
    if match.state_pairs:
        out.append("state: " + ", ".join(f"{p.output} → {p.input}" for p in match.state_pairs))
        out.append("data inputs: " + ", ".join(match.data_inputs))
    out.append("")
    out.extend(_table(headers, rows, right={4, 5}))
    problems = [layer for layer in match.layers if layer.problem]
    for layer in problems:
        out.append(f"problem: {layer.name}: {layer.problem}")
    for note in match.notes:
        out.append(f"note: {note}")
    out.extend(f"warning: {warning}" for warning in warnings)  # the model's own (e.g. the ONNX checker's)
    return "\n".join(out) + "\n"


def layers_json(path: str, match: MatchResult, warnings: Sequence[str] = ()) -> str:
    return json.dumps({
        "schema": "neuronops.layers/1",
        "model": path,
        "style": match.style,
        "data_inputs": list(match.data_inputs),
        "state": [{"input": p.input, "output": p.output} for p in match.state_pairs],
        "layers": [_layer_dict(layer) for layer in match.layers],
        "notes": list(match.notes),
        "warnings": list(warnings),
    }, indent=2) + "\n"


def _layer_dict(layer: NeuronLayer) -> dict:
    return {
        "name": layer.name, "kind": layer.kind, "reset": layer.reset, "style": layer.style,
        "neurons_per_sample": layer.neurons_per_sample, "time_steps": layer.time_steps,
        "recognised_by": layer.kind_source, "location": layer.location, "problem": layer.problem,
        "membranes": list(layer.membranes), "spikes": list(layer.spikes), "state_input": layer.state_input,
    }


def explain_json(path: str, match: MatchResult, warnings: Sequence[str] = ()) -> str:
    """`explain` for scripts: `layers --format json`'s fields per layer, plus the update read from the graph, its
    features, why each other kind refused it, and the layer's notes."""
    def explained(layer: NeuronLayer) -> dict:
        return _layer_dict(layer) | {
            "update": layer.update,
            "features": asdict(layer.features) if layer.features is not None else None,  # as the cache stores them
            "not_kinds": dict(layer.near_misses),
            "notes": list(layer.notes),
        }

    return json.dumps({
        "schema": "neuronops.explain/1",
        "model": path,
        "style": match.style,
        "layers": [explained(layer) for layer in match.layers],
        "notes": list(match.notes),
        "warnings": list(warnings),
    }, indent=2) + "\n"


def format_explain(path: str, match: MatchResult, warnings: Sequence[str] = ()) -> str:
    out = [f"model: {path}  ({match.style})", ""]
    for layer in match.layers:
        known = bool(layer.kind and layer.reset)
        verdict = f"{layer.kind} / {layer.reset}" if known else "NOT RECOGNISED as a known neuron kind"
        found = f"recognised by {layer.kind_source}" if known else f"found as a neuron by {layer.kind_source}"
        out.append(f"{layer.name}: {verdict}  ({found}; {layer.style}, "
                   f"{len(layer.membranes)} membrane tensor(s); at {layer.location})")
        out.append(f"  update read from the graph: U_t = {layer.update}")
        if layer.features is not None:
            f = layer.features
            out.append(f"  features: carried state besides U: {f.carried_states}; decay term on U: "
                       f"{'yes' if f.membrane_feedback else 'no'}; "
                       f"recurrent current: {'yes' if f.recurrent else 'no'}; "
                       f"input gain: {f.input_gain if f.input_gain is not None else '?'}; reset: {f.reset or '?'}")
            if f.unreadable_ops:
                out.append(f"  ops the matcher could not read: {', '.join(f.unreadable_ops)}")
        if layer.problem:
            out.append(f"  why not costed: {layer.problem}")
        for kind, reason in layer.near_misses.items():
            out.append(f"  not {kind}: {reason}")
        for note in layer.notes:
            out.append(f"  note: {note}")
        out.append("")
    out.append("symbols: U previous membrane, R reset flag H(U_{t-1} − θ), I:<tensor> input current, "
               "V:<tensor> recurrent current, S:<tensor> other carried state, Rold an older reset flag, "
               "X:<op>:<tensor> the output of an op the matcher cannot read")
    for note in match.notes:
        out.append(f"note: {note}")
    out.extend(f"warning: {warning}" for warning in warnings)
    return "\n".join(out) + "\n"
