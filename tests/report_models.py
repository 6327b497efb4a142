"""Small deterministic models and reports for the report-format, feasibility and compare tests.

Everything is seeded, and model paths are relative names, so the reports (and their golden files) are reproducible.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
from builders import LeakyNet, _Builder, leaky_stepwise, leaky_unrolled, random_net
from onnx import TensorProto, helper

from estimator import estimate
from estimator.feasibility import EnergyTable, assess, read_energy_table
from estimator.report import Report

# A made-up energy table with round numbers, so expected energies are easy to derive by hand.
TOY_ENERGY = """
[meta]
name = "toy"
source = "round numbers for tests"
[pj_per_op]
add = 0.5
multiply = 2.0
compare = 0.25
"""
# A cost table giving NeuroBench's Leaky subtract cost (4) a split: U = βU + I − Rθ, S = U > θ.
SPLIT_COSTS = """
[meta]
name = "split"
[costs.leaky.subtract]
total = 4
split = { multiply = 1, add = 2, compare = 1 }
"""


def mixed_stepwise(weights: list[np.ndarray], beta: float = 0.9, threshold: float = 1.0) -> onnx.ModelProto:
    """A Leaky layer feeding a quadratic integrate-and-fire layer (a kind neuronops cannot cost)."""
    b = _Builder("torchscript")
    net = LeakyNet(weights[:1], beta=beta, threshold=threshold)
    theta = b.init(threshold, "threshold")
    new, spike = b.step(net, "lif1.mem", b.synapse("input", weights[0]), b.beta(net), theta)
    b.nodes.append(helper.make_node("Identity", [new], ["lif1.mem.next"]))
    reset = b.flag("q2.mem", theta)
    square = b.op("Mul", ["q2.mem", "q2.mem"])
    grown = b.op("Add", ["q2.mem", b.op("Mul", [b.init(0.5, "gain"), square])])
    base = b.op("Add", [grown, b.synapse(spike, weights[1])])
    quad = b.op("Sub", [base, b.op("Mul", [reset, theta])])
    b.nodes.append(helper.make_node("Identity", [quad], ["q2.mem.next"]))
    b.nodes.append(helper.make_node("Identity", [b.flag(quad, theta)], ["output"]))
    sizes = [w.shape[1] for w in weights]
    graph = helper.make_graph(
        b.nodes, "mixed",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", weights[0].shape[0]]),
         helper.make_tensor_value_info("lif1.mem", TensorProto.FLOAT, ["batch", sizes[0]]),
         helper.make_tensor_value_info("q2.mem", TensorProto.FLOAT, ["batch", sizes[1]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", sizes[1]]),
         helper.make_tensor_value_info("lif1.mem.next", TensorProto.FLOAT, ["batch", sizes[0]]),
         helper.make_tensor_value_info("q2.mem.next", TensorProto.FLOAT, ["batch", sizes[1]])],
        b.inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def write_models(folder: Path) -> dict[str, object]:
    """Write the models, inputs and tables into `folder`; returns the nets and data used (for references)."""
    rng = np.random.default_rng(2024)
    net = random_net(rng, [10, 12, 4])
    data = (rng.random((5, 6, 10)) < 0.4).astype(np.float32)
    onnx.save(leaky_unrolled(net, 6), folder / "unrolled.onnx")
    onnx.save(leaky_stepwise(net, "dynamo"), folder / "stepwise.onnx")
    np.savez(folder / "inputs.npz", input=data)
    mixed_rng = np.random.default_rng(7)
    mixed = [mixed_rng.normal(0, 0.6, (10, 8)).astype(np.float32), mixed_rng.normal(0, 0.6, (8, 3)).astype(np.float32)]
    onnx.save(mixed_stepwise(mixed), folder / "mixed.onnx")
    (folder / "toy-energy.toml").write_text(TOY_ENERGY)
    (folder / "split-costs.toml").write_text(SPLIT_COSTS)
    return {"net": net, "data": data}


def _named(report: Report, name: str) -> Report:
    return dataclasses.replace(report, model=name)


def scenario_reports(folder: Path) -> dict[str, Report]:
    """The reports the golden files are made from (model files must already be in `folder`)."""
    bundled = read_energy_table("energy-45nm")
    toy = read_energy_table(folder / "toy-energy.toml")
    replay = _named(estimate(folder / "unrolled.onnx", folder / "inputs.npz"), "unrolled.onnx")
    dense = _named(estimate(folder / "stepwise.onnx"), "stepwise.onnx")
    mixed = _named(estimate(folder / "mixed.onnx", folder / "inputs.npz", convention="neurobench",
                            cost_tables=[folder / "split-costs.toml"]), "mixed.onnx")
    plain = _named(estimate(folder / "unrolled.onnx", folder / "inputs.npz", convention="neurobench"),
                   "unrolled.onnx")
    return {
        # a replayed model: feasible on dense ops, with the bundled 45 nm energy table
        "replay": with_feasibility(replay, 1000.0, 1e5, "dense", bundled),
        # a stepwise model without inputs or --steps: per time step figures only
        "dense": with_feasibility(dense, 500.0, None, "dense", bundled),
        # one uncosted layer; a cost table with a split; the toy energy table; a budget it does not meet
        "mixed": with_feasibility(mixed, 200.0, 50.0, "effective", toy),
        # no feasibility at all: the report as before
        "plain": plain,
    }


def with_feasibility(report: Report, rate: float | None, budget: float | None, basis: str,
                     energy: EnergyTable | None) -> Report:
    return dataclasses.replace(report, feasibility=assess(report, rate, budget, basis, energy))
