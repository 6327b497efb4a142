"""Compare the tool's report with a case's expected.json (figures from the real NeuroBench and snnTorch)."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

from estimator import estimate

COST_TABLES = Path(__file__).resolve().parent.parent / "cost_tables"

LAYER_FIELDS = ("kind", "reset", "neurons_per_sample", "time_steps", "spikes", "membrane_updates")


def _bundled_costs() -> dict[tuple[str, str], int]:
    """(kind, reset) → operations per update, read straight from the bundled TOML files (NeuroBench's first)."""
    costs: dict[tuple[str, str], int] = {}
    for name in ("neuronops-extension.toml", "neurobench.toml"):  # later files win, as in the tool
        table = tomllib.loads((COST_TABLES / name).read_text())["costs"]
        for kind, resets in table.items():
            for reset, entry in resets.items():
                costs[(kind, reset)] = entry["total"] if isinstance(entry, dict) else entry
    return costs


def formula_totals(expected: dict, convention: str) -> dict[str, float | None]:
    """NeuroBench's formula applied to the PyTorch per-layer counts of expected.json, with the bundled costs."""
    costs = _bundled_costs()
    dense = effective = 0
    for layer in expected["layers"]:
        cost = costs.get((layer["kind"], layer["reset"]))
        if cost is None:
            return {"neuron_dense_ops": None, "effective_neuron_ops": None}
        dense += layer["neurons_per_sample"] * layer["time_steps"] * cost
        effective += (layer["spikes"] if convention == "spikes" else layer["membrane_updates"]) * cost
    return {"neuron_dense_ops": dense, "effective_neuron_ops": effective / expected["samples"]}


def check_case(case: Path, convention: str) -> list[str]:
    """Every difference between the report and the case's expected figures (empty: exact parity)."""
    expected = json.loads((case / "expected.json").read_text())
    report = estimate(case / expected["model"], case / expected["inputs"], convention=convention,
                      batch_size=expected.get("batch_size"))
    problems = []
    want = expected["expected"][convention]
    got = report.totals
    if want["neuron_dense_ops"] is None:  # NeuroBench has no cost here: the formula on PyTorch's counts, our costs
        want = formula_totals(expected, convention)
    for key in ("neuron_dense_ops", "effective_neuron_ops"):
        if want[key] is not None and not math.isclose(getattr(got, key), want[key], rel_tol=1e-12):
            problems.append(f"{key}: {getattr(got, key)} != {want[key]}")
    if report.samples != expected["samples"]:
        problems.append(f"samples {report.samples} != {expected['samples']}")
    if len(report.layers) != len(expected["layers"]):
        return problems + [f"{len(report.layers)} layers, expected {len(expected['layers'])}"]
    for index, (want_layer, row) in enumerate(zip(expected["layers"], report.layers, strict=True)):
        for field in LAYER_FIELDS:
            if want_layer.get(field) is not None and getattr(row, field) != want_layer[field]:
                problems.append(f"layer {index} {field}: {getattr(row, field)!r} != {want_layer[field]!r}")
    return problems


