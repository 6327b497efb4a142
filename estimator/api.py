"""The Python API: load → graph → match → dense → replay → report, in one call.

    from estimator import estimate
    report = estimate("model.onnx", inputs="inputs.npz", convention="neurobench")
    report.totals.effective_neuron_ops
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import cache as analysis_cache
from .costs import CostTable, load_costs
from .errors import ArgumentError, InputError, ModelLoadError, NoNeuronLayersError, UncostedLayersError
from .inputs import InputsSource, RecordedInputs, read_inputs
from .layers import MatchResult
from .limits import Deadline, default_max_memory, parse_size
from .replay import Progress, ReplayCounts, ReplayPlan, check_inputs, replay
from .report import CONVENTIONS, Report, build_report

if TYPE_CHECKING:
    from .graph import ModelGraph
    from .load import LoadedModel

PathLike = str | os.PathLike[str]

LOOKED_FOR = (
    "a threshold compare H(U − θ) (Greater of Sub(U, θ) against a constant) on a membrane computed from data, "
    "either repeated over unrolled time steps or with the membrane as a graph input/output pair"
)


@dataclass(frozen=True)
class Analysis:
    """The static part: the graph and the neuron layers found in it, and what a replay needs (`plan`)."""

    path: str
    built_graph: ModelGraph | None  # None when the analysis was read from the cache (cache.py); see `graph`
    match: MatchResult
    warnings: tuple[str, ...] = ()  # what loading noticed (e.g. the ONNX checker's objection)
    plan: ReplayPlan | None = None  # with for_replay=True
    cache_slot: analysis_cache.Slot | None = None  # the model's analysis-cache entry, when the cache is on
    cacheable: bool = True  # False for a model with external data: its weights live in files the key does not cover

    @cached_property
    def graph(self) -> ModelGraph:
        """The model's graph (networkx view: `.nx`). An analysis read from the cache has none: it is built on first
        use, loading the model again (what the cache spared the estimate)."""
        if self.built_graph is not None:
            return self.built_graph
        from .graph import ModelGraph
        from .load import load_model

        return ModelGraph(load_model(self.path).model)


def analyse(model: PathLike, *, for_replay: bool = False, cache: bool = True) -> Analysis:
    """Load a model and find its neuron layers (no data needed). `for_replay` also makes the replay plan. Both are
    read from the analysis cache when this model file was analysed before, and stored there otherwise (unless
    `cache` is False; see cache.py): the match alone for a dense-only analysis, the whole plan for a replay."""
    from .kinds import kinds_spec

    # kinds registered from Python are code the cache key cannot cover: nothing is read or stored while there are any
    slot = analysis_cache.slot_for(Path(model)) if cache and kinds_spec() is None else None
    hit = analysis_cache.lookup(slot, for_replay) if slot is not None else None
    if hit is not None:
        return Analysis(str(model), None, hit.match, hit.warnings, hit.plan, slot)
    analysis = _analyse(model, for_replay)
    plan = analysis.plan
    if slot is None or not analysis.cacheable:
        return analysis
    stored = (analysis_cache.store(slot, plan, analysis.warnings) if plan is not None
              else analysis_cache.store_match(slot, analysis.match, analysis.warnings))
    return replace(analysis, cache_slot=slot) if stored else analysis


def _analyse(model: PathLike, for_replay: bool) -> Analysis:
    from .load import load_model
    from .replay import make_plan

    loaded = load_model(model)
    try:
        # folding a file's constants may divide by zero or overflow (a beta of 0 under a log): numpy's warnings on
        # stderr would mean nothing to the user (the value is then simply not a usable constant)
        with np.errstate(all="ignore"):
            graph, match = _graph_and_match(model, loaded)
    except ModelLoadError:
        raise
    except Exception as err:
        if loaded.checker_objection is None:  # a valid model that breaks the analysis is a bug: let it surface
            raise
        # an invalid model is analysed on trust (load.py); when that fails, the checker's reason is the answer
        raise ModelLoadError(f"{model}: cannot analyse the graph ({type(err).__name__}); "
                             f"{loaded.checker_objection}") from None
    if not match.layers:
        raise NoNeuronLayersError(f"{model}: no spiking neuron layer found; looked for {LOOKED_FOR}")
    # a model with external data is not cached: its weights live in other files, which the key does not cover
    plan = make_plan(graph, match, cacheable=not loaded.external_data) if for_replay else None
    return Analysis(str(model), graph, match, loaded.warnings, plan, cacheable=not loaded.external_data)


def _graph_and_match(model: PathLike, loaded: LoadedModel) -> tuple[ModelGraph, MatchResult]:
    from .graph import ModelGraph
    from .match import match_layers

    graph = ModelGraph(loaded.model)
    if graph.undecodable_name is not None:
        raise ModelLoadError(f"{model}: name {graph.undecodable_name!r} in the graph is not valid UTF-8; the file is "
                             "damaged, or was not written by an ONNX exporter")
    if graph.cycle_tensor is not None:  # ONNX graphs are acyclic; the matcher's walks assume it
        raise ModelLoadError(f"{model}: the graph has a cycle (through tensor {graph.cycle_tensor!r}); ONNX "
                             "graphs must be acyclic, loops belong in Loop or Scan nodes")
    return graph, match_layers(graph)


def estimate(
    model: PathLike,
    inputs: InputsSource | None = None,
    *,
    convention: str = "spikes",
    batch_size: int | None = None,
    time_axis: int = 1,
    steps: int | None = None,
    cost_tables: Sequence[PathLike] | PathLike = (),
    strict: bool = False,
    threads: int = 0,
    progress: Progress | None = None,
    allow_nonfinite: bool = False,
    max_memory: int | str | None = None,
    timeout: float | None = None,
    cache: bool = True,
) -> Report:
    """Neuron Dense Ops (always) and Effective Neuron Ops (with `inputs`), per layer and per sample.

    `inputs`: a `.npy` (memory-mapped) or `.npz` file, or arrays already in memory — one array for a model with one
    data input, or a dict of arrays by input name — laid out (batch, time, features…) unless `time_axis` says
    otherwise.

    Inputs holding NaN or ±Inf are refused unless `allow_nonfinite`. `max_memory` (bytes, or "2GB"; default half
    the RAM) bounds the replay: the batch is shrunk to fit or the replay refused (MemoryLimitError). `timeout`
    (seconds) bounds the whole estimate (TimeLimitError). With `inputs`, the static analysis is read from (and
    written to) the analysis cache unless `cache` is False (see cache.py): the figures are the same either way."""
    convention = convention_name(convention)
    cost_tables = cost_table_paths(cost_tables)
    if steps is not None and steps < 1:
        raise InputError(f"--steps must be at least 1, got {steps}")
    try:
        memory_limit = default_max_memory() if max_memory is None else parse_size(max_memory)
        deadline = Deadline(timeout)
    except ValueError as err:
        raise InputError(str(err)) from None
    table = load_costs(tuple(cost_tables))
    analysis = analyse(model, for_replay=inputs is not None, cache=cache)
    deadline.check("analysing the model")
    if inputs is None:
        return finish_report(str(model), analysis, table, convention, None, steps, strict, analysis.warnings)
    recorded = read_inputs(inputs, analysis.match.data_inputs, time_axis, max_bytes=memory_limit,
                           static=analysis.match.static_steps())
    return replay_report(str(model), analysis, recorded, table, convention=convention, steps=steps, strict=strict,
                         batch_size=batch_size, threads=threads, allow_nonfinite=allow_nonfinite,
                         max_memory=memory_limit, deadline=deadline, progress=progress)


def convention_name(convention: object) -> str:
    """The convention named in any case (as the CLI takes it), or an ArgumentError."""
    name = convention.lower() if isinstance(convention, str) else convention
    if name not in CONVENTIONS:
        raise ArgumentError(f"convention must be one of {', '.join(CONVENTIONS)}, not {convention!r}")
    return str(name)


def cost_table_paths(cost_tables: Sequence[PathLike] | PathLike) -> tuple[PathLike, ...]:
    """One path given alone is one table (iterating a string would read its characters as file names)."""
    if isinstance(cost_tables, (str, os.PathLike)):
        return (cost_tables,)
    return tuple(cost_tables)


def replay_report(shown_as: str, analysis: Analysis, recorded: RecordedInputs, table: CostTable, *, convention: str,
                  steps: int | None, strict: bool, batch_size: int | None, threads: int, allow_nonfinite: bool,
                  max_memory: int | None, deadline: Deadline, progress: Progress | None = None,
                  session: Any = None) -> Report:
    """The replay half of `estimate`: check the recorded inputs against the model, replay them, make the report.
    Also what a worker runs for a whole model (with its cached `session`)."""
    plan = analysis.plan
    if plan is None:
        raise ValueError("replay_report needs an analysis made with analyse(..., for_replay=True)")
    checked = check_inputs(plan, recorded, allow_nonfinite)
    deadline.check("checking the inputs")
    slot = analysis.cache_slot
    # a cached model without its onnxruntime-format copy yet: this replay saves one if it runs the model only a few
    # times, the case where loading dominates (see replay.open_session); the file is named only then
    named: list[str] = []

    def ort_path() -> str | None:
        path = analysis_cache.ort_temp_path(slot) if slot is not None else None
        named.extend([path] if path is not None else [])
        return path

    wants_ort = slot is not None and plan.ort_model is None and session is None
    try:
        counts = replay(plan, recorded, batch_size=batch_size, threads=threads,
                        progress=progress, check_finite=False, max_memory=max_memory, deadline=deadline,
                        session=session, save_ort=ort_path if wants_ort else None)
    finally:
        for path in named:
            assert slot is not None
            analysis_cache.store_ort(slot, path)  # moves or removes the temporary file
    return finish_report(shown_as, analysis, table, convention, counts, steps, strict,
                         analysis.warnings + checked.warnings, checked.notes)


def finish_report(model: str, analysis: Analysis, table: CostTable, convention: str, counts: ReplayCounts | None,
                  steps: int | None, strict: bool, warnings: tuple[str, ...] = (),
                  notes: tuple[str, ...] = ()) -> Report:
    """Counts (of one run, or merged shards of it) → the report; shared by `estimate` and the sharded runs."""
    warned, noted = list(warnings), list(notes)
    if counts is not None:
        if steps is not None and steps != counts.time_steps:
            warned.append(f"--steps {steps} ignored: the inputs have {counts.time_steps} time steps")
        warned.extend(w for w in counts.warnings if w not in warned)
        noted.extend(n for n in counts.notes if n not in noted)
    elif steps is not None:  # an unrolled export has its steps in the graph: --steps cannot change them
        fixed = sorted({layer.time_steps for layer in analysis.match.layers
                        if layer.time_steps is not None and layer.time_steps != steps})
        if fixed:
            warned.append(f"--steps {steps} ignored: the model is unrolled with {', '.join(map(str, fixed))} time "
                          "steps in the graph")
    report = build_report(model, analysis.match, table, convention, counts, steps, tuple(warned), tuple(noted))
    if strict and report.uncosted:
        first = report.uncosted[0]
        raise UncostedLayersError(
            f"{len(report.uncosted)} layer(s) could not be costed (--strict); first: {first.name}: {first.reason}"
        )
    return report
