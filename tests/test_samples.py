"""Parity on the bundled samples: every export in samples/ against the figures NeuroBench 2.3 (neurobench
convention) and snnTorch (spike counts) produced for the same PyTorch model and data."""

from __future__ import annotations

import json

import pytest
from conftest import SAMPLES
from parity import check_case

CASES = sorted(p.parent for p in SAMPLES.glob("*/expected.json"))


def test_samples_are_bundled():
    assert len(CASES) >= 20
    kinds = {layer["kind"] for case in CASES for layer in json.loads((case / "expected.json").read_text())["layers"]}
    assert {"leaky", "synaptic", "lapicque", "alpha", "rleaky"} <= kinds


@pytest.mark.parametrize("convention", ["neurobench", "spikes"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_sample_parity(case, convention):
    assert check_case(case, convention) == []


def test_neurobench_unit_test_is_among_the_samples():
    """NeuroBench's own test: Linear(20, 5, bias=False) + Leaky(beta=0.9), input (5, 10, 20)."""
    for name, effective in (("nb_unit_ones", 200.0), ("nb_unit_zeros", 20.0)):
        cases = [c for c in CASES if c.name.startswith(name)]
        assert cases, name
        for case in cases:
            expected = json.loads((case / "expected.json").read_text())["expected"]["neurobench"]
            assert (expected["neuron_dense_ops"], expected["effective_neuron_ops"]) == (200, effective)
            assert check_case(case, "neurobench") == []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_sample_parity_with_onnxruntime_optimisations(case, monkeypatch):
    """The small samples replay in a few runs, so onnxruntime's graph optimisations are skipped (OPTIMIZE_FROM_RUNS);
    a large dataset gets them. Both must give NeuroBench's figures to the last membrane update."""
    monkeypatch.setattr("estimator.replay.OPTIMIZE_FROM_RUNS", 0)
    assert check_case(case, "neurobench") == []


KINDS = ("leaky", "synaptic", "lapicque", "alpha", "rleaky", "rsynaptic")
RESETS = ("subtract", "zero", "none")
STYLES = (("unrolled", "torchscript"), ("unrolled", "dynamo"), ("stepwise", "torchscript"), ("stepwise", "dynamo"))


def test_every_kind_reset_style_and_exporter_is_bundled():
    """Issue 3's matrix: every snnTorch kind × reset × export style × exporter has a sample, or the generator
    recorded why snnTorch could not export it (samples/index.json, listed in samples/README.md)."""
    index = json.loads((SAMPLES / "index.json").read_text())
    not_exported = {failure["case"] for failure in index["not_exported"]}
    covered: set[tuple[str, str, str, str]] = set()
    for case in CASES:
        expected = json.loads((case / "expected.json").read_text())
        for layer in expected["layers"]:
            covered.add((layer["kind"], layer["reset"], expected["style"], expected["exporter"]))
    missing = [(kind, reset, style, exporter) for kind in KINDS for reset in RESETS for style, exporter in STYLES
               if (kind, reset, style, exporter) not in covered]
    assert not missing, missing
    assert all(not (SAMPLES / name).exists() for name in not_exported)
    functions = {kind for kind, _, style, _ in covered if style == "functions"}
    assert functions == set(KINDS)  # export_modules_as_functions: every kind as a function node
