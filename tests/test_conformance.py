"""The reference cases in ../shared/conformance (figures from the real NeuroBench 2.3 and snnTorch 1.0).

Each case is checked through the Python API (fast, precise failures), and the shared checker is run once against the
CLI, exactly as a user would. The module defines no test when the shared folder is absent (a plain clone elsewhere).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONFORMANCE, conformance_cases
from parity import check_case

import estimator

CASES = conformance_cases()
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


def test_a_run_without_the_reference_cases_says_so(monkeypatch, tmp_path):
    import conftest

    monkeypatch.setattr(conftest, "CONFORMANCE", tmp_path / "shared" / "conformance")
    assert conftest.pytest_report_header(None).startswith("conformance: NOT RUN, no reference cases at ")
    (tmp_path / "shared" / "conformance" / "cases" / "one").mkdir(parents=True)
    (tmp_path / "shared" / "conformance" / "cases" / "one" / "expected.json").write_text("{}")
    assert conftest.pytest_report_header(None).startswith("conformance: 1 reference cases from ")
