"""Shared fixtures: where the bundled samples and the reference cases are, and a writer for hand-built models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
CONFORMANCE = ROOT.parent / "shared" / "conformance"


def sample_cases() -> list[Path]:
    index = SAMPLES / "index.json"
    if not index.is_file():
        return []
    return [SAMPLES / case for case in json.loads(index.read_text())["cases"]]


def conformance_cases() -> list[Path]:
    cases = CONFORMANCE / "cases"
    return sorted(p for p in cases.iterdir() if (p / "expected.json").is_file()) if cases.is_dir() else []


@pytest.fixture
def write_model(tmp_path: Path):
    """Save a ModelProto (and optional inputs) into tmp_path; returns the model path."""

    def write(model: onnx.ModelProto, name: str = "model.onnx", inputs: np.ndarray | None = None) -> Path:
        path = tmp_path / name
        onnx.save(model, path)
        if inputs is not None:
            np.savez(tmp_path / "inputs.npz", input=inputs)
        return path

    return write
