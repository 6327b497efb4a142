"""`neuronops compare` and the feasibility options of `neuronops estimate`, through the CLI and the API.

Golden files: NEURONOPS_UPDATE_GOLDEN=1 pytest tests/test_compare.py regenerates them.
"""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest
from click.testing import CliRunner
from report_models import scenario_reports, write_models
from test_formats import EXTENSIONS, golden, parse

from estimator.cli import main
from estimator.compare import compare
from estimator.formats import format_json


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The scenario reports saved as JSON files, and the model files beside them."""
    folder = tmp_path_factory.mktemp("compare")
    write_models(folder)
    for name, report in scenario_reports(folder).items():
        (folder / f"{name}.json").write_text(format_json(report))
    return folder


@pytest.fixture
def workdir(saved, monkeypatch):
    monkeypatch.chdir(saved)  # relative paths in the output
    return saved


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("fmt", list(EXTENSIONS))
def test_compare_golden(workdir, fmt):
    result = run("compare", "replay.json", "mixed.json", "plain.json", "--step-rate", "1000", "--budget", "5e4",
                 "--format", fmt)
    assert result.exit_code == 0, result.output
    golden(f"compare.{EXTENSIONS[fmt]}", result.stdout)


def test_which_variant_fits(workdir):
    # dense ops per time step: replay and plain 16 neurons × 4 = 64, mixed 8 costed neurons × 4 = 32
    result = compare(["replay.json", "mixed.json", "plain.json"], step_rate=1000.0, budget=5e4)
    assert result.fits == ("mixed.json",) and result.misses == ("replay.json", "plain.json")
    assert result.best == "mixed.json" and result.basis == "dense"
    needed = {m.label: m.feasibility.budget.needed_ops_per_s for m in result.models}
    assert needed == {"replay.json": 64_000.0, "mixed.json": 32_000.0, "plain.json": 64_000.0}
    assert not result.models[1].feasibility.budget.complete  # mixed.json's verdict is optimistic, and says so
    assert any("different conventions" in w for w in result.warnings)
    roomy = compare(["replay.json", "plain.json"], step_rate=1000.0, budget=1e5)
    assert roomy.fits == ("replay.json", "plain.json") and roomy.misses == ()


def test_saved_settings_are_reused_and_reproduce_the_saved_figures(workdir):
    result = compare(["replay.json", "mixed.json", "plain.json"])
    saved = {name: json.loads((workdir / f"{name}.json").read_text()) for name in ("replay", "mixed")}
    for model in result.models[:2]:
        name = model.label.removesuffix(".json")
        assert json.loads(json.dumps(model.feasibility.to_dict())) == saved[name]["feasibility"]
    assert result.models[2].feasibility is None
    assert result.fits == ("replay.json",) and result.misses == ("mixed.json",)


def test_compare_csv_and_html_have_one_entry_per_model(workdir):
    result = run("compare", "replay.json", "plain.json", "--step-rate", "1000", "--budget", "1e5", "-f", "csv")
    lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
    assert [(r["report"], r["verdict"]) for r in rows] == [("replay.json", "feasible"), ("plain.json", "feasible")]
    assert float(rows[0]["dense_ops_per_s"]) == 64_000.0 and rows[0]["headroom"] == "1.5625"
    page = parse(run("compare", "replay.json", "plain.json", "--step-rate", "1000", "--budget", "1e5",
                     "-f", "html").stdout)
    assert len(page.find("rect", "dense")) == 2 and len(page.find("line", "budget")) == 1


def test_estimate_with_feasibility_options(workdir):
    result = run("estimate", "unrolled.onnx", "-i", "inputs.npz", "--step-rate", "1000", "--budget", "1e5",
                 "--energy-table", "energy-45nm", "-f", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["feasibility"]["budget"]["verdict"] == "feasible"
    assert data["feasibility"]["energy"]["table"]["name"] == "horowitz-45nm-fp32"
    assert data == json.loads((workdir / "replay.json").read_text())  # the CLI and the API agree exactly
    html = run("estimate", "unrolled.onnx", "-i", "inputs.npz", "--step-rate", "1000", "-f", "html",
               "-o", "out/report.html")
    assert html.exit_code == 0 and html.stdout == ""
    parse((workdir / "out" / "report.html").read_text())
    shutil.rmtree(workdir / "out")


@pytest.mark.parametrize(("args", "code", "message"), [
    (["estimate", "unrolled.onnx", "--budget", "1e6"], 2, "error: --budget needs --step-rate"),
    (["estimate", "unrolled.onnx", "--step-rate", "10", "--budget", "1e6", "--budget-basis", "effective"], 2,
     "error: --budget-basis effective needs --inputs"),
    (["estimate", "unrolled.onnx", "--step-rate", "0"], 2, "Invalid value for '--step-rate'"),
    (["estimate", "unrolled.onnx", "--energy-table", "split-costs.toml"], 1,
     "error: split-costs.toml: unknown top-level key 'costs'"),
    (["estimate", "unrolled.onnx", "--energy-table", "absent.toml"], 1, "error: absent.toml: no such energy table"),
    (["compare", "absent.json"], 1, "error: absent.json: no such report file"),
    (["compare", "inputs.npz"], 1, "error: inputs.npz: not a readable JSON report"),
    (["compare", "toy-energy.toml"], 1, "error: toy-energy.toml: not a readable JSON report"),
    (["compare", "plain.json", "--budget", "1e5"], 2, "error: plain.json: a budget needs a step rate"),
    (["compare", "plain.json", "dense.json", "--step-rate", "10", "--budget", "1", "--budget-basis", "effective"],
     2, "error: dense.json: budget basis 'effective' needs a replay"),
    (["compare"], 2, "Missing argument"),
])
def test_errors_are_one_line_with_exit_codes(workdir, args, code, message):
    result = run(*args)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1 or code == 2 and "Usage" in result.stderr


def test_a_json_that_is_not_a_report(workdir):
    (workdir / "other.json").write_text(json.dumps({"schema": "neuronops.layers/1"}))
    result = run("compare", "other.json")
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: other.json: not a neuronops report (schema 'neuronops.layers/1', "
                                     "expected 'neuronops.report/1')")
    broken = json.loads((workdir / "plain.json").read_text())
    del broken["totals"]
    (workdir / "broken.json").write_text(json.dumps(broken))
    assert "error: broken.json: report lacks 'totals'" in run("compare", "broken.json").stderr


def test_help_names_the_new_options(workdir):
    estimate_help = run("estimate", "--help").stdout
    for option in ("--step-rate", "--budget", "--budget-basis", "--energy-table", "csv", "markdown", "html"):
        assert option in estimate_help
    assert "compare" in run("--help").stdout
    compare_help = run("compare", "--help").stdout
    for option in ("--step-rate", "--budget", "--budget-basis", "--energy-table", "--format", "--output"):
        assert option in compare_help
