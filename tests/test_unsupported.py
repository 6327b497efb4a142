"""Never a silent zero: neurons no kind recognises are listed as uncosted with the reason, `explain` says why, and
Python users can register their own kinds and costs."""

from __future__ import annotations

import numpy as np
import pytest
from builders import (
    adaptive_threshold_stepwise,
    all_steps_at_once_then_leaky,
    delta_stepwise,
    function_node_stepwise,
    gated_stepwise,
    leaky_stepwise,
    leaky_unrolled,
    leaky_unrolled_sequence_synapses,
    multi_spike_stepwise,
    quadratic_stepwise,
    random_net,
    tanh_stepwise,
)
from click.testing import CliRunner

from estimator import NeuronKind, UncostedLayersError, estimate, register_kind
from estimator.cli import main
from estimator.formats import REPORT_FORMATS
from estimator.kinds import unregister_kind


@pytest.fixture
def quadratic(write_model, tmp_path):
    rng = np.random.default_rng(2)
    path = write_model(quadratic_stepwise(rng.normal(size=(6, 4)).astype(np.float32)))
    np.save(tmp_path / "inputs.npy", (rng.random((3, 5, 6)) < 0.5).astype(np.float32))
    return path, tmp_path / "inputs.npy"


def test_unrecognised_neuron_is_listed_not_zeroed(quadratic):
    path, inputs = quadratic
    report = estimate(path, inputs)
    assert [row.kind for row in report.layers] == [None]
    row = report.layers[0]
    assert row.cost_per_update is None and row.dense_ops is None and row.effective_ops is None
    assert row.spikes is not None and row.membrane_updates >= 3 * 4  # counted even though not costed
    assert report.totals.neuron_dense_ops is None and report.totals.complete is False
    assert len(report.uncosted) == 1
    assert "not linear in state and input (terms U·U)" in report.uncosted[0].reason
    assert any("could not be costed" in warning for warning in report.warnings)


def test_a_nonlinear_term_is_named_once(write_model):
    # reset zero multiplies the whole update by (1 − R): U·U and R·U·U are one term of the neuron's, named once
    weight = np.random.default_rng(3).normal(size=(6, 4)).astype(np.float32)
    report = estimate(write_model(quadratic_stepwise(weight, reset_mechanism="zero")), steps=5)
    assert report.layers[0].reset == "zero"
    assert "not linear in state and input (terms U·U)" in report.uncosted[0].reason


@pytest.mark.parametrize("compare", ["sub", "greater"])
def test_an_adaptive_threshold_is_named_as_the_reason(write_model, tmp_path, compare):
    # H(U − θ_t) with θ_t computed: the matcher reads U − θ_t as the membrane, whose update then looks like no kind
    # (Alpha's near miss); the reason says what the neuron has instead (found on a hand-written ALIF export). Spelled
    # U > θ_t, the compare of two computed tensors was not read as a threshold at all: the layer went missing
    rng = np.random.default_rng(4)
    weight = rng.normal(size=(6, 4)).astype(np.float32)
    path = write_model(adaptive_threshold_stepwise(weight, compare=compare))
    data = (rng.random((3, 5, 6)) < 0.5).astype(np.float32)
    np.save(tmp_path / "inputs.npy", data)
    report = estimate(path, tmp_path / "inputs.npy")
    assert [row.kind for row in report.layers] == [None] and report.layers[0].spikes is not None
    assert report.uncosted[0].reason.startswith(
        "its threshold is computed by the graph, not constant (an adaptive threshold?), which no registered kind has")
    # the row counts the membrane's changes, not the adaptation state's (b, which the compare also reads)
    mem, adapted, spikes, updates = np.zeros((3, 4), np.float32), np.zeros((3, 4), np.float32), 0, 0
    for t in range(5):
        theta = np.float32(1.0) + np.float32(0.5) * adapted
        base = np.float32(0.9) * mem + data[:, t] @ weight
        fired = (base - theta > 0).astype(np.float32)
        new = base - fired * theta
        spikes += int(fired.sum())
        updates += new.size if t == 0 else int(np.count_nonzero(new != mem))
        mem, adapted = new, np.float32(0.8) * adapted + fired
    assert (report.layers[0].spikes, report.layers[0].membrane_updates) == (spikes, updates)


@pytest.mark.parametrize("spelling", ["rnn", "concat", "conv"])
def test_a_membrane_of_every_step_at_once_is_named_as_the_reason(write_model, spelling):
    """snnTorch's LeakyParallel computes every step's membrane at once (an nn.RNN). TorchScript exports one RNN op:
    it joined the next layer's component (two layers read as one, uncosted with "ops the matcher cannot read
    (RNN)"). Dynamo traces the steps and concatenates them: read as a threshold on input alone, it was dropped as
    "not neurons" beside a multi-step layer. Each is now a layer of its own, uncosted with that reason; the Leaky layer
    after it is costed."""
    report = estimate(write_model(all_steps_at_once_then_leaky(spelling)))
    assert [(row.kind, row.time_steps) for row in report.layers] == [(None, 1), ("leaky", 5)]
    assert not report.totals.complete
    if spelling == "conv":  # (snnTorch's StateLeaky: silently dropped as a stateless compare beside the Leaky layer)
        assert report.uncosted[0].reason.startswith("one threshold compare with no state carried from step to step, "
                                                    "beside layers unrolled over 5 steps: a layer computing the whole")
        return
    assert report.layers[0].neurons_per_sample is None  # time is in the membrane's shape
    assert report.uncosted[0].reason.startswith("its membrane holds every time step at once")
    assert ("RNN op" if spelling == "rnn" else "Concat of 5 steps") in report.uncosted[0].reason
    assert report.layers[1].dense_ops == 3 * 5 * 4


def test_a_whole_sequence_layer_is_set_aside_and_the_others_replayed(write_model, tmp_path):
    """Beside a Leaky layer unrolled over the inputs' steps, a layer computing the whole sequence at once (StateLeaky's
    causal convolution) is read as one step: the replay refused the model. It now replays it, counts the Leaky layer
    and says the other was not replayed."""
    from builders import LeakyNet

    path = write_model(all_steps_at_once_then_leaky("conv"))
    rng = np.random.default_rng(62)  # the builder's weights, drawn in its order
    weight = rng.normal(0.0, 0.8, size=(6, 5)).astype(np.float32)
    second = LeakyNet([rng.normal(0.0, 0.8, size=(5, 3)).astype(np.float32)])
    data = (np.random.default_rng(5).random((5, 4, 6)) < 0.5).astype(np.float32)  # time first, as the model takes it
    np.save(tmp_path / "inputs.npy", data)
    report = estimate(path, tmp_path / "inputs.npy", time_axis=0, convention="neurobench")
    assert [(row.kind, row.spikes) for row in report.layers][0] == (None, None)
    current = data @ weight
    membrane = np.stack([sum(np.float32(0.9) ** k * current[t - k] for k in range(t + 1)) for t in range(5)])
    fired = (membrane - np.float32(1.0) > 0).astype(np.float32)
    want = second.reference(fired.transpose(1, 0, 2))
    assert (report.layers[1].spikes, report.layers[1].membrane_updates) == (want["spikes"][0],
                                                                            want["membrane_updates"][0])
    assert want["spikes"][0] > 0 and not report.totals.complete
    assert any(note.startswith("layer1: not replayed (read as 1 time step(s), the inputs have 5") for note in
               report.notes)


def test_a_delta_neuron_is_named_as_the_reason(write_model):
    """snnTorch's DeltaLeaky fires on |U_t − U_{t−1}| > δ: the compared tensor is the size of a change, whose reading
    stopped at the Abs ("ops the matcher cannot read (Abs)"), which told the user nothing."""
    report = estimate(write_model(delta_stepwise(np.random.default_rng(6).normal(size=(6, 4)).astype(np.float32))),
                      steps=5)
    assert [row.kind for row in report.layers] == [None]
    assert report.uncosted[0].reason.startswith("its spikes fire on the size of a change, |a − b| of two computed "
                                                "tensors (a delta neuron, as snnTorch's DeltaLeaky)")


def test_strict_turns_uncosted_into_exit_3(quadratic):
    path, inputs = quadratic
    with pytest.raises(UncostedLayersError):
        estimate(path, inputs, strict=True)
    result = CliRunner().invoke(main, ["estimate", str(path), "--strict"])
    assert result.exit_code == 3
    assert result.stderr.startswith("error: 1 layer(s) could not be costed (--strict); first: q1:")
    table = CliRunner().invoke(main, ["estimate", str(path)])
    assert table.exit_code == 0
    assert "uncosted (not in the totals):" in table.stdout and "q1: update matches no registered" in table.stdout


def test_explain_shows_the_update_and_every_near_miss(quadratic):
    path, _ = quadratic
    result = CliRunner().invoke(main, ["explain", str(path)])
    assert result.exit_code == 0
    assert "q1: NOT RECOGNISED" in result.stdout
    assert "U_t = 1·I:" in result.stdout and "0.5·U·U" in result.stdout
    for kind in ("leaky", "lapicque", "synaptic", "alpha", "rleaky", "rsynaptic"):
        assert f"not {kind}: the update is not linear in state and input (terms U·U)" in result.stdout


def test_an_activation_inside_an_update_is_the_layers_not_a_graph_note(write_model):
    """A Tanh inside a neuron's update is an op explain says it could not read, not one of the graph's non-spiking
    activations; the ReLU shaping the layer's input current still is one."""
    path = write_model(tanh_stepwise(np.random.default_rng(6).normal(size=(5, 4)).astype(np.float32)))
    report = estimate(path)
    assert [row.kind for row in report.layers] == [None]
    explained = CliRunner().invoke(main, ["explain", str(path)]).stdout
    assert "ops the matcher could not read: Tanh" in explained
    assert "note: the graph also holds non-spiking activations (Relu ×1): not neurons" in explained
    assert "Tanh ×" not in explained


def test_a_gated_cell_is_named_as_one(write_model):
    """An LSTM-style cell (snnTorch's SLSTM, SConv2dLSTM) was uncosted for "ops the matcher cannot read (Tanh)", and
    its own gates were listed as the graph's non-spiking activations. The reason now says what it is."""
    report = estimate(write_model(gated_stepwise(np.random.default_rng(7).normal(size=(5, 4)).astype(np.float32))))
    assert [row.kind for row in report.layers] == [None] and report.totals.neuron_dense_ops is None
    assert report.uncosted[0].reason.startswith("a gated cell (Sigmoid and Tanh gates, as snnTorch's SLSTM and "
                                                "SConv2dLSTM), which no cost table prices: ")
    assert not any("non-spiking activations" in note for note in report.notes)
    plain = estimate(write_model(tanh_stepwise(np.random.default_rng(6).normal(size=(5, 4)).astype(np.float32)),
                                 "tanh.onnx"))
    assert not plain.uncosted[0].reason.startswith("a gated cell")  # one activation is no gate pair


def test_explain_names_the_kind_of_a_known_neuron(write_model):
    net = random_net(np.random.default_rng(3), [5, 4], reset="zero")
    path = write_model(function_node_stepwise(net, "Leaky", "snntorch._neurons.leaky"))
    result = CliRunner().invoke(main, ["explain", str(path)])
    assert "lif1: leaky / zero  (recognised by function Leaky" in result.stdout


def test_unknown_function_class_is_uncosted_until_registered(write_model, tmp_path):
    rng = np.random.default_rng(4)
    net = random_net(rng, [6, 5])
    path = write_model(function_node_stepwise(net, "MyNeuron"))
    data = (rng.random((4, 6, 6)) < 0.5).astype(np.float32)
    np.save(tmp_path / "inputs.npy", data)
    report = estimate(path, tmp_path / "inputs.npy")
    assert report.uncosted[0].reason == "function-node class 'MyNeuron' is not a registered neuron kind"

    register_kind(NeuronKind("myneuron", ("MyNeuron",), ("mem",), "spk", lambda features: None, "U = βU + I − Rθ"))
    try:
        table = tmp_path / "mine.toml"
        table.write_text('[meta]\nname = "my-chip"\n[costs.myneuron]\nsubtract = 7\n')
        report = estimate(path, tmp_path / "inputs.npy", cost_tables=[table])
    finally:
        unregister_kind("myneuron")
    row = report.layers[0]
    assert (row.kind, row.reset, row.cost_per_update, row.cost_source) == ("myneuron", "subtract", 7, "my-chip")
    want = net.reference(data)
    assert row.spikes == want["spikes"][0]
    assert report.totals.effective_neuron_ops_run == want["spikes"][0] * 7
    assert report.uncosted == ()


def test_registered_kind_recognises_by_features(quadratic, tmp_path):
    path, inputs = quadratic

    def quadratic_if(features):
        return None if features.nonlinear_terms == ("U·U",) else "no U² term"

    register_kind(NeuronKind("qif", ("QIF",), ("mem",), "spk", quadratic_if, "U = U + βU² + I − Rθ"))
    try:
        table = tmp_path / "qif.toml"
        table.write_text("[costs.qif]\nsubtract = 6\n")
        report = estimate(path, inputs, cost_tables=[table])
    finally:
        unregister_kind("qif")
    assert (report.layers[0].kind, report.layers[0].cost_per_update) == ("qif", 6)
    assert report.totals.complete


def _with_unknown_neuron_shapes(model, dims: list) -> None:
    """Declare every Add/Sub/Mul output with `dims` (what a damaged file or a hand edit can hold; the checker passes
    it), so no static shape gives the neurons' count."""
    from onnx import TensorProto, helper

    for node in model.graph.node:
        if node.op_type in ("Add", "Sub", "Mul"):
            for name in node.output:
                model.graph.value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))


def test_a_layer_of_unknown_size_is_never_a_silent_zero(write_model, tmp_path):
    import onnx
    from builders import leaky_unrolled

    rng = np.random.default_rng(41)
    net = random_net(rng, [5, 6])
    model = leaky_unrolled(net, 4)
    _with_unknown_neuron_shapes(model, ["batch", -5])
    onnx.checker.check_model(model)
    path = write_model(model)
    dense = estimate(path)
    assert [row.neurons_per_sample for row in dense.layers] == [None]  # never -5 neurons
    assert dense.totals.neuron_dense_ops is None and not dense.totals.complete
    assert any("unknown size left out of Neuron Dense Ops (leaky1)" in w for w in dense.warnings), dense.warnings
    data = (rng.random((3, 4, 5)) < 0.5).astype(np.float32)
    np.save(tmp_path / "inputs.npy", data)
    replayed = estimate(path, tmp_path / "inputs.npy")  # the replay measures the layer: the figures are whole
    assert replayed.layers[0].neurons_per_sample == 6 and replayed.totals.neuron_dense_ops == 6 * 4 * 4
    assert replayed.totals.complete and not any("unknown size" in w for w in replayed.warnings)


def test_a_negative_dim_on_a_state_output_keeps_its_state_pair(write_model, tmp_path):
    """A stepwise export whose state output declares a dim of -1 (invalid ONNX; a damaged file) is still paired with
    its state input: the negative dim is an unknown one, not a size that differs from the input's."""
    from builders import leaky_stepwise

    rng = np.random.default_rng(43)
    net = random_net(rng, [6, 5, 3])
    data = (rng.random((4, 5, 6)) < 0.5).astype(np.float32)
    np.save(tmp_path / "inputs.npy", data)
    whole = estimate(write_model(leaky_stepwise(net, "dynamo"), "whole.onnx"), tmp_path / "inputs.npy")
    model = leaky_stepwise(net, "dynamo")
    state_output = next(output for output in model.graph.output if output.name == "lif1.mem.next")
    state_output.type.tensor_type.shape.dim[1].dim_value = -1
    damaged = estimate(write_model(model, "damaged.onnx"), tmp_path / "inputs.npy")
    assert [(row.kind, row.spikes, row.membrane_updates) for row in damaged.layers] == \
        [(row.kind, row.spikes, row.membrane_updates) for row in whole.layers]
    assert damaged.totals == whole.totals


def test_a_layer_behind_an_op_shape_inference_cannot_see_through_is_left_out_and_said(write_model):
    from builders import leaky_unrolled
    from onnx import helper

    rng = np.random.default_rng(42)
    model = leaky_unrolled(random_net(rng, [5, 6, 3]), 4)
    first = next(node for node in model.graph.node if node.op_type in ("MatMul", "Gemm"))
    first.domain = "custom.ops"  # a custom op before the first layer: no static shape for its neurons
    model.opset_import.append(helper.make_opsetid("custom.ops", 1))
    report = estimate(write_model(model))
    assert [row.neurons_per_sample for row in report.layers] == [None, None]  # shapes stop at the custom op
    assert report.totals.neuron_dense_ops is None and not report.totals.complete  # not 0
    assert any("2 layer(s) of unknown size left out of Neuron Dense Ops (leaky1, leaky2)" in w
               for w in report.warnings), report.warnings
    shown = REPORT_FORMATS["table"](report)
    assert "total" in shown and " 0 " not in shown.split("total", 1)[1].splitlines()[0]


def _with_class_metadata(model, hierarchy: str) -> None:
    """What torch's dynamo exporter records on every node: the module classes it came from."""
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            entry = node.metadata_props.add()
            entry.key, entry.value = "pkg.torch.onnx.class_hierarchy", hierarchy


@pytest.mark.parametrize(("declared", "kind", "cost", "note"), [
    ("snntorch._neurons.lapicque.Lapicque", "lapicque", 11, "the update is also a leaky update; the export's class "
                                                             "metadata names Lapicque, so it is costed as lapicque"),
    ("snntorch._neurons.leaky.Leaky", "leaky", 4, None),
    # Synaptic with α = 0 has Leaky's update exactly (its current is this step's): the class decides, as NeuroBench's
    ("snntorch._neurons.synaptic.Synaptic", "synaptic", 6, "the update is also a leaky update; the export's class "
                                                           "metadata names Synaptic, so it is costed as synaptic"),
    ("snntorch._neurons.alpha.Alpha", "leaky", 4, "the export's class metadata names Alpha, but the update "
                                                  "reads as leaky: costed as leaky"),
])
def test_class_metadata_tells_lapicque_from_leaky(write_model, tmp_path, declared, kind, cost, note):
    """Lapicque with Δt/C = 1 (snn.Lapicque(R=3, C=1)) has Leaky's update exactly: the graph's algebra cannot tell
    them apart, but the cost can (11 against 4). The dynamo exporter's class metadata decides; a class whose update
    differs from the one read is only noted."""
    from builders import leaky_unrolled

    rng = np.random.default_rng(44)
    net = random_net(rng, [5, 4])
    model = leaky_unrolled(net, 4)
    _with_class_metadata(model, f"['Net', '{declared}', 'aten.mul.Tensor']")
    report = estimate(write_model(model))
    (row,) = report.layers
    assert (row.kind, row.cost_per_update, row.dense_ops) == (kind, cost, 4 * 4 * cost)
    listed = CliRunner().invoke(main, ["layers", str(write_model(model, "again.onnx")), "-f", "json"]).stdout
    import json

    layer = json.loads(listed)["layers"][0]
    assert layer["recognised_by"] == (f"class metadata {declared.rsplit('.', 1)[-1]}" if kind != "leaky"
                                      else "structure")
    notes = CliRunner().invoke(main, ["explain", str(tmp_path / "again.onnx")]).stdout
    assert (note in notes) if note else ("class metadata" not in notes)


def test_a_one_step_unrolled_layer_has_no_reset_reading(write_model):
    """With one step and no state input there is no previous membrane: the reset is unknown, not 'none'."""
    from builders import leaky_unrolled

    model = leaky_unrolled(random_net(np.random.default_rng(45), [5, 4]), 1)
    (row,) = estimate(write_model(model)).layers
    assert (row.kind, row.reset, row.cost_per_update) == (None, None, None)
    assert "only one time step in the graph" in estimate(write_model(model)).uncosted[0].reason


@pytest.mark.parametrize("style", ["stepwise", "unrolled"])
def test_a_membrane_readout_with_no_compare_left_is_listed_not_lost(write_model, tmp_path, style):
    """A last layer with reset none whose membrane the model returns: its spike feeds nothing, so the exporter drops
    the threshold compare, and the layer went missing from the report (totals 'complete', no warning; found by a
    helper's sweep of larger nets). It is an uncosted layer saying why, and the replay counts the others."""
    net = random_net(np.random.default_rng(9), [6, 5, 4])
    net.reset, net.returns_membrane = "none", True
    model = leaky_stepwise(net) if style == "stepwise" else leaky_unrolled(net, 5)
    data = (np.random.default_rng(10).random((3, 5, 6)) < 0.5).astype(np.float32)
    report = estimate(write_model(model, inputs=data), tmp_path / "inputs.npz")
    assert [row.kind for row in report.layers] == ["leaky", None]
    assert report.layers[0].spikes == net.reference(data)["spikes"][0] and report.layers[1].spikes is None
    assert report.layers[1].neurons_per_sample == 4 and not report.totals.complete
    assert report.uncosted[0].reason.startswith("a state updated as a membrane is (U_t = ")
    assert "with no threshold compare: a neuron layer whose spikes the exporter dropped" in report.uncosted[0].reason


def test_a_membrane_readout_whose_zero_state_was_folded_away_is_listed(write_model):
    """The readout of the test above after a simplifier folded its zero initial state away (U_0 = I_0, the first
    step's synapse output itself): still one uncosted layer of all the steps."""
    from onnx import TensorProto, helper, numpy_helper

    net = random_net(np.random.default_rng(11), [6, 5])
    model = leaky_unrolled(net, 4)  # one Leaky layer: output (batch, 4, 5) spikes
    weight = np.random.default_rng(12).normal(size=(5, 3)).astype(np.float32)
    graph = model.graph
    graph.initializer.extend([numpy_helper.from_array(weight, "W_readout"),
                              numpy_helper.from_array(np.float32(0.9), "beta_readout")])
    membrane = None
    for t in range(4):
        graph.initializer.append(numpy_helper.from_array(np.asarray(t, np.int64), f"step_{t}"))
        graph.node.extend([helper.make_node("Gather", ["output", f"step_{t}"], [f"s_{t}"], axis=1),
                           helper.make_node("MatMul", [f"s_{t}", "W_readout"], [f"i_{t}"])])
        if membrane is None:
            membrane = f"i_{t}"  # U_0 = I_0
            continue
        graph.node.extend([helper.make_node("Mul", ["beta_readout", membrane], [f"decayed_{t}"]),
                           helper.make_node("Add", [f"decayed_{t}", f"i_{t}"], [f"u_{t}"])])
        membrane = f"u_{t}"
    graph.output.append(helper.make_tensor_value_info(membrane, TensorProto.FLOAT, ["batch", 3]))
    report = estimate(write_model(model))
    assert [(row.kind, row.time_steps) for row in report.layers] == [("leaky", 4), (None, 4)]
    assert report.layers[1].neurons_per_sample == 3 and not report.totals.complete


@pytest.mark.parametrize("spelling", ["cast", "floor"])
def test_a_multi_spike_neuron_is_uncosted_and_says_its_spikes_are_counts(write_model, tmp_path, spelling):
    """sinabs' MultiSpike sends H(U)·trunc(U/θ) on: TorchScript's int cast was read as the value itself, and the
    layer costed as Leaky zero with the steps over 0 counted as its spikes (1197 for 874 emitted)."""
    rng = np.random.default_rng(63)
    path = write_model(multi_spike_stepwise(rng.normal(0.0, 1.5, size=(6, 4)).astype(np.float32), spelling=spelling))
    np.save(tmp_path / "inputs.npy", (rng.random((3, 5, 6)) < 0.5).astype(np.float32))
    report = estimate(path, tmp_path / "inputs.npy")
    assert [row.kind for row in report.layers] == [None] and report.totals.complete is False
    assert report.uncosted[0].reason.startswith("a multi-spike neuron: the spike it sends on is its threshold "
                                                "compare times a count computed from the membrane")


def test_an_unrolled_layer_with_fewer_membranes_than_its_input_has_steps_is_uncosted(write_model):
    """A hand-written current-based LIF whose membrane reads the previous step's current, from a zero start, has
    constant first membranes (folded by the exporter) and unused last inputs: 13 membranes for an input of 15 steps.
    Dense ops were computed for 13 steps, exit 0, totals complete. Here: 6 steps traced of an input declaring 8."""
    rng = np.random.default_rng(64)
    model = leaky_unrolled(random_net(rng, [5, 4, 3]), 6)
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 8
    report = estimate(write_model(model))
    assert [row.kind for row in report.layers] == [None, None] and report.totals.complete is False
    assert all(u.reason.startswith("its membrane is computed at 6 of the 8 time steps its input holds")
               for u in report.uncosted)


def test_an_input_holding_the_steps_of_uncosted_layers_is_not_static(write_model, tmp_path):
    """A synapse run over the whole sequence (the input is never sliced per step) in front of layers no kind
    recognises: the input (batch, T, features) was taken for a static image read whole at every step (layers with a
    reason held no steps to compare T with), and the replay refused the recordings as (batch, features)."""
    rng = np.random.default_rng(66)
    net = random_net(rng, [6, 5, 3])
    model = leaky_unrolled_sequence_synapses(net, 5)
    betas = {node.output[0] for node in model.graph.node if node.op_type == "Clip"}
    for node in model.graph.node:  # β·U → U·U: a quadratic update, uncosted
        if node.op_type == "Mul" and betas & set(node.input):
            other = next(name for name in node.input if name not in betas)
            node.input[:] = [other, other]
    path = write_model(model, inputs=(rng.random((4, 5, 6)) < 0.4).astype(np.float32))
    report = estimate(path, tmp_path / "inputs.npz")
    assert [row.kind for row in report.layers] == [None, None]
    assert not any("no time axis" in note for note in report.notes)
    assert report.samples == 4 and report.time_steps == 5


@pytest.mark.parametrize(("reset", "kind"),
                         [("subtract", "leaky"), ("value", "leaky"), ("zero", "leaky"), (None, None)])
def test_a_membrane_that_keeps_nothing_is_its_kind_when_its_reset_says_which(reset, kind):
    """snn.Leaky(beta=0): U_t = I_t − R_t·θ keeps of U_{t-1} only what the reset takes off, and NeuroBench costs it as
    Leaky (it was uncosted, 'membrane decay term missing'); so is a zero reset of the whole new value, (1 − R)·I
    (Synaptic's and Lapicque's spelling). Leaky's own zero reset, β·(1 − R)·U, vanishes with β: the update is no
    reset's too, the reset is read as unknown, and the two cost differently, so it stays uncosted, saying why."""
    from estimator.kinds import UpdateFeatures, classify

    features = UpdateFeatures(carried_states=0, membrane_feedback=False, recurrent=False, input_gain=1.0, reset=reset)
    found, reasons = classify(features)
    assert (found.name if found else None) == kind
    if kind is None:
        assert "β = 0 with a zero reset or none" in reasons["leaky"]


@pytest.mark.parametrize(("reset", "read"), [("zero", None), ("none", None), ("subtract", "subtract")])
def test_a_leaky_layer_with_beta_zero_reads_its_reset_as_unknown_when_it_cannot_be_told(write_model, tmp_path,
                                                                                        reset, read):
    """Leaky(beta=0) with a zero reset was listed with reset 'none', a reset it does not have."""
    net = random_net(np.random.default_rng(7), [6, 5], beta=0.0)
    net.reset = reset
    data = (np.random.default_rng(8).random((3, 5, 6)) < 0.5).astype(np.float32)
    report = estimate(write_model(leaky_unrolled(net, 5), inputs=data), tmp_path / "inputs.npz")
    (row,) = report.layers
    assert row.reset == read and (row.kind == "leaky") == (read is not None)
    assert row.spikes == net.reference(data)["spikes"][0]
