"""Feasibility figures checked against numbers derived independently (numpy reference spike counts, hand sums)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from report_models import SPLIT_COSTS, TOY_ENERGY, write_models

from estimator import estimate
from estimator.errors import EnergyTableError, FeasibilityError
from estimator.feasibility import EnergyTable, assess, parse_energy_table, read_energy_table

RATE = 1000.0
STEPS = 6
SAMPLES = 5


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, dict]:
    """The sample models, written once per module: every test that names `folder` finds them there, whichever runs
    first (or alone, with -k)."""
    folder = tmp_path_factory.mktemp("feasibility")
    return folder, write_models(folder)


@pytest.fixture(scope="module")
def folder(written) -> Path:
    return written[0]


@pytest.fixture(scope="module")
def built(written) -> dict:
    return written[1]


@pytest.fixture(scope="module")
def reference(built):
    """Spikes and membrane updates per layer from the numpy reference, and neurons per layer."""
    net, data = built["net"], built["data"]
    counts = net.reference(data)
    return {"spikes": counts["spikes"], "updates": counts["membrane_updates"],
            "neurons": [w.shape[1] for w in net.weights]}


@pytest.fixture(scope="module")
def spikes_report(folder, built):
    return estimate(folder / "unrolled.onnx", folder / "inputs.npz")


def test_ops_per_second_from_reference_counts(spikes_report, reference):
    f = assess(spikes_report, RATE)
    # every neuron updated at every step: Σ neurons × 4 ops × steps per second
    assert f.dense_ops_per_s == sum(reference["neurons"]) * 4 * RATE
    # effective: spikes × 4 over the run, per sample, per step, × steps per second
    expected = sum(reference["spikes"]) * 4 / (SAMPLES * STEPS) * RATE
    assert math.isclose(f.effective_ops_per_s, expected, rel_tol=1e-12)
    # the brief's formula: ops per sample / T × step rate
    assert math.isclose(f.effective_ops_per_s, spikes_report.totals.effective_neuron_ops / STEPS * RATE,
                        rel_tol=1e-12)
    assert f.dense_ops_per_s == spikes_report.totals.neuron_dense_ops / STEPS * RATE
    assert f.samples_per_s == pytest.approx(RATE / STEPS) and f.time_steps == STEPS
    per_layer = [row.effective_ops_per_s for row in f.layers]
    assert sum(per_layer) == pytest.approx(f.effective_ops_per_s)
    assert f.budget is None and f.energy is None
    assert any("one sample stream processed in real time" in a for a in f.assumptions)


def test_budget_verdict_and_headroom(spikes_report, reference):
    needed = sum(reference["neurons"]) * 4 * RATE
    exact = assess(spikes_report, RATE, budget=needed).budget
    assert exact.feasible and exact.verdict == "feasible" and exact.headroom == 1.0 and exact.spare_ops_per_s == 0
    short = assess(spikes_report, RATE, budget=needed * 0.5).budget
    assert not short.feasible and short.verdict == "not feasible"
    assert short.spare_ops_per_s == -needed * 0.5 and short.utilisation == 2.0
    roomy = assess(spikes_report, RATE, budget=needed * 4).budget
    assert roomy.headroom == 4.0 and roomy.utilisation == 0.25
    # the other basis is reported alongside: effective ops fit a budget the dense ops do not
    effective_needed = sum(reference["spikes"]) * 4 / (SAMPLES * STEPS) * RATE
    between = assess(spikes_report, RATE, budget=(needed + effective_needed) / 2).budget
    assert not between.feasible and between.other_basis == "effective" and between.other_feasible
    flipped = assess(spikes_report, RATE, budget=(needed + effective_needed) / 2, basis="effective").budget
    assert flipped.feasible and flipped.other_basis == "dense" and not flipped.other_feasible


def test_energy_with_a_split_and_with_an_assumed_class(folder, built, reference):
    toy = parse_energy_table(Path("toy.toml"), TOY_ENERGY)
    split_report = estimate(folder / "unrolled.onnx", folder / "inputs.npz",
                            cost_tables=[folder / "split-costs.toml"])
    f = assess(split_report, RATE, energy=toy)
    per_update = 1 * 2.0 + 2 * 0.5 + 1 * 0.25  # multiply + 2 adds + compare, by SPLIT_COSTS
    assert "multiply = 1, add = 2, compare = 1" in SPLIT_COSTS
    assert [row.pj_per_update for row in f.layers] == [per_update, per_update]
    assert f.energy.dense_pj_per_sample == pytest.approx(sum(reference["neurons"]) * STEPS * per_update)
    assert f.energy.effective_pj_per_sample == pytest.approx(sum(reference["spikes"]) * per_update / SAMPLES)
    assert f.energy.effective_watts == pytest.approx(sum(reference["spikes"]) * per_update / (SAMPLES * STEPS)
                                                     * RATE * 1e-12)
    assert f.energy.dense_watts == pytest.approx(sum(reference["neurons"]) * per_update * RATE * 1e-12)
    assert f.energy.complete
    # the bundled table prices NeuroBench's unsplit cost of 4 as 4 multiplies of 3.7 pJ, and says so
    bundled = read_energy_table("energy-45nm")
    g = assess(estimate(folder / "unrolled.onnx", folder / "inputs.npz"), RATE, energy=bundled)
    assert [row.op_classes for row in g.layers] == [{"multiply": 4}, {"multiply": 4}]
    assert g.energy.dense_pj_per_sample == pytest.approx(sum(reference["neurons"]) * STEPS * 4 * 3.7)
    assert any("has no split: every op priced as multiply" in a for a in g.assumptions)
    assert "Horowitz" in g.energy.table.source


def test_energy_follows_the_neurobench_convention(folder, reference):
    report = estimate(folder / "unrolled.onnx", folder / "inputs.npz", convention="neurobench",
                      cost_tables=[folder / "split-costs.toml"])
    toy = parse_energy_table(Path("toy.toml"), TOY_ENERGY)
    f = assess(report, RATE, energy=toy)
    assert f.energy.effective_pj_per_sample == pytest.approx(sum(reference["updates"]) * 3.25 / SAMPLES)


def test_unsplit_cost_without_an_assumed_class_is_not_priced(spikes_report):
    toy = parse_energy_table(Path("toy.toml"), TOY_ENERGY)
    f = assess(spikes_report, RATE, energy=toy)
    assert all(row.pj_per_update is None for row in f.layers)
    assert f.energy.dense_pj_per_sample is None and not f.energy.complete
    assert any("not split into operation classes" in w for w in f.warnings)


def test_stepwise_without_steps_gives_per_step_figures(folder, reference):
    report = estimate(folder / "stepwise.onnx")
    f = assess(report, 500.0, energy=read_energy_table("energy-45nm"))
    assert f.time_steps is None and f.samples_per_s is None
    assert f.dense_ops_per_s == sum(reference["neurons"]) * 4 * 500.0
    assert f.energy.dense_pj_per_sample is None
    assert f.energy.dense_pj_per_step == pytest.approx(sum(reference["neurons"]) * 4 * 3.7)
    with_steps = assess(estimate(folder / "stepwise.onnx", steps=STEPS), 500.0)
    assert with_steps.time_steps == STEPS and with_steps.dense_ops_per_s == f.dense_ops_per_s


def test_unrolled_model_without_inputs_takes_t_from_the_graph(folder):
    f = assess(estimate(folder / "unrolled.onnx"), RATE)
    assert f.time_steps == STEPS and f.effective_ops_per_s is None


def test_uncosted_layers_make_the_verdict_optimistic(folder):
    report = estimate(folder / "mixed.onnx", folder / "inputs.npz")
    f = assess(report, RATE, budget=1e12)
    assert f.budget.feasible and not f.budget.complete and not f.complete
    assert any("optimistic" in w for w in f.warnings)
    assert [row.name for row in f.layers] == [row.name for row in report.layers if row.cost_per_update]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"budget": 10.0}, "needs a step rate"),
    ({"step_rate": 0.0}, "step rate must be a positive number"),
    ({"step_rate": math.inf}, "step rate must be a positive number"),
    ({"step_rate": 1.0, "budget": -1.0}, "budget must be a positive number"),
    # (a budget of 1e-310 ops/s made the headroom's float conversion overflow: "unexpected OverflowError")
    ({"step_rate": 1000.0, "budget": 1e-310}, "budget must be between 1e-09 and 1e\\+18, got 1e-310"),
    ({"step_rate": 1e-310}, "step rate must be between 1e-09 and 1e\\+18"),
    ({"step_rate": 1e19}, "step rate must be between"),
    ({"step_rate": 1.0, "basis": "peak"}, "budget basis must be one of"),
])
def test_bad_settings_are_named_errors(spikes_report, kwargs, message):
    with pytest.raises(FeasibilityError, match=message):
        assess(spikes_report, **kwargs)


def test_a_class_name_the_energy_table_lacks_is_named_with_a_guess(folder, built, tmp_path):
    """A typo in an operation class, in the cost table's split or in the energy table: the layer is not priced, and
    the reason names the class, the closest one the table prices, and all it prices."""
    typo = tmp_path / "typo.toml"
    typo.write_text(SPLIT_COSTS.replace("compare = 1", "compre = 1"))
    report = estimate(folder / "unrolled.onnx", folder / "inputs.npz", cost_tables=[typo])
    toy = parse_energy_table(Path("toy.toml"), TOY_ENERGY)
    f = assess(report, RATE, energy=toy)
    reason = ("not priced: no energy for operation class 'compre' in toy (did you mean 'compare'?); it prices add, "
              "compare, multiply")
    assert [row.energy_note for row in f.layers] == [reason, reason]
    assert f.energy.dense_pj_per_sample is None and not f.energy.complete
    misspelt = parse_energy_table(Path("chip.toml"), TOY_ENERGY.replace("multiply =", "multipy ="))
    split = estimate(folder / "unrolled.onnx", folder / "inputs.npz", cost_tables=[folder / "split-costs.toml"])
    assert assess(split, RATE, energy=misspelt).layers[0].energy_note == (
        "not priced: no energy for operation class 'multiply' in toy (did you mean 'multipy'?); it prices add, "
        "compare, multipy")


def test_effective_basis_needs_a_replay(folder):
    with pytest.raises(FeasibilityError, match="needs a replay"):
        assess(estimate(folder / "unrolled.onnx"), RATE, budget=1.0, basis="effective")


@pytest.mark.parametrize(("text", "message"), [
    ("[meta]\nname = 'x'\n[pj_per_op]\nadd = 1.0\n", "meta.source is required"),
    ("[meta]\nsource = 's'\n", "no \\[pj_per_op\\] entries"),
    ("[meta]\nsource = 's'\n[pj_per_op]\nadd = -1.0\n", "pj_per_op.add = -1.0 is not a non-negative"),
    ("[meta]\nsource = 's'\n[pj_per_op]\nadd = 'cheap'\n", "pj_per_op.add = 'cheap'"),
    ("[meta]\nsource = 's'\n[pj_per_op]\nadd = 1e306\n", "pj_per_op.add = 1e\\+306 is more than 1e\\+12 picojoules"),
    ("[meta]\nsource = 's'\n[pj_per_op]\nadd = 1.0\n[unsplit]\nclass = 'multiply'\n", "unsplit.class = 'multiply'"),
    ("[meta]\nsource = 's'\n[pj_per_op]\nadd = 1.0\n[extra]\n", "unknown top-level key 'extra'"),
    ("[meta\n", "not valid TOML"),
])
def test_energy_table_errors_name_file_and_key(text, message):
    with pytest.raises(EnergyTableError, match=message) as info:
        parse_energy_table(Path("chip.toml"), text)
    assert str(info.value).startswith("chip.toml: ")


def test_energy_table_round_trips_through_its_dict():
    table = read_energy_table("energy-45nm")
    assert EnergyTable.from_dict(table.to_dict()) == table
    assert table.pj_per_op == {"add": 0.9, "multiply": 3.7, "compare": 0.9}
    with pytest.raises(EnergyTableError, match="no such energy table file"):
        read_energy_table("energy-3nm")


def test_json_keeps_old_keys_and_adds_feasibility(spikes_report):
    plain = spikes_report.to_dict()
    assert "feasibility" not in plain
    assessed = dataclasses.replace(spikes_report, feasibility=assess(spikes_report, RATE, 1e6)).to_dict()
    assert set(plain) < set(assessed) and set(assessed) - set(plain) == {"feasibility"}
    assert {k: v for k, v in assessed.items() if k != "feasibility"} == plain
    assert assessed["feasibility"]["budget"]["verdict"] == "feasible"
    assert np.isfinite(assessed["feasibility"]["dense_ops_per_s"])
