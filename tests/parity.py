"""Compare the tool's report with a case's expected.json (figures from the real NeuroBench and snnTorch)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from estimator import estimate

LAYER_FIELDS = ("kind", "reset", "neurons_per_sample", "time_steps", "spikes", "membrane_updates")


def check_case(case: Path, convention: str) -> list[str]:
    """Every difference between the report and the case's expected figures (empty: exact parity)."""
    expected = json.loads((case / "expected.json").read_text())
    report = estimate(case / expected["model"], case / expected["inputs"], convention=convention,
                      batch_size=expected.get("batch_size"))
    problems = []
    want = expected["expected"][convention]
    got = report.totals
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


