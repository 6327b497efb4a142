"""Stepwise exports whose state inputs and outputs carry no telling names — the TorchScript exporter's own
(onnx::Mul_1 → 15) when no input_names/output_names are given, or names chosen freely (a → c) — are paired by
dataflow: the same layers and exactly the same figures as the sample they came from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from builders import leaky_stepwise, random_net
from conftest import SAMPLES
from parity import check_case

from estimator import analyse
from estimator.errors import InputError

CASES = sorted(p.parent for p in SAMPLES.glob("*__stepwise__*/expected.json")
               if not json.loads(p.read_text()).get("external_data"))


def _rename(model: onnx.ModelProto, names: dict[str, str]) -> None:
    for value in (*model.graph.input, *model.graph.output):
        value.name = names.get(value.name, value.name)
    for node in model.graph.node:
        node.input[:] = [names.get(name, name) for name in node.input]
        node.output[:] = [names.get(name, name) for name in node.output]


def _anonymise(case: Path, tmp_path: Path, style: str) -> Path:
    """A copy of the case whose state inputs and outputs (all but the data input and the first output) are renamed,
    the state outputs listed in reverse order (so that their position pairs nothing either)."""
    copy = tmp_path / case.name
    shutil.copytree(case, copy)
    expected = json.loads((case / "expected.json").read_text())
    path = copy / expected["model"]
    model = onnx.load(str(path))
    states_in = [v.name for v in model.graph.input][1:]
    states_out = [v.name for v in model.graph.output][1:]
    if style == "exporter":
        names = {name: f"onnx::Mul_{index + 1}" for index, name in enumerate(states_in)}
        names |= {name: str(40 + index) for index, name in enumerate(states_out)}
    else:
        names = {name: f"s{index}" for index, name in enumerate(states_in)}
        names |= {name: f"r{index}" for index, name in enumerate(states_out)}
    _rename(model, names)
    outputs = list(model.graph.output)
    del model.graph.output[:]
    model.graph.output.extend([outputs[0], *reversed(outputs[1:])])
    onnx.save(model, str(path))
    return copy


# Dataflow cannot tell these states apart, and the tool says so rather than guess: a one-to-one RLeaky's spike (read
# elementwise, V·S, as a membrane is) and an Alpha layer whose returned membrane is reached from two of its inputs in
# as many ops. Their inputs stay data, and the replay asks for them by name.
AMBIGUOUS = ("_onetoone", "alpha_sub_fc2_memout__")


@pytest.mark.parametrize("style", ["exporter", "free"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_state_paired_by_dataflow_gives_the_same_figures(case: Path, style: str, tmp_path: Path):
    copy = _anonymise(case, tmp_path, style)
    if any(marker in case.name for marker in AMBIGUOUS):
        with pytest.raises(InputError, match=r"no array for model input\(s\) .*name that output after it"):
            check_case(copy, "spikes")
        return
    assert check_case(copy, "neurobench") == []
    assert check_case(copy, "spikes") == []


def test_most_stepwise_samples_pair_by_dataflow():
    assert sum(not any(marker in case.name for marker in AMBIGUOUS) for case in CASES) >= 60


def test_exporter_names_do_not_name_layers(tmp_path: Path):
    """onnx::Mul_1 names no layer: the module's scope does (n1, lif1…)."""
    case = SAMPLES / "leaky_sub_fc3__stepwise__torchscript"
    copy = _anonymise(case, tmp_path, "exporter")
    result = analyse(copy / "model.onnx").match
    original = analyse(case / "model.onnx").match
    assert [layer.name for layer in result.layers] == [layer.name for layer in original.layers]
    assert all("::" not in layer.name for layer in result.layers)


def test_one_input_always_stays_data(tmp_path: Path):
    """A one-step graph whose input feeds the membrane directly and which returns the membrane pairs nothing: without
    a data input there is nothing to replay (and an unrolled T = 1 export looks just like it)."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 4])
    u = onnx.helper.make_tensor_value_info("u", onnx.TensorProto.FLOAT, ["batch", 4])
    s = onnx.helper.make_tensor_value_info("s", onnx.TensorProto.FLOAT, ["batch", 4])
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Mul", ["x", "beta"], ["m"]),
         onnx.helper.make_node("Greater", ["m", "theta"], ["g"]),
         onnx.helper.make_node("Cast", ["g"], ["s"], to=onnx.TensorProto.FLOAT),
         onnx.helper.make_node("Sub", ["m", "s"], ["u"])],
        "g", [x], [s, u],
        [onnx.numpy_helper.from_array(np.array(0.9, np.float32), "beta"),
         onnx.numpy_helper.from_array(np.array(1.0, np.float32), "theta")])
    path = tmp_path / "m.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(path))
    assert analyse(path).match.state_pairs == ()


def test_a_state_left_over_by_a_tie_pairs_nothing(tmp_path: Path):
    """RLeaky one-to-one with reset none, unnamed: its spike input (read elementwise, V·S, as a membrane is) is nearer
    the membrane's output than the membrane input is, and was paired with it; only the refusal of the membrane input
    hid the wrong pair. A state dataflow leaves unpaired now voids the pairs it made."""
    case = SAMPLES / "rleaky_none_fc1_onetoone__stepwise__torchscript"
    copy = _anonymise(case, tmp_path, "free")
    assert analyse(copy / "model.onnx", cache=False).match.state_pairs == ()


def test_data_given_last_pairs_nothing(write_model):
    """forward(mem, x): the first input reads as a membrane, so the data is elsewhere and which input it is would be a
    guess (with as many features as neurons, x read through its synapse looked like a recurrent spike state, and the
    membrane was fed the recordings). The inputs stay unpaired and the replay asks for them by name."""
    model = leaky_stepwise(random_net(np.random.default_rng(69), [4, 4], reset="none"))
    data, state = model.graph.input[0].name, model.graph.input[1].name
    _rename(model, {data: "x", state: "a", model.graph.output[0].name: "y", model.graph.output[1].name: "b"})
    inputs = list(model.graph.input)
    del model.graph.input[:]
    model.graph.input.extend([inputs[1], inputs[0]])  # the data input last
    assert analyse(write_model(model), cache=False).match.state_pairs == ()


def test_an_output_alias_of_a_paired_state_is_no_candidate(tmp_path: Path):
    """dynamo writes a tensor returned twice as an alias (sub_12, sub_12_alias_3): with the membrane paired to one
    name, the alias was still a candidate, and a one-to-one RLeaky's spike input was fed the membrane."""
    case = SAMPLES / "rleaky_sub_fc1_onetoone__stepwise__dynamo"
    copy = _anonymise(case, tmp_path, "free")
    (membrane,) = analyse(copy / "model.onnx", cache=False).match.state_pairs  # the spike input is left unpaired
    model = onnx.load(str(copy / "model.onnx"))
    model.graph.node.append(onnx.helper.make_node("Identity", [membrane.output], ["alias"]))
    extra = onnx.ValueInfoProto()
    extra.CopyFrom(next(v for v in model.graph.output if v.name == membrane.output))
    extra.name = "alias"
    model.graph.output.append(extra)
    onnx.save(model, str(copy / "model.onnx"))
    assert analyse(copy / "model.onnx", cache=False).match.state_pairs == (membrane,)


@pytest.mark.parametrize("case_name", ["rleaky_none_fc1__stepwise__torchscript", "rleaky_sub_fc1__stepwise__dynamo",
                                       "synaptic_none_fc1__stepwise__torchscript"])
def test_data_given_last_never_becomes_a_state(tmp_path: Path, case_name: str):
    """forward(*state, x) with its names removed: whatever is paired, the data input never is (read through its
    synapse, it looks like an all-to-all RLeaky's spike state when it has as many features as the layer neurons),
    and an input the replay would feed the recordings to is one a state pair does not claim."""
    copy = _anonymise(SAMPLES / case_name, tmp_path, "free")
    model = onnx.load(str(copy / "model.onnx"))
    inputs = list(model.graph.input)
    del model.graph.input[:]
    model.graph.input.extend([*inputs[1:], inputs[0]])
    onnx.save(model, str(copy / "model.onnx"))
    match = analyse(copy / "model.onnx", cache=False).match
    assert inputs[0].name not in {pair.input for pair in match.state_pairs}
    assert match.state_pairs == () or inputs[0].name in match.data_inputs


def test_a_membrane_readout_without_names_is_paired_and_layers_are_named_by_scope(write_model, tmp_path: Path):
    """A readout (reset none, its spike dropped) returned by an export without names: no compare reads its state,
    so its input stayed data and the replay asked for an array named after it ('mem'), which no user can give.
    It pairs with its nearest output when its update reads as a decaying membrane, and the report is the named
    export's. Layers take their module's scope, not snnTorch's argument name (`mem`, `mem.1`) the tracer gave
    every state."""
    net = random_net(np.random.default_rng(9), [6, 5, 4])
    net.reset, net.returns_membrane = "none", True
    model = leaky_stepwise(net)
    states_in = [v.name for v in model.graph.input][1:]
    states_out = [v.name for v in model.graph.output][1:]
    named = write_model(model, "named.onnx")
    spike = next(index for index, node in enumerate(model.graph.node) if node.op_type == "Cast")
    for index, node in enumerate(model.graph.node):  # the scopes a TorchScript export gives each layer's ops
        node.name = f"/{'lif1' if index <= spike else 'lif2'}/{node.op_type}_{index}"
    _rename(model, {name: ("mem" if index else "mem.1") for index, name in enumerate(states_in)}
            | {name: str(40 + index) for index, name in enumerate(states_out)})
    data = (np.random.default_rng(10).random((3, 5, 6)) < 0.5).astype(np.float32)
    anonymous = write_model(model, "anonymous.onnx", inputs=data)
    from estimator import estimate

    expected = estimate(named, tmp_path / "inputs.npz")
    got = estimate(anonymous, tmp_path / "inputs.npz")
    assert [row.kind for row in got.layers] == [row.kind for row in expected.layers] == ["leaky", None]
    assert [(row.spikes, row.membrane_updates, row.neurons_per_sample) for row in got.layers] == [
        (row.spikes, row.membrane_updates, row.neurons_per_sample) for row in expected.layers]
    assert [row.name for row in got.layers] == ["lif1", "lif2"]
    assert got.totals == expected.totals and not got.totals.complete


@pytest.mark.parametrize("names", ["anonymous", "named"])
def test_a_second_data_input_is_never_taken_for_a_readout_state(write_model, names):
    """forward(x, y, *state) with y added into the readout's current and the result a scaled readout: the readout
    pass read y's 'update' as 0.5·U + … (a decaying membrane) and fed an output back as y — in named exports too —
    with the user's y array dropped by a note and wrong figures, exit 0. Named states leave y data; without names,
    y and the readout's state read each other, so nothing is paired by the readout pass."""
    net = random_net(np.random.default_rng(9), [6, 5, 4])
    net.reset, net.returns_membrane = "none", True
    model = leaky_stepwise(net)
    graph = model.graph
    add = next(node for node in graph.node if node.op_type == "Add" and "lif2.mem" not in node.input
               and any("matmul" in name for name in node.input) and node.output[0] != "mem_13")
    current = next(name for name in add.input if "matmul" in name)
    add.input[list(add.input).index(current)] = "with_y"
    graph.node.insert(list(graph.node).index(add), onnx.helper.make_node("Add", [current, "y"], ["with_y"]))
    graph.input.insert(1, onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 4]))
    result = next(out for out in graph.output if out.name == "output")
    alias = next(node for node in graph.node if list(node.output) == ["output"])
    graph.node.remove(alias)
    graph.initializer.append(onnx.numpy_helper.from_array(np.float32(0.5), "half"))
    graph.node.append(onnx.helper.make_node("Mul", [alias.input[0], "half"], [result.name]))
    if names == "anonymous":
        states_in = [v.name for v in graph.input][2:]
        states_out = [v.name for v in graph.output][1:]
        _rename(model, {name: f"onnx::Mul_{index + 2}" for index, name in enumerate(states_in)}
                | {name: str(40 + index) for index, name in enumerate(states_out)})
    match = analyse(write_model(model)).match
    assert "y" not in {pair.input for pair in match.state_pairs}
    assert "y" in match.data_inputs


def test_states_of_layers_joined_by_a_membrane_residual_pair_with_their_own_membranes(write_model, tmp_path: Path):
    """lif2(fc2(s1) + 0.5·U1) joins both layers' ops into one component, and a compared state input took the first
    computed membrane there: TorchScript names lif1's state `mem.1` and lif2's `mem`, so sorted by name lif2's state
    took lif1's membrane — both layers' spikes wrong, exit 0. Each state pairs with the membrane nearest to it."""
    net = random_net(np.random.default_rng(21), [6, 5, 5])
    net.membrane_residual = 0.5
    model = leaky_stepwise(net)
    named = write_model(model, "named.onnx")
    states_in = [v.name for v in model.graph.input][1:]
    states_out = [v.name for v in model.graph.output][1:]
    _rename(model, dict(zip(states_in, ["mem.1", "mem"], strict=True))
            | {name: f"onnx::Sub_{28 + 20 * index}" for index, name in enumerate(states_out)})
    data = (np.random.default_rng(22).random((3, 6, 6)) < 0.5).astype(np.float32)
    anonymous = write_model(model, "anonymous.onnx", inputs=data)
    from estimator import estimate

    expected = estimate(named, tmp_path / "inputs.npz")
    got = estimate(anonymous, tmp_path / "inputs.npz")
    assert [row.spikes for row in expected.layers] == net.reference(data)["spikes"]
    assert [(row.kind, row.spikes, row.membrane_updates) for row in got.layers] == [
        (row.kind, row.spikes, row.membrane_updates) for row in expected.layers]


@pytest.mark.parametrize(("scopes", "expected"), [
    (("/blocks.0/lif/", "/blocks.1/lif/"), ["blocks.0.lif", "blocks.1.lif"]),
    (("/net/net.1/", "/net/net.3/"), ["net.1", "net.3"]),
])
def test_layers_inside_containers_are_named_by_their_position(write_model, scopes, expected):
    """nn.ModuleList([Block(fc, lif), …]) exported without names: every block's neuron is called `lif`, and the
    layers came out as lif, lif_2, lif_3; the container's position tells them apart (blocks.0.lif). TorchScript
    repeats a Sequential's own name in its children's scopes (/net/net.1/): that is net.1, not net.net.1."""
    net = random_net(np.random.default_rng(5), [6, 5, 4])
    model = leaky_stepwise(net)
    synapses = [index for index, node in enumerate(model.graph.node) if node.op_type == "MatMul"]
    for index, node in enumerate(model.graph.node):  # block 1 from its synapse on
        node.name = f"{scopes[0] if index < synapses[1] else scopes[1]}{node.op_type}_{index}"
    states_in = [v.name for v in model.graph.input][1:]
    states_out = [v.name for v in model.graph.output][1:]
    _rename(model, {name: f"onnx::Mul_{index + 1}" for index, name in enumerate(states_in)}
            | {name: str(40 + index) for index, name in enumerate(states_out)})
    assert [layer.name for layer in analyse(write_model(model)).match.layers] == expected


@pytest.mark.parametrize("names", ["named", "anonymous"])
@pytest.mark.parametrize("chained", [False, True])
def test_a_synaptic_readout_is_one_uncosted_layer(write_model, names, chained):
    """A Synaptic readout (reset none, its spike dropped) carries its current and its membrane: both read as 'a state
    updated as a membrane is', and it was listed as two uncosted layers (ro, ro_2). Its current, added whole to the
    membrane, is the membrane's. A second readout fed 0.5 × the first's membrane is a layer of its own; and without
    names, the membrane pairs once the current it reads has (it was refused: 'no array for model input(s)')."""
    h, f = onnx.helper, onnx.TensorProto.FLOAT
    rng = np.random.default_rng(3)
    inits = [onnx.numpy_helper.from_array(value, name) for name, value in (
        ("W1", rng.normal(size=(4, 5)).astype(np.float32)), ("W2", rng.normal(size=(5, 3)).astype(np.float32)),
        ("beta1", np.float32(0.9)), ("theta", np.float32(1.0)), ("alpha", np.float32(0.5)),
        ("beta2", np.float32(0.8)), ("half", np.float32(0.5)))]
    fed = "scaled" if chained else "ro.syn.next"
    nodes = [h.make_node("MatMul", ["x", "W1"], ["i1"]), h.make_node("Mul", ["beta1", "lif1.mem"], ["d1"]),
             h.make_node("Add", ["d1", "i1"], ["b1"]), h.make_node("Greater", ["b1", "theta"], ["g1"]),
             h.make_node("Cast", ["g1"], ["s1"], to=f), h.make_node("Mul", ["s1", "theta"], ["r1"]),
             h.make_node("Sub", ["b1", "r1"], ["lif1.mem.next"]), h.make_node("MatMul", ["s1", "W2"], ["i2"]),
             h.make_node("Mul", ["alpha", "ro.syn"], ["d2"]), h.make_node("Add", ["d2", "i2"], ["ro.syn.next"]),
             h.make_node("Mul", ["half", "ro.syn.next"], ["scaled"]), h.make_node("Mul", ["beta2", "ro.mem"], ["d3"]),
             h.make_node("Add", ["d3", fed], ["ro.mem.next"])]
    value = lambda name, width: h.make_tensor_value_info(name, f, ["batch", width])  # noqa: E731
    graph = h.make_graph(nodes, "g", [value("x", 4), value("lif1.mem", 5), value("ro.syn", 3), value("ro.mem", 3)],
                         [value("s1", 5), value("lif1.mem.next", 5), value("ro.syn.next", 3), value("ro.mem.next", 3)],
                         inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    if names == "anonymous":
        _rename(model, {"lif1.mem": "onnx::Mul_1", "ro.syn": "onnx::Mul_2", "ro.mem": "onnx::Mul_3",
                        "lif1.mem.next": "40", "ro.syn.next": "41", "ro.mem.next": "42"})
    layers = analyse(write_model(model)).match.layers
    expected = ["onnx::Mul_1", "onnx::Mul_2", "onnx::Mul_3"] if names == "anonymous" else [
        "lif1.mem", "ro.syn", "ro.mem"]
    assert [(layer.kind, layer.state_input) for layer in layers] == [("leaky", expected[0])] + (
        [(None, expected[1]), (None, expected[2])] if chained else [(None, expected[2])])


def test_an_integrator_read_as_a_synaptic_current_is_said(write_model):
    """A non-spiking integrator (reset none) whose membrane a spiking layer adds whole to its current is, as
    dataflow, one Synaptic neuron, and is costed so (6 per update, where a Leaky and an uncosted integrator would
    be 4 and nothing); the report said nothing of it. It now names the other module the carried state belongs to."""
    h, f = onnx.helper, onnx.TensorProto.FLOAT
    rng = np.random.default_rng(4)
    inits = [onnx.numpy_helper.from_array(value, name) for name, value in (
        ("W1", rng.normal(size=(4, 3)).astype(np.float32)), ("alpha", np.float32(0.7)),
        ("beta", np.float32(0.8)), ("theta", np.float32(1.0)))]
    nodes = [h.make_node("MatMul", ["x", "W1"], ["i1"], name="/fc1/MatMul"),
             h.make_node("Mul", ["alpha", "integ.mem"], ["d1"], name="/integ/Mul"),
             h.make_node("Add", ["d1", "i1"], ["integ.mem.next"], name="/integ/Add"),
             h.make_node("Mul", ["beta", "lif.mem"], ["d2"], name="/lif/Mul"),
             h.make_node("Add", ["d2", "integ.mem.next"], ["b2"], name="/lif/Add"),
             h.make_node("Greater", ["b2", "theta"], ["g2"], name="/lif/Greater"),
             h.make_node("Cast", ["g2"], ["s2"], to=f, name="/lif/Cast"),
             h.make_node("Mul", ["s2", "theta"], ["r2"], name="/lif/Mul_1"),
             h.make_node("Sub", ["b2", "r2"], ["lif.mem.next"], name="/lif/Sub")]
    value = lambda name: h.make_tensor_value_info(name, f, ["batch", 3])  # noqa: E731
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", f, ["batch", 4]), value("integ.mem"),
                                      value("lif.mem")],
                         [value("s2"), value("integ.mem.next"), value("lif.mem.next")], inits)
    layers = analyse(write_model(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]))).match.layers
    (layer,) = layers
    assert (layer.name, layer.kind) == ("lif", "synaptic")
    assert any("its carried state 'integ.mem' belongs to another module (integ)" in note for note in layer.notes)
