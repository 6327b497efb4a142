"""Graphs cleaned by onnxslim (names, metadata and Identity nodes gone, constants folded, ops fused where it can):
the same layers and exactly the same figures as the export it came from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import onnxslim
import pytest
from conftest import SAMPLES
from parity import check_case

ALL = sorted(p.parent for p in SAMPLES.glob("*/expected.json"))
# every stepwise export (small graphs), and one unrolled export per kind × reset (the larger graphs take longer)
_seen: set[tuple[str, ...]] = set()  # kind/reset of each layer
CASES = []
for _case in ALL:
    _expected = json.loads((_case / "expected.json").read_text())
    if _expected.get("external_data") or "simplified" in _case.name:
        continue
    _key = tuple(sorted(f"{layer['kind']}/{layer['reset']}" for layer in _expected["layers"]))
    if _expected["style"] == "stepwise":
        CASES.append(_case)
    elif _expected["style"] == "unrolled" and _expected["exporter"] == "torchscript" and _key not in _seen:
        _seen.add(_key)
        CASES.append(_case)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_onnxslim_cleaned_export_gives_the_same_figures(case: Path, tmp_path: Path):
    cleaned = tmp_path / case.name
    shutil.copytree(case, cleaned)
    model = cleaned / json.loads((case / "expected.json").read_text())["model"]
    onnx.save(onnxslim.slim(onnx.load(str(model))), str(model))
    assert check_case(cleaned, "neurobench") == []
    assert check_case(cleaned, "spikes") == []


def test_the_cleaned_set_spans_kinds_and_styles():
    kinds = {layer["kind"] for case in CASES for layer in json.loads((case / "expected.json").read_text())["layers"]}
    assert kinds == {"leaky", "synaptic", "lapicque", "alpha", "rleaky", "rsynaptic"}
    styles = [json.loads((case / "expected.json").read_text())["style"] for case in CASES]
    assert styles.count("stepwise") >= 60 and styles.count("unrolled") >= 15
