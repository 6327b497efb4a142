"""CSV and Markdown reports, and the feasibility section shared by the text formats. Nothing here computes."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Context, Decimal

from .feasibility import Feasibility
from .formats import CONVENTION_TEXT, _number, _percent, _rate, _table
from .report import PER_STEP, SCHEMA, Report

COUNTED_UNITS = ("ops/s", "ops")  # counts: no prefixes below one (m, µ, n … are for watts and joules)
SI_PREFIXES = ((12, "T"), (9, "G"), (6, "M"), (3, "k"), (0, ""), (-3, "m"), (-6, "µ"), (-9, "n"), (-12, "p"),
               (-15, "f"))  # powers of ten

CONVENTIONS_COMMON = (
    "dense ops and effective ops are per sample: one sample is a whole sequence of T time steps",
    "Neuron Dense Ops = neurons per sample × time steps × cost per update (every neuron updated at every step)",
    "spikes, membrane updates and effective_ops_run are exact integer totals over the whole run; per-sample figures "
    "are those totals divided once by the number of samples",
    "firing rate = spikes / (samples × neurons × time steps)",
    "cost per update = operations per neuron update, from the cost tables listed",
)


def si(value: float | int | Decimal | None, unit: str, digits: int = 4) -> str:
    """Engineering notation with an SI prefix: 1.152 Mops/s, 3.7 pJ, 45.6 µW. The prefix is applied in decimal to the
    value as it prints (its shortest repr), then rounded half to even: dividing the float by 1e-9 instead would turn
    175.75 nW into 175.74999… and print it as 175.7 beside an energy of 175.75 pJ printed as 175.8."""
    if value is None:
        return "-"
    if value == 0:
        return f"0 {unit}"
    exact = value if isinstance(value, Decimal) else Decimal(value if isinstance(value, int) else repr(float(value)))
    rounding = Context(prec=digits, rounding=ROUND_HALF_EVEN)
    if unit in COUNTED_UNITS and abs(exact) < 1:  # a thousandth of an op per second is not 1 "mops/s" (≈ Mops/s)
        return f"{float(rounding.plus(exact)):.{digits}g} {unit}"
    for exponent, prefix in SI_PREFIXES:
        scaled = exact.scaleb(-exponent)
        if abs(scaled) >= Decimal("0.9995") or exponent == SI_PREFIXES[-1][0]:
            return f"{float(rounding.plus(scaled)):.{digits}g} {prefix}{unit}"
    raise AssertionError("unreachable: the last prefix always applies")


def joules(pj: float | None) -> str:
    """Picojoules, in the unit that suits them (the factor 10⁻¹² applied in decimal, see si)."""
    return si(None if pj is None else Decimal(repr(float(pj))).scaleb(-12), "J")


def conventions(report: Report) -> list[str]:
    """Every convention the report's numbers rest on, as sentences (the same list in every format)."""
    common = list(CONVENTIONS_COMMON)
    if report.per == PER_STEP:
        common[0] = (f"dense ops are per {report.per} of one sample: the model is stepwise and neither --steps nor "
                     "--inputs said how many steps make a sample")
    # a convention says how effective ops were counted: a report without a replay has none to explain
    lines = [f"convention {CONVENTION_TEXT[report.convention]}"] if report.samples is not None else []
    lines += common
    if report.cost_tables:
        lines.append(f"cost tables (later ones override earlier ones): {tables_text(report)}")
    return lines


def tables_text(report: Report) -> str:
    return ", ".join(report.cost_table_labels()) or "none recorded"


def summary_pairs(report: Report) -> list[tuple[str, str]]:
    """The model summary as (label, value) pairs."""
    replay = (f"{report.samples} samples × {report.time_steps} time steps" if report.samples is not None
              else "none (no --inputs): effective ops need recorded inputs")
    pairs = [
        ("model", report.model),
        ("export style", f"{report.style}, {len(report.layers)} neuron layer(s)"),
        ("replay", replay),
        ("convention", report.convention if report.samples is not None else "- (no replay)"),
        (f"Neuron Dense Ops per {report.per}", _number(report.totals.neuron_dense_ops)),
        (f"Effective Neuron Ops per {report.per}", _number(report.totals.effective_neuron_ops)),
        ("totals complete",
         "yes" if report.totals.complete else f"no: {len(report.uncosted)} uncosted layer(s) left out"),
    ]
    return pairs


def budget_line(feasibility: Feasibility) -> str | None:
    budget = feasibility.budget
    if budget is None:
        return None
    if budget.feasible is None or budget.needed_ops_per_s is None or budget.spare_ops_per_s is None:
        return (f"UNKNOWN: no layer could be costed, so nothing to compare with the "
                f"{si(budget.ops_per_s, 'ops/s')} budget")
    verdict = "FEASIBLE" if budget.feasible else "NOT FEASIBLE"
    if budget.feasible:
        room = (f"headroom {budget.headroom:.3g}× ({si(budget.spare_ops_per_s, 'ops/s')} spare)"
                if budget.headroom is not None else "nothing needed")
    else:
        room = f"short by {si(-budget.spare_ops_per_s, 'ops/s')}"
    caveat = "" if budget.complete else " (optimistic: uncosted layers not counted)"
    other = ""
    if budget.other_basis is not None and budget.other_needed_ops_per_s is not None:
        other = (f"; {budget.other_basis} ops would need {si(budget.other_needed_ops_per_s, 'ops/s')} "
                 f"({_percent(budget.other_utilisation)}: {'would fit' if budget.other_feasible else 'would not fit'})")
    return (f"{verdict}: {budget.basis} ops need {si(budget.needed_ops_per_s, 'ops/s')} of a "
            f"{si(budget.ops_per_s, 'ops/s')} budget ({_percent(budget.utilisation)}); {room}{caveat}{other}")


def _ops_per_s(value: float | None) -> str:
    return "-" if value is None else f"{si(value, 'ops/s')} ({_number(value)})"


def feasibility_pairs(feasibility: Feasibility) -> list[tuple[str, str]]:
    """Feasibility figures as (label, value) pairs; per-layer figures are separate."""
    f = feasibility
    pairs: list[tuple[str, str]] = []
    if f.step_rate_hz is not None:
        rate = f"{f.step_rate_hz:g} time steps/s"
        if f.samples_per_s is not None:
            rate += f" ({f.time_steps} steps per sample: {f.samples_per_s:.6g} samples/s)"
        floor = "" if f.complete else " (lower bound: uncosted layers left out)"
        pairs += [
            ("step rate", rate),
            ("dense neuron ops/s", _ops_per_s(f.dense_ops_per_s) + floor),
            ("effective neuron ops/s",
             _ops_per_s(f.effective_ops_per_s) + (floor if f.effective_ops_per_s is not None else "")),
        ]
    line = budget_line(f)
    if line is not None:
        pairs.append(("budget verdict", line))
    if f.energy is not None:
        e = f.energy
        pairs += [
            ("energy table", f"{e.table.name} — {e.table.source}"),
            ("energy per sample",
             f"dense {joules(e.dense_pj_per_sample)}, effective {joules(e.effective_pj_per_sample)}"),
            ("energy per time step",
             f"dense {joules(e.dense_pj_per_step)}, effective {joules(e.effective_pj_per_step)}"),
        ]
        if f.step_rate_hz is not None:
            pairs.append(("power at the step rate", f"dense {si(e.dense_watts, 'W')}, effective "
                                                    f"{si(e.effective_watts, 'W')}"))
        if not e.complete:
            pairs.append(("energy complete", "no: some layers are not priced (see warnings)"))
    return pairs


def layer_feasibility_table(feasibility: Feasibility) -> tuple[list[str], list[list[str]]]:
    """Per-layer feasibility: ops/s columns with a step rate, energy columns with an energy table."""
    f = feasibility
    headers = ["layer", "dense ops/step"]
    if f.step_rate_hz is not None:
        headers += ["dense ops/s", "effective ops/s"]
    if f.energy is not None:
        headers += ["pJ/update", "energy/sample dense", "energy/sample effective"]
    rows = []
    for row in f.layers:
        cells = [row.name, _number(row.dense_ops_per_step)]
        if f.step_rate_hz is not None:
            cells += [si(row.dense_ops_per_s, "ops/s"), si(row.effective_ops_per_s, "ops/s")]
        if f.energy is not None:
            cells += ["-" if row.pj_per_update is None else f"{row.pj_per_update:g}",
                      joules(row.dense_pj_per_sample), joules(row.effective_pj_per_sample)]
        rows.append(cells)
    return headers, rows


def feasibility_text(feasibility: Feasibility) -> list[str]:
    """The feasibility section of the terminal table."""
    out = ["", "feasibility:"]
    pairs = feasibility_pairs(feasibility)
    width = max((len(label) for label, _ in pairs), default=0)
    out.extend(f"  {label.ljust(width)}  {value}" for label, value in pairs)
    out.append("")
    headers, rows = layer_feasibility_table(feasibility)
    if rows:
        out.extend("  " + line for line in _table(headers, rows, right=set(range(1, len(headers)))))
    out.extend(f"  assumption: {a}" for a in feasibility.assumptions)
    out.extend(f"  warning: {w}" for w in feasibility.warnings)
    return out


# ---------------------------------------------------------------- CSV

def _cell(value: object) -> object:
    """Machine-friendly: integers as digits, floats at full precision (shortest round-trip), None as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return value


CSV_COLUMNS = ["layer", "kind", "reset", "style", "neurons_per_sample", "time_steps", "cost_per_update",
               "cost_source", "dense_ops_per_sample", "effective_ops_per_sample", "effective_ops_run", "spikes_run",
               "membrane_updates_run", "firing_rate"]
CSV_FEASIBILITY_COLUMNS = ["dense_ops_per_s", "effective_ops_per_s", "pj_per_update", "dense_pj_per_sample",
                           "effective_pj_per_sample"]


def _comments(lines: Iterable[str]) -> str:
    return "".join(f"# {' '.join(line.split())}\n" for line in lines)


def format_csv(report: Report) -> str:
    """One row per layer and a totals row under one header row. Lines starting with '#' above the header carry the
    model, conventions, assumptions and warnings (pandas: read_csv(path, comment="#"))."""
    f = report.feasibility
    meta = [f"neuronops report, schema {SCHEMA}"]
    meta += [f"{label}: {value}" for label, value in summary_pairs(report)]
    meta += conventions(report)
    if f is not None:
        meta += [f"feasibility: {label}: {value}" for label, value in feasibility_pairs(f)]
        meta += [f"assumption: {a}" for a in f.assumptions]
        meta += [f"warning: {w}" for w in f.warnings]
    meta += [f"uncosted: {u.name}: {u.reason} [{u.location}]" for u in report.uncosted]
    meta += [f"warning: {w}" for w in report.warnings]
    meta += [f"note: {n}" for n in report.notes]
    columns = CSV_COLUMNS + (CSV_FEASIBILITY_COLUMNS if f is not None else [])
    if report.per == PER_STEP:  # one step's figures must not sit under a per-sample header (a comment is dropped)
        columns = [name.replace("_per_sample", "_per_step") for name in columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    by_name = {row.name: row for row in f.layers} if f is not None else {}
    for row in report.layers:
        cells = [row.name, row.kind, row.reset, row.style, row.neurons_per_sample, row.time_steps,
                 row.cost_per_update, row.cost_source, row.dense_ops, row.effective_ops, row.effective_ops_run,
                 row.spikes, row.membrane_updates, row.firing_rate]
        if f is not None:
            lf = by_name.get(row.name)
            cells += [lf.dense_ops_per_s, lf.effective_ops_per_s, lf.pj_per_update, lf.dense_pj_per_sample,
                      lf.effective_pj_per_sample] if lf else [None] * len(CSV_FEASIBILITY_COLUMNS)
        writer.writerow([_cell(c) for c in cells])
    totals = report.totals
    spikes = [row.spikes for row in report.layers if row.spikes is not None]
    updates = [row.membrane_updates for row in report.layers if row.membrane_updates is not None]
    total = ["total", None, None, report.style, sum(r.neurons_per_sample or 0 for r in report.layers),
             report.time_steps, None, None, totals.neuron_dense_ops, totals.effective_neuron_ops,
             totals.effective_neuron_ops_run, sum(spikes) if spikes else None, sum(updates) if updates else None,
             None]
    if f is not None:
        energy = f.energy
        total += [f.dense_ops_per_s, f.effective_ops_per_s, None,
                  energy.dense_pj_per_sample if energy else None, energy.effective_pj_per_sample if energy else None]
    writer.writerow([_cell(c) for c in total])
    return _comments(meta) + buffer.getvalue()


# ---------------------------------------------------------------- Markdown

def _md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    align = ["---:" if i in right else "---" for i in range(len(headers))]
    return ["| " + " | ".join(_md(h) for h in headers) + " |", "| " + " | ".join(align) + " |"] + [
        "| " + " | ".join(_md(c) for c in row) + " |" for row in rows]


REPORT_HEADERS = ["layer", "kind", "reset", "neurons/sample", "steps", "cost", "dense ops", "effective ops",
                  "spikes", "firing rate"]


def report_cells(report: Report) -> list[list[str]]:
    rows = [[
        row.name, row.kind or "?", row.reset or "?", _number(row.neurons_per_sample), _number(row.time_steps),
        _number(row.cost_per_update), _number(row.dense_ops), _number(row.effective_ops), _number(row.spikes),
        _rate(row.firing_rate),
    ] for row in report.layers]
    rows.append(["total", "", "", "", "", "", _number(report.totals.neuron_dense_ops),
                 _number(report.totals.effective_neuron_ops), "", ""])
    return rows


def format_markdown(report: Report) -> str:
    out = [f"# neuronops report: {_md(report.model)}", ""]
    out += _md_table(["", ""], [[label, value] for label, value in summary_pairs(report)], right=set())
    out += ["", "## Layers", ""]
    out += _md_table(REPORT_HEADERS, report_cells(report), right=set(range(3, 10)))
    f = report.feasibility
    if f is not None:
        out += ["", "## Feasibility", ""]
        out += _md_table(["", ""], [[label, value] for label, value in feasibility_pairs(f)], right=set())
        out += [""]
        headers, rows = layer_feasibility_table(f)
        if rows:
            out += _md_table(headers, rows, right=set(range(1, len(headers))))
        out += ["", "Assumptions:", ""] + [f"- {_md(a)}" for a in f.assumptions]
        if f.warnings:
            out += ["", "Feasibility warnings:", ""] + [f"- {_md(w)}" for w in f.warnings]
    if report.uncosted:
        out += ["", "## Uncosted layers (not in the totals)", ""]
        out += [f"- **{_md(u.name)}**: {_md(u.reason)} (at `{u.location}`)" for u in report.uncosted]
    if report.warnings:
        out += ["", "## Warnings", ""] + [f"- {_md(w)}" for w in report.warnings]
    if report.notes:
        out += ["", "## Notes", ""] + [f"- {_md(n)}" for n in report.notes]
    out += ["", "## Conventions", ""] + [f"- {_md(c)}" for c in conventions(report)]
    return "\n".join(out) + "\n"
