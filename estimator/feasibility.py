"""Feasibility: what a report's neuron ops mean for hardware running the network in real time.

Given a step rate (time steps per second of real time) the per-sample figures become sustained neuron operations per
second; given a budget (ops/s the hardware can sustain) they become a headroom and a feasible / not feasible verdict;
given an energy table (picojoules per operation class, with its source) they become energy per sample and power.

Computing only: formats.py / formats_html.py turn the result into text. Every assumption made here is written into
`Feasibility.assumptions`, so that each report format carries it.

Energy table file format (TOML):
    [meta]
    name = "horowitz-45nm"
    source = "M. Horowitz, ISSCC 2014: 45 nm, 0.9 V, 32-bit float"   # required: where the figures come from
    notes = ["compare priced as an add"]                              # optional, reported as assumptions
    [pj_per_op]                                                       # operation class → picojoules per operation
    add = 0.9
    multiply = 3.7
    [unsplit]                                                         # optional: costs with no split into classes
    class = "multiply"                                                # are priced as this class …
    why = "an upper bound: the dearest class"                         # … for this stated reason
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from .costs import bundled_tables_dir
from .errors import EnergyTableError, FeasibilityError, require_file
from .report import LayerRow, Report

BASES = ("dense", "effective")
# Step rates and budgets: beyond these, derived figures (ops/s, headroom, shares) leave the range of a float
LOWEST_RATE, HIGHEST_RATE = 1e-9, 1e18
MAX_PJ_PER_OP = 1e12  # one joule per operation: any price above it is a typo, and would overflow the energy figures
PJ = Fraction(1, 10**12)  # joules per picojoule, exactly


@dataclass(frozen=True)
class EnergyTable:
    """Picojoules per operation, by operation class (the names used in cost tables' `split`)."""

    name: str
    source: str
    pj_per_op: dict[str, float]
    unsplit_class: str | None = None  # class assumed for every op of a cost that has no split
    unsplit_why: str = ""
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "pj_per_op": dict(self.pj_per_op),
                "unsplit_class": self.unsplit_class, "unsplit_why": self.unsplit_why, "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnergyTable:
        """The table as saved in a JSON report (see `to_dict`), re-validated."""
        return _validated(Path(str(data.get("name", "saved energy table"))), data.get("name"), data.get("source"),
                          data.get("pj_per_op"), data.get("unsplit_class"), data.get("unsplit_why", ""),
                          data.get("notes", []))


def _validated(path: Path, name: Any, source: Any, prices: Any, unsplit: Any, why: Any, notes: Any) -> EnergyTable:
    if not isinstance(source, str) or not source.strip():
        raise EnergyTableError(f"{path}: meta.source is required: name where the energy figures come from")
    if not isinstance(prices, dict) or not prices:
        raise EnergyTableError(f"{path}: no [pj_per_op] entries (operation class = picojoules per operation)")
    checked: dict[str, float] = {}
    for op, value in prices.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise EnergyTableError(f"{path}: pj_per_op.{op} = {value!r} is not a non-negative number of picojoules")
        if value > MAX_PJ_PER_OP:
            raise EnergyTableError(f"{path}: pj_per_op.{op} = {value!r} is more than {MAX_PJ_PER_OP:g} picojoules "
                                   "(one joule) per operation")
        checked[str(op)] = float(value)
    if unsplit is not None and unsplit not in checked:
        raise EnergyTableError(f"{path}: unsplit.class = {unsplit!r} has no price in [pj_per_op] "
                               f"(priced: {', '.join(sorted(checked))})")
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise EnergyTableError(f"{path}: meta.notes must be a list of strings")
    return EnergyTable(str(name) if name else path.stem, source.strip(), checked, unsplit, str(why or ""),
                       tuple(notes))


def parse_energy_table(path: Path, text: str) -> EnergyTable:
    """Validate an energy table's text; every error names the file and the key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise EnergyTableError(f"{path}: not valid TOML ({err})") from None
    unknown = set(data) - {"meta", "pj_per_op", "unsplit"}
    if unknown:
        raise EnergyTableError(f"{path}: unknown top-level key {sorted(unknown)[0]!r} "
                               "(expected [meta], [pj_per_op] and optionally [unsplit])")
    meta, unsplit = data.get("meta", {}), data.get("unsplit", {})
    if not isinstance(meta, dict) or not isinstance(unsplit, dict):
        raise EnergyTableError(f"{path}: [meta] and [unsplit] must be tables")
    extra = set(unsplit) - {"class", "why"}
    if extra:
        raise EnergyTableError(f"{path}: unsplit.{sorted(extra)[0]}: unknown field (expected class, why)")
    if unsplit and "class" not in unsplit:
        raise EnergyTableError(f"{path}: [unsplit] needs class = \"<operation class>\"")
    return _validated(path, meta.get("name"), meta.get("source"), data.get("pj_per_op"), unsplit.get("class"),
                      unsplit.get("why", ""), meta.get("notes", []))


def bundled_energy_tables() -> list[str]:
    """Names of the energy tables shipped with neuronops (cost_tables/energy-*.toml)."""
    return sorted(p.stem for p in bundled_tables_dir().glob("energy-*.toml"))


def read_energy_table(path: str | Path) -> EnergyTable:
    """A table file, or the name of a bundled one (`energy-45nm`)."""
    table_path = Path(path)
    if not table_path.is_file() and table_path.name == str(path):  # a bare name: look among the bundled tables
        bundled = bundled_tables_dir() / f"{table_path.name.removesuffix('.toml')}.toml"
        if bundled.is_file() and bundled.stem.startswith("energy-"):
            table_path = bundled
    if table_path.exists():
        require_file(table_path, EnergyTableError, "no such energy table file", "a TOML energy table")
    if not table_path.is_file():
        raise EnergyTableError(f"{table_path}: no such energy table file (bundled tables: "
                               f"{', '.join(bundled_energy_tables()) or 'none'})")
    try:
        text = table_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise EnergyTableError(f"{table_path}: cannot read ({err})") from None
    return parse_energy_table(table_path, text)


@dataclass(frozen=True)
class LayerFeasibility:
    name: str
    dense_ops_per_step: int | None  # neurons × cost: every neuron updated once per time step
    dense_ops_per_s: float | None
    effective_ops_per_s: float | None
    pj_per_update: float | None  # energy of one neuron update (None: not priced, see energy_note)
    op_classes: dict[str, int] = field(default_factory=dict)  # the split priced (assumed class when unsplit)
    dense_pj_per_sample: float | None = None
    effective_pj_per_sample: float | None = None
    energy_note: str = ""  # why this layer has no energy, or the assumption its energy rests on


@dataclass(frozen=True)
class Budget:
    ops_per_s: float
    basis: str  # "dense" or "effective": which needed figure the verdict compares with the budget
    needed_ops_per_s: float | None  # None: no layer could be costed, so there is nothing to judge
    spare_ops_per_s: float | None  # budget − needed (negative: short by that much)
    headroom: float | None  # budget / needed (None when nothing is needed or known)
    utilisation: float | None  # needed / budget
    feasible: bool | None  # None: unknown (no layer could be costed)
    complete: bool  # False: some layer is uncosted and its ops are not in `needed` (an optimistic verdict)
    other_basis: str | None = None  # the basis the verdict is not on, when its figure exists …
    other_needed_ops_per_s: float | None = None
    other_utilisation: float | None = None
    other_feasible: bool | None = None  # … and whether that figure would fit the budget

    @property
    def verdict(self) -> str:
        return "unknown" if self.feasible is None else "feasible" if self.feasible else "not feasible"


@dataclass(frozen=True)
class Energy:
    table: EnergyTable
    dense_pj_per_sample: float | None  # None when some layer's time steps are unknown
    effective_pj_per_sample: float | None  # None without a replay
    dense_pj_per_step: float | None
    effective_pj_per_step: float | None
    dense_watts: float | None  # at the step rate (None without one)
    effective_watts: float | None
    complete: bool  # False: some layers are not priced (uncosted, unsplit without an assumed class, unknown class)


@dataclass(frozen=True)
class Feasibility:
    step_rate_hz: float | None
    time_steps: int | None  # T: time steps per sample
    samples_per_s: float | None  # step rate / T: one sample stream in real time
    dense_ops_per_step: int | None  # Σ over costed layers of neurons × cost (None: no layer costed)
    dense_ops_per_s: float | None
    effective_ops_per_s: float | None
    complete: bool  # False: uncosted layers are missing from every figure here
    layers: tuple[LayerFeasibility, ...]
    budget: Budget | None
    energy: Energy | None
    assumptions: tuple[str, ...]
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        data = asdict(self)
        if self.energy is not None:
            data["energy"]["table"] = self.energy.table.to_dict()
        if self.budget is not None:
            data["budget"]["verdict"] = self.budget.verdict
        return data


def _positive(name: str, value: float | None) -> None:
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise FeasibilityError(f"{name} must be a positive number, got {value!r}")
    if value is not None and not LOWEST_RATE <= value <= HIGHEST_RATE:
        raise FeasibilityError(f"{name} must be between {LOWEST_RATE:g} and {HIGHEST_RATE:g}, got {value!r}")


def _classes(row: LayerRow, energy: EnergyTable) -> tuple[dict[str, int], str]:
    """The operation classes one update of this layer is priced by, and the assumption or reason to report."""
    if row.cost_split:
        missing = sorted(set(row.cost_split) - set(energy.pj_per_op))
        if missing:
            import difflib  # only here: a typo in a class name (compre, multipy) is the usual cause

            close = difflib.get_close_matches(missing[0], energy.pj_per_op, n=1)
            guess = f" (did you mean {close[0]!r}?)" if close else ""
            return {}, (f"not priced: no energy for operation class {missing[0]!r} in {energy.name}{guess}; it "
                        f"prices {', '.join(sorted(energy.pj_per_op))}")
        return dict(row.cost_split), ""
    assert row.cost_per_update is not None
    if energy.unsplit_class is None:
        return {}, (f"not priced: its cost ({row.cost_per_update}, from {row.cost_source}) is not split into "
                    f"operation classes and {energy.name} assumes no class for unsplit costs")
    return {energy.unsplit_class: row.cost_per_update}, (
        f"cost {row.cost_per_update} ({row.cost_source}) has no split: every op priced as "
        f"{energy.unsplit_class}" + (f" ({energy.unsplit_why})" if energy.unsplit_why else ""))


def _grouped(notes: Iterable[tuple[str, str]]) -> list[str]:
    """One line per distinct note, naming every layer it applies to (in layer order)."""
    layers: dict[str, list[str]] = {}
    for name, note in notes:
        layers.setdefault(note, []).append(name)
    return [f"{', '.join(names)}: {note}" for note, names in layers.items()]


def _float(value: Fraction | None) -> float | None:
    return None if value is None else float(value)


def _sequence_steps(report: Report) -> int | None:
    """T, time steps per sample: the replay's, or the graph's when every costed layer agrees on it."""
    if report.time_steps is not None:
        return report.time_steps
    steps = {row.time_steps for row in report.layers if row.cost_per_update is not None}
    return steps.pop() if len(steps) == 1 and None not in steps else None


def judge_budget(budget: float, basis: str, figures: dict[str, float | None], complete: bool) -> Budget:
    needed = figures[basis]
    other = "effective" if basis == "dense" else "dense"
    other_needed = figures[other]
    exact_budget = Fraction(budget)
    return Budget(
        ops_per_s=float(budget),
        basis=basis,
        needed_ops_per_s=needed,
        spare_ops_per_s=None if needed is None else float(exact_budget - Fraction(needed)),
        headroom=float(exact_budget / Fraction(needed)) if needed else None,
        utilisation=None if needed is None else float(Fraction(needed) / exact_budget),
        feasible=None if needed is None else needed <= budget,
        complete=complete,
        other_basis=other if other_needed is not None else None,
        other_needed_ops_per_s=other_needed,
        other_utilisation=None if other_needed is None else float(Fraction(other_needed) / exact_budget),
        other_feasible=None if other_needed is None else other_needed <= budget,
    )


def assess(
    report: Report,
    step_rate: float | None = None,
    budget: float | None = None,
    basis: str = "dense",
    energy: EnergyTable | None = None,
) -> Feasibility:
    """Sustained ops/s at `step_rate`, the verdict against `budget`, and energy from `energy`, for one report.

    One sample stream is processed in real time: a sample's T time steps take T / step_rate seconds.
    Figures are exact fractions until they are stored as floats.
    """
    _positive("step rate", step_rate)
    _positive("budget", budget)
    if basis not in BASES:
        raise FeasibilityError(f"budget basis must be one of {', '.join(BASES)}, got {basis!r}")
    if budget is not None and step_rate is None:
        raise FeasibilityError("a budget in ops/s needs a step rate (time steps per second)")
    replayed = bool(report.samples) and report.time_steps is not None
    if budget is not None and basis == "effective" and not replayed:
        raise FeasibilityError("budget basis 'effective' needs a replay (--inputs)")
    rate = Fraction(step_rate) if step_rate is not None else None
    steps = _sequence_steps(report)
    samples = report.samples or 0
    replay_steps = report.time_steps or 0
    assumptions: list[str] = []
    warnings: list[str] = []
    if not report.totals.complete:
        warnings.append(f"{len(report.uncosted)} uncosted layer(s) are left out of every figure here: "
                        "the real need is higher")
    rows: list[LayerFeasibility] = []
    dense_step_total = 0
    effective_step_total = Fraction(0)
    energy_dense_step = energy_effective_step = Fraction(0)
    energy_dense_sample: Fraction | None = Fraction(0)
    priced = 0
    costed = [row for row in report.layers if row.cost_per_update is not None and row.neurons_per_sample is not None]
    for row in costed:
        assert row.cost_per_update is not None and row.neurons_per_sample is not None
        dense_step = row.neurons_per_sample * row.cost_per_update
        dense_step_total += dense_step
        effective_step: Fraction | None = None
        if replayed and row.effective_ops_run is not None:
            effective_step = Fraction(row.effective_ops_run, samples * replay_steps)
            effective_step_total += effective_step
        pj = dense_pj = effective_pj = None
        classes: dict[str, int] = {}
        note = ""
        if energy is not None:
            classes, note = _classes(row, energy)
            if classes:
                priced += 1
                # exact arithmetic on the figures as written in the table (3.7 is 37/10, not the nearest binary
                # float): 288 × 3.7 pJ comes out as 1065.6, and sums do not depend on the order of the layers
                pj_fraction = sum((n * Fraction(repr(energy.pj_per_op[op])) for op, n in classes.items()),
                                  Fraction(0))
                pj = pj_fraction
                energy_dense_step += row.neurons_per_sample * pj_fraction
                if row.time_steps is not None and energy_dense_sample is not None:
                    dense_pj = row.neurons_per_sample * row.time_steps * pj_fraction
                    energy_dense_sample += dense_pj
                else:
                    energy_dense_sample = None
                if replayed and row.effective_ops_run is not None:
                    # counted updates over the whole run (a cost of 0 ops costs 0 pJ whatever was counted)
                    updates = Fraction(row.effective_ops_run, row.cost_per_update) if row.cost_per_update else 0
                    effective_pj = updates * pj_fraction / samples
                    energy_effective_step += effective_pj / replay_steps
        rows.append(LayerFeasibility(
            name=row.name,
            dense_ops_per_step=dense_step,
            dense_ops_per_s=_float(dense_step * rate) if rate is not None else None,
            effective_ops_per_s=_float(effective_step * rate) if rate is not None and effective_step is not None
            else None,
            pj_per_update=_float(pj),
            op_classes=classes,
            dense_pj_per_sample=_float(dense_pj),
            effective_pj_per_sample=_float(effective_pj),
            energy_note=note,
        ))

    any_costed = bool(costed)
    dense_per_s = _float(dense_step_total * rate) if rate is not None and any_costed else None
    effective_per_s = _float(effective_step_total * rate) if rate is not None and any_costed and replayed else None
    if rate is not None:
        if steps:
            assumptions.append(
                f"one sample stream processed in real time: a sample's {steps} time steps take {steps} / "
                f"{step_rate:g} Hz = {float(Fraction(steps) / rate):.6g} s, so ops/s = ops per sample / {steps} × "
                f"{step_rate:g} ({float(rate / steps):.6g} samples/s)")
        else:
            assumptions.append(f"ops/s = ops per time step × {step_rate:g} time steps/s (time steps per sample "
                               "unknown: pass --steps or --inputs for per-sample figures)")
        assumptions.append("dense ops/s: every neuron of every costed layer updated at every time step "
                           "(Σ neurons × cost per update × step rate)")
        if effective_per_s is not None:
            assumptions.append(f"effective ops/s: the average over the {report.samples} replayed sample(s), in the "
                               f"{report.convention} convention; other inputs give other figures")
    if not any_costed:
        warnings.append("no layer could be costed: there are no ops to report")
    budget_result = None
    if budget is not None:
        budget_result = judge_budget(budget, basis, {"dense": dense_per_s, "effective": effective_per_s},
                                report.totals.complete)
        assumptions.append(f"verdict: feasible when {basis} ops/s ≤ budget ({budget:.6g} ops/s); "
                           "headroom = budget / needed")
        if budget_result.feasible is None:
            warnings.append("no verdict: no layer could be costed")
        elif not report.totals.complete:
            warnings.append("the verdict is optimistic: uncosted layers are not counted against the budget")
    energy_result = None
    if energy is not None:
        known = priced > 0  # with nothing priced, every energy figure is unknown rather than 0 J
        effective_step_pj = energy_effective_step if known and replayed else None
        energy_result = Energy(
            table=energy,
            dense_pj_per_sample=_float(energy_dense_sample) if known else None,
            effective_pj_per_sample=_float(effective_step_pj * replay_steps) if effective_step_pj is not None
            else None,
            dense_pj_per_step=_float(energy_dense_step) if known else None,
            effective_pj_per_step=_float(effective_step_pj),
            dense_watts=float(energy_dense_step * rate * PJ) if rate is not None and known else None,
            effective_watts=float(effective_step_pj * rate * PJ)
            if rate is not None and effective_step_pj is not None else None,
            complete=report.totals.complete and priced == len(costed),
        )
        assumptions.append(f"energy = neuron-update operations × picojoules per operation from {energy.name} "
                           f"(source: {energy.source}); synaptic (weight) operations, memory traffic and static "
                           "power are not included")
        assumptions.extend(f"{energy.name}: {n}" for n in energy.notes)
        assumptions.extend(_grouped((r.name, r.energy_note) for r in rows if r.energy_note and r.op_classes))
        warnings.extend(_grouped((r.name, r.energy_note) for r in rows if r.energy_note and not r.op_classes))
        if not energy_result.complete:
            warnings.append("energy figures are incomplete: some layers are not priced")
    return Feasibility(
        step_rate_hz=float(step_rate) if step_rate is not None else None,
        time_steps=steps,
        samples_per_s=_float(rate / steps) if rate is not None and steps else None,
        dense_ops_per_step=dense_step_total if any_costed else None,
        dense_ops_per_s=dense_per_s,
        effective_ops_per_s=effective_per_s,
        complete=report.totals.complete,
        layers=tuple(rows),
        budget=budget_result,
        energy=energy_result,
        assumptions=tuple(assumptions),
        warnings=tuple(warnings),
    )
