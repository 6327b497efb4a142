"""Stage 6 — report: frozen results, one row per layer, built from the match, the cost table and the replay counts.

Nothing here formats text (see formats.py). Counts stay integers; per-sample figures are the run's integer totals
divided once by the number of samples, never averages of averages.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .costs import CostTable
from .dense import dense_ops, layer_cost
from .layers import MatchResult, printable
from .replay import ReplayCounts

if TYPE_CHECKING:  # feasibility.py imports this module
    from .feasibility import Feasibility

SCHEMA = "neuronops.report/1"
CONVENTIONS = ("spikes", "neurobench")
PER_STEP = "time step"  # Report.per of a stepwise model analysed without --steps or inputs: one step of one sample


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str | None
    reset: str | None
    style: str
    neurons_per_sample: int | None
    time_steps: int | None
    cost_per_update: int | None
    cost_source: str | None
    dense_ops: int | None  # per sample
    effective_ops: float | None  # per sample, in the report's convention
    effective_ops_run: int | None  # whole run (all samples): counts × cost, an exact integer
    spikes: int | None  # whole run
    membrane_updates: int | None  # whole run (NeuroBench's count)
    firing_rate: float | None  # spikes / (samples × neurons × steps)
    spikes_per_step: tuple[int, ...] | None = None
    cost_split: dict[str, int] = field(default_factory=dict)
    location: str = ""


@dataclass(frozen=True)
class Uncosted:
    name: str
    location: str
    reason: str


@dataclass(frozen=True)
class Totals:
    neuron_dense_ops: int | None  # per sample
    effective_neuron_ops: float | None  # per sample
    effective_neuron_ops_run: int | None  # whole run
    complete: bool  # False when some neuron-like layer is uncosted, or of unknown size (the totals leave it out)


@dataclass(frozen=True)
class Report:
    model: str
    convention: str
    style: str
    samples: int | None
    time_steps: int | None
    totals: Totals
    layers: tuple[LayerRow, ...]
    uncosted: tuple[Uncosted, ...]
    warnings: tuple[str, ...]
    notes: tuple[str, ...]
    cost_tables: tuple[str, ...]
    # each cost table file's SHA-256, in cost_tables' order (reports saved before it was recorded: empty)
    cost_table_sha256: tuple[str, ...] = ()
    per: str = "sample"  # what the dense and effective figures are per: "sample", or "time step" (see PER_STEP)
    feasibility: Feasibility | None = None  # step rate, budget and energy (estimator/feasibility.py), when asked

    def cost_table_labels(self) -> tuple[str, ...]:
        """Each cost table's name, with the start of its file's SHA-256 when recorded: enough to tell two files of
        one name apart, and to check a file against the report with `sha256sum`."""
        digests = self.cost_table_sha256 or ("",) * len(self.cost_tables)
        return tuple(f"{name} (sha256 {digest[:12]})" if digest else name
                     for name, digest in zip(self.cost_tables, digests, strict=True))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # the "feasibility" key appears only when one was assessed: reports without it keep their exact old form
        data.pop("feasibility")
        if self.feasibility is not None:
            data["feasibility"] = self.feasibility.to_dict()
        return _json_form({"schema": SCHEMA, **data})


def _json_form(value: Any) -> Any:
    """Tuples as lists, all the way down: to_dict() is the JSON form, equal to the CLI's JSON read back."""
    if isinstance(value, dict):
        return {key: _json_form(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_form(item) for item in value]
    return value


def _per_sample(run_total: int, samples: int) -> float:
    return run_total / samples  # int / int: correctly rounded in CPython, even past 2**53 (= float(Fraction(…)))


def build_report(
    model: str,
    match: MatchResult,
    table: CostTable,
    convention: str,
    counts: ReplayCounts | None = None,
    steps: int | None = None,
    warnings: tuple[str, ...] = (),
    extra_notes: tuple[str, ...] = (),
) -> Report:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    notes = list(match.notes) + list(extra_notes)
    warned = list(warnings)
    rows: list[LayerRow] = []
    uncosted: list[Uncosted] = []
    samples = counts.samples if counts else None
    # without a replay, an unrolled graph's own steps (when its layers agree) say more than --steps, which it ignores
    in_graph = {layer.time_steps for layer in match.layers if layer.time_steps is not None}
    time_steps = counts.time_steps if counts else next(iter(in_graph)) if len(in_graph) == 1 else steps
    per_step_dense = False
    for index, layer in enumerate(match.layers):
        layer_counts = counts.layers[index] if counts else None
        cost, reason = layer_cost(layer, table)
        if reason is not None:
            uncosted.append(Uncosted(layer.name, layer.location, printable(reason)))
        layer_steps = layer.time_steps if layer.time_steps is not None else time_steps
        per_step_dense |= layer_steps is None
        neurons = layer.neurons_per_sample
        if neurons is None and layer_counts is not None:
            neurons = layer_counts.neurons_per_sample
        effective: float | None = None
        effective_run: int | None = None
        firing: float | None = None
        if layer_counts is not None and samples:
            counted = layer_counts.spikes if convention == "spikes" else layer_counts.membrane_updates
            if cost is not None:
                effective_run = counted * cost.total
                effective = _per_sample(effective_run, samples)
            if neurons and layer_steps:
                firing = layer_counts.spikes / (samples * neurons * layer_steps)
        notes.extend(f"{layer.name}: {note}" for note in layer.notes)
        rows.append(LayerRow(
            name=layer.name,
            kind=layer.kind,
            reset=layer.reset,
            style=layer.style,
            neurons_per_sample=neurons,
            time_steps=layer_steps,
            cost_per_update=cost.total if cost else None,
            cost_source=cost.source if cost else None,
            dense_ops=dense_ops(neurons, layer_steps, cost),
            effective_ops=effective,
            effective_ops_run=effective_run,
            spikes=layer_counts.spikes if layer_counts else None,
            membrane_updates=layer_counts.membrane_updates if layer_counts else None,
            firing_rate=firing,
            spikes_per_step=layer_counts.spikes_per_step if layer_counts else None,
            cost_split=dict(cost.split) if cost else {},
            location=layer.location,
        ))
    costed = [row for row in rows if row.cost_per_update is not None]
    # a costed layer whose size no static shape gives (no replay measured it): never a silent 0 in the total
    unsized = [row.name for row in costed if row.dense_ops is None]
    sized = [row.dense_ops for row in costed if row.dense_ops is not None]
    dense_total = sum(sized) if sized else None
    effective_run_total = (
        sum(row.effective_ops_run for row in costed if row.effective_ops_run is not None)
        if counts and costed else None
    )
    effective_total = _per_sample(effective_run_total, samples) if effective_run_total is not None and samples else None
    if uncosted:
        warned.append(
            f"{len(uncosted)} neuron-like layer(s) could not be costed and are left out of the totals (see uncosted)"
        )
    if unsized:
        warned.append(f"{len(unsized)} layer(s) of unknown size left out of Neuron Dense Ops ({', '.join(unsized)}): "
                      "the graph gives no static shape for their neurons; --inputs measures them")
    if per_step_dense:
        warned.append("dense ops are per time step: pass --steps T or --inputs to cover a whole sequence")
    elsewhere = [row for row in costed if row.cost_source and row.cost_source != "neurobench"]
    if elsewhere:  # kinds NeuroBench cannot cost, or NeuroBench's own costs overridden by a user's table
        used = sorted({row.cost_source for row in elsewhere if row.cost_source})
        notes.append(f"costs not from NeuroBench's table: {', '.join(row.name for row in elsewhere)} "
                     f"(from {', '.join(used)})")
    return Report(
        model=model,
        convention=convention,
        style=match.style,
        samples=samples,
        time_steps=time_steps,
        totals=Totals(dense_total, effective_total, effective_run_total, complete=not uncosted and not unsized),
        layers=tuple(rows),
        uncosted=tuple(uncosted),
        warnings=tuple(map(printable, warned)),
        notes=tuple(map(printable, notes)),
        cost_tables=table.sources,
        cost_table_sha256=table.digests,
        # a stepwise model analysed without --steps or inputs: nothing says how many steps make a sample
        per=PER_STEP if per_step_dense else "sample",
    )
