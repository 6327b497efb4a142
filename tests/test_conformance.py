"""The reference cases in ../shared/conformance (figures from the real NeuroBench 2.3 and snnTorch 1.0).

Each case is checked through the Python API (fast, precise failures), and the shared checker is run once against the
CLI, exactly as a user would. The module defines no test when the shared folder is absent (a plain clone elsewhere).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONFORMANCE, conformance_cases

import estimator
from estimator import estimate

CASES = conformance_cases()
LAYER_FIELDS = ("kind", "reset", "neurons_per_sample", "time_steps", "spikes", "membrane_updates")


def check_case(case, convention: str) -> list[str]:
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


if CASES:

    @pytest.mark.parametrize("convention", ["neurobench", "spikes"])
    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    def test_conformance_case(case, convention):
        assert check_case(case, convention) == []

    def test_shared_checker_passes_on_the_cli(tmp_path):
        # the same package this test imported (the installed one in CI), run from outside the source tree
        env = {**os.environ, "PYTHONPATH": str(Path(estimator.__file__).resolve().parent.parent)}
        proc = subprocess.run(
            [sys.executable, str(CONFORMANCE / "check.py"), "--cmd", f"{sys.executable} -m estimator"],
            capture_output=True, text=True, timeout=1200, cwd=tmp_path, env=env,
        )
        assert proc.returncode == 0, proc.stdout[-2000:]
        assert proc.stdout.strip().splitlines()[-1] == f"{len(CASES)} passed, 0 failed"
