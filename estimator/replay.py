"""Stage 5 — replay: run the model in onnxruntime on recorded inputs and count spikes and membrane changes.

Every layer's per-step membrane and spike tensors are exposed as extra graph outputs. Unrolled models get whole
sequences batch by batch; stepwise models are driven one step at a time with zero initial state per batch, state
outputs fed back to state inputs — as NeuroBench's harness does. Counts are exact integers accumulated batch by
batch (memory does not grow with the number of samples); samples in a batch never interact, so the counts do not
depend on the batch size. A model whose graph fixes the batch size gets its last batch zero-padded and only the real
rows are counted.

Before anything runs, `check_inputs` compares the recorded arrays with the model (shapes, dtypes, values: NaN and
±Inf are refused unless allowed) and `plan_batch` estimates the memory one sample needs, so that the batch is shrunk
to fit --max-memory, or the replay refused, before onnxruntime allocates anything.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError, MemoryLimitError, ReplayError
from .inputs import RecordedInputs, release
from .layers import Dim, MatchResult
from .limits import Deadline, format_size

if TYPE_CHECKING:  # building a plan needs the graph (and onnx); running one does not
    from .graph import ModelGraph

DEFAULT_BATCH_SIZE = 64
# onnxruntime's graph optimisations cost session set-up time in proportion to the graph's size and pay back a little
# in every run. An unrolled export is large (T copies of every step) and, for a typical dataset, run only a few times
# (once per batch): there set-up dominates. Measured on the benchmark's 3000-node fc and conv exports with 10 runs:
# 0.2-0.3 s less wall time without them; a stepwise export (T runs per batch) keeps them.
OPTIMIZE_FROM_RUNS = 50
STEP_BLOCK = 16  # stepwise: at most this many steps' outputs are held and then counted together,
HELD_BYTES = 2**19  # and fewer when their tensors would pass this many bytes (about a core's L2 cache; see replay)


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
    warnings: tuple[str, ...] = ()  # e.g. the batch was shrunk below an explicit --batch-size to fit --max-memory
    notes: tuple[str, ...] = ()

    def merge(self, other: ReplayCounts) -> ReplayCounts:
        if self.time_steps != other.time_steps or len(self.layers) != len(other.layers):
            raise ValueError("cannot merge counts of different models or time lengths")
        layers = tuple(
            None if a is None or b is None else a.merge(b) for a, b in zip(self.layers, other.layers, strict=True)
        )
        return ReplayCounts(self.samples + other.samples, self.time_steps, self.batch_size, layers,
                            tuple(dict.fromkeys(self.warnings + other.warnings)),
                            tuple(dict.fromkeys(self.notes + other.notes)))


Progress = Callable[[int, int], None]  # (samples done, samples total)

FLOAT = 1  # onnx.TensorProto.FLOAT
# ONNX element types numpy holds natively (onnx.TensorProto numbering); the others (bfloat16, float8…) are looked up
# through onnx's helper, which imports onnx: only models using them pay for it.
_NUMPY_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "object",
                 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 14: "complex64",
                 15: "complex128"}


def numpy_dtype(elem: int) -> np.dtype:
    """The numpy dtype of an ONNX element type; KeyError/TypeError/ValueError when numpy has none."""
    if elem in _NUMPY_DTYPES:
        return np.dtype(_NUMPY_DTYPES[elem])
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(elem))


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[Dim, ...] | None  # static shape (ints, symbolic names, None per unknown dim), None when unknown
    elem: int | None  # ONNX element type; None when unknown


@dataclass(frozen=True)
class ReplayPlan:
    """What a replay needs from the static analysis, as plain data: the match, the shapes and types of the tensors
    it feeds and reads, memory figures, and the model with the replay's extra outputs (serialised). Built by
    `make_plan`; cache.py stores it as JSON + .onnx (+ .ort), so that a replay of a cached model imports neither
    onnx nor the matcher."""

    match: MatchResult
    tensors: dict[str, TensorInfo]  # data inputs, state inputs and outputs, fetched tensors
    other_bytes_per_sample: int  # known per-sample bytes of every other intermediate tensor (memory estimate)
    model_size: int  # bytes of the model in memory
    session_model: bytes
    cacheable: bool = True  # False for a model with external data (the cache key covers the model file only)
    ort_model: bytes | None = None  # the same model in onnxruntime's own format, optimised: from the cache

    def shape(self, name: str) -> tuple[Dim, ...] | None:
        info = self.tensors.get(name)
        return info.shape if info is not None else None

    def elem_type(self, name: str) -> int | None:
        info = self.tensors.get(name)
        return info.elem if info is not None else None


def make_plan(graph: ModelGraph, match: MatchResult, cacheable: bool = True) -> ReplayPlan:
    """The replay plan of an analysed model (needs onnx: the extra outputs are added to the model here)."""
    import onnx

    fetch = _fetch_names(match)
    names = list(match.data_inputs) + [n for pair in match.state_pairs for n in (pair.input, pair.output)] + fetch
    tensors = {name: TensorInfo(graph.shape(name), graph.elem_type(name) or None) for name in dict.fromkeys(names)}
    other = _other_bytes(graph, set(fetch))
    model = graph.model
    present = {o.name for o in model.graph.output}
    extra = onnx.ModelProto()
    # replay-only nodes, appended after the model's own nodes: they read its tensors
    extra.graph.node.extend(node for layer in _counted_layers(match) for node in layer.extra_nodes)
    for name in fetch:
        if name not in present:  # what helper.make_tensor_value_info(name, type, None) makes, field by field
            output = extra.graph.output.add()
            output.name = name
            output.type.tensor_type.elem_type = tensors[name].elem or FLOAT
    # Two serialised messages one after the other parse as one merged message (repeated fields appended): the model
    # with the extra outputs, without copying the model.
    serialised = model.SerializeToString()
    return ReplayPlan(match, tensors, other, len(serialised), serialised + extra.SerializeToString(), cacheable)


def _other_bytes(graph: ModelGraph, fetched: set[str]) -> int:
    """Known per-sample bytes of the intermediate tensors a replay does not fetch (for the memory estimate). An
    unrolled export declares the same few types tens of thousands of times: each type is sized once, keyed by its
    serialised bytes (a 400-step, 8-layer export: 0.06 instead of 0.3 s)."""
    from .graph import read_shape  # here: graph imports onnx, which a replay served from the cache never needs

    size_of_type: dict[bytes, int] = {}
    total = 0
    for info in graph.model.graph.value_info:
        name = info.name
        if name in fetched:
            continue
        if name in graph.initializers:
            total += _sample_bytes(graph.shape(name), graph.elem_type(name)) or 0
            continue
        key = info.type.SerializeToString()
        size = size_of_type.get(key)
        if size is None:
            tensor_type = info.type.tensor_type  # empty for a sequence or map type: no shape, no bytes
            size = size_of_type[key] = _sample_bytes(read_shape(tensor_type), tensor_type.elem_type) or 0
        total += size
    return total


def _session(plan: ReplayPlan, threads: int, optimize: bool = True, save_ort: str | None = None):
    import onnxruntime as ort  # imported here: keeps `neuronops layers` and --help fast

    # The onnxruntime-format copy holds basic optimisations only, and onnxruntime cannot optimise such a copy further
    # when loading it. A stepwise graph is one step: optimising it fully takes milliseconds and pays back over its
    # thousands of runs (the benchmark's conv stepwise: 0.67 s of CPU instead of 0.82 with the copy), so a stepwise
    # replay of many runs does not use the copy. An unrolled graph is T steps: full optimisation costs 0.2–0.3 s on the
    # benchmark's 3000-node exports (seconds on larger ones) and pays back in some (conv: 8 ms a run) but not in
    # others (fc: none), and takes more memory; such a replay keeps the copy.
    if plan.ort_model is not None and not (optimize and plan.match.style == "stepwise"):
        try:
            session = _new_session(ort, plan.ort_model, threads, optimize, ort_format=True)
        except Exception:  # an onnxruntime that cannot read it after all: the ONNX model says the same
            session = None
        # Only a copy that asks for what the replay feeds: onnxruntime turns the constants it folded into inputs of
        # an old-IR (< 4) model's copy, which then cannot run. The ONNX model runs instead.
        fed = set(plan.match.data_inputs) | {pair.input for pair in plan.match.state_pairs}
        if session is not None and {given.name for given in session.get_inputs()} <= fed:
            return session
    if save_ort is not None and not optimize:
        try:
            return _new_session(ort, plan.session_model, threads, optimize, save_ort=save_ort)
        except ReplayError:  # saving the copy failed (folder gone, disk full…), or the model cannot run at all
            Path(save_ort).unlink(missing_ok=True)  # nothing half-written reaches the cache
    return _new_session(ort, plan.session_model, threads, optimize)


def _new_session(ort: Any, model: bytes, threads: int, optimize: bool, save_ort: str | None = None,
                 ort_format: bool = False) -> Any:
    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: its errors reach the user once, as our one-line message
    if ort_format:
        options.add_session_config_entry("session.load_model_format", "ORT")
    if not optimize and save_ort is not None:
        # For the analysis cache: the model in onnxruntime's own format, after the optimisations that do not depend
        # on the machine (basic level). A later replay loads it in about half the time of the ONNX model (0.1 vs
        # 0.2 s for the benchmark's 3000-node export) and runs it optimised.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = save_ort
        options.add_session_config_entry("session.save_model_format", "ORT")
    elif not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    # onnxruntime optimises the graph as it would for plain inference, unless it will run only a few times (see
    # OPTIMIZE_FROM_RUNS).
    if not _may_spin(threads):
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        if ort_format:
            raise
        raise ReplayError(f"onnxruntime cannot run this model: {ort_message(err)}; dense ops need no replay "
                          "(run without --inputs)") from None


def _may_spin(threads: int) -> bool:
    """Whether onnxruntime's idle intra-op threads may spin between runs (its default). Spinning makes the thousands
    of small runs of a stepwise replay 10–25 % faster on an idle machine (measured on the benchmark's exports), but
    spinning threads that compete for busy cores collapse (several times slower under load). So they spin only when
    the session sizes its own thread pool (threads 0: no batch worker or user has asked to share the machine) and the
    machine has a core to spare (1-minute load average under the number of cores)."""
    if threads:
        return False
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use (a container's share)
    except AttributeError:  # not on this platform (macOS, Windows)
        cores = os.cpu_count() or 1
    try:
        return os.getloadavg()[0] < cores
    except (AttributeError, OSError):  # no load average on this platform (Windows)
        return True


_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*")
_ORT_SOURCE = re.compile(r"/\S*onnxruntime\S*?:\d+\s+")


def ort_message(err: BaseException) -> str:
    """onnxruntime's message without its status prefix, C++ source location and function signature."""
    text = " ".join(str(err).split())
    text = _ORT_PREFIX.sub("", text)
    text = re.sub(r"^Load model from \S+ failed:\s*", "", text)
    found = _ORT_SOURCE.search(text)
    if found:  # "file.cc:46 void ns::f(const std::map<…>&, int) The message" → "The message"
        rest, depth, cut = text[found.end():], 0, None
        for i, char in enumerate(rest):
            depth += char == "("
            if char == ")":
                depth -= 1
                if depth == 0:
                    cut = i + 1
                    break
        text = text[:found.start()] + (rest[cut:].strip() if cut is not None else rest)
    text = text.strip().rstrip(".") or type(err).__name__
    if len(text) > 300:  # cut at a sentence end where there is one
        cut = text.rfind(". ", 0, 300)
        text = text[:cut] if cut > 100 else text[:300] + "…"
    return text


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


def open_session(plan: ReplayPlan, threads: int = 0, optimize: bool = True, save_ort: str | None = None) -> Any:
    """An onnxruntime session exposing what `replay` reads; reusable across replays of the same model. `optimize`
    False skips onnxruntime's graph optimisations (set-up time for a graph run only a few times); then `save_ort`
    (a file path) gets the model in onnxruntime's format, for the analysis cache."""
    return _session(plan, threads, optimize, save_ort)


def _batch_axis(plan: ReplayPlan, name: str) -> int:
    """Where the batch is in the model's own layout of a data input: 1 for an input the graph takes time first."""
    return 1 if name in plan.match.time_first_inputs else 0


def _as_fed(plan: ReplayPlan, name: str, array: np.ndarray) -> np.ndarray:
    """A (batch, time, …) array in the layout the model takes: time first for such an input (a contiguous copy),
    one step of an input every step reads whole."""
    if name in plan.match.static_inputs:
        return np.ascontiguousarray(array[:, 0])
    return np.ascontiguousarray(np.swapaxes(array, 0, 1)) if _batch_axis(plan, name) else array


def _fixed_batch(plan: ReplayPlan, names: tuple[str, ...]) -> int | None:
    for name in names:
        shape, axis = plan.shape(name), _batch_axis(plan, name)
        if shape and len(shape) > axis and isinstance(shape[axis], int) and shape[axis] > 0:
            return shape[axis]
    return None


def _check_shape(plan: ReplayPlan, name: str, given: tuple[int, ...], what: str) -> None:
    expected = plan.shape(name)
    if expected is None:
        return
    batch_axis = _batch_axis(plan, name)
    if batch_axis and len(given) > 1:  # compared in the model's layout
        given, what = (given[1], given[0], *given[2:]), f"{what} (time first, as the model takes it)"
    elif name in plan.match.static_inputs and len(given) > 1:  # one step: the model reads it whole at every step
        given = (given[0], *given[2:])
    if len(expected) != len(given):
        hint = ""
        if name in plan.match.static_inputs and len(given) == len(expected) + 1:
            hint = ("; the model reads this input whole at every time step (no time axis in its graph, as `for t in "
                    "range(T): fc(x)`): record one array per sample, (batch, features…), without a time axis")
        raise InputError(
            f"input {name!r}: model expects {len(expected)} dims {_show(expected)}, {what} has shape {given}{hint}"
        )
    for axis, (want, have) in enumerate(zip(expected, given, strict=True)):
        if axis != batch_axis and isinstance(want, int) and want != have:
            raise InputError(f"input {name!r}: model expects shape {_show(expected)}, {what} has shape {given}")


def _show(shape: tuple) -> str:
    return "(" + ", ".join(str(d) if d is not None else "?" for d in shape) + ")"


def _cast_for(plan: ReplayPlan, name: str, array: np.ndarray) -> np.ndarray:
    """The array in the input's dtype, C-contiguous (what onnxruntime takes without copying)."""
    elem = plan.elem_type(name)
    if elem:
        dtype = numpy_dtype(elem)
        if array.dtype != dtype:
            return np.ascontiguousarray(array, dtype=dtype)
    return np.ascontiguousarray(array)


# --- before the replay: the inputs against the model ----------------------------------------------------------------
SCAN_CHUNK_BYTES = 4 * 2**20  # values are scanned (and released) in slices this big: a flat peak in the file size


@dataclass(frozen=True)
class InputCheck:
    """What check_inputs found acceptable but worth saying: casts (notes) and lossy or non-finite data (warnings)."""

    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass
class _Scan:
    nonfinite: int = 0
    first_bad: int | None = None  # sample index of the first NaN/±Inf
    low: float | int | None = None  # over the finite values
    high: float | int | None = None


def _finite_sum(chunk: np.ndarray) -> bool:
    """A finite sum means every value is finite (NaN and ±Inf propagate): one pass and no mask, 3× faster than
    np.isfinite. A sum that overflows says nothing, and the caller counts exactly."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.add.reduce(chunk, axis=None)))


def _scan(array: np.ndarray, value_range: bool = True) -> _Scan:
    """Count NaN/±Inf and (if `value_range`: a cast needs it) find the range of the finite values, slice by slice."""
    found = _Scan()
    if array.ndim > 1 and array.strides[1] == 0:  # the same input at every step (a static input): one step holds all
        array = array[:, :1]
    row_bytes = max(1, array.itemsize * int(np.prod(array.shape[1:], dtype=object)))
    rows = max(1, SCAN_CHUNK_BYTES // row_bytes)
    for start in range(0, array.shape[0], rows):
        chunk = np.asarray(array[start:start + rows])
        if not value_range and (chunk.dtype.kind != "f" or _finite_sum(chunk)):
            release(array)
            continue
        if chunk.dtype.kind == "f":
            finite = np.isfinite(chunk)
            bad = chunk.size - int(np.count_nonzero(finite))
            if bad:
                found.nonfinite += bad
                if found.first_bad is None:
                    found.first_bad = start + int(np.argwhere(~finite)[0][0])
                chunk = chunk[finite]
        if chunk.size:
            low, high = chunk.min().item(), chunk.max().item()
            found.low = low if found.low is None else min(found.low, low)
            found.high = high if found.high is None else max(found.high, high)
        release(array)  # a memory-mapped file's pages read so far: keep the peak flat in the file's size
    return found


def _model_dtype(plan: ReplayPlan, name: str) -> np.dtype | None:
    elem = plan.elem_type(name)
    if not elem:
        return None
    try:
        return numpy_dtype(elem)
    except (KeyError, TypeError, ValueError):
        return np.dtype(object)  # a type numpy cannot hold: refused below


def _finfo(dtype: np.dtype) -> Any:
    """Float limits, also for the ONNX types numpy does not know itself (bfloat16, float8…: ml_dtypes, onnx's own
    dependency)."""
    try:
        return np.finfo(dtype)
    except (ValueError, TypeError):
        import ml_dtypes

        return ml_dtypes.finfo(dtype)


def _is_float(dtype: np.dtype) -> bool:
    try:
        _finfo(dtype)
    except (ValueError, TypeError, ImportError):
        return False
    return True


def _check_dtype(name: str, have: np.dtype, want: np.dtype, scan: _Scan) -> tuple[str | None, str | None]:
    """(warning, note) for feeding `have` values to a `want` input; InputError when the cast would change them."""
    what = f"input {name!r}: {have} values"
    # bfloat16 and the float8 types are floats numpy lacks (kind "V", or "f" without np.finfo)
    want_kind = "f" if want.kind not in "biuf" and _is_float(want) else want.kind
    if want_kind not in "biuf":
        raise InputError(f"input {name!r}: the model takes {want} tensors; only bool, integer and float inputs can "
                         "be replayed")
    if want_kind == "f":
        if have.kind == "f" and have.itemsize > want.itemsize:
            limit = float(_finfo(want).max)
            if scan.high is not None and max(abs(scan.low), abs(scan.high)) > limit:
                raise InputError(f"{what} up to {max(abs(scan.low), abs(scan.high)):.3g} overflow the model's "
                                 f"{want} input (largest {limit:.3g}); rescale the data")
            return None, f"{what} rounded to {want}, the model's input type"
        if have.kind in "iu":
            exact = 2 ** (_finfo(want).nmant + 1)
            if scan.high is not None and max(abs(int(scan.low)), abs(int(scan.high))) > exact:
                return (f"{what} above {exact} are not all exactly representable in the model's {want} input; "
                        "they were rounded"), None
        return None, f"{what} cast to {want}, the model's input type (exactly)"
    if have.kind == "f":
        raise InputError(f"{what} cannot be fed to the model's {want} input without truncating them; save "
                         f"{want} arrays")
    if want_kind == "b":
        if have.kind != "b" and scan.low is not None and (scan.low < 0 or scan.high > 1):
            raise InputError(f"{what} range over [{scan.low}, {scan.high}], the model's bool input takes 0 and 1")
        return None, f"{what} cast to bool, the model's input type (exactly)"
    info = np.iinfo(want)
    if scan.low is not None and (scan.low < info.min or scan.high > info.max):
        raise InputError(f"{what} range over [{scan.low}, {scan.high}], beyond the model's {want} input "
                         f"([{info.min}, {info.max}])")
    return None, f"{what} cast to {want}, the model's input type (exactly)"


def _set_aside(match: MatchResult, steps: int) -> list:
    """Uncosted layers of an unrolled graph read with another number of steps than the inputs have, while a costed
    layer's steps match them (a layer computing the whole sequence at once, beside Leaky layers unrolled over T): the
    replay runs the model and counts the others, not these."""
    if not any(layer.problem is None and layer.time_steps == steps for layer in match.layers):
        return []
    return [layer for layer in match.layers
            if layer.problem and layer.time_steps is not None and layer.time_steps != steps]


def _check_steps(match: MatchResult, steps: int, inputs: RecordedInputs | None = None) -> None:
    aside = _set_aside(match, steps)
    for layer in match.layers:
        if layer.spikes and layer.time_steps is not None and layer.time_steps != steps and layer not in aside:
            where, hint = "", ""
            if inputs is not None and inputs.file_shape is not None:
                shape, axis = inputs.file_shape, inputs.time_axis % len(inputs.file_shape)
                where = f" on axis {axis} of shape {shape}"
                other = [i for i, size in enumerate(shape) if size == layer.time_steps and i != axis]
                if other:  # the file's time steps are likely on another axis
                    hint = f"; if time is on axis {other[0]}, pass --time-axis {other[0]}"
            if layer.problem:  # the matcher could not follow the time loop through this layer: not the inputs' fault
                raise InputError(
                    f"layer {layer.name!r} was read as {layer.time_steps} time step(s) ({layer.problem}), the inputs "
                    f"have {steps}{where}: the matcher could not follow the time loop through this layer, so the "
                    "model cannot be replayed; `neuronops explain` shows the layer, and dense ops need no --inputs"
                )
            raise InputError(
                f"layer {layer.name!r} is unrolled for {layer.time_steps} time steps in the graph, "
                f"the inputs have {steps}{where}{hint}; {'else ' if hint else ''}record {layer.time_steps} steps or "
                "export the model stepwise"
            )


def check_inputs(plan: ReplayPlan, inputs: RecordedInputs, allow_nonfinite: bool = False) -> InputCheck:
    """Everything about the inputs that can be refused is refused here, before any replay runs: shapes against the
    model, time steps against an unrolled graph, dtypes that a cast would change, and NaN/±Inf (unless allowed)."""
    match = plan.match
    stepwise = match.style == "stepwise"
    _check_steps(match, inputs.time_steps, inputs)
    warnings: list[str] = []
    notes: list[str] = []
    if stepwise:  # nothing in a stepwise graph says how many steps a sample has: which axis is time is the data's word
        shape = inputs.file_shape or next(iter(inputs.arrays.values())).shape
        notes.append(f"stepwise model: the inputs' shape {_show(tuple(shape))} is read as {inputs.samples} samples × "
                     f"{inputs.time_steps} time steps (time on axis {inputs.time_axis}; --time-axis says where it is)")
    if inputs.unused:
        state = " (a stepwise model's state starts at 0 for every batch)" if stepwise else ""
        notes.append(f"{inputs.path}: array(s) {', '.join(map(repr, inputs.unused))} match no data input of the model "
                     f"and are not used{state}")
    for name, array in inputs.arrays.items():
        if stepwise:
            _check_shape(plan, name, (array.shape[0],) + array.shape[2:], "one time step of the inputs")
        else:
            _check_shape(plan, name, array.shape, "the inputs array")
        want = _model_dtype(plan, name)
        scan = _scan(array, value_range=want is not None and want != array.dtype)
        if scan.nonfinite and not allow_nonfinite:
            raise InputError(
                f"input {name!r}: {scan.nonfinite} NaN or ±Inf value(s), the first in sample {scan.first_bad}; "
                "clean the data, or pass --allow-nonfinite to replay them as they are"
            )
        if scan.nonfinite:
            warnings.append(f"input {name!r}: {scan.nonfinite} NaN or ±Inf value(s) replayed as they are "
                            "(--allow-nonfinite); a NaN membrane never spikes and counts as changed at every step")
        if want is not None and want != array.dtype:
            warning, note = _check_dtype(name, array.dtype, want, scan)
            warnings.extend([warning] if warning else [])
            notes.extend([note] if note else [])
    return InputCheck(tuple(warnings), tuple(notes))


# --- memory ----------------------------------------------------------------------------------------------------------
def _sample_bytes(shape: tuple[Dim, ...] | None, elem: int | None) -> int | None:
    """Bytes of one sample's slice of a tensor (batch axis dropped), from its static shape."""
    if not shape:
        return None
    count = 1
    for dim in shape[1:]:
        if not isinstance(dim, int) or dim < 0:
            return None
        count *= dim  # Python ints: a declared 10¹² neurons is just a big number, nothing allocated
    try:
        itemsize = numpy_dtype(elem).itemsize if elem else 4
    except (KeyError, TypeError, ValueError):
        itemsize = 4
    return count * itemsize


def memory_per_sample(plan: ReplayPlan, inputs: RecordedInputs, fetch: list[str], stepwise: bool,
                      measured: int | None = None) -> int | None:
    """Estimated bytes one sample of a batch needs: the exposed membrane/spike/state tensors (`measured` after a
    probe run, else from static shapes; stepwise: times the block of up to STEP_BLOCK steps held before counting,
    plus the step before it), every other intermediate tensor whose shape is known (onnxruntime may hold them; it
    often reuses memory, so this errs high), and the input slice with its cast copy. None when the exposed tensors'
    shapes are not static."""
    if measured is None:
        exposed = [_sample_bytes(plan.shape(name), plan.elem_type(name)) for name in fetch]
        if any(size is None for size in exposed):
            return None
        measured = sum(size for size in exposed if size is not None)
    total = measured * (min(STEP_BLOCK, inputs.time_steps) + 1 if stepwise else 1)
    total += plan.other_bytes_per_sample
    for array in inputs.arrays.values():
        total += 2 * array.itemsize * int(np.prod(array.shape[1:], dtype=object))
    return max(total, 1)


def _plan(per_sample: int, wanted: int, fixed: int | None, explicit: bool, budget: int, max_memory: int,
          steps: int | None, warnings: list[str], notes: list[str]) -> int:
    """The batch size that fits `budget` bytes; MemoryLimitError when not even the smallest allowed one does.
    `steps`: time steps replayed at once (unrolled), None when one step runs at a time (stepwise)."""
    fits = budget // per_sample
    limit = f"--max-memory {format_size(max_memory)}"
    if fits < 1:
        at_once = f"{steps} time steps at once" if steps is not None else "one time step"
        raise MemoryLimitError(
            f"one sample needs about {format_size(per_sample)} to replay ({at_once}), more than {limit} leaves; "
            f"raise --max-memory{' or record shorter sequences' if steps is not None else ''}"
        )
    if fixed is not None and fixed > fits:
        raise MemoryLimitError(
            f"the graph fixes the batch at {fixed} samples, about {format_size(per_sample * fixed)} to replay, "
            f"more than {limit} leaves; raise --max-memory or export with a dynamic batch axis"
        )
    if fixed is None and wanted > fits:
        message = (f"batch size lowered from {wanted} to {fits} to stay under {limit} (about "
                   f"{format_size(per_sample)} per sample); the counts do not depend on it")
        (warnings if explicit else notes).append(message)
        return fits
    return wanted


def replay(
    plan: ReplayPlan,
    inputs: RecordedInputs,
    batch_size: int | None = None,
    threads: int = 0,
    progress: Progress | None = None,
    check_finite: bool = True,
    sample_range: tuple[int, int] | None = None,
    session: Any = None,
    max_memory: int | None = None,
    deadline: Deadline | None = None,
    save_ort: Callable[[], str | None] | None = None,
) -> ReplayCounts:
    """Count spikes and membrane updates per layer over the recorded samples (or `sample_range` = [start, stop) of
    them: shards of one dataset merge into exactly the counts of the whole). `session` reuses one made by
    `open_session` for the same graph and match (worker processes keep one per model across shards).

    With `max_memory` (bytes) the batch is sized from an estimate of what one sample needs (a one-sample probe run
    when the graph's shapes do not say) and shrunk to fit, or the replay refused. With `deadline`, a run still going
    when it passes is stopped and TimeLimitError raised. `save_ort` names the file for open_session's `save_ort`;
    it is called only when the session is made without optimisations (a replay that runs the model a few times)."""
    match = plan.match
    aside = _set_aside(match, inputs.time_steps)
    layers = [layer for layer in _counted_layers(match) if layer not in aside]
    stepwise = match.style == "stepwise"
    deadline = deadline or Deadline(None)
    first, last = sample_range if sample_range is not None else (0, inputs.samples)
    if not 0 <= first < last <= inputs.samples:
        raise InputError(f"sample range [{first}, {last}) is outside the {inputs.samples} recorded samples")
    samples, steps = last - first, inputs.time_steps
    _check_steps(match, steps)
    fixed = _fixed_batch(plan, tuple(inputs.arrays))
    if batch_size is not None and batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    size = fixed or batch_size or DEFAULT_BATCH_SIZE
    size = min(size, samples) if fixed is None else size

    fetch_names = _fetch_names(match)
    position = {name: i for i, name in enumerate(fetch_names)}

    warnings: list[str] = []
    notes: list[str] = [f"{layer.name}: not replayed (read as {layer.time_steps} time step(s), the inputs have "
                        f"{steps}: see its uncosted reason); the other layers are counted" for layer in aside]
    if fixed is not None and batch_size is not None and batch_size != fixed:
        notes.append(f"--batch-size {batch_size} not used: the graph fixes the batch at {fixed} (the last batch is "
                     "padded, only its real samples counted)")
    budget = 0
    probing = False  # True while a one-sample batch measures what the graph's shapes do not say
    at_once = None if stepwise else steps
    wanted = size
    if max_memory is not None:
        model_bytes = 2 * plan.model_size  # our copy and onnxruntime's
        budget = max_memory - model_bytes
        if budget < 1:
            raise MemoryLimitError(f"the model alone takes about {format_size(model_bytes)} in memory, more than "
                                   f"--max-memory {format_size(max_memory)}; raise --max-memory")
        per_sample = memory_per_sample(plan, inputs, fetch_names, stepwise)
        if per_sample is not None:
            size = _plan(per_sample, size, fixed, batch_size is not None, budget, max_memory, at_once, warnings,
                         notes)
        elif fixed is None and size > 1:
            probing, size = True, 1

    deadline.check("preparing the replay")
    if session is None:
        runs = -(-samples // size) * (steps if stepwise else 1)
        optimize = runs >= OPTIMIZE_FROM_RUNS
        session = open_session(plan, threads, optimize=optimize,
                               save_ort=save_ort() if save_ort is not None and not optimize else None)

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
        counts = _nonzero_counts(fired)
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
    start = first
    with deadline.watch() as run_options:
        while start < last:
            doing = f"replaying ({done} of {samples} samples done)"
            deadline.check(doing)
            real = min(size, last - start)
            batch = {}
            for name, array in inputs.arrays.items():
                chunk = np.asarray(array[start:start + real])
                if (check_finite and chunk.dtype.kind == "f" and not _finite_sum(chunk)
                        and not np.isfinite(chunk).all()):  # (a sum can overflow: then the exact check decides)
                    bad = start + int(np.argwhere(~np.isfinite(chunk))[0][0])
                    raise InputError(f"input {name!r}: sample {bad} holds NaN or ±Inf; clean the data first")
                if (fixed or batch_size is not None) and real < size:
                    # the graph fixes the batch, or a tensor in it does (state baked in at the batch the user gave
                    # with --batch-size): pad, count only the real rows
                    pad = np.zeros((size - real,) + chunk.shape[1:], dtype=chunk.dtype)
                    chunk = np.concatenate([chunk, pad])
                batch[name] = chunk
            exposed_bytes = 0
            if not stepwise:
                for name, chunk in batch.items():
                    _check_shape(plan, name, chunk.shape, "the inputs batch")
                feeds = {name: _cast_for(plan, name, _as_fed(plan, name, chunk)) for name, chunk in batch.items()}
                outputs = _run(session, fetch_names, feeds, run_options, deadline, doing)
                exposed_bytes = sum(out.nbytes for out in outputs)
                count_sequence(outputs, real)
                del outputs, feeds  # freed before the next batch runs: one batch's tensors at a time, not two
            else:
                previous: list[np.ndarray | None] = [None] * len(layers)
                state = {}
                for pair in match.state_pairs:
                    shape = plan.shape(pair.input) or plan.shape(pair.output)
                    if shape is None or any(not isinstance(d, int) for d in shape[1:]):
                        raise InputError(
                            f"state input {pair.input!r}: shape {shape} is not fully known; cannot start it"
                        )
                    elem = plan.elem_type(pair.input) or FLOAT
                    state[pair.input] = np.zeros((len(next(iter(batch.values()))),) + tuple(shape[1:]),
                                                 dtype=numpy_dtype(elem))
                # cast once per batch (no copy when the dtype is already right); each step's feed is a strided view
                # that onnxruntime copies on its way in (cheaper than a time-major copy of the batch: measured)
                by_step = {}
                for name, chunk in batch.items():
                    _check_shape(plan, name, chunk[:, 0].shape, "one time step of the inputs")
                    by_step[name] = _cast_for(plan, name, chunk)
                # steps are counted in blocks (memory bounded by the block, not by the number of steps): up to
                # STEP_BLOCK steps (fewer map() calls) but no more than HELD_BYTES of outputs, which keeps what
                # onnxruntime writes next and what is counted in the CPU's cache (10 batches of the benchmark's
                # stepwise exports, best of 9: conv 0.78 → 0.60 s, counting each step; fc 0.29 → 0.26 s, 3 steps)
                held: list[list[np.ndarray]] = []
                first_held = 0
                block = STEP_BLOCK
                for t in range(steps):
                    feeds = dict(state)
                    for name, chunk in by_step.items():
                        feeds[name] = chunk[:, t]
                    outputs = _run(session, fetch_names, feeds, run_options, deadline, doing)
                    if probing:  # only the one-sample probe needs the sizes
                        exposed_bytes = max(exposed_bytes, sum(out.nbytes for out in outputs))
                    held.append(outputs)
                    for name, k in state_at:
                        state[name] = outputs[k]
                    if t == 0:
                        block = max(1, min(STEP_BLOCK, HELD_BYTES // max(1, sum(out.nbytes for out in outputs))))
                    if len(held) >= block or t == steps - 1:
                        for i in range(len(layers)):
                            membranes = [out[membrane_at[i][0]] for out in held]
                            count_block(i, membranes, [out[spike_at[i][0]] for out in held], first_held, real,
                                        previous[i])
                            previous[i] = membranes[-1]
                        held, first_held = [], t + 1
            if probing:  # one sample measured: size the other batches from it
                probing = False
                per_sample = memory_per_sample(plan, inputs, fetch_names, stepwise, measured=exposed_bytes)
                size = _plan(per_sample or 1, wanted, None, batch_size is not None, budget, max_memory or 0,
                             at_once, warnings, notes)
            for array in inputs.arrays.values():
                release(array)
            start += real
            done += real
            if progress is not None:
                progress(done, samples)

    by_layer = {id(layer): LayerCounts(spikes[i], updates[i], neurons[i], tuple(per_step[i]))
                for i, layer in enumerate(layers)}
    counts = tuple(by_layer.get(id(layer)) for layer in match.layers)
    return ReplayCounts(samples=samples, time_steps=steps, batch_size=size, layers=counts,
                        warnings=tuple(warnings), notes=tuple(notes))


def _nonzero_counts(arrays: list[np.ndarray]) -> list[int]:
    """np.count_nonzero of each array. A float array of a few thousand elements or more is compared with zero first:
    `x != 0` then counting booleans is faster than counting floats (1000 arrays of 100 × 1152 float32: 0.10–0.13 →
    0.08 s; slower below ≈ 1000 elements), and `x != 0` is true exactly where x is nonzero (NaN included, −0.0
    not), so the counts are the same."""
    if arrays and arrays[0].dtype.kind == "f" and arrays[0].size >= 4096:
        zero = arrays[0].dtype.type(0)
        return [int(np.count_nonzero(np.not_equal(array, zero))) for array in arrays]
    return [int(n) for n in map(np.count_nonzero, arrays)]


def _baked_batch(message: str, feeds: dict[str, np.ndarray]) -> int | None:
    """The batch of a tensor baked into the graph, from onnxruntime's "… broadcast … 50 by 64": the one of the two
    sizes that no fed array has (None when that is not clear)."""
    import re

    found = re.search(r"(\d+) by (\d+)", message)
    if found is None:
        return None
    fed = {dim for array in feeds.values() for dim in np.shape(array)[:2]}
    baked = {int(found.group(1)), int(found.group(2))} - fed - {1}
    return baked.pop() if len(baked) == 1 else None


def _run(session, fetch_names: list[str], feeds: dict[str, np.ndarray], run_options=None,
         deadline: Deadline | None = None, doing: str = "replaying") -> list[np.ndarray]:
    try:
        return session.run(fetch_names, feeds, run_options)
    except Exception as err:
        if run_options is not None and run_options.terminate:
            if deadline is not None and deadline.expired():
                raise deadline.error(doing) from None
            raise KeyboardInterrupt from None  # Ctrl-C stopped the call (limits._terminate_on_interrupt)
        message = ort_message(err)
        hint = ""
        if "broadcast" in message.lower():
            # the batch is dynamic, but a tensor the graph holds is not: typically a module run before the export,
            # whose state (the membrane or its reset flag of that run) the tracer baked in as a constant
            hint = ("; the graph holds a tensor of a fixed batch although its inputs' batch is dynamic (a network run "
                    "before the export keeps its last state, which the exporter writes as a constant): export from a "
                    "freshly built or reset network, or pass --batch-size with that tensor's batch")
            baked = _baked_batch(message, feeds)
            if baked is not None:
                hint += f" (--batch-size {baked})"
        raise ReplayError(f"onnxruntime failed during replay: {message}{hint}") from None
