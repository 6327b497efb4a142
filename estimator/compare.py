"""Comparing saved reports side by side: which of these model variants fits the hardware?

Reads JSON reports (schema neuronops.report/1) written by `neuronops estimate --format json`, rebuilds each `Report`
and assesses its feasibility again (from the saved numbers, with the step rate, budget and energy table given here
or, failing that, those saved in the report). Computing only; formats_compare.py formats the result.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path
from typing import Any

from .errors import FeasibilityError, ReportFileError, require_file
from .feasibility import EnergyTable, Feasibility, assess, judge_budget
from .report import CONVENTIONS, SCHEMA, LayerRow, Report, Totals, Uncosted

PathLike = str | os.PathLike[str]


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where} is not an object")
    names = {f.name for f in fields(cls)}
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    absent = [name for name in required if name not in data]
    if absent:
        raise ValueError(f"{where} lacks {absent[0]!r}")
    return cls(**{k: v for k, v in data.items() if k in names})


def _digests(data: dict[str, Any]) -> tuple[str, ...]:
    """The cost tables' SHA-256s, when the report recorded one string per table (else none: names only)."""
    digests, names = data.get("cost_table_sha256"), data.get("cost_tables", [])
    if (isinstance(digests, list) and isinstance(names, list) and len(digests) == len(names)
            and all(isinstance(d, str) for d in digests)):
        return tuple(digests)
    return ()


# figures a report holds: counts and ops, never negative, never NaN (a hand-edited or damaged file is refused)
_FIGURES = ("samples", "time_steps", "neuron_dense_ops", "effective_neuron_ops", "effective_neuron_ops_run",
            "neurons_per_sample", "cost_per_update", "dense_ops", "effective_ops", "spikes", "membrane_updates")


def _check_figures(data: dict[str, Any], where: str) -> None:
    for key in _FIGURES:
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{where}{key} = {value!r} is not a count (a number ≥ 0)")


def report_from_dict(data: dict[str, Any]) -> Report:
    """A Report from its `to_dict()` form (without its feasibility section: that is recomputed)."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"not a neuronops report (schema {found!r}, expected {SCHEMA!r})")
    if "convention" not in data:
        raise ValueError("report lacks 'convention'")
    if data.get("convention") not in CONVENTIONS:
        raise ValueError(f"convention {data.get('convention')!r} is none of {', '.join(CONVENTIONS)}")
    for key in ("layers", "uncosted", "warnings", "notes"):
        if not isinstance(data.get(key, []), list):
            raise ValueError(f"{key!r} is not a list")
    for key in ("totals", "layers"):
        if key not in data:
            raise ValueError(f"report lacks {key!r}")
    if not isinstance(data.get("totals"), dict):
        raise ValueError("'totals' is not an object")
    _check_figures(data, "")
    _check_figures(data["totals"], "totals.")
    if data.get("samples") == 0:
        raise ValueError("samples = 0: a replay has at least one sample")
    layers = []
    for index, row in enumerate(data["layers"]):
        layer: LayerRow = _build(LayerRow, row, f"layers[{index}]")
        _check_figures(row, f"layers[{index}].")
        steps = layer.spikes_per_step
        layers.append(replace(layer, spikes_per_step=tuple(steps) if steps is not None else None,
                              cost_split=dict(layer.cost_split or {})))
    body = {k: v for k, v in data.items() if k not in ("schema", "feasibility")}
    body.update(
        totals=_build(Totals, data.get("totals"), "totals"),
        layers=tuple(layers),
        uncosted=tuple(_build(Uncosted, u, f"uncosted[{i}]") for i, u in enumerate(data.get("uncosted", []))),
        warnings=tuple(data.get("warnings", [])),
        notes=tuple(data.get("notes", [])),
        cost_tables=tuple(data.get("cost_tables", [])),
        cost_table_sha256=_digests(data),
    )
    report = _build(Report, body, "report")
    _check_totals(report)
    return report


def _check_totals(report: Report) -> None:
    """Totals are sums over the costed layers' rows: a file whose totals disagree was edited or damaged, and which of
    the two figures it shows would be a guess."""
    costed = [row for row in report.layers if row.cost_per_update is not None]
    checks = (("neuron_dense_ops", report.totals.neuron_dense_ops, [row.dense_ops for row in costed]),
              ("effective_neuron_ops_run", report.totals.effective_neuron_ops_run,
               [row.effective_ops_run for row in costed]))
    for key, total, parts in checks:
        if total is not None and parts and None not in parts and total != sum(parts):
            raise ValueError(f"totals.{key} = {total!r} is not the sum of its layers' figures ({sum(parts)!r}): "
                             "the report was edited or damaged")


@dataclass(frozen=True)
class SavedReport:
    """One JSON report file, and the feasibility settings it was saved with (if any)."""

    path: str
    report: Report
    step_rate: float | None = None
    budget: float | None = None
    basis: str | None = None
    energy: EnergyTable | None = None


def load_report(path: PathLike) -> SavedReport:
    file = Path(path)
    require_file(file, ReportFileError, "no such report file", "a JSON report (estimate --format json)")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except RecursionError:
        raise ReportFileError(f"{file}: not a neuronops report (nested too deeply to read)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportFileError(f"{file}: not a readable JSON report ({err})") from None
    try:
        report = report_from_dict(data)
        saved = data.get("feasibility") or {}
        budget = saved.get("budget") or {}
        energy = saved.get("energy") or {}
        return SavedReport(
            str(path), report, saved.get("step_rate_hz"), budget.get("ops_per_s"), budget.get("basis"),
            EnergyTable.from_dict(energy["table"]) if energy.get("table") else None,
        )
    except (TypeError, ValueError, AttributeError, KeyError) as err:
        raise ReportFileError(f"{file}: {err}") from None


@dataclass(frozen=True)
class Compared:
    """One model of a comparison: its saved report, reassessed."""

    label: str  # the report file as given
    report: Report
    feasibility: Feasibility | None
    neurons: int  # neurons per sample over all layers
    firing_rate: float | None  # all spikes / (samples × Σ neurons × steps) over layers with a known size
    reason: str | None = None  # why it has no verdict (no budget, nothing costed, …); None when it has one

    @property
    def verdict(self) -> str | None:
        budget = self.feasibility.budget if self.feasibility else None
        return budget.verdict if budget else None


@dataclass(frozen=True)
class Comparison:
    models: tuple[Compared, ...]
    basis: str | None  # the budget basis, when a budget was applied
    fits: tuple[str, ...]  # labels of models that fit their budget
    misses: tuple[str, ...]  # labels of models that do not
    unknown: tuple[str, ...]  # labels of every other model: no verdict (each Compared says why)
    best: tuple[str, ...]  # the feasible model(s) with the most headroom: all of them when tied
    warnings: tuple[str, ...]
    # what the verdicts differ in ("step rates", "budgets", "budget bases", "conventions", "costs per update")
    unlike: tuple[str, ...] = ()
    partial: tuple[str, ...] = ()  # feasible models whose totals leave uncosted layers out (optimistic verdicts)

    @property
    def ranking_caveat(self) -> str | None:
        """Why the "most headroom" ranking may mislead (None: the models were judged alike, on complete totals)."""
        reasons = []
        if self.unlike:
            reasons.append(f"judged with different {', '.join(self.unlike)}: see the warnings")
        if self.partial:
            reasons.append(f"optimistic for {', '.join(self.partial)}: uncosted layers are not counted")
        return "; ".join(reasons) or None

    @property
    def budgeted(self) -> bool:
        """Whether any model was judged against a budget."""
        return any(m.feasibility is not None and m.feasibility.budget is not None for m in self.models)

    @property
    def verdict(self) -> str | None:
        """The worst verdict: one model that does not fit, or cannot be judged, is enough to say so."""
        if not self.budgeted:
            return None
        return "not feasible" if self.misses else "unknown" if self.unknown else "feasible"


NO_BUDGET = "no budget (none given here, none saved in the report)"
NOTHING_COSTED = "no layer could be costed"


def _overall_firing(report: Report) -> float | None:
    spikes = slots = 0
    for row in report.layers:
        if row.spikes is None or not row.neurons_per_sample or not row.time_steps or not report.samples:
            continue
        spikes += row.spikes
        slots += report.samples * row.neurons_per_sample * row.time_steps
    return spikes / slots if slots else None


def _judged_on_dense(report: Report, rate: float | None, limit: float, table: EnergyTable | None) -> bool:
    try:
        assess(report, rate, limit, "dense", table)
    except FeasibilityError:
        return False
    return True


def _assess(item: SavedReport, rate: float | None, limit: float | None, basis: str,
            table: EnergyTable | None) -> tuple[Feasibility, str | None]:
    """Its feasibility, and why it has no verdict when a budget was asked for but cannot be judged."""
    try:
        feasibility = assess(item.report, rate, limit, basis, table)
    except FeasibilityError as err:
        # anything wrong with the settings themselves (not just this report's basis) is still an error
        if limit is None or basis != "effective" or not _judged_on_dense(item.report, rate, limit, table):
            raise FeasibilityError(f"{item.path}: {err}") from None
        # only the effective basis fails (no replay): this model gets no verdict, the others are still compared
        figures = assess(item.report, rate, None, basis, table)
        budget = judge_budget(limit, basis, {"dense": figures.dense_ops_per_s, "effective": None}, figures.complete)
        return replace(figures, budget=budget), str(err)
    if feasibility.budget is not None and feasibility.budget.feasible is None:
        return feasibility, NOTHING_COSTED
    return feasibility, None


def _differ(what: str, values: list[str], why: str) -> str | None:
    distinct = list(dict.fromkeys(values))
    return f"verdicts use different {what} ({', '.join(distinct)}): {why}" if len(distinct) > 1 else None


def compare(
    paths: Sequence[PathLike],
    step_rate: float | None = None,
    budget: float | None = None,
    basis: str | None = None,
    energy: EnergyTable | None = None,
) -> Comparison:
    """Load each saved report and assess it with these settings (each falls back to the report's own)."""
    saved = [load_report(p) for p in paths]
    models = []
    warnings: list[str] = []
    for item in saved:
        rate = step_rate if step_rate is not None else item.step_rate
        limit = budget if budget is not None else item.budget
        # a budget given here is judged on dense ops unless told otherwise; a saved budget keeps its saved basis
        use_basis = basis or (item.basis if budget is None else None) or "dense"
        table = energy if energy is not None else item.energy
        if limit is not None and rate is None:
            raise FeasibilityError(f"{item.path}: a budget needs a step rate: pass --step-rate")
        feasibility, reason = None, (NO_BUDGET if limit is None else None)
        if rate is not None or table is not None:
            feasibility, why = _assess(item, rate, limit, use_basis, table)
            reason = reason or why
        neurons = sum(row.neurons_per_sample or 0 for row in item.report.layers)
        models.append(Compared(item.path, item.report, feasibility, neurons, _overall_firing(item.report), reason))
    given: dict[Path, list[str]] = {}
    for item in saved:
        given.setdefault(Path(item.path).resolve(), []).append(item.path)
    warnings += [f"{' and '.join(dict.fromkeys(names))} {'is' if len(set(names)) == 1 else 'are'} the same file, "
                 f"given {len(names)} times: its figures are shown once per time" for names in given.values()
                 if len(names) > 1]
    conventions = sorted({m.report.convention for m in models if m.report.samples})
    if len(conventions) > 1:
        warnings.append(f"effective ops use different conventions ({', '.join(conventions)}): compare them with care")
    # What matters is the cost each report gave a kind and reset: tables are recorded by name only, and two files
    # with the same name (or different tables that agree) say nothing about it alone
    costs: dict[str, dict[int, list[str]]] = {}  # "kind/reset" → cost per update → the reports that used it
    for m in models:
        for row in m.report.layers:
            if row.kind is not None and row.cost_per_update is not None:
                labels = costs.setdefault(f"{row.kind}/{row.reset}", {}).setdefault(row.cost_per_update, [])
                if m.label not in labels:
                    labels.append(m.label)
    differing = []
    for key, by_cost in costs.items():
        if len(by_cost) > 1:
            listed = "; ".join(f"{cost} in {', '.join(labels)}" for cost, labels in sorted(by_cost.items()))
            differing.append(f"{key} layers cost a different number of operations per update in these reports "
                             f"({listed})")
    tables = None  # the tables' difference, when there is one: the cause of any cost that differs
    if len({m.report.cost_tables for m in models}) > 1:
        used = "; ".join(f"{m.label}: {', '.join(m.report.cost_tables) or 'none recorded'}" for m in models)
        tables = f"the reports were not all costed with the same cost tables ({used})"
    elif len({m.report.cost_table_sha256 for m in models if m.report.cost_table_sha256}) > 1:
        hashed = [m for m in models if m.report.cost_table_sha256]  # reports saved before digests: names only
        used = "; ".join(f"{m.label}: {', '.join(m.report.cost_table_labels())}" for m in hashed)
        tables = f"the reports' cost tables have the same names but not the same contents ({used})"
    if differing:  # one warning for one cause: the tables that differ, then the costs that differ with them
        warnings.append((f"{tables}, and " if tables else "") + "; ".join(differing)
                        + ": their ops are not comparable as they stand")
    elif tables:
        warnings.append(f"{tables}: the same layer may cost differently in each")
    judged = [(f, f.budget) for f in (m.feasibility for m in models) if f is not None and f.budget is not None]
    bases = sorted({b.basis for _, b in judged})
    # a ranking by headroom means something only when every model was judged the same way
    own = "each model is judged {} its own, so the ranking by headroom compares unlike things"
    unlike = {
        "step rates": _differ("step rates", [f"{f.step_rate_hz:g} Hz" for f, _ in judged], own.format("at")),
        "budgets": _differ("budgets", [f"{b.ops_per_s:.6g} ops/s" for _, b in judged], own.format("against")),
        "budget bases": _differ("budget bases", bases, own.format("on")),
    }
    warnings += [text for text in unlike.values() if text]
    # ...and only when their ops are alike: on effective ops, one convention; costs per update the same
    judged_conventions = {m.report.convention for m in models if m.report.samples and m.feasibility is not None
                          and m.feasibility.budget is not None and m.feasibility.budget.basis == "effective"}
    unlike["conventions"] = "conventions" if len(judged_conventions) > 1 else None
    unlike["costs per update"] = "costs per update" if differing else None
    fits = tuple(m.label for m in models if m.verdict == "feasible")
    misses = tuple(m.label for m in models if m.verdict == "not feasible")
    unknown = tuple(m.label for m in models if m.verdict not in ("feasible", "not feasible"))
    feasible = [m for m in models if m.verdict == "feasible"]

    def headroom(m: Compared) -> float:
        room = m.feasibility.budget.headroom  # type: ignore[union-attr]
        return float("inf") if room is None else room  # None: nothing needed at all

    most = max((headroom(m) for m in feasible), default=None)
    best = tuple(m.label for m in feasible if headroom(m) == most)
    partial = tuple(m.label for m in feasible if m.feasibility is not None and not m.feasibility.complete)
    return Comparison(tuple(models), bases[0] if len(bases) == 1 else None, fits, misses, unknown, best,
                      tuple(warnings), tuple(what for what, text in unlike.items() if text), partial)
