"""`neuronops compare` and the feasibility options of `neuronops estimate`, through the CLI and the API.

Golden files: NEURONOPS_UPDATE_GOLDEN=1 pytest tests/test_compare.py regenerates them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil

import pytest
from click.testing import CliRunner
from report_models import scenario_reports, write_models
from test_formats import EXTENSIONS, golden, parse

from estimator.cli import main
from estimator.compare import compare
from estimator.errors import FeasibilityError
from estimator.formats import format_json
from estimator.formats_compare import chart_labels


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
    assert result.best == ("mixed.json",) and result.basis == "dense"
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
    assert result.unknown == ("plain.json",)  # saved without a budget: listed, not left out


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
    (["compare", "plain.json", "--step-rate", "10", "--budget", "-1"], 2, "Invalid value for '--budget'"),
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


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r.update(convention="bogus"), "convention 'bogus' is none of spikes, neurobench"),
    (lambda r: r.update(layers=None), "'layers' is not a list"),
    (lambda r: r["totals"].update(neuron_dense_ops=float("nan")), "totals.neuron_dense_ops = nan is not a count"),
    (lambda r: r["totals"].update(neuron_dense_ops=-5), "totals.neuron_dense_ops = -5 is not a count"),
    (lambda r: r["totals"].update(neuron_dense_ops="5"), "totals.neuron_dense_ops = '5' is not a count"),
    (lambda r: r["layers"][0].update(spikes=True), "layers[0].spikes = True is not a count"),
    (lambda r: r.update(samples=0), "samples = 0: a replay has at least one sample"),
    (lambda r: r["totals"].update(neuron_dense_ops=99),
     "totals.neuron_dense_ops = 99 is not the sum of its layers' figures (384): the report was edited or damaged"),
    (lambda r: r["layers"][0].update(effective_ops_run=1), "totals.effective_neuron_ops_run = "),
])
def test_a_damaged_report_is_refused_in_one_line(workdir, change, message):
    """A hand-edited or damaged report was shown as it was (nan, -5) or failed with 'unexpected KeyError'."""
    report = json.loads((workdir / "plain.json").read_text())
    change(report)
    (workdir / "damaged.json").write_text(json.dumps(report))
    result = run("compare", "damaged.json")
    assert result.exit_code == 1, result.stderr
    assert result.stderr.startswith(f"error: damaged.json: {message}") and result.stderr.count("\n") == 1


def test_a_report_nested_too_deeply_is_refused(workdir):
    (workdir / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    result = run("compare", "deep.json")
    assert result.exit_code == 1 and "nested too deeply" in result.stderr and "Traceback" not in result.output


def test_help_names_the_new_options(workdir):
    estimate_help = run("estimate", "--help").stdout
    for option in ("--step-rate", "--budget", "--budget-basis", "--energy-table", "csv", "markdown", "html"):
        assert option in estimate_help
    assert "compare" in run("--help").stdout
    compare_help = run("compare", "--help").stdout
    for option in ("--step-rate", "--budget", "--budget-basis", "--energy-table", "--format", "--output"):
        assert option in compare_help


# ---------------------------------------------------------------- findings of the user review

def test_reports_made_with_different_cost_tables_say_so_in_every_format(workdir):
    (workdir / "five.toml").write_text("[costs.leaky]\nsubtract = 5\n")
    made = run("estimate", "unrolled.onnx", "-i", "inputs.npz", "--cost-table", "five.toml", "-f", "json",
               "-o", "five.json")
    assert made.exit_code == 0, made.output
    result = compare(["replay.json", "five.json"])
    assert [m.report.totals.neuron_dense_ops for m in result.models] == [384, 480]  # 16 neurons × 6 steps × 4 or 5
    # one warning for one cause: the tables differ, and so the cost of a kind does
    assert [w for w in result.warnings if "cost" in w] == [
        "the reports were not all costed with the same cost tables (replay.json: neuronops-extension, neurobench; "
        "five.json: neuronops-extension, neurobench, five), and leaky/subtract layers cost a different number of "
        "operations per update in these reports (4 in replay.json; 5 in five.json): their ops are not comparable as "
        "they stand"]
    assert not any("cost tables" in w for w in compare(["replay.json", "plain.json"]).warnings)
    (workdir / "four.toml").write_text("[costs.leaky]\nsubtract = 4\n")  # another table, the same costs here
    made = run("estimate", "unrolled.onnx", "-i", "inputs.npz", "--cost-table", "four.toml", "-o", "four.json")
    assert made.exit_code == 0, made.output
    assert [w for w in compare(["replay.json", "four.json"]).warnings if "cost" in w] == [
        "the reports were not all costed with the same cost tables (replay.json: neuronops-extension, neurobench; "
        "four.json: neuronops-extension, neurobench, four): the same layer may cost differently in each"]
    tables = {"replay.json": ["neuronops-extension", "neurobench"],
              "five.json": ["neuronops-extension", "neurobench", "five"]}
    outputs = {fmt: run("compare", "replay.json", "five.json", "-f", fmt).stdout for fmt in EXTENSIONS}
    five = json.loads((workdir / "five.json").read_text())["cost_table_sha256"]
    assert five[2] == hashlib.sha256(b"[costs.leaky]\nsubtract = 5\n").hexdigest()
    for fmt, text in outputs.items():
        assert "not all costed with the same cost tables" in text, fmt
        # the assumptions name each file's digest: `sha256sum five.toml` checks it against the report
        assert ("five.json: cost tables (later ones override earlier ones): "
                f"neuronops-extension (sha256 {five[0][:12]}), neurobench (sha256 {five[1][:12]}), "
                f"five (sha256 {five[2][:12]})") in text, fmt
    table_row = next(line for line in outputs["table"].splitlines() if line.startswith("cost tables"))
    assert table_row.split()[2:] == ["neuronops-extension,", "neurobench", "neuronops-extension,", "neurobench,",
                                     "five"]
    assert {m["report"]: m["cost_tables"] for m in json.loads(outputs["json"])["models"]} == tables
    rows = list(csv.DictReader(line for line in outputs["csv"].splitlines() if not line.startswith("#")))
    assert {r["report"]: r["cost_tables"].split("; ") for r in rows} == tables
    assert "| cost tables | neuronops-extension, neurobench | neuronops-extension, neurobench, five |" \
        in outputs["markdown"]
    assert '<td class="num">neuronops-extension, neurobench, five</td>' in outputs["html"]


def test_two_tables_with_one_name_but_different_costs_are_caught(workdir, tmp_path):
    """Reports record cost tables by name: two files both called 'chip' look alike. The costs the reports gave each
    kind and reset do not: a leaky/subtract layer at 4 in one and 5 in the other is named, whatever the tables."""
    for folder, cost in (("a", 4), ("b", 5)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "chip.toml").write_text(f"[costs.leaky]\nsubtract = {cost}\n")
        table = tmp_path / folder / "chip.toml"
        made = run("estimate", "unrolled.onnx", "-i", "inputs.npz", "--cost-table", str(table), "-o", f"{folder}.json")
        assert made.exit_code == 0, made.output
    result = compare(["a.json", "b.json"])
    a, b = (json.loads((workdir / f"{f}.json").read_text())["cost_table_sha256"][2][:12] for f in "ab")
    assert [w for w in result.warnings if "cost tables" in w] == [  # the same names, told apart by their digests
        "the reports' cost tables have the same names but not the same contents (a.json: neuronops-extension "
        f"(sha256 {result.models[0].report.cost_table_sha256[0][:12]}), neurobench (sha256 "
        f"{result.models[0].report.cost_table_sha256[1][:12]}), chip (sha256 {a}); b.json: neuronops-extension "
        f"(sha256 {result.models[1].report.cost_table_sha256[0][:12]}), neurobench (sha256 "
        f"{result.models[1].report.cost_table_sha256[1][:12]}), chip (sha256 {b})), and leaky/subtract layers cost a "
        "different number of operations per update in these reports (4 in a.json; 5 in b.json): their ops are not "
        "comparable as they stand"]
    assert len([w for w in result.warnings if "cost" in w]) == 1
    assert not any("per update" in w for w in compare(["a.json", "replay.json"]).warnings)  # both 4
    # reports saved before digests were recorded (or with a list that does not match the names) compare by name
    for folder, digests in (("a", None), ("b", ["0" * 64])):
        data = json.loads((workdir / f"{folder}.json").read_text())
        if digests is None:
            del data["cost_table_sha256"]
        else:
            data["cost_table_sha256"] = digests
        (workdir / f"old-{folder}.json").write_text(json.dumps(data))
    old = compare(["old-a.json", "old-b.json"])
    assert [m.report.cost_table_sha256 for m in old.models] == [(), ()]
    assert not any("cost tables" in w for w in old.warnings)
    assert any("per update" in w for w in old.warnings)  # the costs still tell them apart
    assert not any("cost tables" in w for w in compare(["a.json", "old-b.json"]).warnings)


def _banner(*args: str) -> str:
    result = run("compare", *args, "-f", "html")
    assert result.exit_code == 0, result.output
    (banner,) = parse(result.stdout).find("div", "verdict")
    return banner["class"]


def test_the_html_banner_shows_the_worst_verdict(workdir):
    assert _banner("replay.json", "plain.json", "--step-rate", "1000", "--budget", "1e5") == "verdict ok"
    # replay.json needs 64 kops/s, mixed.json 32 kops/s: one fits, one does not
    assert _banner("replay.json", "mixed.json", "--step-rate", "1000", "--budget", "5e4") == "verdict no"
    # plain.json fits on effective ops; dense.json has no replay, so no verdict
    assert _banner("plain.json", "dense.json", "--step-rate", "10", "--budget", "1e6",
                   "--budget-basis", "effective") == "verdict unknown"
    assert _banner("replay.json", "plain.json") == "verdict unknown"  # plain.json was saved without a budget
    assert compare(["replay.json", "mixed.json"], step_rate=1000.0, budget=5e4).verdict == "not feasible"
    assert compare(["replay.json", "plain.json"]).verdict == "unknown"


def test_effective_basis_without_a_replay_is_an_unknown_verdict_not_an_error(workdir):
    result = compare(["plain.json", "dense.json"], step_rate=10.0, budget=1.0, basis="effective")
    assert result.misses == ("plain.json",) and result.unknown == ("dense.json",) and result.fits == ()
    dense = result.models[1]
    assert dense.verdict == "unknown" and dense.reason == "budget basis 'effective' needs a replay (--inputs)"
    assert dense.feasibility.dense_ops_per_s == 640.0  # 16 neurons × 4 ops × 10 steps/s: its figures are kept
    assert dense.feasibility.budget.other_needed_ops_per_s == 640.0
    cli = run("compare", "plain.json", "dense.json", "--step-rate", "10", "--budget", "1", "--budget-basis",
              "effective")
    assert cli.exit_code == 0, cli.output
    assert "no verdict for dense.json: budget basis 'effective' needs a replay (--inputs)" in cli.stdout
    data = json.loads(run("compare", "plain.json", "dense.json", "--step-rate", "10", "--budget", "1",
                          "--budget-basis", "effective", "-f", "json").stdout)
    assert [(m["verdict"], m["no_verdict"]) for m in data["models"]] == [
        ("not feasible", None), ("unknown", "budget basis 'effective' needs a replay (--inputs)")]
    with pytest.raises(FeasibilityError, match="^dense.json: budget must be a positive number"):
        compare(["dense.json"], step_rate=10.0, budget=-1.0, basis="effective")  # still an error: not the basis


def test_most_headroom_names_every_tied_model(workdir):
    result = compare(["replay.json", "plain.json"], step_rate=1000.0, budget=1e5)
    assert result.best == ("replay.json", "plain.json")
    text = run("compare", "replay.json", "plain.json", "--step-rate", "1000", "--budget", "1e5").stdout
    assert "most headroom (tied): replay.json, plain.json\n" in text
    assert "judged with different" not in text and "verdicts use different" not in text


def test_most_headroom_warns_when_the_models_were_judged_differently(workdir):
    rates = compare(["replay.json", "dense.json"], budget=1e6)  # saved step rates 1000 Hz and 500 Hz
    assert rates.unlike == ("step rates",)
    assert "verdicts use different step rates (1000 Hz, 500 Hz): each model is judged at its own, so the ranking by " \
        "headroom compares unlike things" in rates.warnings
    saved = compare(["replay.json", "mixed.json"], step_rate=1000.0)  # saved budgets 1e5 dense and 50 effective
    assert saved.unlike == ("budgets", "budget bases")
    assert any(w.startswith("verdicts use different budgets (100000 ops/s, 50 ops/s)") for w in saved.warnings)
    assert any(w.startswith("verdicts use different budget bases (dense, effective)") for w in saved.warnings)
    text = run("compare", "replay.json", "dense.json", "--budget", "1e6").stdout
    assert "most headroom: dense.json (judged with different step rates: see the warnings)" in text
    assert compare(["replay.json", "plain.json"], step_rate=1000.0, budget=1e5).unlike == ()


def test_most_headroom_says_when_the_ops_themselves_are_unlike(workdir):
    """The ranking compares ops: on effective ops two conventions count different things, and a report whose totals
    leave an uncosted layer out looks roomier than it is. Both are said on the ranking's line, in every format."""
    conventions = compare(["replay.json", "plain.json"], step_rate=1000.0, budget=1e6, basis="effective")
    assert conventions.unlike == ("conventions",) and conventions.partial == ()
    assert conventions.ranking_caveat == "judged with different conventions: see the warnings"
    assert compare(["replay.json", "plain.json"], step_rate=1000.0, budget=1e6).unlike == ()  # dense: alike
    partial = compare(["mixed.json", "plain.json"], step_rate=1000.0, budget=1e6)
    assert partial.best == ("mixed.json",) and partial.partial == ("mixed.json",)
    assert partial.ranking_caveat.endswith("optimistic for mixed.json: uncosted layers are not counted")
    text = run("compare", "mixed.json", "plain.json", "--step-rate", "1000", "--budget", "1e6").stdout
    assert f"most headroom: mixed.json ({partial.ranking_caveat})\n" in text
    data = json.loads(run("compare", "mixed.json", "plain.json", "--step-rate", "1000", "--budget", "1e6",
                          "-f", "json").stdout)
    assert data["best"] == ["mixed.json"] and data["best_caveat"] == partial.ranking_caveat
    alike = json.loads(run("compare", "replay.json", "plain.json", "--step-rate", "1000", "--budget", "1e5",
                           "-f", "json").stdout)
    assert alike["best_caveat"] is None


def test_a_report_given_twice_is_named(workdir):
    assert "plain.json is the same file, given 2 times: its figures are shown once per time" in compare(
        ["plain.json", "replay.json", "plain.json"]).warnings
    assert "plain.json and ./plain.json are the same file, given 2 times: its figures are shown once per time" in \
        compare(["plain.json", "./plain.json"]).warnings
    assert not any("same file" in w for w in compare(["plain.json", "replay.json"]).warnings)


def test_an_unknown_verdict_is_not_called_optimistic(workdir, tmp_path):
    data = json.loads((workdir / "mixed.json").read_text())
    data["layers"] = []  # nothing costed: every neuron-like layer uncosted
    data["totals"].update(neuron_dense_ops=0, effective_neuron_ops=0, effective_neuron_ops_run=0)
    (tmp_path / "none.json").write_text(json.dumps(data))
    text = run("compare", str(tmp_path / "none.json"), "--step-rate", "1000", "--budget", "1e6").stdout
    verdict = next(line for line in text.splitlines() if line.startswith("verdict"))
    assert verdict.split() == ["verdict", "UNKNOWN"]


def test_a_report_without_a_budget_is_listed_as_having_no_verdict(workdir):
    result = compare(["replay.json", "plain.json"])  # replay.json was saved with a budget, plain.json without
    assert result.fits == ("replay.json",) and result.unknown == ("plain.json",)
    assert result.models[1].reason == "no budget (none given here, none saved in the report)"
    for fmt in ("table", "csv", "markdown", "html"):
        text = run("compare", "replay.json", "plain.json", "-f", fmt).stdout
        assert "no verdict for plain.json: no budget (none given here, none saved in the report)" in text, fmt
    data = json.loads(run("compare", "replay.json", "plain.json", "-f", "json").stdout)
    assert data["unknown"] == ["plain.json"] and data["models"][1]["verdict"] is None
    assert data["models"][1]["no_verdict"] == "no budget (none given here, none saved in the report)"
    nothing = compare(["plain.json"])
    assert nothing.unknown == ("plain.json",) and nothing.verdict is None
    assert "no budget given: pass --step-rate and --budget" in run("compare", "plain.json").stdout


def _chart_names(html: str) -> list[tuple[str, str]]:
    """(tooltip, label) of each model's name in the chart."""
    chart = html[html.index('<svg id="chart-compare"'):]
    return re.findall(r'<text [^>]*text-anchor="end"><title>([^<]*)</title>([^<]*)</text>', chart)


def test_chart_labels_keep_reports_apart(workdir):
    for name, variant in (("replay", "unrolled"), ("dense", "stepwise")):
        shutil.copy(workdir / f"{name}.json", workdir / f"leaky_sub_fc1__{variant}__torchscript.json")
    html = run("compare", "leaky_sub_fc1__unrolled__torchscript.json", "leaky_sub_fc1__stepwise__torchscript.json",
               "-f", "html").stdout
    assert _chart_names(html) == [("leaky_sub_fc1__unrolled__torchscript.json", "…unrolled…"),
                                  ("leaky_sub_fc1__stepwise__torchscript.json", "…stepwise…")]


@pytest.mark.parametrize(("labels", "chars", "shown"), [
    (["replay.json", "mixed.json"], 30, ["replay.json", "mixed.json"]),  # they fit: nothing is cut
    (["a.json"] * 2, 4, ["a…on", "a…on"]),  # the same report twice: cut in the middle as before
    (["x" * 40 + ".json"], 30, ["x" * 14 + "…" + "x" * 10 + ".json"]),  # one long label: in the middle as before
    (["run10.json", "run12.json"], 8, ["run10…", "run12…"]),  # cut at separators, never inside a word
    (["v1/model/report.json", "v2/model/report.json"], 8, ["v1…", "v2…"]),
    (["out/small.json", "out/small_v2.json"], 12, ["…small…", "…small_v2…"]),
    (["a_", "a_bcd"], 4, ["a_", "…bc…"]),  # "a_" would be left empty: nothing is dropped; "a_bcd" departs at b
    # still too long once the shared start and end are dropped: the part where each departs from its neighbour
    (["exp_" + "long" * 10 + "_run1.json", "exp_" + "long" * 10 + "_run2.json", "exp_b.json"], 30,
     ["…ong" + "long" * 5 + "_run1…", "…ong" + "long" * 5 + "_run2…", "…b…"]),
    (["exp_" + "long" * 10 + "_abc_run1.json", "exp_" + "long" * 10 + "_abc_run2.json", "exp_b.json"], 30,
     ["…ong" + "long" * 4 + "_abc_run1…", "…ong" + "long" * 4 + "_abc_run2…", "…b…"]),
])
def test_chart_labels(labels, chars, shown):
    assert chart_labels(labels, chars) == shown
    assert all(len(label) <= chars for label in shown)
