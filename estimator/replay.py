"""Stage 5 — replay: run the model in onnxruntime on recorded inputs and count spikes and membrane changes.

Every layer's per-step membrane and spike tensors are exposed as extra graph outputs. Unrolled models get whole
sequences batch by batch; stepwise models are driven one step at a time with zero initial state per batch, state
outputs fed back to state inputs — as NeuroBench's harness does. Counts are exact integers accumulated batch by
batch (memory does not grow with the number of samples); samples in a batch never interact, so the counts do not
depend on the batch size. A model whose graph fixes the batch size gets its last batch zero-padded and only the real
rows are counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper

from .errors import InputError, ReplayError
from .graph import ModelGraph
from .inputs import RecordedInputs
from .match import MatchResult

DEFAULT_BATCH_SIZE = 64


@dataclass(frozen=True)
class LayerCounts:
    """Integer counts over the whole run for one layer."""

    spikes: int
    membrane_updates: int  # NeuroBench's count: N per sample at step 0, then membranes that changed
    neurons_per_sample: int
    spikes_per_step: tuple[int, ...]


    def merge(self, other: LayerCounts) -> LayerCounts:
        return LayerCounts(
            self.spikes + other.spikes,
            self.membrane_updates + other.membrane_updates,
            self.neurons_per_sample or other.neurons_per_sample,
            tuple(a + b for a, b in zip(self.spikes_per_step, other.spikes_per_step, strict=True)),
        )


@dataclass(frozen=True)
class ReplayCounts:
    """Counts over a set of samples. Counts of disjoint sample sets add up exactly (`merge`)."""

    samples: int
    time_steps: int
    batch_size: int
    layers: tuple[LayerCounts | None, ...]  # aligned with MatchResult.layers; None where a layer has no spike tensor

    def merge(self, other: ReplayCounts) -> ReplayCounts:
        if self.time_steps != other.time_steps or len(self.layers) != len(other.layers):
            raise ValueError("cannot merge counts of different models or time lengths")
        layers = tuple(
            None if a is None or b is None else a.merge(b) for a, b in zip(self.layers, other.layers, strict=True)
        )
        return ReplayCounts(self.samples + other.samples, self.time_steps, self.batch_size, layers)


Progress = Callable[[int, int], None]  # (samples done, samples total)


def _value_info(graph: ModelGraph, name: str, fallback: int) -> onnx.ValueInfoProto:
    elem = graph.elem_type(name) or fallback
    return helper.make_tensor_value_info(name, elem, None)


def _session(model: onnx.ModelProto, fetch: list[str], graph: ModelGraph, threads: int,
             extra_nodes: list[onnx.NodeProto]):
    import onnxruntime as ort  # imported here: keeps `neuronops layers` and --help fast

    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    exposed.graph.node.extend(extra_nodes)
    present = {o.name for o in exposed.graph.output}
    for name in fetch:
        if name not in present:
            exposed.graph.output.append(_value_info(graph, name, onnx.TensorProto.FLOAT))
            present.add(name)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(exposed.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ReplayError(f"onnxruntime cannot run this model: {message[:300]}") from None


def _counted_layers(match: MatchResult) -> list:
    return [layer for layer in match.layers if layer.spikes and all(layer.spikes)]


def _fetch_names(match: MatchResult) -> list[str]:
    """The tensors a replay reads: every counted layer's membranes and spikes, and the state outputs of a stepwise
    model (fed back as the next step's state)."""
    fetch: list[str] = []
    for layer in _counted_layers(match):
        fetch.extend(layer.membranes)
        fetch.extend(layer.spikes)
    state_fetch = [pair.output for pair in match.state_pairs] if match.style == "stepwise" else []
    return list(dict.fromkeys(fetch + state_fetch))


def open_session(graph: ModelGraph, match: MatchResult, threads: int = 0) -> Any:
    """An onnxruntime session exposing what `replay` reads; reusable across replays of the same model."""
    extra_nodes = [node for layer in _counted_layers(match) for node in layer.extra_nodes]
    return _session(graph.model, _fetch_names(match), graph, threads, extra_nodes)


def _fixed_batch(graph: ModelGraph, names: tuple[str, ...]) -> int | None:
    for name in names:
        shape = graph.shape(name)
        if shape and isinstance(shape[0], int) and shape[0] > 0:
            return shape[0]
    return None


def _check_shape(graph: ModelGraph, name: str, given: tuple[int, ...], what: str) -> None:
    expected = graph.shape(name)
    if expected is None:
        return
    if len(expected) != len(given):
        raise InputError(
            f"input {name!r}: model expects {len(expected)} dims {_show(expected)}, {what} has shape {given}"
        )
    for axis, (want, have) in enumerate(zip(expected, given, strict=True)):
        if axis > 0 and isinstance(want, int) and want != have:
            raise InputError(f"input {name!r}: model expects shape {_show(expected)}, {what} has shape {given}")


def _show(shape: tuple) -> str:
    return "(" + ", ".join(str(d) if d is not None else "?" for d in shape) + ")"


def _cast_for(graph: ModelGraph, name: str, array: np.ndarray) -> np.ndarray:
    elem = graph.elem_type(name)
    if elem:
        dtype = helper.tensor_dtype_to_np_dtype(elem)
        if array.dtype != dtype:
            return array.astype(dtype)
    return np.ascontiguousarray(array)


def replay(
    graph: ModelGraph,
    match: MatchResult,
    inputs: RecordedInputs,
    batch_size: int | None = None,
    threads: int = 0,
    progress: Progress | None = None,
    check_finite: bool = True,
    sample_range: tuple[int, int] | None = None,
    session: Any = None,
) -> ReplayCounts:
    """Count spikes and membrane updates per layer over the recorded samples (or `sample_range` = [start, stop) of
    them: shards of one dataset merge into exactly the counts of the whole). `session` reuses one made by
    `open_session` for the same graph and match (worker processes keep one per model across shards)."""
    layers = _counted_layers(match)
    stepwise = match.style == "stepwise"
    first, last = sample_range if sample_range is not None else (0, inputs.samples)
    if not 0 <= first < last <= inputs.samples:
        raise InputError(f"sample range [{first}, {last}) is outside the {inputs.samples} recorded samples")
    samples, steps = last - first, inputs.time_steps
    for layer in layers:
        if layer.time_steps is not None and layer.time_steps != steps:
            raise InputError(
                f"layer {layer.name!r} is unrolled for {layer.time_steps} time steps in the graph, "
                f"the inputs have {steps} (time on axis 1 after --time-axis)"
            )
    fixed = _fixed_batch(graph, tuple(inputs.arrays))
    if batch_size is not None and batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    size = fixed or batch_size or DEFAULT_BATCH_SIZE
    size = min(size, samples) if fixed is None else size

    fetch_names = _fetch_names(match)
    position = {name: i for i, name in enumerate(fetch_names)}
    if session is None:
        session = open_session(graph, match, threads)

    spikes = [0] * len(layers)
    updates = [0] * len(layers)
    per_step = [[0] * steps for _ in layers]
    neurons = [0] * len(layers)

    def count_step(outputs: list[np.ndarray], t: int, real: int, previous: list[np.ndarray | None]) -> None:
        for i, layer in enumerate(layers):
            index = t if not stepwise else 0
            membrane = outputs[position[layer.membranes[index]]][:real]
            spike = outputs[position[layer.spikes[index]]][:real]
            fired = int(np.count_nonzero(spike))
            spikes[i] += fired
            per_step[i][t] += fired
            if t == 0:
                neurons[i] = int(np.prod(membrane.shape[1:]))
                updates[i] += real * neurons[i]  # NeuroBench counts every neuron at the first step
            else:
                updates[i] += int(np.count_nonzero(membrane != previous[i]))
            previous[i] = membrane

    done = 0
    for start in range(first, last, size):
        real = min(size, last - start)
        batch = {}
        for name, array in inputs.arrays.items():
            chunk = np.asarray(array[start:start + real])
            if check_finite and chunk.dtype.kind == "f" and not np.isfinite(chunk).all():
                bad = start + int(np.argwhere(~np.isfinite(chunk))[0][0])
                raise InputError(f"input {name!r}: sample {bad} holds NaN or ±Inf; clean the data first")
            if fixed and real < size:  # the graph fixes the batch: pad, count only the real rows
                pad = np.zeros((size - real,) + chunk.shape[1:], dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            batch[name] = chunk
        previous: list[np.ndarray | None] = [None] * len(layers)
        if not stepwise:
            for name, chunk in batch.items():
                _check_shape(graph, name, chunk.shape, "the inputs batch")
            feeds = {name: _cast_for(graph, name, chunk) for name, chunk in batch.items()}
            outputs = _run(session, fetch_names, feeds)
            for t in range(steps):
                count_step(outputs, t, real, previous)
        else:
            state = {}
            for pair in match.state_pairs:
                shape = graph.shape(pair.input) or graph.shape(pair.output)
                if shape is None or any(not isinstance(d, int) for d in shape[1:]):
                    raise InputError(f"state input {pair.input!r}: shape {shape} is not fully known; cannot start it")
                elem = graph.elem_type(pair.input) or onnx.TensorProto.FLOAT
                state[pair.input] = np.zeros((len(next(iter(batch.values()))),) + tuple(shape[1:]),
                                             dtype=helper.tensor_dtype_to_np_dtype(elem))
            for t in range(steps):
                feeds = dict(state)
                for name, chunk in batch.items():
                    step = chunk[:, t]
                    if t == 0:
                        _check_shape(graph, name, step.shape, "one time step of the inputs")
                    feeds[name] = _cast_for(graph, name, step)
                outputs = _run(session, fetch_names, feeds)
                count_step(outputs, t, real, previous)
                for pair in match.state_pairs:
                    state[pair.input] = outputs[position[pair.output]]
        done += real
        if progress is not None:
            progress(done, samples)

    by_layer = {id(layer): LayerCounts(spikes[i], updates[i], neurons[i], tuple(per_step[i]))
                for i, layer in enumerate(layers)}
    counts = tuple(by_layer.get(id(layer)) for layer in match.layers)
    return ReplayCounts(samples=samples, time_steps=steps, batch_size=size, layers=counts)


def _run(session, fetch_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    try:
        return session.run(fetch_names, feeds)
    except Exception as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ReplayError(f"onnxruntime failed during replay: {message[:300]}") from None
