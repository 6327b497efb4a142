"""A corpus of bad inputs, built here from the hand-built models of builders.py: each one must give its named error
class, a one-line message saying what is wrong, and its exit code — never a traceback, never a hang.

Every case runs twice: through the Python API (exact error class and message) and through the CLI (exit code, one
`error: …` line on stderr). The table in the README (Errors and exit codes) lists the same cases.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from builders import LeakyNet, _Builder, leaky_stepwise, leaky_unrolled, random_net
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from estimator import (
    CostTableError,
    InputError,
    ModelLoadError,
    NeuronopsError,
    NoNeuronLayersError,
    ReplayError,
    UncostedLayersError,
    analyse,
    estimate,
)
from estimator.cli import main, write_atomic
from estimator.errors import MemoryLimitError, OutputError, TimeLimitError
from estimator.replay import memory_per_sample

STEPS, FEATURES, SAMPLES = 5, 6, 7


# --- models built for the corpus -------------------------------------------------------------------------------------
def _net() -> LeakyNet:
    return random_net(np.random.default_rng(3), [FEATURES, 8, 4])


def _data(samples: int = SAMPLES, steps: int = STEPS, features: int = FEATURES) -> np.ndarray:
    return (np.random.default_rng(4).random((samples, steps, features)) < 0.4).astype(np.float32)


def _io(name: str, dims: list, elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, dims)


def _model(b: _Builder, inputs: list, outputs: list) -> onnx.ModelProto:
    graph = helper.make_graph(b.nodes, "corpus", inputs, outputs, b.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def stepwise_layer(width: int | str, make_current: Callable[[_Builder], str], inputs: list,
                   update: Callable[[_Builder, str, str], str] | None = None) -> onnx.ModelProto:
    """One stepwise Leaky layer (state `lif1.mem` of `width` neurons) fed by whatever `make_current` builds."""
    b = _Builder("torchscript")
    net = LeakyNet([np.zeros((1, 1), np.float32)])
    theta = b.init(1.0, "threshold")
    current = make_current(b)
    if update is None:
        new, spike = b.step(net, "lif1.mem", current, b.beta(net), theta)
    else:
        new = update(b, "lif1.mem", current)
        spike = b.flag(new, theta)
    b.nodes.append(helper.make_node("Identity", [new], ["lif1.mem.next"]))
    b.nodes.append(helper.make_node("Identity", [spike], ["output"]))
    return _model(b, inputs + [_io("lif1.mem", ["batch", width])],
                  [_io("output", ["batch", width]), _io("lif1.mem.next", ["batch", width])])


def huge_model(neurons: int) -> onnx.ModelProto:
    """A layer declaring `neurons` neurons, fed by one input feature broadcast to all of them (no huge weights)."""
    return stepwise_layer(neurons, lambda b: "input", [_io("input", ["batch", 1])])


def two_input_model() -> onnx.ModelProto:
    w = np.ones((FEATURES, 8), np.float32)
    return stepwise_layer(8, lambda b: b.synapse(b.op("Add", ["a", "b"]), w),
                          [_io("a", ["batch", FEATURES]), _io("b", ["batch", FEATURES])])


def int_input_model() -> onnx.ModelProto:
    w = np.ones((FEATURES, 8), np.float32)
    return stepwise_layer(8, lambda b: b.synapse(b.op("Cast", ["input"], to=TensorProto.FLOAT), w),
                          [_io("input", ["batch", FEATURES], TensorProto.INT64)])


def slow_model(width: int = 1024, depth: int = 400) -> onnx.ModelProto:
    """A long chain of (identity) MatMuls before the neurons: minutes per run on a batch of a few hundred."""
    def chain(b: _Builder) -> str:
        weight, x = b.init(np.eye(width, dtype=np.float32), "W"), "input"
        for _ in range(depth):
            x = b.op("MatMul", [x, weight])
        return x

    return stepwise_layer(width, chain, [_io("input", ["batch", width])])


def tanh_model() -> onnx.ModelProto:
    """A threshold layer whose update (tanh(U) + I) no registered kind reads: uncosted."""
    w = np.ones((FEATURES, 8), np.float32)
    return stepwise_layer(8, lambda b: b.synapse("input", w), [_io("input", ["batch", FEATURES])],
                          update=lambda b, mem, cur: b.op("Add", [b.op("Tanh", [mem]), cur]))


def relu_model() -> onnx.ModelProto:
    b = _Builder("torchscript")
    b.nodes.append(helper.make_node("Relu", ["input"], ["output"]))
    return _model(b, [_io("input", ["batch", FEATURES])], [_io("output", ["batch", FEATURES])])


def with_extra_node(model: onnx.ModelProto, node: onnx.NodeProto, opset: tuple[str, int] | None = None,
                    ) -> onnx.ModelProto:
    """`model` plus a node hanging off its output (and a graph output for it): the neurons are untouched."""
    changed = onnx.ModelProto()
    changed.CopyFrom(model)
    changed.graph.node.append(node)
    changed.graph.output.append(_io(node.output[0], ["batch", 4]))
    if opset:
        changed.opset_import.append(helper.make_opsetid(*opset))
    return changed


def save_external(model: onnx.ModelProto, folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "model.onnx"
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="model.onnx.data",
              size_threshold=0)
    return path


def set_external(path: Path, key: str, value: str) -> None:
    """Rewrite one external-data field of every tensor of the model at `path` (the data file is left alone)."""
    model = onnx.load(path, load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == key:
                entry.value = value
    onnx.save(model, path)


# --- the corpus ------------------------------------------------------------------------------------------------------
@dataclass
class Case:
    """A bad input: `build(tmp)` writes it and returns (model, inputs or None, extra CLI args, extra API kwargs)."""

    name: str
    build: Callable[[Path], tuple]
    error: type[NeuronopsError] | None  # None: only the CLI can meet it (usage errors)
    message: str
    exit_code: int = 1
    cli_args: list[str] = field(default_factory=list)


def _good(tmp: Path, style: str = "stepwise", inputs: np.ndarray | None = None) -> tuple[Path, Path]:
    model = leaky_stepwise(_net()) if style == "stepwise" else leaky_unrolled(_net(), STEPS)
    path = tmp / f"{style}.onnx"
    onnx.save(model, path)
    np.savez(tmp / "inputs.npz", input=_data() if inputs is None else inputs)
    return path, tmp / "inputs.npz"


def _write(tmp: Path, name: str, data: bytes) -> Path:
    (tmp / name).write_bytes(data)
    return tmp / name


def _model_file(tmp: Path, model: onnx.ModelProto, name: str = "model.onnx") -> Path:
    onnx.save(model, tmp / name)
    return tmp / name


def _inputs(tmp: Path, style: str = "stepwise", **arrays: np.ndarray) -> tuple[Path, Path]:
    model, _ = _good(tmp, style)
    np.savez(tmp / "bad.npz", **arrays)
    return model, tmp / "bad.npz"


def _npy(tmp: Path, array: np.ndarray, style: str = "stepwise", allow_pickle: bool = False) -> tuple[Path, Path]:
    model, _ = _good(tmp, style)
    np.save(tmp / "bad.npy", array, allow_pickle=allow_pickle)
    return model, tmp / "bad.npy"


def _with_nan(value: float) -> np.ndarray:
    data = _data()
    data[3, 2, 1] = value
    return data


def _cost_table(tmp: Path, text: str | bytes) -> tuple:
    model, _ = _good(tmp)
    path = tmp / "costs.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return model, None, ["--cost-table", str(path)], {"cost_tables": [path]}


def _truncated_model(tmp: Path) -> Path:
    raw = leaky_stepwise(_net()).SerializeToString()
    return _write(tmp, "model.onnx", raw[: len(raw) // 2])


def _tensor_as_model(tmp: Path) -> Path:
    return _write(tmp, "model.onnx", numpy_helper.from_array(np.ones((3, 3), np.float32), "w").SerializeToString())


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "model.onnx")
    return tmp / "model.onnx"


def _cyclic() -> onnx.ModelProto:
    model = leaky_stepwise(_net())
    synapse = next(node for node in model.graph.node if "input" in node.input)
    spikes = model.graph.node[-1].input[0]  # the last layer's spikes, fed to the output Identity
    synapse.input[list(synapse.input).index("input")] = spikes  # the first layer now reads the last: a loop
    return model


def _symbolic_features() -> onnx.ModelProto:
    """The input's feature size left symbolic: wrong-sized data gets past every check and fails inside the run."""
    model = leaky_stepwise(_net())
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "features"
    return model


def _self_loop() -> onnx.ModelProto:
    model = leaky_stepwise(_net())
    model.graph.node[0].input[1] = model.graph.node[0].output[0]
    return model


def _checker_failing(tmp: Path) -> onnx.ModelProto:
    model = leaky_stepwise(_net())
    model.graph.node[3].input[0] = "nowhere"  # an input no node produces: the ONNX checker refuses it
    return model


def _external(tmp: Path, key: str | None = None, value: str = "", truncate: bool = False,
              delete: bool = False) -> Path:
    path = save_external(leaky_stepwise(_net()), tmp / "ext")
    data = tmp / "ext" / "model.onnx.data"
    (tmp / "secret.bin").write_bytes(b"\0" * 10_000)  # what an escaping location would point at
    if truncate:
        data.write_bytes(data.read_bytes()[:100])
    if delete:
        data.unlink()
    if key is not None:
        set_external(path, key, value)
    return path


def _symlink_out(tmp: Path) -> Path:
    path = _external(tmp, "location", "link.data")
    (tmp / "ext" / "link.data").symlink_to(tmp / "secret.bin")
    return path


def _batch_norm_training(tmp: Path) -> tuple:
    model = with_extra_node(leaky_stepwise(_net()), helper.make_node(
        "BatchNormalization", ["output", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["normalised"],
        training_mode=1))
    for name, value in (("bn_scale", 1.0), ("bn_bias", 0.0), ("bn_mean", 0.0), ("bn_var", 1.0)):
        model.graph.initializer.append(numpy_helper.from_array(np.full(4, value, np.float32), name))
    model.opset_import[0].version = max(model.opset_import[0].version, 15)
    return _model_file(tmp, model), None, [], {}


def _without_parameters(tmp: Path) -> Path:
    """export_params=False: every initializer becomes a graph input, none stays in the file."""
    model = leaky_stepwise(_net())
    for tensor in model.graph.initializer:
        model.graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    del model.graph.initializer[:]
    return _model_file(tmp, model)


def _forged_npz(tmp: Path) -> tuple[Path, Path]:
    """A 1 kB .npz whose member's .npy header declares a (10^11, 15, 16) array: numpy tried to allocate 96 TB (an
    out-of-memory error that, in a batch, lost every other model's results)."""
    import io
    import zipfile

    from numpy.lib import format as npy_format

    member = io.BytesIO()
    npy_format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": (10**11, 15, 16)})
    member.write(b"\0" * 1000)
    path = tmp / "forged.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("input.npy", member.getvalue())
    return _good(tmp)[0], path


def _sparse_outside(tmp: Path) -> Path:
    """A sparse initializer whose values name a file by a path relative to the working folder: onnx's loader leaves
    it to onnxruntime, which opened it there, outside the model's folder."""
    model = leaky_stepwise(_net())
    values = helper.make_tensor("sparse", TensorProto.FLOAT, [2], [0.0, 0.0])
    values.ClearField("float_data")
    values.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "secret.bin"), ("offset", "0"), ("length", "8")):
        entry = values.external_data.add()
        entry.key, entry.value = key, value
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(
        values, helper.make_tensor("sparse_at", TensorProto.INT64, [2], [0, 1]), [4]))
    (tmp / "secret.bin").write_bytes(b"\0" * 64)
    (tmp / "model").mkdir()
    return _model_file(tmp / "model", model)


def _huge_with_inputs(tmp: Path) -> tuple:
    model = _model_file(tmp, huge_model(10**12))
    np.savez(tmp / "inputs.npz", input=np.ones((2, 3, 1), np.float32))
    return model, tmp / "inputs.npz", [], {}


M = ModelLoadError
CASES = [
    # model files
    Case("missing model", lambda t: (t / "absent.onnx", None, [], {}), M, "absent.onnx: no such file"),
    Case("directory", lambda t: (t, None, [], {}), M, "is a directory, expected an .onnx file"),
    Case("empty file", lambda t: (_write(t, "m.onnx", b""), None, [], {}), M, "file is empty"),
    Case("random bytes", lambda t: (_write(t, "m.onnx", np.random.default_rng(0).bytes(4096)), None, [], {}), M,
         "not a readable ONNX model"),
    Case("truncated protobuf", lambda t: (_truncated_model(t), None, [], {}), M,
         "not a readable ONNX model (truncated or not ONNX protobuf)"),
    Case("protobuf, not a model", lambda t: (_tensor_as_model(t), None, [], {}), M, "not a readable ONNX model"),
    Case("model without graph", lambda t: (_model_file(t, helper.make_model(helper.make_graph([], "g", [], []))),
                                           None, [], {}), M, "not an ONNX model (no graph or no nodes)"),
    Case("FIFO", lambda t: (_fifo(t), None, [], {}), M, "not a regular file"),
    Case("cyclic graph", lambda t: (_model_file(t, _cyclic()), None, [], {}), M,
         "the graph has a cycle (through tensor"),
    Case("node reading its own output", lambda t: (_model_file(t, _self_loop()), None, [], {}), M,
         "the graph has a cycle (through tensor"),  # found by the fuzz test: it hung the matcher
    Case("no neuron layer", lambda t: (_model_file(t, relu_model()), None, [], {}), NoNeuronLayersError,
         "no spiking neuron layer found"),
    Case("fails the checker, replayed", lambda t: (_model_file(t, _checker_failing(t)), _good(t)[1], [], {}),
         ReplayError, "onnxruntime cannot run this model: Invalid model. Node input 'nowhere'"),
    Case("custom-domain op, replayed",
         lambda t: (_model_file(t, with_extra_node(leaky_stepwise(_net()), helper.make_node(
             "Frobnicate", ["output"], ["odd"], domain="com.example"), ("com.example", 1))), _good(t)[1], [], {}),
         ReplayError, "com.example:Frobnicate(-1) is not a registered function/op; dense ops need no replay"),
    Case("fails only when run", lambda t: (_model_file(t, _symbolic_features()), _inputs(t, input=_data(features=5))[1],
                                           [], {}), ReplayError,
         "onnxruntime failed during replay: Non-zero status code returned while running"),
    Case("opset 99, replayed", lambda t: (_model_file(t, _opset(99)), _good(t)[1], [], {}), ReplayError,
         "Opset 99 is under development"),
    Case("external data missing", lambda t: (_external(t, delete=True), None, [], {}), M,
         "external data file 'model.onnx.data' is missing beside the model"),
    Case("external data truncated", lambda t: (_external(t, truncate=True), None, [], {}), M,
         "external data file 'model.onnx.data' is truncated"),
    Case("external data absolute", lambda t: (_external(t, "location", str(t / "secret.bin")), None, [], {}), M,
         "is not a relative path"),
    Case("external data ..", lambda t: (_external(t, "location", "../secret.bin"), None, [], {}), M,
         "points outside the model's folder"),
    Case("external data ../ inside a folder", lambda t: (_external(t, "location", "sub/../../secret.bin"), None,
                                                         [], {}), M, "points outside the model's folder"),
    Case("external data symlink out", lambda t: (_symlink_out(t), None, [], {}), M,
         "points outside the model's folder"),
    Case("sparse external data", lambda t: (_sparse_outside(t), None, [], {}), M,
         "sparse tensor 'sparse': its data is stored outside the model"),
    Case("external data bad offset", lambda t: (_external(t, "offset", "-5"), None, [], {}), M,
         "external data offset '-5' is not a byte count"),
    Case("external data wrong length", lambda t: (_external(t, "length", "3"), None, [], {}), M,
         "external data length 3 does not match its shape"),
    Case("external data NUL in location", lambda t: (_external(t, "location", "model.onnx.data\0x"), None, [], {}),
         M, "is not a relative path"),
    Case("external data name too long", lambda t: (_external(t, "location", "w" * 300 + ".bin"), None, [], {}), M,
         "cannot be read (File name too long)"),
    Case("model name too long", lambda t: (t / ("m" * 300 + ".onnx"), None, [], {}), M,
         "cannot read (File name too long)"),
    # inputs
    Case("missing inputs", lambda t: (_good(t)[0], t / "absent.npz", [], {}), InputError, "no such inputs file"),
    Case("inputs name too long", lambda t: (_good(t)[0], t / ("i" * 300 + ".npz"), [], {}), InputError,
         "cannot read (File name too long)"),
    Case("inputs not numpy", lambda t: (_good(t)[0], _write(t, "x.npz", b"time,value\n0,1\n"), [], {}), InputError,
         "not a .npy or .npz file"),
    Case("exported without parameters", lambda t: (_without_parameters(t), None, [], {}), M,
         "the model holds no parameters: its weights ("),
    Case("npz member declaring more than it holds", lambda t: (*_forged_npz(t), [], {}), InputError,
         "member 'input.npy' declares 96.0 TB of data but holds 1.1 kB: the file is damaged"),
    Case("truncated npz", lambda t: (_good(t)[0], _write(t, "x.npz", (_good(t)[1]).read_bytes()[:200]), [], {}),
         InputError, "not a readable .npy/.npz file"),
    Case("wrong names", lambda t: (*_inputs(t, x=_data(), y=_data()), [], {}), InputError,
         "no array for model input(s) 'input' (file has 'x', 'y'"),
    Case("one .npy for two inputs", lambda t: (_model_file(t, two_input_model()), _npy(t, _data())[1], [], {}),
         InputError, "bad.npy: holds one unnamed array, but the model has 2 data inputs ("),
    Case("wrong rank", lambda t: (*_inputs(t, input=_data()[..., None]), [], {}), InputError,
         "model expects 2 dims (batch, 6), one time step of the inputs has shape (7, 6, 1)"),
    Case("wrong size", lambda t: (*_inputs(t, input=_data(features=5)), [], {}), InputError,
         "model expects shape (batch, 6), one time step of the inputs has shape (7, 5)"),
    Case("wrong size, unrolled", lambda t: (*_inputs(t, "unrolled", input=_data(features=5)), [], {}), InputError,
         "model expects shape (batch, 5, 6), the inputs array has shape (7, 5, 5)"),
    Case("complex dtype", lambda t: (*_inputs(t, input=_data().astype(np.complex64)), [], {}), InputError,
         "dtype complex64 is not a real number type"),
    Case("string dtype", lambda t: (*_inputs(t, input=_data().astype(str)), [], {}), InputError,
         "is not a real number type"),
    Case("object npy", lambda t: (*_npy(t, np.array([[1, "a"]], dtype=object), allow_pickle=True), [], {}),
         InputError, "holds object (pickled) arrays, which are never loaded"),
    Case("float into int input", lambda t: (_model_file(t, int_input_model()), _good(t)[1], [], {}), InputError,
         "float32 values cannot be fed to the model's int64 input without truncating them"),
    Case("float64 overflow", lambda t: (*_inputs(t, input=_data().astype(np.float64) * 1e300), [], {}), InputError,
         "float64 values up to 1e+300 overflow the model's float32 input"),
    Case("NaN", lambda t: (*_inputs(t, input=_with_nan(np.nan)), [], {}), InputError,
         "input 'input': 1 NaN or ±Inf value(s), the first in sample 3; clean the data, or pass --allow-nonfinite"),
    Case("-Inf", lambda t: (*_inputs(t, "unrolled", input=_with_nan(-np.inf)), [], {}), InputError,
         "the first in sample 3"),
    Case("no samples", lambda t: (*_inputs(t, input=_data(samples=0)), [], {}), InputError,
         "shape (0, 5, 6) is empty (no samples or no time steps)"),
    Case("no time steps", lambda t: (*_inputs(t, input=_data(steps=0)), [], {}), InputError,
         "shape (7, 0, 6) is empty"),
    Case("no time axis", lambda t: (*_npy(t, np.ones(7, np.float32)), [], {}), InputError,
         "shape (7,) has no time axis"),
    Case("time axis out of range", lambda t: (*_good(t), ["--time-axis", "5"], {"time_axis": 5}), InputError,
         "--time-axis 5 does not exist in shape (7, 5, 6)"),
    Case("batch sizes disagree", lambda t: (_model_file(t, two_input_model()), _two_arrays(t, 6, STEPS), [], {}),
         InputError, "inputs 'a' and 'b' disagree on (samples, time): (7, 5) vs (6, 5)"),
    Case("time sizes disagree", lambda t: (_model_file(t, two_input_model()), _two_arrays(t, SAMPLES, 4), [], {}),
         InputError, "disagree on (samples, time): (7, 5) vs (7, 4)"),
    Case("steps vs unrolled graph", lambda t: (*_inputs(t, "unrolled", input=_data(steps=3)), [], {}), InputError,
         "layer 'leaky1' is unrolled for 5 time steps in the graph, the inputs have 3 on axis 1 of shape (7, 3, 6); "
         "record 5 steps or export the model stepwise"),
    Case("time first, not on axis 1", lambda t: (*_inputs(t, "unrolled", input=np.moveaxis(_data(), 1, 0)), [], {}),
         InputError, "the inputs have 7 on axis 1 of shape (5, 7, 6); if time is on axis 0, pass --time-axis 0; "
         "else record 5 steps"),
    Case("npz member not an array", lambda t: (_good(t)[0], _zip_with_text(t), [], {}), InputError,
         "member 'notes.txt' is not a numpy array"),
    Case("npz over --max-memory", lambda t: (*_good(t), ["--max-memory", "100"], {"max_memory": 100}), InputError,
         "once unpacked, more than --max-memory 100 B"),
    # cost tables
    Case("cost table missing", lambda t: (_good(t)[0], None, ["--cost-table", str(t / "no.toml")],
                                          {"cost_tables": [t / "no.toml"]}), CostTableError,
         "no such cost table file"),
    Case("cost table not TOML", lambda t: _cost_table(t, "[costs.leaky\nsubtract = 4"), CostTableError,
         "not valid TOML"),
    Case("cost table binary", lambda t: _cost_table(t, b"\xff\xfe\x00garbage"), CostTableError, "cannot read"),
    Case("cost table empty", lambda t: _cost_table(t, ""), CostTableError, "no [costs.<kind>] entries"),
    Case("unknown kind", lambda t: _cost_table(t, "[costs.izhikevich]\nsubtract = 4"), CostTableError,
         "costs.izhikevich: unknown neuron kind"),
    Case("unknown reset", lambda t: _cost_table(t, "[costs.leaky]\nhalve = 4"), CostTableError,
         "costs.leaky.halve: unknown reset"),
    Case("negative cost", lambda t: _cost_table(t, "[costs.leaky]\nsubtract = -1"), CostTableError,
         "costs.leaky.subtract = -1 is negative"),
    Case("fractional cost", lambda t: _cost_table(t, "[costs.leaky]\nsubtract = 4.5"), CostTableError,
         "costs.leaky.subtract = 4.5 is not a whole number of operations"),
    Case("text cost", lambda t: _cost_table(t, '[costs.leaky]\nsubtract = "four"'), CostTableError,
         "costs.leaky.subtract = 'four' is not a number"),
    Case("boolean cost", lambda t: _cost_table(t, "[costs.leaky]\nsubtract = true"), CostTableError,
         "is not a number"),
    Case("infinite cost", lambda t: _cost_table(t, "[costs.leaky]\nsubtract = inf"), CostTableError,
         "is not a whole number"),
    Case("split does not add up", lambda t: _cost_table(
        t, "[costs.leaky.subtract]\ntotal = 4\nsplit = { add = 1, multiply = 1 }"), CostTableError,
         "costs.leaky.subtract.split adds up to 2, but total is 4"),
    Case("unknown field", lambda t: _cost_table(t, "[costs.leaky.subtract]\ntotal = 4\nenergy = 3"),
         CostTableError, "unknown field 'energy'"),
    Case("unknown top-level key", lambda t: _cost_table(t, "[cost.leaky]\nsubtract = 4"), CostTableError,
         "unknown top-level key 'cost'"),
    # resources and --strict
    Case("one sample over --max-memory", _huge_with_inputs, MemoryLimitError,
         "one sample needs about", cli_args=[]),
    Case("model over --max-memory", lambda t: (*_good(t), ["--max-memory", "1kB"], {"max_memory": "1kB"}),
         MemoryLimitError, "the model alone takes about"),
    Case("expired --timeout", lambda t: (*_good(t), ["--timeout", "1e-9"], {"timeout": 1e-9}), TimeLimitError,
         "gave up after --timeout 1e-09 s while analysing the model"),
    Case("uncosted under --strict", lambda t: (_model_file(t, tanh_model()), None, ["--strict"], {"strict": True}),
         UncostedLayersError, "1 layer(s) could not be costed (--strict); first: lif1: update uses ops the matcher "
         "cannot read (Tanh)", exit_code=3),
    # usage errors: the command line itself (click's exit code 2)
    Case("bad --max-memory", lambda t: (*_good(t), ["--max-memory", "lots"], {}), None,
         "'lots' is not a size; use e.g. 2GB", exit_code=2),
    Case("bad --timeout", lambda t: (*_good(t), ["--timeout", "0"], {}), None,
         "Invalid value for '--timeout': '0' is not a number of seconds above 0 and up to 31,622,400 (a year) (see "
         "'main estimate --help')", exit_code=2),
    Case("bad --batch-size", lambda t: (*_good(t), ["--batch-size", "0"], {}), None, "--batch-size", exit_code=2),
    Case("unknown option", lambda t: (*_good(t), ["--fast"], {}), None,
         "No such option '--fast'. (Did you mean one of: '--format'", exit_code=2),
    Case("one-process options with --jobs", lambda t: (*_good(t), ["--jobs", "2", "--timeout", "5"], {}), None,
         "--timeout cannot be combined with --jobs/--scheduler (a split replay); drop one or the other",
         exit_code=2),
    Case("bad --format", lambda t: (*_good(t), ["--format", "xml"], {}), None,
         "Invalid value for '--format' / '-f': 'xml' is not one of 'table', 'json', 'csv', 'markdown', 'html'.",
         exit_code=2),
]


def _opset(version: int) -> onnx.ModelProto:
    model = leaky_stepwise(_net())
    model.opset_import[0].version = version
    return model


def _two_arrays(tmp: Path, b_samples: int, b_steps: int) -> Path:
    np.savez(tmp / "two.npz", a=_data(), b=_data(samples=b_samples, steps=b_steps))
    return tmp / "two.npz"


def _zip_with_text(tmp: Path) -> Path:
    import zipfile

    path = tmp / "mixed.npz"
    np.savez(path, input=_data())
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("notes.txt", "recorded on Tuesday")
    return path


def run_cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_cli_error(result, code: int, message: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, inputs, cli_args, kwargs = case.build(tmp_path)
    if case.error is not None:
        with pytest.raises(NeuronopsError) as caught:
            estimate(model, inputs, **kwargs)
        assert type(caught.value) is case.error
        assert case.message in str(caught.value)
        assert "\n" not in str(caught.value)
        assert caught.value.exit_code == case.exit_code
    args = ["estimate", model, *(["--inputs", inputs] if inputs is not None else []), *cli_args]
    assert_cli_error(run_cli(*args), case.exit_code, case.message)


@pytest.mark.parametrize("name", ["fails only when run", "missing model", "bad --format", "NaN"])
def test_a_real_process_prints_one_line(name, tmp_path):
    """In a subprocess, so that what onnxruntime's C++ side writes to file descriptor 2 is seen too."""
    import subprocess
    import sys

    case = next(c for c in CASES if c.name == name)
    model, inputs, cli_args, _ = case.build(tmp_path)
    args = [str(model), *(["--inputs", str(inputs)] if inputs is not None else []), *cli_args]
    done = subprocess.run([sys.executable, "-m", "estimator", "estimate", *args], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert done.returncode == case.exit_code
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and case.message in done.stderr


# --- what still works, and what is said, when part of the input is bad ----------------------------------------------
def test_checker_failure_is_a_warning_and_dense_ops_still_come(tmp_path):
    model = _model_file(tmp_path, _checker_failing(tmp_path))
    report = estimate(model, steps=STEPS)
    assert any("fails the ONNX checker" in w and "'nowhere'" in w for w in report.warnings)
    assert report.totals.neuron_dense_ops == (8 + 4) * STEPS * 4  # Leaky subtract costs 4 (NeuroBench)
    result = run_cli("estimate", model, "--steps", STEPS)
    assert result.exit_code == 0 and "warning: the model fails the ONNX checker" in result.stdout


@pytest.mark.parametrize("model", ["custom op", "opset 99"])
def test_unrunnable_model_still_gives_dense_ops(tmp_path, model):
    proto = _opset(99) if model == "opset 99" else with_extra_node(
        leaky_stepwise(_net()), helper.make_node("Frobnicate", ["output"], ["odd"], domain="com.example"),
        ("com.example", 1))
    report = estimate(_model_file(tmp_path, proto), steps=STEPS)
    assert report.totals.neuron_dense_ops == (8 + 4) * STEPS * 4
    assert [row.kind for row in report.layers] == ["leaky", "leaky"]
    if model == "opset 99":
        assert any("opset 99" in w for w in report.warnings)


def test_threshold_of_shape_one_is_read(tmp_path):
    """Found by the fuzz test: a threshold stored with shape (1,) instead of () broke `explain`'s update text."""
    model = leaky_stepwise(_net())
    for tensor in model.graph.initializer:
        if tensor.name.startswith("threshold"):
            tensor.dims[:] = [1]
    path = _model_file(tmp_path, model)
    report = estimate(path, steps=STEPS)
    assert [(row.kind, row.reset) for row in report.layers] == [("leaky", "subtract")] * 2
    assert run_cli("explain", path).exit_code == 0


def test_external_data_refused_before_any_byte_is_read(tmp_path, monkeypatch):
    def read_nothing(*args, **kwargs):
        raise AssertionError("external data was read")

    monkeypatch.setattr(onnx.external_data_helper, "load_external_data_for_model", read_nothing)
    for location in (str(tmp_path / "secret.bin"), "../secret.bin"):
        path = _external(tmp_path, "location", location)
        with pytest.raises(ModelLoadError, match="relative path|outside the model's folder"):
            estimate(path)


def test_external_data_inside_the_folder_is_fine(tmp_path):
    path = save_external(leaky_stepwise(_net()), tmp_path / "ext")
    data = _data()
    np.savez(tmp_path / "inputs.npz", input=data)
    report = estimate(path, tmp_path / "inputs.npz")
    assert [row.spikes for row in report.layers] == _net().reference(data)["spikes"]


def test_pickled_inputs_are_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"

    class Trap:
        def __reduce__(self):
            return (Path.touch, (marker,))

    _, path = _npy(tmp_path, np.array([Trap()], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "trap.npz", input=np.array([Trap()], dtype=object), allow_pickle=True)
    for inputs in (path, tmp_path / "trap.npz"):
        with pytest.raises(InputError, match="object"):
            estimate(tmp_path / "stepwise.onnx", inputs)
    assert not marker.exists()


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.uint8, np.bool_])
def test_castable_dtypes_give_the_float32_figures_and_say_so(tmp_path, dtype):
    model, _ = _good(tmp_path)
    data = _data()
    np.savez(tmp_path / "cast.npz", input=data.astype(dtype))
    report = estimate(model, tmp_path / "cast.npz")
    assert [row.spikes for row in report.layers] == _net().reference(data)["spikes"]
    said = " ".join(report.notes + report.warnings)
    assert f"input 'input': {np.dtype(dtype)} values" in said and "float32" in said


@pytest.mark.parametrize("elem", [TensorProto.BFLOAT16, TensorProto.FLOAT8E5M2, TensorProto.FLOAT16])
def test_inputs_of_types_numpy_lacks(tmp_path, elem):
    """Found by the fuzz test: a model input typed bfloat16 or float8 broke the dtype check (numpy has no finfo)."""
    model = leaky_stepwise(_net())
    model.graph.input[0].type.tensor_type.elem_type = elem
    path = _model_file(tmp_path, model)
    np.savez(tmp_path / "inputs.npz", input=_data())
    with pytest.raises(ReplayError, match="onnxruntime cannot run this model"):  # the graph now mixes types
        estimate(path, tmp_path / "inputs.npz")
    np.savez(tmp_path / "huge.npz", input=_data().astype(np.float64) * 1e300)
    with pytest.raises(InputError, match="overflow the model's"):
        estimate(path, tmp_path / "huge.npz")


def test_large_integers_are_a_warning(tmp_path):
    model, _ = _good(tmp_path)
    np.save(tmp_path / "big.npy", (_data() * (2**25 + 1)).astype(np.int64))
    report = estimate(model, tmp_path / "big.npy")
    assert any("int64 values above 16777216 are not all exactly representable" in w for w in report.warnings)


def test_nonfinite_inputs_replayed_with_allow_nonfinite(tmp_path):
    model, inputs = _inputs(tmp_path, input=_with_nan(np.nan))
    report = estimate(model, inputs, allow_nonfinite=True)
    assert report.samples == SAMPLES and any("--allow-nonfinite" in w for w in report.warnings)
    result = run_cli("estimate", model, "--inputs", inputs, "--allow-nonfinite")
    assert result.exit_code == 0 and "warning: input 'input': 1 NaN or ±Inf value(s) replayed" in result.stdout


def test_int_input_model_takes_integers(tmp_path):
    model = _model_file(tmp_path, int_input_model())
    np.savez(tmp_path / "ints.npz", input=_data().astype(np.int64))
    report = estimate(model, tmp_path / "ints.npz")
    assert report.samples == SAMPLES and not report.warnings


# --- resources -------------------------------------------------------------------------------------------------------
def test_huge_declared_shapes_give_exact_dense_ops_without_allocating(tmp_path):
    neurons = 10**12
    report = estimate(_model_file(tmp_path, huge_model(neurons)), steps=1000)
    assert report.layers[0].neurons_per_sample == neurons
    assert report.totals.neuron_dense_ops == neurons * 1000 * 4  # exact Python int, far beyond any array


def test_batch_shrinks_to_fit_max_memory_and_counts_do_not_change(tmp_path):
    model, inputs = _good(tmp_path, inputs=_data(samples=40))
    free = estimate(model, inputs)
    analysis_bytes = 2 * _analysed_model_bytes(model)
    per_sample = _per_sample_bytes(model, inputs)
    limit = analysis_bytes + 3 * per_sample  # room for exactly 3 samples
    for explicit in (None, 64):
        tight = estimate(model, inputs, max_memory=limit, batch_size=explicit)
        assert [r.spikes for r in tight.layers] == [r.spikes for r in free.layers]
        assert [r.membrane_updates for r in tight.layers] == [r.membrane_updates for r in free.layers]
        said = tight.warnings if explicit else tight.notes
        assert any("batch size lowered from 40 to 3" in s for s in said)


def test_probe_sizes_the_batch_when_shapes_are_symbolic(tmp_path):
    """Neurons whose count the graph leaves symbolic: one sample is run first and measured."""
    b = _Builder("torchscript")
    net = LeakyNet([np.zeros((1, 1), np.float32)])
    beta, theta, mem, stacked = b.beta(net), b.init(1.0, "threshold"), None, []
    for t in range(STEPS):
        index, axes = b.name("t"), b.name("axes")
        b.inits += [numpy_helper.from_array(np.asarray(t, np.int64), index),
                    numpy_helper.from_array(np.asarray([1], np.int64), axes)]
        x = b.op("Gather", ["input", index], axis=1)
        if mem is None:
            mem = b.op("ConstantOfShape", [b.op("Shape", [x])], value=numpy_helper.from_array(np.zeros(1, np.float32)))
        mem, spike = b.step(net, mem, x, beta, theta)
        stacked.append(b.op("Unsqueeze", [spike, axes]))
    b.nodes.append(helper.make_node("Concat", stacked, ["output"], axis=1))
    model = _model(b, [_io("input", ["batch", STEPS, "n"])], [_io("output", ["batch", STEPS, "n"])])
    path = _model_file(tmp_path, model)
    data = np.random.default_rng(5).random((30, STEPS, 40)).astype(np.float32) * 1.5
    np.save(tmp_path / "in.npy", data)
    free = estimate(path, tmp_path / "in.npy")
    assert free.layers[0].neurons_per_sample == 40  # known only after the replay
    limit = 2 * _analysed_model_bytes(path) + 3 * memory_per_sample_measured(path, tmp_path / "in.npy")
    tight = estimate(path, tmp_path / "in.npy", max_memory=limit)
    assert tight.layers[0].spikes == free.layers[0].spikes
    assert any("batch size lowered from 30 to 3" in n for n in tight.notes)


def test_timeout_stops_a_running_onnxruntime_call(tmp_path):
    path = _model_file(tmp_path, slow_model())
    np.save(tmp_path / "in.npy", np.ones((256, 2, 1024), np.float32))
    with pytest.raises(TimeLimitError, match=r"gave up after --timeout 0.5 s while replaying \(0 of 256 samples"):
        estimate(path, tmp_path / "in.npy", timeout=0.5)
    result = run_cli("estimate", path, "--inputs", tmp_path / "in.npy", "--timeout", "0.5")
    assert_cli_error(result, 1, "gave up after --timeout 0.5 s while replaying")


def test_batch_timeout_fails_the_slow_model_only(tmp_path):
    """`batch --timeout` bounds each job: the slow model fails with the deadline's message, the others are written."""
    import csv
    import json

    (tmp_path / "slow").mkdir()
    onnx.save(slow_model(), tmp_path / "slow" / "model.onnx")
    np.save(tmp_path / "slow" / "inputs.npy", np.ones((200, 2, 1024), np.float32))
    (tmp_path / "good").mkdir()
    _good(tmp_path / "good")
    (tmp_path / "good" / "stepwise.onnx").rename(tmp_path / "good" / "model.onnx")
    out = tmp_path / "out"
    result = run_cli("batch", tmp_path / "slow" / "model.onnx", tmp_path / "good" / "model.onnx", "--out", out,
                     "--timeout", "0.5")
    assert result.exit_code == 1
    with open(out / "summary.csv", newline="") as handle:
        rows = {row["name"]: row for row in csv.DictReader(handle)}
    assert rows["slow"]["status"] == "error"
    assert rows["slow"]["error"].startswith("gave up after --timeout 0.5 s while ")
    assert rows["good"]["status"] == "ok"
    good = json.loads((out / rows["good"]["result"]).read_text())
    assert good["totals"] == json.loads(json.dumps(estimate(tmp_path / "good" / "model.onnx",
                                                            tmp_path / "good" / "inputs.npz").to_dict()["totals"]))


def test_a_shard_over_its_timeout_is_stopped_and_named(tmp_path):
    from estimator.parallel import InlineBackend, estimate_sharded

    path = _model_file(tmp_path, slow_model())
    np.save(tmp_path / "in.npy", np.ones((200, 2, 1024), np.float32))
    with pytest.raises(NeuronopsError, match=r"^samples \[(0, 100|100, 200)\): gave up after --timeout 0.5 s while "
                                             r"replaying \(\d{1,2} of 100 samples done\)"):  # stopped mid-shard
        estimate_sharded(path, tmp_path / "in.npy", backend=InlineBackend(), shard_size=100, timeout=0.5)


def test_batch_max_memory_shrinks_each_jobs_batch_and_keeps_the_counts(tmp_path):
    import json

    path, inputs = _good(tmp_path, inputs=_data(samples=40))
    free = estimate(path, inputs, batch_size=40)
    limit = 2 * _analysed_model_bytes(path) + 3 * _per_sample_bytes(path, inputs)
    out = tmp_path / "out"
    result = run_cli("batch", path, "--inputs-pattern", str(inputs), "--out", out, "--max-memory", limit,
                     "--batch-size", "40")
    assert result.exit_code == 0, result.output
    stored = json.loads((out / "results" / "stepwise.json").read_text())
    assert [layer["spikes"] for layer in stored["layers"]] == [row.spikes for row in free.layers]
    assert any("batch size lowered from 40 to 3" in w for w in stored["warnings"])


def _analysed_model_bytes(path: Path) -> int:
    from estimator.api import analyse

    return analyse(path).graph.model.ByteSize()


def _per_sample_bytes(model: Path, inputs: Path) -> int:
    from estimator.api import analyse
    from estimator.inputs import read_inputs

    analysis = analyse(model, for_replay=True, cache=False)
    recorded = read_inputs(inputs, analysis.match.data_inputs)
    fetch = [name for layer in analysis.match.layers for name in layer.membranes + layer.spikes]
    fetch += [pair.output for pair in analysis.match.state_pairs]
    return memory_per_sample(analysis.plan, recorded, list(dict.fromkeys(fetch)), analysis.match.style == "stepwise")


def memory_per_sample_measured(model: Path, inputs: Path) -> int:
    """The estimate replay makes after its one-sample probe, computed here from the probe's own outputs."""
    import onnxruntime as ort

    from estimator.api import analyse
    from estimator.inputs import read_inputs

    analysis = analyse(model, for_replay=True, cache=False)
    recorded = read_inputs(inputs, analysis.match.data_inputs)
    fetch = list(dict.fromkeys(n for layer in analysis.match.layers for n in layer.membranes + layer.spikes))
    exposed = onnx.ModelProto()
    exposed.CopyFrom(analysis.graph.model)
    exposed.graph.output.extend(helper.make_tensor_value_info(n, analysis.graph.elem_type(n), None) for n in fetch)
    session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = session.run(fetch, {"input": np.asarray(recorded.arrays["input"][:1])})
    measured = sum(out.nbytes for out in outputs)
    return memory_per_sample(analysis.plan, recorded, fetch, False, measured=measured)


# --- output files ----------------------------------------------------------------------------------------------------
def test_report_written_atomically_with_usual_permissions(tmp_path):
    model, inputs = _good(tmp_path)
    out = tmp_path / "report.json"
    result = run_cli("estimate", model, "--inputs", inputs, "--format", "json", "-o", out)
    assert result.exit_code == 0 and out.read_text().startswith("{")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".report")] == []


def test_failed_write_leaves_the_old_report_and_no_temp_file(tmp_path, monkeypatch):
    out = tmp_path / "report.txt"
    out.write_text("the previous report\n")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OutputError, match="No space left on device"):
        write_atomic(out, "x" * 100_000)
    assert out.read_text() == "the previous report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.txt"]


def test_interrupted_write_leaves_the_old_report(tmp_path, monkeypatch):
    out = tmp_path / "report.txt"
    out.write_text("the previous report\n")

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(out, "new")
    assert out.read_text() == "the previous report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.txt"]


def test_unwritable_output_is_an_error_not_a_traceback(tmp_path):
    model, _ = _good(tmp_path)
    blocker = tmp_path / "afile"
    blocker.write_text("")
    result = run_cli("estimate", model, "-o", blocker / "report.txt")
    assert_cli_error(result, 1, f"cannot write the report there ({blocker} is not a folder)")


def test_only_write_atomic_writes_files():
    """Every file the tool writes goes through cli.write_atomic: no other write call in the package."""
    import re

    package = Path(__file__).resolve().parent.parent / "estimator"
    writers = re.compile(r"write_text|write_bytes|open\([^)]*['\"][wax]b?['\"]|os\.fdopen|np\.save|onnx\.save")
    found = [f"{path.name}:{n}" for path in sorted(package.glob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1) if writers.search(line)]
    # cli.write_atomic for reports (and its write into a device or FIFO, which no rename may replace); the analysis
    # cache (cache.py) and parallel.py's worker-side model cache write bytes the same way (temp + rename)
    assert found == ["cache.py:" + str(_line_of(package / "cache.py", "os.fdopen")),
                     "cli.py:" + str(_line_of(package / "cli.py", 'open(path, "w"')),
                     "cli.py:" + str(_line_of(package / "cli.py", "os.fdopen")),
                     "parallel.py:" + str(_line_of(package / "parallel.py", 'open(tmp, "wb")'))]


def _line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_help_documents_exit_codes():
    for command in ([], *([name] for name in main.commands)):
        result = run_cli(*command, "--help")
        assert result.exit_code == 0
        text = " ".join(result.output.split())
        assert "Exit codes: 0 " in text and ", 1 " in text and ", 2 usage error" in text  # the rest: test_cli
        assert "Errors are one line on stderr" in text


@pytest.mark.parametrize("renamed", ["mul_12", "greater_10"])  # an Add's input (CSE sorts it); a spike tensor
@pytest.mark.parametrize("with_inputs", [False, True])
def test_a_tensor_name_that_is_not_utf8_is_refused(renamed, with_inputs, tmp_path):
    """protobuf hands a string that is not valid UTF-8 back as bytes, which matches no other name: such a model is
    refused in one line (found by the fuzz test), with or without a replay, never analysed into other figures."""
    net = random_net(np.random.default_rng(31), [5, 6, 3])
    raw = leaky_stepwise(net).SerializeToString()
    assert raw.count(renamed.encode()) >= 2  # produced and consumed: renamed everywhere, the graph stays wired
    model = tmp_path / "model.onnx"
    model.write_bytes(raw.replace(renamed.encode(), b"\xe7" + renamed.encode()[1:]))
    np.savez(tmp_path / "inputs.npz", input=np.zeros((2, 4, 5), np.float32))
    message = "is not valid UTF-8; the file is damaged"
    with pytest.raises(ModelLoadError, match=message):
        estimate(model, tmp_path / "inputs.npz" if with_inputs else None, cache=False)
    args = ["estimate", model, *(["--inputs", tmp_path / "inputs.npz"] if with_inputs else []), "--no-cache"]
    assert_cli_error(run_cli(*args), 1, message)


def test_a_node_name_that_is_not_utf8_is_refused(tmp_path):
    model = leaky_stepwise(random_net(np.random.default_rng(32), [5, 6]))
    node = next(node for node in model.graph.node if node.op_type == "Greater")
    node.name = "NODENAME_PLACEHOLDER"
    path = tmp_path / "model.onnx"
    path.write_bytes(model.SerializeToString().replace(b"NODENAME_PLACEHOLDER", b"NODE\xffNAME_PLACEHOLDE"))
    assert_cli_error(run_cli("layers", path, "--no-cache"), 1, "name b'NODE\\xffNAME_PLACEHOLDE' in the graph is not "
                     "valid UTF-8")


# --- odd but valid files the fuzzer found: they run, and nothing but the report reaches the terminal ----------------
def _sample_model(name: str) -> onnx.ModelProto:
    from conftest import SAMPLES

    return onnx.load(SAMPLES / name / "model.onnx")


def _sample_inputs(name: str) -> np.ndarray:
    from conftest import SAMPLES

    return np.load(SAMPLES / name / "inputs.npz")["input"]


def _set_initializer(model: onnx.ModelProto, name: str, tensor: onnx.TensorProto) -> None:
    found = next(t for t in model.graph.initializer if t.name == name)
    tensor.name = name
    found.CopyFrom(tensor)


@pytest.mark.parametrize("value", ["Leaky", "ai.onnx:Synaptic"], ids=["no colon", "another kind"])
def test_a_file_cannot_forge_the_loaders_function_tag(tmp_path, value):
    """The loader tags inlined nodes with the neuron class they came from: the file's own tags are dropped, so a
    malformed one breaks nothing and a forged one names no kind."""
    from estimator.load import FUNCTION_TAG

    model = _sample_model("leaky_sub_fc1__stepwise__torchscript")
    for node in model.graph.node:
        node.metadata_props.add(key=FUNCTION_TAG, value=value)
    path = _model_file(tmp_path, model)
    report = estimate(path, cache=False)
    assert [(row.kind, row.reset) for row in report.layers] == [("leaky", "subtract")]
    assert "structure" in run_cli("layers", path, "--no-cache").stdout


@pytest.mark.parametrize("threshold", [helper.make_tensor("t", TensorProto.STRING, [], [b"abc"]),
                                       numpy_helper.from_array(np.array(1 + 2j, np.complex64)),
                                       helper.make_tensor("t", TensorProto.BOOL, [], [True])],
                         ids=["string", "complex", "bool"])
def test_a_non_numeric_constant_in_an_update_is_not_read(tmp_path, threshold):
    model = _sample_model("leaky_sub_fc1__stepwise__torchscript")
    _set_initializer(model, "core.mods.lif1.threshold", threshold)
    report = estimate(_model_file(tmp_path, model), cache=False)
    assert report.layers[0].kind == "leaky" and report.layers[0].reset is None  # not read: uncosted, not a crash
    assert report.uncosted and not report.totals.complete


def test_numeric_warnings_of_constant_folding_stay_off_stderr(tmp_path):
    model = _sample_model("alpha_sub_fc1__stepwise__torchscript")
    _set_initializer(model, "core.mods.alp1.beta", numpy_helper.from_array(np.array(0.0, np.float32)))
    path = _model_file(tmp_path, model)
    np.savez(tmp_path / "bad.npz", input=np.zeros((2, 3, 5), np.float32))
    # in real processes: pytest would catch the warnings before they reach a CliRunner's stderr
    runs = ((["layers", path], 0), (["estimate", path], 0), (["estimate", path, "-i", tmp_path / "bad.npz"], 1))
    for args, code in runs:
        done = _process(*args, "--no-cache")
        assert done.returncode == code and "Warning" not in done.stderr, done.stderr
        assert done.stderr.count("\n") == code  # an error is still exactly one line


def _process(*args: object):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "estimator", *map(str, args)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, timeout=120)


def test_an_old_npy_header_is_read_without_a_warning(tmp_path):
    """numpy reads headers written by Python 2 ('8L' dims) through a fallback that warns on stderr."""
    name = "leaky_sub_fc1__stepwise__torchscript"
    data = _sample_inputs(name).astype("<f4")
    dims = ", ".join(f"{n}L" for n in data.shape)
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }"
    header += " " * ((len(header) + 11 + 63) // 64 * 64 - len(header) - 11) + "\n"
    (tmp_path / "py2.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little")
                                       + header.encode("latin1") + data.tobytes())
    np.save(tmp_path / "now.npy", data)
    model = _model_file(tmp_path, _sample_model(name))
    old = _process("estimate", model, "--inputs", tmp_path / "py2.npy", "--no-cache", "-f", "json")
    assert old.returncode == 0 and old.stderr == "", old.stderr
    now = _process("estimate", model, "--inputs", tmp_path / "now.npy", "--no-cache", "-f", "json")
    assert old.stdout == now.stdout


def test_a_constant_that_would_blow_up_is_not_folded(tmp_path):
    """A small file whose decay factor is Add(A[N, 1], B[1, N]) would make folding allocate N² floats (gigabytes)
    for a dense-only run that needs none of it: such a constant is left unfolded."""
    import subprocess
    import sys

    size = 12_000  # 144 M elements: 0.6 GB as float32, 1.2 GB more as float64 if it were folded
    model = _sample_model("leaky_sub_fc1__stepwise__torchscript")
    beta = next(t for t in model.graph.initializer if t.name == "core.mods.lif1.beta")
    model.graph.initializer.remove(beta)
    model.graph.initializer.extend([numpy_helper.from_array(np.full((size, 1), 0.45, np.float32), "a"),
                                    numpy_helper.from_array(np.full((1, size), 0.45, np.float32), "b")])
    model.graph.node.insert(0, helper.make_node("Add", ["a", "b"], ["core.mods.lif1.beta"], name="big"))
    path = _model_file(tmp_path, model)
    assert path.stat().st_size < 200_000
    child = subprocess.Popen([sys.executable, "-m", "estimator", "layers", str(path), "--no-cache"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parent.parent)
    out, err = child.stdout.read(), child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)  # this child's own peak (not the largest of all children so far)
    child.returncode = os.waitstatus_to_exitcode(status)
    assert child.returncode == 0 and "lif1" in out, err
    assert usage.ru_maxrss / 1024 < 400, usage.ru_maxrss  # tens of MB of interpreter, numpy, onnx; never the N²


@pytest.mark.parametrize("stored", [5, 3, 0])  # 5: the checker lets it through
def test_a_constant_whose_data_does_not_fit_its_dims_is_not_read(tmp_path, stored):
    """A Constant node holding 3 (or 0) bytes for one float: the checker may let it through; it is no constant."""
    model = _sample_model("rsynaptic_none_fc1__stepwise__torchscript")
    constants = [node for node in model.graph.node if node.op_type == "Constant"]
    assert constants
    for node in constants:
        tensor = node.attribute[0].t
        tensor.Clear()
        tensor.data_type, tensor.dims[:], tensor.raw_data = TensorProto.FLOAT, [1], b"\x01" * stored
    path = _model_file(tmp_path, model)
    report = estimate(path, cache=False)  # a report (the layers uncosted or not), never an unexpected ValueError
    assert report.layers
    assert run_cli("layers", path, "--no-cache").exit_code == 0


def test_shape_inference_builds_no_values_for_a_model_the_checker_rejects(tmp_path):
    """An initializer declaring 2**40 elements over 4 bytes: onnx's data propagation would try to build it (20 s,
    gigabytes); on a model the checker rejects only shapes are inferred, and the objection is shown."""
    import subprocess
    import sys

    model = _sample_model("leaky_sub_fc1__stepwise__torchscript")
    next(t for t in model.graph.initializer if t.name == "core.mods.lif1.threshold").dims[:] = [2**40]
    path = _model_file(tmp_path, model)
    child = subprocess.Popen([sys.executable, "-m", "estimator", "layers", str(path), "--no-cache"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parent.parent)
    out, err = child.stdout.read(), child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    assert child.returncode == 0 and "warning: the model fails the ONNX checker" in out, out + err
    assert usage.ru_maxrss / 1024 < 400, usage.ru_maxrss


def test_layers_and_explain_show_the_models_own_warnings(tmp_path):
    import json

    from builders import checker_objects_but_runs

    path = _model_file(tmp_path, checker_objects_but_runs(_net()))
    for args in (["layers", path], ["explain", path]):
        shown = run_cli(*args, "--no-cache")
        assert shown.exit_code == 0 and "warning: the model fails the ONNX checker" in shown.stdout, shown.stdout
    listed = json.loads(run_cli("layers", path, "--no-cache", "-f", "json").stdout)
    assert any("ONNX checker" in warning for warning in listed["warnings"])
    clean = json.loads(run_cli("layers", _good(tmp_path)[0], "--no-cache", "-f", "json").stdout)
    assert clean["warnings"] == []


def test_a_closed_stdout_pipe_is_no_error(tmp_path):
    """`neuronops estimate … | true`: the reader quit before the report was written. No 'unexpected
    BrokenPipeError' (that is no bug), no traceback from the final flush: silence and 128 + SIGPIPE, as a shell
    reports for any writer whose pipe closed."""
    import subprocess
    import sys

    model, _ = _good(tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)  # closed before the tool writes: every write fails, deterministically
    try:
        done = subprocess.run([sys.executable, "-m", "estimator", "estimate", str(model), "-f", "json", "--no-cache"],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120,
                              cwd=Path(__file__).resolve().parent.parent)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")


def test_a_state_baked_in_at_a_fixed_batch_is_named_when_the_replay_fails(tmp_path):
    """A network run before its export keeps its last state, which the tracer writes as a constant of that run's
    batch while the inputs' batch stays dynamic: onnxruntime's broadcast error alone said nothing about why."""
    net = random_net(np.random.default_rng(8), [6, 5])
    model = leaky_unrolled(net, 3)
    first = next(node for node in model.graph.node if node.op_type == "MatMul")
    current = first.output[0]
    first.output[0] = current + "_fresh"
    stale = helper.make_node("Add", [current + "_fresh", "stale_state"], [current])
    model.graph.node.insert(list(model.graph.node).index(first) + 1, stale)
    model.graph.initializer.append(numpy_helper.from_array(np.zeros((7, 5), np.float32), "stale_state"))
    path = _model_file(tmp_path, model)
    np.save(tmp_path / "in.npy", np.ones((4, 3, 6), np.float32))
    result = CliRunner().invoke(main, ["estimate", str(path), "--inputs", str(tmp_path / "in.npy"), "--no-cache"])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "the graph holds a tensor of a fixed batch although its inputs' batch is dynamic" in result.stderr
    assert result.stderr.rstrip().endswith("with that tensor's batch (--batch-size 7)")  # the size, said


def test_batch_norm_in_training_mode_is_a_warning(tmp_path: Path):
    """A graph exported in training mode normalises each batch by its own statistics: the counts depended on
    --batch-size with nothing said (found on fc → BatchNorm1d → Leaky, training=TrainingMode.TRAINING)."""
    model = _batch_norm_training(tmp_path)[0]
    warned = [w for w in estimate(model, steps=3).warnings if "BatchNormalization in training mode" in w]
    assert warned and "depend on --batch-size" in warned[0]
    assert not any("BatchNormalization" in w for w in estimate(_good(tmp_path)[0], steps=3).warnings)


def test_ctrl_c_stops_a_running_onnxruntime_call(tmp_path):
    """Python runs its SIGINT handler only when the onnxruntime call returns: Ctrl-C during one long run (a large
    batch through a long graph) waited for it, minutes for a pathological one. The run is now terminated at once."""
    import signal
    import subprocess
    import sys
    import time

    path = _model_file(tmp_path, slow_model(depth=2000))
    np.save(tmp_path / "in.npy", np.ones((1024, 2, 1024), np.float32))
    process = subprocess.Popen(
        [sys.executable, "-m", "estimator", "estimate", str(path), "--inputs", str(tmp_path / "in.npy"),
         "--batch-size", "1024", "--no-cache"],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)  # loaded, analysed, and inside the first (long) run
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)  # the run alone takes far longer
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130 and stderr.strip() == "error: interrupted", stderr


@pytest.mark.parametrize(("args", "message"), [
    (["estimate", "{model}", "--cost-table", "{folder}"], "is a directory, expected a TOML cost table"),
    (["estimate", "{model}", "--energy-table", "{folder}"], "is a directory, expected a TOML energy table"),
    (["compare", "{folder}"], "is a directory, expected a JSON report"),
    (["batch", "{folder}.csv", "--out", "{out}"], "is a directory, expected a manifest file"),
])
def test_a_folder_where_a_file_is_expected_is_named_as_such(tmp_path, args, message):
    """A folder given as cost table, energy table, report or manifest was reported as 'no such … file'."""
    model = _good(tmp_path)[0]
    folder = tmp_path / "given"
    folder.mkdir()
    (tmp_path / "given.csv").mkdir()
    filled = [a.format(model=model, folder=folder, out=tmp_path / "out") for a in args]
    assert_cli_error(run_cli(*filled), 2 if filled[0] == "batch" else 1, message)


@pytest.mark.parametrize("seconds", [1e12, float("inf")])
def test_a_deadline_beyond_a_year_is_none_and_raises_in_no_thread(tmp_path, monkeypatch, seconds):
    """estimate(timeout=1e12) (or --timeout before the CLI bounded it) started a timer threading cannot wait for: an
    OverflowError in the timer's thread (a traceback on stderr) and no deadline at all."""
    import threading

    raised: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: raised.append(args.exc_value))
    path, inputs = _good(tmp_path)
    report = estimate(path, inputs, timeout=seconds)
    assert report.totals.neuron_dense_ops is not None and raised == []


def test_arrays_named_after_no_input_are_named_in_a_note(tmp_path):
    """An .npz holding, besides the data, an array the model has no input for (a stepwise state's initial value,
    say) was ignored without a word: the replay starts every state at 0."""
    path, inputs = _good(tmp_path)
    data = dict(np.load(inputs))
    np.savez(tmp_path / "extra.npz", **data, **{"lif1.mem": np.ones((len(next(iter(data.values()))), 4), np.float32)})
    report = estimate(path, tmp_path / "extra.npz")
    noted = [note for note in report.notes if "match no data input" in note]
    assert noted and "'lif1.mem'" in noted[0] and "starts at 0" in noted[0]
    assert not any("match no data input" in note for note in estimate(path, inputs).notes)


def test_a_name_with_a_newline_or_an_escape_stays_one_line(tmp_path):
    """Layer names and locations come from the file's tensor and node names: a newline (or an ANSI escape) in one
    broke the table, markdown and `layers` output. They are shown escaped."""
    model = leaky_stepwise(_net())
    names = {v.name: v.name.replace("lif", "l\nif\x1b[31m") for v in (*model.graph.input[1:], *model.graph.output[1:])}
    names |= {node.output[0]: node.output[0] + "\n" for node in model.graph.node if node.op_type in ("MatMul", "Gemm")}
    for value in (*model.graph.input, *model.graph.output):
        value.name = names.get(value.name, value.name)
    for node in model.graph.node:
        node.input[:] = [names.get(name, name) for name in node.input]
        node.output[:] = [names.get(name, name) for name in node.output]
        node.name = node.name.replace("lif", "l\nif")
    path = _model_file(tmp_path, model)
    report = estimate(path, steps=3)
    assert all(row.name.isprintable() and row.location.isprintable() for row in report.layers)
    assert any("\\n" in row.name for row in report.layers)
    table = run_cli("estimate", path, "--steps", "3").output
    assert all(line.isprintable() for line in table.splitlines())
    explained = run_cli("explain", path).output  # its notes, reasons and update polynomials quote them too
    assert "\\n" in explained and all(line.isprintable() for line in explained.splitlines())
    assert all(row.update.isprintable() and "\\n" in row.update for row in analyse(path, cache=False).match.layers)


@pytest.mark.parametrize("name", ["leaky_sub_fc2_static__unrolled__torchscript",
                                  "leaky_sub_fc1__unrolled__torchscript"])
def test_a_recording_with_one_axis_too_many_says_how_a_static_input_is_recorded(tmp_path, name):
    """snnTorch's tutorial 5 reads one input whole at every step: recorded (batch, time, features) as NeuroBench
    lays data out, it was refused with 'model expects 2 dims' and nothing on why. A model whose input is static
    says so; one whose input is sliced per step does not."""
    from conftest import SAMPLES

    case = SAMPLES / name
    data = np.load(case / "inputs.npz")["input"]
    wrong = np.repeat(data[:, None], 3, axis=1) if data.ndim == 2 else data[:, :, None]
    np.save(tmp_path / "in.npy", wrong)
    result = CliRunner().invoke(main, ["estimate", str(case / "model.onnx"), "-i", str(tmp_path / "in.npy"),
                                       "--no-cache"])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    if "static" in name:
        assert "the model reads this input whole at every time step" in result.stderr
        assert result.stderr.rstrip().endswith("record one array per sample, (batch, features…), without a time axis")
    else:
        assert "model expects" in result.stderr and "whole at every time step" not in result.stderr
