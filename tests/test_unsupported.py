"""Never a silent zero: neurons no kind recognises are listed as uncosted with the reason, `explain` says why, and
Python users can register their own kinds and costs."""

from __future__ import annotations

import numpy as np
import pytest
from builders import function_node_stepwise, quadratic_stepwise, random_net
from click.testing import CliRunner

from estimator import NeuronKind, UncostedLayersError, estimate, register_kind
from estimator.cli import main
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
