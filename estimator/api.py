"""The Python API: load → graph → match → dense → replay → report, in one call.

    from estimator import estimate
    report = estimate("model.onnx", inputs="inputs.npz", convention="neurobench")
    report.totals.effective_neuron_ops
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from .costs import CostTable, load_costs
from .errors import NoNeuronLayersError, UncostedLayersError
from .graph import ModelGraph
from .inputs import read_inputs
from .load import load_model
from .match import MatchResult, match_layers
from .replay import Progress, ReplayCounts, replay
from .report import CONVENTIONS, Report, build_report

PathLike = str | os.PathLike[str]

LOOKED_FOR = (
    "a threshold compare H(U − θ) (Greater of Sub(U, θ) against a constant) on a membrane computed from data, "
    "either repeated over unrolled time steps or with the membrane as a graph input/output pair"
)


@dataclass(frozen=True)
class Analysis:
    """The static part: the graph and the neuron layers found in it."""

    path: str
    graph: ModelGraph
    match: MatchResult


def analyse(model: PathLike) -> Analysis:
    """Load a model and find its neuron layers (no data needed)."""
    loaded = load_model(model)
    graph = ModelGraph(loaded.model)
    match = match_layers(graph)
    if not match.layers:
        raise NoNeuronLayersError(f"{model}: no spiking neuron layer found; looked for {LOOKED_FOR}")
    return Analysis(str(model), graph, match)


def estimate(
    model: PathLike,
    inputs: PathLike | None = None,
    *,
    convention: str = "spikes",
    batch_size: int | None = None,
    time_axis: int = 1,
    steps: int | None = None,
    cost_tables: Sequence[PathLike] = (),
    strict: bool = False,
    threads: int = 0,
    progress: Progress | None = None,
) -> Report:
    """Neuron Dense Ops (always) and Effective Neuron Ops (with `inputs`), per layer and per sample."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {', '.join(CONVENTIONS)}")
    table = load_costs(tuple(cost_tables))
    analysis = analyse(model)
    counts = None
    if inputs is not None:
        recorded = read_inputs(inputs, analysis.match.data_inputs, time_axis)
        counts = replay(analysis.graph, analysis.match, recorded, batch_size=batch_size, threads=threads,
                        progress=progress)
    return finish_report(str(model), analysis, table, convention, counts, steps, strict)


def finish_report(model: str, analysis: Analysis, table: CostTable, convention: str, counts: ReplayCounts | None,
                  steps: int | None, strict: bool) -> Report:
    """Counts (of one run, or merged shards of it) → the report; shared by `estimate` and the sharded runs."""
    warnings: list[str] = []
    if counts is not None and steps is not None and steps != counts.time_steps:
        warnings.append(f"--steps {steps} ignored: the inputs have {counts.time_steps} time steps")
    report = build_report(model, analysis.match, table, convention, counts, steps, tuple(warnings))
    if strict and report.uncosted:
        first = report.uncosted[0]
        raise UncostedLayersError(
            f"{len(report.uncosted)} layer(s) could not be costed (--strict); first: {first.name}: {first.reason}"
        )
    return report
