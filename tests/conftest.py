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


def pytest_report_header(config: pytest.Config) -> str:
    """Say whether the shared reference cases run: without ../shared beside the project they cannot, and a plain
    clone would otherwise pass with no sign of it (not a skip: CI, which has them, must run every test)."""
    cases = conformance_cases()
    if cases:
        return f"conformance: {len(cases)} reference cases from {CONFORMANCE}"
    return f"conformance: NOT RUN, no reference cases at {CONFORMANCE} (the shared folder beside the project)"


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not conformance_cases():  # at the end too, where `pytest -q` shows it
        terminalreporter.write_line(pytest_report_header(config), yellow=True)


def sample_cases() -> list[Path]:
    index = SAMPLES / "index.json"
    if not index.is_file():
        return []
    return [SAMPLES / case for case in json.loads(index.read_text())["cases"]]


def conformance_cases() -> list[Path]:
    cases = CONFORMANCE / "cases"
    return sorted(p for p in cases.iterdir() if (p / "expected.json").is_file()) if cases.is_dir() else []


@pytest.fixture(scope="session", autouse=True)
def analysis_cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """Tests (and the CLIs they spawn) cache analyses in a folder of their own, never the user's ~/.cache."""
    import os

    folder = tmp_path_factory.mktemp("analysis-cache")
    saved = {key: os.environ.get(key) for key in ("NEURONOPS_CACHE_DIR", "NEURONOPS_CACHE")}
    os.environ["NEURONOPS_CACHE_DIR"] = str(folder)
    os.environ.pop("NEURONOPS_CACHE", None)
    yield folder
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


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
