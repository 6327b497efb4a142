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

import numpy as np
import onnx
from onnx import helper

from .errors import InputError, ReplayError
from .graph import ModelGraph
from .inputs import RecordedInputs, release
from .match import MatchResult

DEFAULT_BATCH_SIZE = 64
STEP_BLOCK = 16  # stepwise: steps whose outputs are held and then counted together


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


def _session(model: onnx.ModelProto, fetch: list[str], graph: ModelGraph, threads: int):
    import onnxruntime as ort  # imported here: keeps `neuronops layers` and --help fast

    present = {o.name for o in model.graph.output}
    extra = onnx.ModelProto()
    for name in dict.fromkeys(fetch):
        if name not in present:
            extra.graph.output.append(_value_info(graph, name, onnx.TensorProto.FLOAT))
    # Two serialised messages one after the other parse as one merged message (repeated fields appended): the model
    # with the extra outputs, without copying the model.
    exposed = model.SerializeToString() + extra.SerializeToString()
    options = ort.SessionOptions()
    options.log_severity_level = 3  # onnxruntime optimises the graph as it would for plain inference
    # Idle intra-op threads sleep instead of spinning: between runs this process counts (and a stepwise replay runs
    # thousands of small steps), and spinning threads would take the cores the counting needs (2× the wall time on
    # a 2-core machine). Results are unaffected.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(exposed, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ReplayError(f"onnxruntime cannot run this model: {message[:300]}") from None


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
    """The array in the input's dtype, C-contiguous (what onnxruntime takes without copying)."""
    elem = graph.elem_type(name)
    if elem:
        dtype = helper.tensor_dtype_to_np_dtype(elem)
        if array.dtype != dtype:
            return np.ascontiguousarray(array, dtype=dtype)
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
) -> ReplayCounts:
    """Count spikes and membrane updates per layer over the recorded samples (or `sample_range` = [start, stop) of
    them: shards of one dataset merge into exactly the counts of the whole)."""
    layers = [layer for layer in match.layers if layer.spikes and all(layer.spikes)]
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

    fetch: list[str] = []
    for layer in layers:
        fetch.extend(layer.membranes)
        fetch.extend(layer.spikes)
    state_fetch = [pair.output for pair in match.state_pairs] if stepwise else []
    fetch_names = list(dict.fromkeys(fetch + state_fetch))
    position = {name: i for i, name in enumerate(fetch_names)}
    session = _session(graph.model, fetch_names, graph, threads)

    spikes = [0] * len(layers)
    updates = [0] * len(layers)
    per_step = [[0] * steps for _ in layers]
    neurons = [0] * len(layers)
    # output positions per layer: every step's (unrolled) or the one computed (stepwise) membrane and spike
    membrane_at = [[position[name] for name in layer.membranes] for layer in layers]
    spike_at = [[position[name] for name in layer.spikes] for layer in layers]

    def count_block(i: int, membranes: list[np.ndarray], fired: list[np.ndarray], t0: int, real: int,
                    previous: np.ndarray | None) -> None:
        """Layer i over consecutive steps t0, t0+1, … of a batch; `previous` is the membrane of step t0 − 1 (None
        at t0 = 0). map() keeps thousands of small counts out of Python-level loops."""
        if real < len(membranes[0]):  # a zero-padded batch: only the real rows count
            membranes = [m[:real] for m in membranes]
            fired = [f[:real] for f in fired]
        counts = [int(n) for n in map(np.count_nonzero, fired)]
        spikes[i] += sum(counts)
        per_step[i][t0:t0 + len(counts)] = list(map(int.__add__, per_step[i][t0:t0 + len(counts)], counts))
        if previous is None:  # NeuroBench counts every neuron at the first step, then the membranes that changed
            neurons[i] = int(np.prod(membranes[0].shape[1:]))
            updates[i] += real * neurons[i]
            before, after = membranes[:-1], membranes[1:]
        else:
            before, after = [previous[:real]] + membranes[:-1], membranes
        updates[i] += int(sum(map(np.count_nonzero, map(np.not_equal, after, before))))

    def count_sequence(outputs: list[np.ndarray], real: int) -> None:
        """An unrolled batch: all its steps at once."""
        for i in range(len(layers)):
            count_block(i, [outputs[k] for k in membrane_at[i]], [outputs[k] for k in spike_at[i]], 0, real, None)

    state_at = [(pair.input, position[pair.output]) for pair in match.state_pairs] if stepwise else []
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
        if not stepwise:
            for name, chunk in batch.items():
                _check_shape(graph, name, chunk.shape, "the inputs batch")
            feeds = {name: _cast_for(graph, name, chunk) for name, chunk in batch.items()}
            count_sequence(_run(session, fetch_names, feeds), real)
        else:
            previous: list[np.ndarray | None] = [None] * len(layers)
            state = {}
            for pair in match.state_pairs:
                shape = graph.shape(pair.input) or graph.shape(pair.output)
                if shape is None or any(not isinstance(d, int) for d in shape[1:]):
                    raise InputError(f"state input {pair.input!r}: shape {shape} is not fully known; cannot start it")
                elem = graph.elem_type(pair.input) or onnx.TensorProto.FLOAT
                state[pair.input] = np.zeros((len(next(iter(batch.values()))),) + tuple(shape[1:]),
                                             dtype=helper.tensor_dtype_to_np_dtype(elem))
            by_step = {}  # time-major, cast once per batch: each step's feed is then a contiguous view
            for name, chunk in batch.items():
                _check_shape(graph, name, chunk[:, 0].shape, "one time step of the inputs")
                by_step[name] = _cast_for(graph, name, np.moveaxis(chunk, 1, 0))
            # steps are counted in blocks (memory bounded by the block, not by the number of steps)
            held: list[list[np.ndarray]] = []
            first_held = 0
            for t in range(steps):
                feeds = dict(state)
                for name, chunk in by_step.items():
                    feeds[name] = chunk[t]
                outputs = _run(session, fetch_names, feeds)
                held.append(outputs)
                for name, k in state_at:
                    state[name] = outputs[k]
                if len(held) == STEP_BLOCK or t == steps - 1:
                    for i in range(len(layers)):
                        membranes = [out[membrane_at[i][0]] for out in held]
                        count_block(i, membranes, [out[spike_at[i][0]] for out in held], first_held, real,
                                    previous[i])
                        previous[i] = membranes[-1]
                    held, first_held = [], t + 1
        for array in inputs.arrays.values():
            release(array)
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
