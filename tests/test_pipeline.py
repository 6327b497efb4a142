"""End to end on hand-built snnTorch-style graphs, against an independent numpy computation of the same network."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from builders import (
    LeakyNet,
    hand_written_lif_reference,
    hand_written_lif_stepwise,
    hand_written_lif_unrolled,
    leaky_stepwise,
    leaky_unrolled,
    leaky_unrolled_sequence_synapses,
    random_net,
    rounded_lif_stepwise,
)

from estimator import estimate
from estimator.api import analyse
from estimator.errors import InputError
from estimator.inputs import read_inputs
from estimator.replay import replay

COST = 4  # Leaky, NeuroBench's table (subtract and zero)


def _data(rng: np.random.Generator, samples: int, steps: int, features: int) -> np.ndarray:
    return (rng.random((samples, steps, features)) < 0.35).astype(np.float32)


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("spelling", ["torchscript", "dynamo"])
@pytest.mark.parametrize("style", ["stepwise", "unrolled"])
def test_counts_equal_numpy_reference(write_model, tmp_path, reset, spelling, style):
    rng = np.random.default_rng(7)
    net = random_net(rng, [12, 16, 6], reset=reset)
    data = _data(rng, 7, 9, 12)
    model = leaky_stepwise(net, spelling) if style == "stepwise" else leaky_unrolled(net, 9, spelling)
    path = write_model(model, inputs=data)
    want = net.reference(data)
    for convention in ("spikes", "neurobench"):
        report = estimate(path, tmp_path / "inputs.npz", convention=convention, batch_size=3)
        assert [row.kind for row in report.layers] == ["leaky", "leaky"]
        assert [row.reset for row in report.layers] == [reset, reset]
        assert [row.spikes for row in report.layers] == want["spikes"]
        assert [row.membrane_updates for row in report.layers] == want["membrane_updates"]
        assert [row.neurons_per_sample for row in report.layers] == [16, 6]
        assert report.samples == 7 and report.time_steps == 9
        counted = want["spikes"] if convention == "spikes" else want["membrane_updates"]
        cost = 3 if reset == "none" else COST  # none: neuronops' extension table
        assert report.totals.effective_neuron_ops_run == sum(counted) * cost
        assert report.totals.effective_neuron_ops == pytest.approx(sum(counted) * cost / 7, rel=1e-12)
        assert report.totals.neuron_dense_ops == (16 + 6) * 9 * cost


@pytest.mark.parametrize("style", ["stepwise", "unrolled"])
@pytest.mark.parametrize("data", ["ones", "zeros"])
def test_neurobench_unit_test_figures(write_model, tmp_path, style, data):
    """NeuroBench's own test: Linear(20, 5, bias=False) + Leaky(beta=0.9), input (5, 10, 20)."""
    rng = np.random.default_rng(0)
    weight = rng.uniform(-1 / np.sqrt(20), 1 / np.sqrt(20), size=(20, 5)).astype(np.float32)
    weight[:, :] = np.abs(weight) + 0.01  # every neuron gets a non-zero current from an all-ones input
    net = LeakyNet([weight], beta=0.9)
    inputs = (np.ones if data == "ones" else np.zeros)((5, 10, 20), np.float32)
    model = leaky_stepwise(net) if style == "stepwise" else leaky_unrolled(net, 10)
    path = write_model(model, inputs=inputs)
    report = estimate(path, tmp_path / "inputs.npz", convention="neurobench")
    assert report.totals.neuron_dense_ops == 200
    assert report.totals.effective_neuron_ops == (200.0 if data == "ones" else 20.0)


def test_counts_do_not_depend_on_batch_size_or_sharding(write_model, tmp_path):
    rng = np.random.default_rng(3)
    net = random_net(rng, [10, 12, 4])
    path = write_model(leaky_unrolled(net, 6), inputs=_data(rng, 11, 6, 10))
    plan = analyse(path, for_replay=True).plan
    recorded = read_inputs(tmp_path / "inputs.npz", plan.match.data_inputs)
    whole = replay(plan, recorded, batch_size=11)
    for size in (1, 4, 5):
        assert replay(plan, recorded, batch_size=size).layers == whole.layers
    shards = [replay(plan, recorded, sample_range=r) for r in ((0, 4), (4, 5), (5, 11))]
    merged = shards[0].merge(shards[1]).merge(shards[2])
    assert merged.layers == whole.layers and merged.samples == 11


def test_fixed_batch_graph_pads_the_last_batch(write_model, tmp_path):
    rng = np.random.default_rng(4)
    net = random_net(rng, [8, 5])
    data = _data(rng, 7, 5, 8)
    path = write_model(leaky_unrolled(net, 5, "dynamo", batch=3), inputs=data)
    report = estimate(path, tmp_path / "inputs.npz", convention="neurobench")
    want = net.reference(data)
    assert report.samples == 7
    assert [row.membrane_updates for row in report.layers] == want["membrane_updates"]
    assert [row.spikes for row in report.layers] == want["spikes"]
    assert not any("--batch-size" in note for note in report.notes)
    # a --batch-size the graph cannot take is not silently dropped (the figures are the same)
    asked = estimate(path, tmp_path / "inputs.npz", convention="neurobench", batch_size=2)
    assert "--batch-size 2 not used: the graph fixes the batch at 3 (the last batch is padded, only its real " \
        "samples counted)" in asked.notes
    assert asked.totals == report.totals


def test_dense_ops_without_inputs(write_model):
    rng = np.random.default_rng(5)
    net = random_net(rng, [8, 16, 4])
    unrolled = estimate(write_model(leaky_unrolled(net, 12), "u.onnx"))
    assert unrolled.totals.neuron_dense_ops == (16 + 4) * 12 * COST
    assert unrolled.totals.effective_neuron_ops is None and unrolled.samples is None
    stepwise = estimate(write_model(leaky_stepwise(net), "s.onnx"))
    assert stepwise.totals.neuron_dense_ops == (16 + 4) * COST  # per step, and the report says so
    assert any("per time step" in warning for warning in stepwise.warnings)
    assert stepwise.per == "time step" and unrolled.per == "sample"  # and every format labels the figures so
    from estimator.formats import REPORT_FORMATS

    def labels(report, fmt: str) -> set[str]:
        shown = REPORT_FORMATS[fmt](report).replace("/ ", "per ")
        return {label for label in ("Ops per sample", "ops are per sample", "Ops per time step",
                                    "ops are per time step") if label in shown}

    for fmt in ("table", "csv", "markdown", "html"):
        assert labels(stepwise, fmt) and all("time step" in label for label in labels(stepwise, fmt)), fmt
        assert labels(unrolled, fmt) and all("per sample" in label for label in labels(unrolled, fmt)), fmt
    with_steps = estimate(write_model(leaky_stepwise(net), "s2.onnx"), steps=25)
    assert with_steps.totals.neuron_dense_ops == 20 * 25 * COST and with_steps.per == "sample"
    # an unrolled export's steps are in the graph: a different --steps is ignored, and said so
    unrolled_path = write_model(leaky_unrolled(net, 12), "u2.onnx")
    ignored = estimate(unrolled_path, steps=25)
    assert ignored.totals.neuron_dense_ops == unrolled.totals.neuron_dense_ops
    assert unrolled.time_steps == ignored.time_steps == 12  # the graph's steps, not --steps
    assert stepwise.time_steps is None and with_steps.time_steps == 25
    assert "--steps 25 ignored: the model is unrolled with 12 time steps in the graph" in ignored.warnings
    assert not any("--steps" in warning for warning in estimate(unrolled_path, steps=12).warnings)


def test_time_axis_option(write_model, tmp_path):
    rng = np.random.default_rng(6)
    net = random_net(rng, [6, 7])
    data = _data(rng, 4, 5, 6)
    path = write_model(leaky_stepwise(net))
    np.save(tmp_path / "time_first.npy", np.ascontiguousarray(np.moveaxis(data, 1, 0)))
    report = estimate(path, tmp_path / "time_first.npy", time_axis=0)
    assert [row.spikes for row in report.layers] == net.reference(data)["spikes"]


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("style", ["stepwise", "unrolled"])
def test_reset_without_delay(write_model, tmp_path, reset, style):
    """snnTorch's reset_delay=False: the membrane NeuroBench records is the one after the same-step reset."""
    rng = np.random.default_rng(11)
    net = random_net(rng, [10, 14, 5], reset=reset)
    net.reset_delay = False
    data = _data(rng, 6, 8, 10)
    model = leaky_stepwise(net) if style == "stepwise" else leaky_unrolled(net, 8)
    path = write_model(model, inputs=data)
    want = net.reference(data)
    report = estimate(path, tmp_path / "inputs.npz", convention="neurobench")
    assert [(row.kind, row.reset, row.time_steps) for row in report.layers] == [("leaky", reset, 8)] * 2
    assert [row.spikes for row in report.layers] == want["spikes"]
    assert [row.membrane_updates for row in report.layers] == want["membrane_updates"]
    assert any("reset_delay=False" in note for note in report.notes)


@pytest.mark.parametrize("style", ["stepwise", "unrolled"])
@pytest.mark.parametrize("spelling", ["torchscript", "dynamo"])
def test_per_neuron_parameters(write_model, tmp_path, style, spelling):
    """β as a vector (one per neuron, e.g. learn_beta with a per-neuron init) reads the same as a scalar."""
    rng = np.random.default_rng(12)
    net = random_net(rng, [9, 11], reset="zero")
    net.beta = rng.uniform(0.5, 0.95, size=11).astype(np.float32)
    data = _data(rng, 5, 7, 9)
    model = leaky_stepwise(net, spelling) if style == "stepwise" else leaky_unrolled(net, 7, spelling)
    report = estimate(write_model(model, inputs=data), tmp_path / "inputs.npz", convention="neurobench")
    want = net.reference(data)
    assert [(row.kind, row.reset) for row in report.layers] == [("leaky", "zero")]
    assert [row.membrane_updates for row in report.layers] == want["membrane_updates"]
    assert [row.spikes for row in report.layers] == want["spikes"]


def test_current_shaped_by_other_ops_is_still_input(write_model, tmp_path):
    """Conv → MaxPool → Leaky puts a pooling op between the synapse and the membrane: the pooled (here rectified)
    current is input, not neuron state."""
    from onnx import helper

    rng = np.random.default_rng(21)
    net = random_net(rng, [8, 6])
    net.weights = [np.abs(weight) for weight in net.weights]  # Relu is then the identity: same reference counts
    model = leaky_stepwise(net)
    matmul = next(node for node in model.graph.node if node.op_type == "MatMul")
    shaped = matmul.output[0] + "_shaped"
    for node in model.graph.node:
        node.input[:] = [shaped if name == matmul.output[0] else name for name in node.input]
    model.graph.node.insert(list(model.graph.node).index(matmul) + 1,
                            helper.make_node("Relu", [matmul.output[0]], [shaped]))
    data = _data(rng, 4, 6, 8)
    report = estimate(write_model(model, inputs=data), tmp_path / "inputs.npz", convention="neurobench")
    assert [(row.kind, row.reset) for row in report.layers] == [("leaky", "subtract")]
    assert report.uncosted == ()
    want = net.reference(data)
    assert [row.membrane_updates for row in report.layers] == want["membrane_updates"]
    assert [row.spikes for row in report.layers] == want["spikes"]


def _all_attributes(graph):
    for node in graph.node:
        for attribute in node.attribute:
            yield attribute
            if attribute.HasField("g"):
                yield from _all_attributes(attribute.g)
            for subgraph in attribute.graphs:
                yield from _all_attributes(subgraph)


def test_attribute_reader_agrees_with_onnx_helper():
    """graph._attribute_value reads each attribute type's field directly; it must give onnx.helper's value for every
    attribute of every bundled sample and conformance model, and for each attribute type built here."""
    import onnx
    from conftest import conformance_cases, sample_cases
    from onnx import helper

    from estimator.graph import _attribute_value

    models = [next(case.glob("*.onnx")) for case in sample_cases() + conformance_cases() if any(case.glob("*.onnx"))]
    attributes = [a for path in models for a in _all_attributes(onnx.load(path, load_external_data=False).graph)]
    made = helper.make_node("Op", ["x"], ["y"], f=0.5, i=-3, s="text", t=helper.make_tensor("w", 1, [2], [1.0, 2.0]),
                            floats=[0.25, -0.0], ints=[1, 2], strings=["a", "b"],
                            tensors=[helper.make_tensor("v", 7, [1], [4])])
    attributes.extend(made.attribute)
    kinds = {a.type for a in attributes}
    assert {onnx.AttributeProto.INT, onnx.AttributeProto.TENSOR, onnx.AttributeProto.FLOATS} <= kinds
    for attribute in attributes:
        if attribute.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            assert _attribute_value(attribute) is None  # subgraphs are not analysed
            continue
        mine, theirs = _attribute_value(attribute), helper.get_attribute_value(attribute)
        assert type(mine) is type(theirs) and mine == theirs, attribute.name


def test_inputs_from_memory_give_the_file_figures(write_model, tmp_path):
    rng = np.random.default_rng(31)
    net = random_net(rng, [6, 7, 3])
    data = _data(rng, 5, 4, 6)
    for style, model in (("unrolled", leaky_unrolled(net, 4)), ("stepwise", leaky_stepwise(net))):
        path = write_model(model, f"{style}.onnx")
        np.save(tmp_path / "inputs.npy", data)
        from_file = estimate(path, tmp_path / "inputs.npy", convention="neurobench")
        assert estimate(path, data, convention="neurobench").to_dict() == from_file.to_dict()
        assert estimate(path, {"input": data}, convention="neurobench").to_dict() == from_file.to_dict()
        time_first = np.ascontiguousarray(np.moveaxis(data, 1, 0))
        assert estimate(path, time_first, convention="neurobench", time_axis=0).totals == from_file.totals
    with pytest.raises(InputError, match="numpy array or a dict of arrays by input name, not list"):
        estimate(path, data.tolist())
    with pytest.raises(InputError, match=r"'input' -> list; give arrays by input name"):
        estimate(path, {"input": data.tolist()})
    with pytest.raises(InputError, match=r"no array for model input\(s\) 'input' \(arrays given 'x', 'y'\)"):
        estimate(path, {"x": data, "y": data})  # (it said "file has": there is no file)
    nan = data.copy()
    nan[1, 2, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        estimate(path, nan)
    from estimator.parallel import InlineBackend, estimate_sharded

    with pytest.raises(InputError, match="a split run reads its inputs from a .npy/.npz file, not a ndarray"):
        estimate_sharded(path, data, backend=InlineBackend())


def test_api_takes_a_convention_in_any_case_and_one_cost_table_alone(write_model, tmp_path):
    """As the CLI does: `convention="NeuroBench"` is the neurobench convention, and `cost_tables="chip.toml"` is one
    table (not a table per character). An unknown convention is a NeuronopsError (and a ValueError)."""
    from estimator import NeuronopsError

    rng = np.random.default_rng(8)
    net = random_net(rng, [6, 5])
    path = write_model(leaky_unrolled(net, 4), inputs=_data(rng, 3, 4, 6))
    table = tmp_path / "chip.toml"
    table.write_text("[costs.leaky]\nsubtract = 5\n")
    upper = estimate(path, tmp_path / "inputs.npz", convention="NeuroBench", cost_tables=str(table))
    lower = estimate(path, tmp_path / "inputs.npz", convention="neurobench", cost_tables=[table])
    assert upper.to_dict() == lower.to_dict()
    assert upper.convention == "neurobench" and upper.layers[0].cost_per_update == 5
    assert estimate(path, cost_tables=table).layers[0].cost_per_update == 5
    for wrong in ("dense", None):
        with pytest.raises(NeuronopsError, match="convention must be one of spikes, neurobench, not") as info:
            estimate(path, convention=wrong)
        assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("spelling", ["torchscript", "dynamo"])
@pytest.mark.parametrize("style", ["unrolled", "stepwise"])
def test_a_spike_level_residual_keeps_three_leaky_layers(write_model, tmp_path, style, spelling):
    """SEW-style: fc3 reads s1 + s2. The Add of two layers' spikes joins their components, so the matcher must not
    take the earlier layer's spike for a recurrent current (RLeaky) nor chain the two stepwise membranes as steps
    of one layer (found on new snnTorch exports: lif2 costed as rleaky unrolled, the stepwise export refused)."""
    rng = np.random.default_rng(46)
    net = random_net(rng, [7, 6, 6, 4])
    net.residual = True
    data = _data(rng, 5, 6, 7)
    model = leaky_unrolled(net, 6, spelling) if style == "unrolled" else leaky_stepwise(net, spelling)
    report = estimate(write_model(model, inputs=data), tmp_path / "inputs.npz", convention="neurobench")
    assert [(row.kind, row.reset) for row in report.layers] == [("leaky", "subtract")] * 3
    want = net.reference(data)
    assert [row.spikes for row in report.layers] == want["spikes"]
    assert [row.membrane_updates for row in report.layers] == want["membrane_updates"]
    assert report.uncosted == ()


@pytest.mark.parametrize("spelling", ["torchscript", "dynamo"])
@pytest.mark.parametrize("style", ["unrolled", "stepwise"])
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("previous", [False, True])
def test_a_membrane_level_residual_keeps_the_layers_apart(write_model, tmp_path, style, spelling, reset, previous):
    """cur2 = fc2(s1) + 0.5·U1: layer 1's membrane of this step feeds layer 2's. Found on snnTorch exports: the two
    layers were chained as steps of one (rleaky/none, 2 steps, dense 32 instead of 128, "complete"), and the
    stepwise export was refused as "unrolled". Each membrane's previous step is the one whose reset flag it reads.
    `previous`: the residual reads layer 1's membrane of the step before (stepwise: its state input), which was read
    as layer 2's own carried state (Synaptic). Reset `none` has no flag to read: the previous step is the membrane
    that does not also feed the layer spikes through a synapse (unrolled, it was refused as "not separable")."""
    rng = np.random.default_rng(51)
    net = random_net(rng, [6, 5, 5, 5], reset=reset)  # equal sizes: each layer adds the previous one's membrane
    net.membrane_residual = 0.5
    net.residual_reads_previous_step = previous
    data = _data(rng, 4, 5, 6)
    model = leaky_unrolled(net, 5, spelling) if style == "unrolled" else leaky_stepwise(net, spelling)
    report = estimate(write_model(model, inputs=data), tmp_path / "inputs.npz", convention="neurobench")
    assert [(row.kind, row.reset, row.time_steps) for row in report.layers] == [("leaky", reset, 5)] * 3
    want = net.reference(data)
    assert [row.spikes for row in report.layers] == want["spikes"]
    assert [row.membrane_updates for row in report.layers] == want["membrane_updates"]
    assert report.totals.neuron_dense_ops == (5 + 5 + 5) * 5 * (3 if reset == "none" else 4)
    assert report.totals.complete


@pytest.mark.parametrize("spelling", ["torchscript", "dynamo"])
@pytest.mark.parametrize("style", ["unrolled", "stepwise"])
def test_an_export_returning_the_membrane_still_counts_the_last_layer(write_model, tmp_path, style, spelling):
    """A net returning its last layer's membrane has no use for that layer's spike: the exporter drops the compare
    (stepwise: every step's; unrolled: the last step's). The layer was dropped silently (stepwise) or read as one
    step short (unrolled). The replay now computes the missing spikes with the layer's own threshold compare."""
    rng = np.random.default_rng(52)
    net = random_net(rng, [6, 5, 4])
    net.returns_membrane = True
    data = _data(rng, 4, 6, 6)
    model = leaky_unrolled(net, 6, spelling) if style == "unrolled" else leaky_stepwise(net, spelling)
    path = write_model(model, inputs=data)
    assert len(analyse(path).match.layers) == 2
    report = estimate(path, tmp_path / "inputs.npz", convention="neurobench")
    assert [(row.kind, row.time_steps) for row in report.layers] == [("leaky", 6)] * 2
    want = net.reference(data)
    assert [row.spikes for row in report.layers] == want["spikes"]
    assert want["spikes"][1] > 0  # the last layer fires: its count is not zero by luck
    assert [row.membrane_updates for row in report.layers] == want["membrane_updates"]
    assert report.totals.neuron_dense_ops == (5 + 4) * 6 * 4
    assert any("returns the membrane" in note for note in report.notes)
    assert not any("winner-take-all" in note for note in report.notes)  # a computed spike is no mask's output


@pytest.mark.parametrize("spelling", ["torchscript", "dynamo"])
@pytest.mark.parametrize("style", ["unrolled", "stepwise"])
def test_a_threshold_with_no_state_is_not_a_neuron(write_model, tmp_path, style, spelling):
    """A model that binarises its input itself, x ← H(ReLU(x) − 0.5), holds a threshold compare with nothing carried.
    Unrolled it was one uncosted "layer" per time step, and the replay refused the model (found on snnTorch
    exports: 'read as 1 time step(s)… export more steps'); it is a note now, and the neurons are counted."""
    rng = np.random.default_rng(58)
    net = random_net(rng, [6, 5, 4])
    net.binarise_input = 0.5
    data = rng.random((4, 5, 6)).astype(np.float32)  # floats: the binarisation decides what the network sees
    model = leaky_unrolled(net, 5, spelling) if style == "unrolled" else leaky_stepwise(net, spelling)
    report = estimate(write_model(model, inputs=data), tmp_path / "inputs.npz", convention="neurobench")
    assert [(row.kind, row.time_steps) for row in report.layers] == [("leaky", 5)] * 2 and not report.uncosted
    want = net.reference(data)
    assert [row.spikes for row in report.layers] == want["spikes"] and sum(want["spikes"]) > 0
    assert [row.membrane_updates for row in report.layers] == want["membrane_updates"]
    assert report.totals.neuron_dense_ops == (5 + 4) * 5 * 4 and report.totals.complete
    assert any("threshold compare(s) with no state" in note for note in report.notes)


@pytest.mark.parametrize("spelling", ["torchscript", "dynamo"])
def test_a_hand_written_lif_that_resets_before_the_decay_is_leaky(write_model, tmp_path, spelling):
    """mem = β·mem + x; spk = H(mem − θ); mem = mem − spk·θ, written by hand: unrolled, the membrane compared reads
    U_t = β(U − θR) + I. It was read as RLeaky with reset none (V = −β·θ), costed from our extension table (found
    on hand-written PyTorch exports); it is Leaky subtract."""
    rng = np.random.default_rng(59)
    net = random_net(rng, [6, 5, 4])
    net.reset_before_decay = True
    data = _data(rng, 4, 6, 6)
    report = estimate(write_model(leaky_unrolled(net, 6, spelling), inputs=data), tmp_path / "inputs.npz",
                      convention="neurobench")
    assert [(row.kind, row.reset, row.cost_per_update) for row in report.layers] == [("leaky", "subtract", 4)] * 2
    want = net.reference(data)
    assert [row.spikes for row in report.layers] == want["spikes"] and sum(want["spikes"]) > 0
    assert [row.membrane_updates for row in report.layers] == want["membrane_updates"]
    assert any("the reset is applied before the decay" in note for note in report.notes)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_a_hand_written_lif_carrying_its_reset_membrane_is_leaky_stepwise(write_model, tmp_path, reset):
    """A LIF in plain PyTorch, exported stepwise, carries the membrane after its reset, which no compare reads: it was
    uncosted ("nearest is synaptic": the state read as other carried state). It is Leaky with a same-step reset,
    its membrane the state it carries (what the model calls mem)."""
    rng = np.random.default_rng(60)
    weight = rng.normal(0.0, 0.8, size=(6, 5)).astype(np.float32)
    data = _data(rng, 4, 7, 6)
    report = estimate(write_model(hand_written_lif_stepwise(weight, reset), inputs=data), tmp_path / "inputs.npz",
                      convention="neurobench")
    assert [(row.kind, row.reset, row.cost_per_update) for row in report.layers] == [("leaky", reset, 4)]
    mem, spikes, updates = np.zeros((4, 5), np.float32), 0, 0
    for t in range(7):
        base = np.float32(0.9) * mem + data[:, t] @ weight
        spike = (base - np.float32(1.0) > 0).astype(np.float32)
        new = base - spike if reset == "subtract" else base * (np.float32(1.0) - spike)
        spikes += int(spike.sum())
        updates += new.size if t == 0 else int(np.count_nonzero(new != mem))
        mem = new
    assert (report.layers[0].spikes, report.layers[0].membrane_updates) == (spikes, updates) and spikes > 0


def _hand_written(seed: int, style: str, reset: str, v_reset: float = 0.0, spelling: str = "torchscript"
                  ) -> tuple[list[np.ndarray], np.ndarray, onnx.ModelProto]:
    """A hand-written LIF net (one layer stepwise, two unrolled over 9 steps), its weights and 4 samples of data."""
    rng = np.random.default_rng(seed)
    weights = [rng.normal(0.0, 0.8, size=(6, 5)).astype(np.float32), rng.normal(0.0, 0.9, size=(5, 3)).astype(
        np.float32)]
    data = _data(rng, 4, 9, 6)
    if style == "stepwise":
        return weights[:1], data, hand_written_lif_stepwise(weights[0], reset, v_reset=v_reset)
    return weights, data, hand_written_lif_unrolled(weights, 9, reset, v_reset=v_reset, spelling=spelling)


def _assert_hand_written_counts(report, weights: list[np.ndarray], data: np.ndarray, style: str, reset: str,
                                **options: float) -> None:
    """Spikes and membrane updates as the numpy reference counts them: the membrane after its reset stepwise (the
    state carried), before it unrolled (the tensor the compare reads)."""
    want = hand_written_lif_reference(weights, data, reset, **options)
    assert [row.spikes for row in report.layers] == want["spikes"] and all(want["spikes"])
    counted = want["after_reset"] if style == "stepwise" else want["before_reset"]
    assert [row.membrane_updates for row in report.layers] == counted


@pytest.mark.parametrize("spelling", ["torchscript", "dynamo"])
@pytest.mark.parametrize("style", ["stepwise", "unrolled"])
@pytest.mark.parametrize("v_reset", [0.1, -0.3])
def test_a_hard_reset_to_a_nonzero_value_is_leaky_with_reset_value(write_model, tmp_path, style, spelling, v_reset):
    """SpikingJelly's and Norse's v_reset, written mem·(1 − spk) + v_reset·spk after the compare: the v_reset·spk
    term was read as a one-to-one recurrent weight (RLeaky zero, exit 0, totals complete). It is Leaky with reset
    'value', costed from the extension table (zero's 4 + one addition)."""
    weights, data, model = _hand_written(62, style, "value", v_reset=v_reset, spelling=spelling)
    report = estimate(write_model(model, inputs=data), tmp_path / "inputs.npz", convention="neurobench")
    assert [(row.kind, row.reset, row.cost_per_update) for row in report.layers] == [("leaky", "value", 5)] * len(
        weights)
    _assert_hand_written_counts(report, weights, data, style, "value", v_reset=v_reset)
    assert report.totals.complete


@pytest.mark.parametrize("spelling", ["tile", "expand"])
def test_a_membrane_rounded_to_levels_is_read_through_and_counted_rounded(write_model, tmp_path, spelling):
    """snnTorch's state_quant rounds the membrane to fixed levels after each update (an ArgMin over |levels − U|,
    then a Gather): the layer was uncosted ("ops the matcher cannot read (Gather)"), its ArgMin taken for a
    winner-take-all. It is Leaky subtract, its membrane counted after the rounding (what NeuroBench records)."""
    rng = np.random.default_rng(61)
    weight = rng.normal(0.0, 0.8, size=(6, 5)).astype(np.float32)
    levels = np.linspace(-1.0, 1.25, 10).astype(np.float32)
    data = _data(rng, 4, 8, 6)
    report = estimate(write_model(rounded_lif_stepwise(weight, levels, spelling), inputs=data),
                      tmp_path / "inputs.npz", convention="neurobench")
    assert [(row.kind, row.reset, row.cost_per_update) for row in report.layers] == [("leaky", "subtract", 4)]
    mem, spikes, updates = np.zeros((4, 5), np.float32), 0, 0
    for t in range(8):
        reset = (mem - np.float32(1.0) > 0).astype(np.float32)
        new = np.float32(0.9) * mem + data[:, t] @ weight - reset
        new = levels[np.abs(levels - new[..., None]).argmin(axis=-1)]
        spikes += int((new - np.float32(1.0) > 0).sum())
        updates += new.size if t == 0 else int(np.count_nonzero(new != mem))
        mem = new
    assert (report.layers[0].spikes, report.layers[0].membrane_updates) == (spikes, updates) and spikes > 0
    assert updates < 8 * mem.size  # the rounding holds some membranes still: counting before it would differ
    assert any("rounded to 10 levels" in note for note in report.notes)
    assert not any("winner-take-all" in note for note in report.notes)


@pytest.mark.parametrize(("spelling", "batch", "time_axis"), [("torchscript", "batch", 1), ("dynamo", "batch", 0),
                                                               ("torchscript", 3, 1)])
def test_an_unrolled_model_taking_its_input_time_first_is_fed_so(write_model, tmp_path, spelling, batch, time_axis):
    """A forward looping `for t in range(T): fc(x[t])` (snnTorch's tutorials) exports an input (T, batch, F). The
    replay fed it (batch, T, F) samples: with T declared on axis 0 it took T for a fixed batch and padded the samples
    to it, and the counts were of samples read as time steps (spikes 5 and 3 instead of 13 and 6, silently). With a
    fixed batch of 3, 5 samples: the last batch is padded along the model's batch axis."""
    rng = np.random.default_rng(66)
    net = random_net(rng, [6, 5, 4])
    samples = 5 if batch == 3 else 3
    data = (rng.random((samples, 7, 6)) < 0.5).astype(np.float32)
    path = write_model(leaky_unrolled(net, 7, spelling, batch=batch, time_first=True))
    np.save(tmp_path / "inputs.npy", data if time_axis == 1 else data.transpose(1, 0, 2))
    report = estimate(path, tmp_path / "inputs.npy", time_axis=time_axis, convention="neurobench")
    want = net.reference(data)
    assert [row.spikes for row in report.layers] == want["spikes"] and sum(want["spikes"]) > 0
    assert [row.membrane_updates for row in report.layers] == want["membrane_updates"]
    assert any("the model takes 'input' time first" in note for note in report.notes)


@pytest.mark.parametrize("spelling", ["torchscript", "dynamo"])
def test_an_unrolled_model_reading_one_input_at_every_step_takes_it_without_a_time_axis(write_model, tmp_path,
                                                                                         spelling):
    """`for t in range(T): fc(x)`, the same input at every step (snnTorch's tutorials feed a static image so): the
    model's input has no time axis, and recordings (batch, features) were refused ("unrolled for 7 time steps, the
    inputs have 6 on axis 1"). They are read as the same input at each of the graph's steps, nothing copied."""
    rng = np.random.default_rng(67)
    net = random_net(rng, [6, 5, 4])
    data = (rng.random((4, 6)) < 0.5).astype(np.float32)
    path = write_model(leaky_unrolled(net, 7, spelling, static_input=True))
    np.save(tmp_path / "inputs.npy", data)
    report = estimate(path, tmp_path / "inputs.npy", convention="neurobench")
    want = net.reference(np.repeat(data[:, None], 7, axis=1))
    assert [row.spikes for row in report.layers] == want["spikes"] and sum(want["spikes"]) > 0
    assert [row.membrane_updates for row in report.layers] == want["membrane_updates"]
    assert report.time_steps == 7 and report.samples == 4
    assert any("every time step reads 'input' whole" in note for note in report.notes)
    np.save(tmp_path / "sequence.npy", np.repeat(data[:, None], 7, axis=1))  # a time axis the model does not have
    with pytest.raises(InputError, match=r"model expects 2 dims \(batch, 6\), the inputs array has shape"):
        estimate(path, tmp_path / "sequence.npy")


def test_a_static_inputs_shaped_current_computed_once_is_input_not_state(write_model, tmp_path):
    """snnTorch's tutorial 6: a static image through Conv → MaxPool at every step. The steps compute the same value,
    which the graph computes once (the exporter, or the graph's common subexpressions): a tensor upstream of every
    membrane, inside the layer's component through the pooling. It was read as carried state, and the Leaky layer as
    Synaptic (cost 6, dense ops 1.5× NeuroBench's, silently). It is input current."""
    rng = np.random.default_rng(68)
    net = random_net(rng, [6, 5, 4])
    net.rectify_current = True
    data = (rng.random((4, 6)) < 0.5).astype(np.float32)
    path = write_model(leaky_unrolled(net, 7, static_input=True))
    np.save(tmp_path / "inputs.npy", data)
    report = estimate(path, tmp_path / "inputs.npy", convention="neurobench")
    assert [(row.kind, row.reset, row.cost_per_update) for row in report.layers] == [("leaky", "subtract", 4)] * 2
    want = net.reference(np.repeat(data[:, None], 7, axis=1))
    assert [row.spikes for row in report.layers] == want["spikes"] and sum(want["spikes"]) > 0
    assert [row.membrane_updates for row in report.layers] == want["membrane_updates"]


def test_a_synapse_run_once_over_the_sequence_is_each_steps_input_current(write_model, tmp_path):
    """`cur = fc(x)` over the whole (B, T, F) sequence, then `lif(cur[:, t], mem)` in the loop: every step reads a
    slice of one tensor (a Gather), which the bias Add puts in the layer's component and upstream of every earlier
    membrane. Both layers were uncosted ("ops the matcher cannot read (Gather)"); the slice is input current."""
    rng = np.random.default_rng(65)
    net = random_net(rng, [6, 5, 4])
    data = _data(rng, 4, 7, 6)
    report = estimate(write_model(leaky_unrolled_sequence_synapses(net, 7), inputs=data), tmp_path / "inputs.npz",
                      convention="neurobench")
    assert [(row.kind, row.reset, row.time_steps) for row in report.layers] == [("leaky", "subtract", 7)] * 2
    want = net.reference(data)
    assert [row.spikes for row in report.layers] == want["spikes"] and sum(want["spikes"]) > 0
    assert [row.membrane_updates for row in report.layers] == want["membrane_updates"]


def _qdq(float_path, quantised_path, feeds: list[dict[str, np.ndarray]], quant_format: str = "QDQ") -> None:
    """onnxruntime's static quantisation, int8, calibrated on `feeds`: QDQ format (QuantizeLinear → DequantizeLinear
    around float ops) or QOperator (QGemm, QLinearAdd, QLinearMul on integers)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.left, None)

    quantize_static(str(float_path), str(quantised_path), Feeds(), quant_format=getattr(QuantFormat, quant_format),
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)


@pytest.mark.parametrize("point", ["int8 per axis", "uint8 implied"])
def test_quantised_constants_fold_to_what_onnxruntime_computes(point):
    """QuantizeLinear / DequantizeLinear of constants (a QDQ model's β and θ) fold as onnxruntime computes them:
    round half to even, saturation, per-axis scales, a missing zero point meaning uint8 0."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from estimator.graph import ModelGraph

    value = np.asarray([[0.5, 1.5, -2.5], [300.0, -300.0, 0.26]], np.float32)
    if point == "int8 per axis":
        scale, zero = np.asarray([1.0, 1.0, 0.5], np.float32), np.asarray([0, 3, -1], np.int8)
        tail, attributes = ["s", "z"], {"axis": 1}
    else:
        scale, zero, tail, attributes = np.asarray(0.25, np.float32), None, ["s"], {}
    inits = [numpy_helper.from_array(value, "x"), numpy_helper.from_array(scale, "s")]
    inits += [numpy_helper.from_array(zero, "z")] if zero is not None else []
    nodes = [helper.make_node("QuantizeLinear", ["x", *tail], ["q"], **attributes),
             helper.make_node("DequantizeLinear", ["q", *tail], ["dq"], **attributes)]
    out_type = TensorProto.INT8 if zero is not None else TensorProto.UINT8
    graph = helper.make_graph(nodes, "qdq", [], [helper.make_tensor_value_info("q", out_type, [2, 3]),
                                                 helper.make_tensor_value_info("dq", TensorProto.FLOAT, [2, 3])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {})
    folded = ModelGraph(model)
    for name, expected in zip(("q", "dq"), want, strict=True):
        got = folded.constant_value(name)
        assert got is not None and got.dtype == expected.dtype and np.array_equal(got, expected), (name, got)


@pytest.mark.parametrize(("spelling", "quant_format"), [("torchscript", "QDQ"), ("dynamo", "QDQ"),
                                                        ("torchscript", "QOperator")])
def test_a_quantised_stepwise_model_counts_what_it_computes(tmp_path, spelling, quant_format):
    """onnxruntime's static quantisation. QDQ wraps every tensor, constants included, in QuantizeLinear →
    DequantizeLinear: stepwise, the reset compare reads the state's QDQ copy, and the layer was read as two time steps
    and the replay refused. QOperator computes the update with QLinearMul / QLinearAdd on integers: uncosted
    (DequantizeLinear unreadable). Both are Leaky subtract, with the float model's dense ops, and the counts are those
    of the quantised model run step by step."""
    import onnxruntime as ort

    rng = np.random.default_rng(63)
    net = random_net(rng, [6, 5, 4])
    data = _data(rng, 6, 7, 6)
    float_path, path = tmp_path / "float.onnx", tmp_path / "model.onnx"
    onnx.save(leaky_stepwise(net, spelling), float_path)
    states = {"lif1.mem": np.zeros((6, 5), np.float32), "lif2.mem": np.zeros((6, 4), np.float32)}
    session, feeds = ort.InferenceSession(str(float_path), providers=["CPUExecutionProvider"]), []
    for t in range(7):  # calibrated on the states the float model carries
        feeds.append({"input": data[:, t], **states})
        states = dict(zip(states, session.run([f"{name}.next" for name in states], feeds[-1]), strict=True))
    _qdq(float_path, path, feeds, quant_format)
    np.savez(tmp_path / "inputs.npz", input=data)
    report = estimate(path, tmp_path / "inputs.npz", convention="neurobench")
    assert [(row.kind, row.reset) for row in report.layers] == [("leaky", "subtract")] * 2
    assert report.totals.neuron_dense_ops == estimate(float_path, steps=7).totals.neuron_dense_ops
    quantised = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    states = {"lif1.mem": np.zeros((6, 5), np.float32), "lif2.mem": np.zeros((6, 4), np.float32)}
    updates, fired = {name: 0 for name in states}, 0
    for t in range(7):
        out, *after = quantised.run(["output"] + [f"{name}.next" for name in states], {"input": data[:, t], **states})
        for name, value in zip(states, after, strict=True):
            updates[name] += value.size if t == 0 else int(np.count_nonzero(value != states[name]))
        states, fired = dict(zip(states, after, strict=True)), fired + int(np.count_nonzero(out))
    assert [row.membrane_updates for row in report.layers] == list(updates.values())
    assert report.layers[-1].spikes == fired > 0
    assert any("the model is quantised" in note for note in report.notes)


@pytest.mark.parametrize("quant_format", ["QDQ", "QOperator"])
def test_a_quantised_unrolled_model_is_read_through_its_quantisation(tmp_path, quant_format):
    """Unrolled, the same quantisation left the layers uncosted ("ops the matcher cannot read (DequantizeLinear)");
    QOperator's QGemm also joined the two layers into one."""
    import onnxruntime as ort

    rng = np.random.default_rng(64)
    net = random_net(rng, [6, 5, 4])
    data = _data(rng, 6, 7, 6)
    float_path, path = tmp_path / "float.onnx", tmp_path / "model.onnx"
    onnx.save(leaky_unrolled(net, 7), float_path)
    _qdq(float_path, path, [{"input": data}], quant_format)
    np.savez(tmp_path / "inputs.npz", input=data)
    report = estimate(path, tmp_path / "inputs.npz", convention="neurobench")
    assert [(row.kind, row.reset, row.time_steps) for row in report.layers] == [("leaky", "subtract", 7)] * 2
    assert report.totals.neuron_dense_ops == estimate(float_path).totals.neuron_dense_ops
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["output"], {"input": data})[0]
    assert report.layers[-1].spikes == int(np.count_nonzero(out)) > 0


def _leaky_after(shaping: str, steps: int = 4) -> onnx.ModelProto:
    """Unrolled: MatMul → the shaping ops (`gelu`: x·0.5·(1 + erf(x/√2)); `softplus`: Where(x > 20, x, softplus(x)),
    as the dynamo exporter spells it) → a Leaky layer (subtract)."""
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(53).normal(0, 0.6, size=(6, 4)).astype(np.float32)
    n = helper.make_node
    init = [numpy_helper.from_array(weight, "W")] + [numpy_helper.from_array(np.float32(v), name) for name, v in (
        ("beta", 0.9), ("theta", 1.0), ("zero", 0.0), ("half", 0.5), ("one", 1.0), ("root2", np.sqrt(2)),
        ("twenty", 20.0))]
    nodes, mem, stacked = [], None, []
    for t in range(steps):
        init.append(numpy_helper.from_array(np.asarray(t, np.int64), f"t{t}"))
        nodes += [n("Gather", ["input", f"t{t}"], [f"x{t}"], axis=1), n("MatMul", [f"x{t}", "W"], [f"fc{t}"])]
        if shaping == "gelu":
            nodes += [n("Div", [f"fc{t}", "root2"], [f"d{t}"]), n("Erf", [f"d{t}"], [f"e{t}"]),
                      n("Add", [f"e{t}", "one"], [f"a{t}"]), n("Mul", [f"fc{t}", f"a{t}"], [f"m{t}"]),
                      n("Mul", [f"m{t}", "half"], [f"cur{t}"])]
        else:
            nodes += [n("Softplus", [f"fc{t}"], [f"sp{t}"]), n("Greater", [f"fc{t}", "twenty"], [f"big{t}"]),
                      n("Where", [f"big{t}", f"fc{t}", f"sp{t}"], [f"cur{t}"])]
        if mem is None:
            nodes.append(n("Sub", [f"cur{t}", "zero"], [f"mem{t}"]))  # U_0 = I_0
        else:
            nodes += [n("Sub", [mem, "theta"], [f"rs{t}"]), n("Greater", [f"rs{t}", "zero"], [f"rg{t}"]),
                      n("Cast", [f"rg{t}"], [f"r{t}"], to=TensorProto.FLOAT), n("Mul", ["beta", mem], [f"bu{t}"]),
                      n("Add", [f"bu{t}", f"cur{t}"], [f"base{t}"]), n("Mul", [f"r{t}", "theta"], [f"rt{t}"]),
                      n("Sub", [f"base{t}", f"rt{t}"], [f"mem{t}"])]
        mem = f"mem{t}"
        nodes += [n("Sub", [mem, "theta"], [f"ss{t}"]), n("Greater", [f"ss{t}", "zero"], [f"sg{t}"]),
                  n("Cast", [f"sg{t}"], [f"s{t}"], to=TensorProto.FLOAT), n("Unsqueeze", [f"s{t}", "axis1"], [f"u{t}"])]
        stacked.append(f"u{t}")
    init.append(numpy_helper.from_array(np.asarray([1], np.int64), "axis1"))
    nodes.append(n("Concat", stacked, ["output"], axis=1))
    graph = helper.make_graph(nodes, shaping,
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["b", steps, 6])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["b", steps, 4])], init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("shaping", ["gelu", "softplus"])
def test_ops_shaping_the_current_leave_it_input_current(write_model, shaping):
    """GELU between a synapse and a Leaky layer is x·0.5·(1 + erf(x/√2)): not linear in the current, but no state
    either. The layer was uncosted ("not linear in state and input"); the 0.5 inside must not read as Lapicque's
    gain either. Dynamo's Softplus picks its branch with Where(x > 20, …): that compare is no neuron's (it was taken
    for one, and the layer refused as "Where")."""
    report = estimate(write_model(_leaky_after(shaping)), steps=4)
    assert [(row.kind, row.reset, row.time_steps) for row in report.layers] == [("leaky", "subtract", 4)]
    assert report.uncosted == () and report.totals.neuron_dense_ops == 4 * 4 * 4


def test_a_winner_take_all_on_the_spikes_is_named(write_model, tmp_path):
    """snnTorch's inhibition=True keeps the strongest neuron's spike only (ArgMax, scattered into a mask): the compare
    fires for every neuron over threshold, so the spikes convention counted more spikes than were emitted, silently.
    No figure can be had from the compare alone; the report says so."""
    from onnx import helper

    rng = np.random.default_rng(54)
    net = random_net(rng, [6, 5])
    model = leaky_unrolled(net, 4)
    spike = next(node.input[0] for node in model.graph.node if node.op_type == "Unsqueeze")  # step 0's spike
    model.graph.node.append(helper.make_node("ArgMax", [spike], ["winner"], axis=1))  # beside the layer's spike
    report = estimate(write_model(model, inputs=_data(rng, 3, 4, 6)), tmp_path / "inputs.npz")
    assert [note for note in report.notes if "winner-take-all" in note] == [
        "leaky1: its spikes pass through ArgMax (a winner-take-all, snnTorch's inhibition=True?): the spikes "
        "convention counts every neuron over threshold, which may be more than the spikes emitted; dense ops and the "
        "neurobench convention (membranes) are not affected"]
    plain = estimate(write_model(leaky_unrolled(net, 4), inputs=_data(rng, 3, 4, 6)), tmp_path / "inputs.npz")
    assert not any("winner-take-all" in note for note in plain.notes)


def _sew_synaptic_stepwise(weights: list[np.ndarray], alpha: float, beta: float) -> onnx.ModelProto:
    """Stepwise: n1 Leaky (subtract) → n2 Synaptic (zero: current and membrane times 1 − R; as snnTorch's export,
    the membrane reads the synaptic current before its reset, not the next state itself) → n3 Leaky reading
    fc3(s1 + s2) (a SEW residual joins the three layers' ops into one component)."""
    from onnx import TensorProto, helper, numpy_helper

    f = TensorProto.FLOAT
    init = [numpy_helper.from_array(w, f"W{i}") for i, w in enumerate(weights, start=1)]
    init += [numpy_helper.from_array(np.float32(v), n) for n, v in
             (("theta", 1.0), ("zero", 0.0), ("one", 1.0), ("alpha", alpha), ("beta", beta))]
    n = helper.make_node
    nodes = []

    def leaky(k: int, x: str) -> str:
        nodes.extend([n("MatMul", [x, f"W{k}"], [f"c{k}"]), n("Sub", [f"n{k}.mem", "theta"], [f"rs{k}"]),
                      n("Greater", [f"rs{k}", "zero"], [f"rg{k}"]), n("Cast", [f"rg{k}"], [f"r{k}"], to=f),
                      n("Mul", ["beta", f"n{k}.mem"], [f"bu{k}"]), n("Add", [f"bu{k}", f"c{k}"], [f"ba{k}"]),
                      n("Mul", [f"r{k}", "theta"], [f"rt{k}"]), n("Sub", [f"ba{k}", f"rt{k}"], [f"n{k}.mem.next"])])
        return _fire(k)

    def _fire(k: int) -> str:
        nodes.extend([n("Sub", [f"n{k}.mem.next", "theta"], [f"ss{k}"]), n("Greater", [f"ss{k}", "zero"], [f"sg{k}"]),
                      n("Cast", [f"sg{k}"], [f"s{k}"], to=f)])
        return f"s{k}"

    s1 = leaky(1, "input")
    nodes.extend([n("MatMul", [s1, "W2"], ["c2"]), n("Sub", ["n2.mem", "theta"], ["rs2"]),
                  n("Greater", ["rs2", "zero"], ["rg2"]), n("Cast", ["rg2"], ["r2"], to=f),
                  n("Mul", ["alpha", "n2.syn"], ["as2"]), n("Add", ["as2", "c2"], ["sb2"]),
                  n("Sub", ["one", "r2"], ["keep2"]), n("Mul", ["sb2", "keep2"], ["n2.syn.next"]),
                  n("Mul", ["beta", "n2.mem"], ["bu2"]), n("Add", ["bu2", "sb2"], ["base2"]),
                  n("Mul", ["base2", "keep2"], ["n2.mem.next"])])
    s2 = _fire(2)
    nodes.append(n("Add", [s1, s2], ["sew"]))
    s3 = leaky(3, "sew")
    nodes.append(n("Identity", [s3], ["output"]))
    sizes = [w.shape[1] for w in weights]
    states = [("n1.mem", sizes[0]), ("n2.syn", sizes[1]), ("n2.mem", sizes[1]), ("n3.mem", sizes[2])]
    graph = helper.make_graph(
        nodes, "sew", [helper.make_tensor_value_info("input", f, ["b", weights[0].shape[0]])]
        + [helper.make_tensor_value_info(name, f, ["b", size]) for name, size in states],
        [helper.make_tensor_value_info("output", f, ["b", sizes[2]])]
        + [helper.make_tensor_value_info(f"{name}.next", f, ["b", size]) for name, size in states], init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_synaptic_layer_inside_a_spike_level_residual_keeps_its_current(write_model, tmp_path):
    """Stepwise SEW with a Synaptic middle layer: its synaptic current (a state input of its own) was read as input
    current, because only state the membrane's next value and its own next value share was the layer's; the layer
    went uncosted ("no single scalar gain"). A state input the membrane's update reads is the layer's own."""
    rng = np.random.default_rng(55)
    weights = [rng.normal(0, 0.7, size=shape).astype(np.float32) for shape in ((6, 5), (5, 5), (5, 3))]
    alpha, beta = 0.7, 0.8
    data = _data(rng, 4, 6, 6)
    report = estimate(write_model(_sew_synaptic_stepwise(weights, alpha, beta), inputs=data),
                      tmp_path / "inputs.npz", convention="neurobench")
    assert [(row.kind, row.reset) for row in report.layers] == [("leaky", "subtract"), ("synaptic", "zero"),
                                                                ("leaky", "subtract")]
    samples, steps = data.shape[:2]
    mem = [np.zeros((samples, w.shape[1]), np.float32) for w in weights]
    syn = np.zeros_like(mem[1])
    spikes, updates = [0, 0, 0], [0, 0, 0]
    for t in range(steps):
        fired = []
        for k in range(3):
            x = data[:, t] if k == 0 else (fired[0] if k == 1 else fired[0] + fired[1])
            current = x @ weights[k]
            reset = (mem[k] - 1 > 0).astype(np.float32)
            if k == 1:
                syn_base = np.float32(alpha) * syn + current
                new = (np.float32(beta) * mem[k] + syn_base) * (1 - reset)
                syn = syn_base * (1 - reset)
            else:
                new = np.float32(beta) * mem[k] + current - reset
            spike = (new - 1 > 0).astype(np.float32)
            spikes[k] += int(spike.sum())
            updates[k] += samples * new.shape[1] if t == 0 else int(np.count_nonzero(new != mem[k]))
            mem[k] = new
            fired.append(spike)
    assert [row.spikes for row in report.layers] == spikes and spikes[1] > 0
    assert [row.membrane_updates for row in report.layers] == updates
    assert report.totals.neuron_dense_ops == (5 * 4 + 5 * 8 + 3 * 4) * steps


def test_spikes_are_counted_after_a_winner_take_all_mask(write_model, tmp_path):
    """snnTorch's inhibition=True: spk = H(U − θ) · one-hot(argmax(U − θ)). The spikes convention counts what the
    layer emits (the masked spike), not every threshold crossing (found on snnTorch exports: 271 counted, 60
    emitted); membranes, and so the neurobench convention, do not change."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(56)
    weight = rng.normal(0.3, 0.4, size=(6, 5)).astype(np.float32)
    steps, f, n = 5, TensorProto.FLOAT, helper.make_node
    init = [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(np.float32(0.9), "beta"),
            numpy_helper.from_array(np.float32(1.0), "theta"), numpy_helper.from_array(np.float32(0.0), "zero"),
            numpy_helper.from_array(np.asarray([1], np.int64), "axis1")]
    nodes, mem, stacked = [], None, []
    for t in range(steps):
        init.append(numpy_helper.from_array(np.asarray(t, np.int64), f"t{t}"))
        nodes += [n("Gather", ["input", f"t{t}"], [f"x{t}"], axis=1), n("MatMul", [f"x{t}", "W"], [f"c{t}"])]
        if mem is None:
            nodes.append(n("Sub", [f"c{t}", "zero"], [f"mem{t}"]))
        else:
            nodes += [n("Sub", [mem, "theta"], [f"rs{t}"]), n("Greater", [f"rs{t}", "zero"], [f"rg{t}"]),
                      n("Cast", [f"rg{t}"], [f"r{t}"], to=f), n("Mul", ["beta", mem], [f"bu{t}"]),
                      n("Add", [f"bu{t}", f"c{t}"], [f"ba{t}"]), n("Mul", [f"r{t}", "theta"], [f"rt{t}"]),
                      n("Sub", [f"ba{t}", f"rt{t}"], [f"mem{t}"])]
        mem = f"mem{t}"
        zeros, ones = (numpy_helper.from_array(np.full(1, v, np.float32)) for v in (0, 1))
        nodes += [n("Sub", [mem, "theta"], [f"ss{t}"]), n("Greater", [f"ss{t}", "zero"], [f"sg{t}"]),
                  n("Cast", [f"sg{t}"], [f"s{t}"], to=f),
                  # mask = one-hot(argmax(U − θ)), scattered as snnTorch's fire_inhibition does
                  n("ArgMax", [f"ss{t}"], [f"win{t}"], axis=1, keepdims=1),
                  n("Shape", [f"s{t}"], [f"shape{t}"]), n("Shape", [f"win{t}"], [f"wshape{t}"]),
                  n("ConstantOfShape", [f"shape{t}"], [f"blank{t}"], value=zeros),
                  n("ConstantOfShape", [f"wshape{t}"], [f"ones{t}"], value=ones),
                  n("ScatterElements", [f"blank{t}", f"win{t}", f"ones{t}"], [f"mask{t}"], axis=1),
                  n("Mul", [f"s{t}", f"mask{t}"], [f"emit{t}"]),
                  n("Unsqueeze", [f"emit{t}", "axis1"], [f"u{t}"])]
        stacked.append(f"u{t}")
    nodes.append(n("Concat", stacked, ["output"], axis=1))
    graph = helper.make_graph(nodes, "wta", [helper.make_tensor_value_info("input", f, ["b", steps, 6])],
                              [helper.make_tensor_value_info("output", f, ["b", steps, 5])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    data = (rng.random((4, steps, 6)) < 0.6).astype(np.float32)
    path = write_model(model, inputs=data)
    spikes = estimate(path, tmp_path / "inputs.npz")
    membranes = estimate(path, tmp_path / "inputs.npz", convention="neurobench")
    crossings = emitted = updates = 0
    mem_np = np.zeros((4, 5), np.float32)
    for t in range(steps):
        current = data[:, t] @ weight
        reset = (mem_np - 1 > 0).astype(np.float32) if t else np.zeros_like(mem_np)
        new = current if t == 0 else np.float32(0.9) * mem_np + current - reset
        over = (new - 1 > 0).astype(np.float32)
        mask = np.zeros_like(over)
        mask[np.arange(4), np.argmax(new - 1, axis=1)] = 1
        crossings += int(over.sum())
        emitted += int((over * mask).sum())
        updates += new.size if t == 0 else int(np.count_nonzero(new != mem_np))
        mem_np = new
    assert crossings > emitted > 0  # the mask matters here
    assert spikes.layers[0].spikes == emitted and spikes.totals.effective_neuron_ops_run == 4 * emitted
    assert membranes.layers[0].membrane_updates == updates
    assert any("after the winner-take-all mask" in note for note in spikes.notes)
    assert not any("may be more than the spikes emitted" in note for note in spikes.notes)


def test_class_metadata_is_read_per_layer_in_a_joined_component(write_model, tmp_path):
    """A membrane residual joins three layers' ops into one component; the dynamo exporter's class metadata named
    Lapicque on two of them, and the majority vote costed the Leaky one as Lapicque (11 instead of 4, "complete")."""
    rng = np.random.default_rng(57)
    net = random_net(rng, [6, 5, 5, 5])
    net.membrane_residual = 0.5
    net.classes = ["snntorch._neurons.leaky.Leaky", "snntorch._neurons.lapicque.Lapicque",
                   "snntorch._neurons.lapicque.Lapicque"]
    report = estimate(write_model(leaky_unrolled(net, 4, "dynamo")))
    assert [(row.kind, row.cost_per_update) for row in report.layers] == [("leaky", 4), ("lapicque", 11),
                                                                          ("lapicque", 11)]
    assert not any("metadata names" in note and note.startswith("lif1") for note in report.notes)


@pytest.mark.parametrize(("scope", "name"), [("net.lif1", "lif1"), ("lif1", "lif1"), ("net.1", "net.1"),
                                             ("net.__self__", None), ("", None)])
def test_a_layer_is_named_after_its_module(scope, name):
    """nn.Sequential's neurons are positions (`net.1`): named `1` (dynamo) or `net` for every layer (TorchScript's
    outer scope) before; the tracer's `__self__` is no name."""
    from estimator.match import _module_name

    assert _module_name(scope) == name


def test_a_state_baked_at_a_fixed_batch_replays_with_that_batch_size(write_model, tmp_path):
    """A network run before its TorchScript export keeps its last state, written as a constant of that run's batch
    (here 4) although the input's batch is dynamic. The error said to pass --batch-size 4; that failed too whenever
    the samples were no multiple of 4 (the last batch was not padded). Here the constant is zero: the figures must be
    those of the same model without it."""
    rng = np.random.default_rng(65)
    net = random_net(rng, [6, 5, 3])
    plain = leaky_unrolled(net, 5)
    baked = onnx.ModelProto()
    baked.CopyFrom(plain)
    first = next(node for node in baked.graph.node if node.op_type == "MatMul")
    synapse = first.output[0]
    first.output[0] = synapse + ".raw"
    baked.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros((4, 5), np.float32), "baked_state"))
    baked.graph.node.insert(list(baked.graph.node).index(first) + 1,
                            onnx.helper.make_node("Add", [synapse + ".raw", "baked_state"], [synapse]))
    data = _data(rng, 7, 5, 6)
    want = estimate(write_model(plain, inputs=data), tmp_path / "inputs.npz", convention="neurobench")
    path = tmp_path / "baked.onnx"
    onnx.save(baked, path)
    got = estimate(path, tmp_path / "inputs.npz", convention="neurobench", batch_size=4)
    assert [(r.spikes, r.membrane_updates) for r in got.layers] == [(r.spikes, r.membrane_updates) for r in want.layers]
    assert got.samples == 7


@pytest.mark.parametrize("style", ["stepwise", "unrolled"])
def test_a_spike_written_with_where_is_the_flag(write_model, tmp_path, style):
    """spk = torch.where(mem > θ, 1.0, 0.0) is the compare as a number, as its Cast is: the layer was uncosted
    ("ops the matcher cannot read (Where)"). Leaky subtract, counted as the Cast spelling is."""
    rng = np.random.default_rng(67)
    weights = [rng.normal(0.0, 0.8, size=(6, 5)).astype(np.float32)]
    data = _data(rng, 4, 9, 6)
    model = (hand_written_lif_stepwise(weights[0], "subtract") if style == "stepwise"
             else hand_written_lif_unrolled(weights, 9, "subtract"))
    one = onnx.numpy_helper.from_array(np.array(1.0, np.float32), "where_one")
    zero = onnx.numpy_helper.from_array(np.array(0.0, np.float32), "where_zero")
    model.graph.initializer.extend([one, zero])
    greater = {node.output[0] for node in model.graph.node if node.op_type == "Greater"}
    for index, node in enumerate(model.graph.node):
        if node.op_type == "Cast" and node.input[0] in greater:
            model.graph.node[index].CopyFrom(onnx.helper.make_node(
                "Where", [node.input[0], "where_one", "where_zero"], list(node.output)))
    assert any(node.op_type == "Where" for node in model.graph.node)
    report = estimate(write_model(model, inputs=data), tmp_path / "inputs.npz", convention="neurobench")
    assert [(row.kind, row.reset) for row in report.layers] == [("leaky", "subtract")]
    _assert_hand_written_counts(report, weights, data, style, "subtract")


@pytest.mark.parametrize("style", ["stepwise", "unrolled"])
def test_a_reset_written_with_where_is_a_zero_reset(write_model, tmp_path, style):
    """mem = torch.where(spk > 0, 0.0, mem): uncosted ("ops the matcher cannot read (Where)") stepwise; unrolled, the
    second compare (spk > 0) was taken for the layer's own, and its reason misread ("membrane decay term missing").
    It is Leaky with a zero reset, counted as mem·(1 − spk) is."""
    weights, data, model = _hand_written(68, style, "where")
    report = estimate(write_model(model, inputs=data), tmp_path / "inputs.npz", convention="neurobench")
    assert [(row.kind, row.reset) for row in report.layers] == [("leaky", "zero")] * len(weights)
    _assert_hand_written_counts(report, weights, data, style, "where")


@pytest.mark.parametrize("style", ["stepwise", "unrolled"])
def test_a_spike_written_with_torch_heaviside_is_the_flag(write_model, tmp_path, style):
    """torch.heaviside(mem − θ, 0), which only the dynamo exporter exports, spelled Where(x == 0, 0, Where(x < 0, 0,
    1)): no compare was found ("no spiking neuron layer found"). It is H(mem − θ), the layer's spike."""
    weights, data, model = _hand_written(70, style, "subtract")
    graph = model.graph
    graph.initializer.extend([onnx.numpy_helper.from_array(np.array(v, np.float32), name)
                              for name, v in (("h_zero", 0.0), ("h_one", 1.0))])
    greater = {node.output[0]: node for node in graph.node if node.op_type == "Greater"}
    nodes = []
    for node in graph.node:
        if node.op_type == "Greater":
            continue
        if node.op_type == "Cast" and node.input[0] in greater:
            shifted, out = greater[node.input[0]].input[0], node.output[0]
            nodes += [onnx.helper.make_node("Less", [shifted, "h_zero"], [out + "/lt"]),
                      onnx.helper.make_node("Where", [out + "/lt", "h_zero", "h_one"], [out + "/step"]),
                      onnx.helper.make_node("Equal", [shifted, "h_zero"], [out + "/eq"]),
                      onnx.helper.make_node("Where", [out + "/eq", "h_zero", out + "/step"], [out])]
            continue
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    report = estimate(write_model(model, inputs=data), tmp_path / "inputs.npz", convention="neurobench")
    assert [(row.kind, row.reset) for row in report.layers] == [("leaky", "subtract")] * len(weights)
    _assert_hand_written_counts(report, weights, data, style, "subtract")
