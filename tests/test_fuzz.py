"""Fuzzing (hypothesis): mutated models, inputs and cost tables must give a report or one of the tool's own errors
(a NeuronopsError) — never another exception from the API, never a traceback or an undocumented exit code from the
CLI. The number of examples is bounded so the whole module stays well under a minute.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
from builders import leaky_stepwise, leaky_unrolled, random_net
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from onnx import TensorProto

from estimator import NeuronopsError, Report, estimate
from estimator.cli import main

STEPS, FEATURES = 4, 5
EXAMPLES = int(os.environ.get("NEURONOPS_FUZZ_SCALE", "1") or 1)  # raise for a longer fuzz run


def fuzz(examples: int) -> settings:
    return settings(deadline=None, max_examples=examples * EXAMPLES,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

_NET = random_net(np.random.default_rng(11), [FEATURES, 6, 3])
MODELS = {
    "stepwise": leaky_stepwise(_NET),
    "unrolled": leaky_unrolled(_NET, STEPS),
    "unrolled-dynamo": leaky_unrolled(_NET, STEPS, spelling="dynamo", batch=3),
}
SERIALIZED = {name: model.SerializeToString() for name, model in MODELS.items()}
DATA = (np.random.default_rng(12).random((3, STEPS, FEATURES)) < 0.5).astype(np.float32)
ELEM_TYPES = [t for t in TensorProto.DataType.values()] + [99]
EXIT_CODES = {0, 1, 2, 3}


@contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:  # not tmp_path: hypothesis runs many examples per test call
        yield Path(folder)


def outcome(*args, **kwargs) -> str:
    """Run the API; a report or a NeuronopsError is fine, anything else fails the test (hypothesis shrinks it)."""
    try:
        result = estimate(*args, **kwargs)
    except NeuronopsError as err:
        message = str(err)
        assert message and "\n" not in message and "Traceback" not in message
        event(type(err).__name__)  # shown by --hypothesis-show-statistics: what the examples ran into
        return type(err).__name__
    assert isinstance(result, Report)
    event("report")
    return "ok"


def cli(*args: object) -> None:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code in EXIT_CODES, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    if result.exit_code != 0:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


# --- model bytes ------------------------------------------------------------------------------------------------------
@st.composite
def mutated_bytes(draw: st.DrawFn) -> bytes:
    raw = bytearray(SERIALIZED[draw(st.sampled_from(sorted(SERIALIZED)))])
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["truncate", "flip", "insert", "delete"]))
        at = draw(st.integers(0, max(len(raw) - 1, 0)))
        if how == "truncate":
            del raw[at:]
        elif how == "flip" and raw:
            raw[at] ^= draw(st.integers(1, 255))
        elif how == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif raw:
            del raw[at:at + draw(st.integers(1, 16))]
    return bytes(raw)


@fuzz(60)
@given(raw=mutated_bytes(), replay=st.booleans())
def test_mutated_model_bytes(raw: bytes, replay: bool) -> None:
    with workdir() as folder:
        (folder / "model.onnx").write_bytes(raw)
        np.savez(folder / "inputs.npz", input=DATA)
        outcome(folder / "model.onnx", folder / "inputs.npz" if replay else None, steps=STEPS)


# --- model structure --------------------------------------------------------------------------------------------------
@st.composite
def mutated_model(draw: st.DrawFn) -> onnx.ModelProto:
    model = onnx.ModelProto()
    model.CopyFrom(MODELS[draw(st.sampled_from(sorted(MODELS)))])
    graph = model.graph
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["drop node", "rewire input", "dim", "elem type", "initializer", "attribute",
                                    "opset", "duplicate output"]))
        if how == "drop node" and len(graph.node) > 1:
            del graph.node[draw(st.integers(0, len(graph.node) - 1))]
        elif how == "rewire input" and graph.node:
            node = graph.node[draw(st.integers(0, len(graph.node) - 1))]
            if node.input:
                names = [o for n in graph.node for o in n.output] + [i.name for i in graph.input] + ["", "ghost"]
                node.input[draw(st.integers(0, len(node.input) - 1))] = draw(st.sampled_from(names))
        elif how == "dim":
            infos = list(graph.input) + list(graph.output)
            info = infos[draw(st.integers(0, len(infos) - 1))]
            dims = info.type.tensor_type.shape.dim
            if dims:
                dim = dims[draw(st.integers(0, len(dims) - 1))]
                value = draw(st.one_of(st.integers(-3, 10**13), st.sampled_from(["n", "batch", ""])))
                if isinstance(value, int):
                    dim.dim_value = value
                else:
                    dim.dim_param = value
        elif how == "elem type":
            infos = list(graph.input) + list(graph.output)
            infos[draw(st.integers(0, len(infos) - 1))].type.tensor_type.elem_type = draw(st.sampled_from(ELEM_TYPES))
        elif how == "initializer" and graph.initializer:
            tensor = graph.initializer[draw(st.integers(0, len(graph.initializer) - 1))]
            change = draw(st.sampled_from(["dims", "type", "data"]))
            if change == "dims":
                tensor.dims[:] = draw(st.lists(st.integers(-2, 10**9), max_size=3))
            elif change == "type":
                tensor.data_type = draw(st.sampled_from(ELEM_TYPES))
            else:
                tensor.raw_data = draw(st.binary(max_size=64))
        elif how == "attribute" and graph.node:
            node = graph.node[draw(st.integers(0, len(graph.node) - 1))]
            if node.attribute:
                attribute = node.attribute[0]
                if attribute.type == onnx.AttributeProto.INT:
                    attribute.i = draw(st.integers(-5, 50))
                else:
                    del node.attribute[0]
        elif how == "opset":
            model.opset_import[0].version = draw(st.integers(-1, 40))
        elif how == "duplicate output" and len(graph.node) > 1:
            graph.node[-1].output[0] = graph.node[0].output[0]
    return model


@fuzz(80)
@given(model=mutated_model(), replay=st.booleans())
def test_mutated_model_structure(model: onnx.ModelProto, replay: bool) -> None:
    with workdir() as folder:
        (folder / "model.onnx").write_bytes(model.SerializeToString())
        np.savez(folder / "inputs.npz", input=DATA)
        outcome(folder / "model.onnx", folder / "inputs.npz" if replay else None, steps=STEPS,
                max_memory="1GB", timeout=60)


# --- inputs -----------------------------------------------------------------------------------------------------------
DTYPES = ["f2", "f4", "f8", "i1", "i8", "u1", "u8", "?", "c8", "U3", "M8[s]", "V4"]


@st.composite
def input_arrays(draw: st.DrawFn) -> dict[str, np.ndarray]:
    arrays = {}
    for _ in range(draw(st.integers(1, 2))):
        name = draw(st.sampled_from(["input", "input", "input", "x", "lif1.mem"]))
        shape = tuple(draw(st.lists(st.integers(0, 6), min_size=0, max_size=4)))
        if draw(st.integers(0, 3)) > 0:  # mostly well-shaped, so that the checks past the shapes are reached too
            shape = (draw(st.integers(0, 4)), draw(st.sampled_from([STEPS, STEPS, 1, 7])), FEATURES)
        dtype = np.dtype(draw(st.sampled_from(["f4", "f4", *DTYPES])))
        values = np.random.default_rng(draw(st.integers(0, 2**16))).random(shape) * draw(
            st.sampled_from([1.0, 2.0, 1e6, 1e40]))
        if dtype.kind in "fc" and values.size and draw(st.booleans()):
            values.flat[draw(st.integers(0, values.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        with np.errstate(all="ignore"):
            arrays[name] = values.astype(dtype) if dtype.kind not in "UMV" else np.zeros(shape, dtype)
    return arrays


@fuzz(80)
@given(arrays=input_arrays(), style=st.sampled_from(sorted(MODELS)), time_axis=st.integers(-4, 4),
       allow_nonfinite=st.booleans(), batch_size=st.none() | st.integers(1, 5), npy=st.booleans())
def test_mutated_inputs(arrays, style, time_axis, allow_nonfinite, batch_size, npy) -> None:
    with workdir() as folder:
        onnx.save(MODELS[style], folder / "model.onnx")
        if npy:
            inputs = folder / "inputs.npy"
            np.save(inputs, next(iter(arrays.values())))
        else:
            inputs = folder / "inputs.npz"
            np.savez(inputs, **arrays)
        outcome(folder / "model.onnx", inputs, time_axis=time_axis, allow_nonfinite=allow_nonfinite,
                batch_size=batch_size, max_memory="1GB")


# --- cost tables ------------------------------------------------------------------------------------------------------
_KEYS = st.sampled_from(["leaky", "synaptic", "rleaky", "subtract", "zero", "none", "total", "split", "note",
                         "multiply", "add", "meta", "costs", "name", "izhikevich", "x"])
_SCALARS = st.one_of(st.integers(-3, 10**20), st.floats(allow_nan=True, allow_infinity=True),
                     st.text(max_size=5), st.booleans())
_WELL_FORMED = st.fixed_dictionaries({"costs": st.dictionaries(
    st.sampled_from(["leaky", "synaptic", "alpha", "rleaky", "lapicque", "izhikevich"]),
    st.dictionaries(st.sampled_from(["subtract", "zero", "none", "halve"]),
                    st.integers(-2, 10**30) | st.floats(0, 100) | st.fixed_dictionaries(
                        {"total": st.integers(-1, 20)},
                        optional={"split": st.dictionaries(st.sampled_from(["add", "multiply"]), st.integers(-1, 9)),
                                  "note": st.text(max_size=4)}), min_size=1, max_size=3), min_size=1, max_size=3)})
_TABLES = st.recursive(st.dictionaries(_KEYS, _SCALARS, max_size=3),
                       lambda children: st.dictionaries(_KEYS, children | _SCALARS, max_size=3), max_leaves=12)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value > 0 else "-inf") if abs(value) == float("inf") \
            else repr(value)
    if isinstance(value, str):
        return '"' + value.encode("unicode_escape").decode().replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return str(value)


@fuzz(40)
@given(table=_WELL_FORMED | st.dictionaries(_KEYS, _TABLES | _SCALARS, max_size=3),
       garble=st.none() | st.none() | st.binary(max_size=12))
def test_mutated_cost_tables(table: dict, garble: bytes | None) -> None:
    text = "\n".join(f"{key} = {_toml_value(value)}" for key, value in table.items()).encode()
    if garble is not None:
        text = text[: len(text) // 2] + garble + text[len(text) // 2:]
    with workdir() as folder:
        onnx.save(MODELS["stepwise"], folder / "model.onnx")
        (folder / "costs.toml").write_bytes(text)
        outcome(folder / "model.onnx", cost_tables=[folder / "costs.toml"], steps=STEPS)


# --- the CLI over all of it -------------------------------------------------------------------------------------------
@fuzz(40)
@given(raw=st.one_of(mutated_bytes(), mutated_model().map(lambda m: m.SerializeToString())),
       arrays=st.none() | input_arrays(), options=st.lists(st.sampled_from(
           [["--strict"], ["--format", "json"], ["--steps", "3"], ["--time-axis", "2"], ["--batch-size", "2"],
            ["--max-memory", "64MB"], ["--max-memory", "2kB"], ["--timeout", "30"], ["--allow-nonfinite"],
            ["--convention", "neurobench"], ["--max-memory", "-1"], ["--steps", "0"]]), max_size=3))
def test_cli_never_shows_a_traceback(raw: bytes, arrays, options) -> None:
    with workdir() as folder:
        (folder / "model.onnx").write_bytes(raw)
        args = ["estimate", folder / "model.onnx", "-o", folder / "report.out"]
        if arrays is not None:
            np.savez(folder / "inputs.npz", **arrays)
            args += ["--inputs", folder / "inputs.npz"]
        cli(*args, *[part for option in options for part in option])
        cli("layers", folder / "model.onnx")
        leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".report.out")]
        assert leftovers == []  # no temp file left behind, whatever happened
