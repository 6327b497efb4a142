"""The command line: exact output (golden files), exit codes, and one-line errors.

Regenerate the golden files after an intended change with NEURONOPS_UPDATE_GOLDEN=1 pytest tests/test_cli.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from builders import leaky_stepwise, leaky_unrolled, random_net
from click.testing import CliRunner

from estimator.cli import main

GOLDEN = Path(__file__).parent / "golden"


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("NEURONOPS_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder holding a 2-layer unrolled and stepwise model and inputs, with relative paths in the output."""
    rng = np.random.default_rng(2024)
    net = random_net(rng, [10, 12, 4])
    onnx.save(leaky_unrolled(net, 6), tmp_path / "unrolled.onnx")
    onnx.save(leaky_stepwise(net, "dynamo"), tmp_path / "stepwise.onnx")
    np.savez(tmp_path / "inputs.npz", input=(rng.random((5, 6, 10)) < 0.4).astype(np.float32))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("convention", ["spikes", "neurobench"])
def test_estimate_table_golden(workdir, convention):
    result = run("estimate", "unrolled.onnx", "--inputs", "inputs.npz", "--convention", convention)
    assert result.exit_code == 0, result.output
    golden(f"cli_estimate_{convention}.txt", result.stdout)


def test_estimate_json_golden_and_schema(workdir):
    result = run("estimate", "stepwise.onnx", "-i", "inputs.npz", "-c", "neurobench", "-f", "json")
    assert result.exit_code == 0, result.output
    golden("cli_estimate_neurobench.json", result.stdout)
    report = json.loads(result.stdout)
    assert report["schema"] == "neuronops.report/1" and report["per"] == "sample"
    for key in ("model", "convention", "samples", "time_steps", "totals", "layers", "uncosted", "warnings"):
        assert key in report
    for key in ("name", "kind", "reset", "neurons_per_sample", "time_steps", "cost_per_update", "dense_ops",
                "effective_ops", "spikes", "membrane_updates"):
        assert key in report["layers"][0]
    assert isinstance(report["layers"][0]["spikes"], int)


def test_same_numbers_from_both_styles(workdir):
    reports = [json.loads(run("estimate", m, "-i", "inputs.npz", "-f", "json").stdout)
               for m in ("unrolled.onnx", "stepwise.onnx")]
    assert reports[0]["totals"] == reports[1]["totals"]


def test_dense_only_golden(workdir):
    result = run("estimate", "unrolled.onnx")
    assert result.exit_code == 0
    golden("cli_estimate_dense_only.txt", result.stdout)


def test_layers_golden(workdir):
    golden("cli_layers_stepwise.txt", run("layers", "stepwise.onnx").stdout)
    listing = json.loads(run("layers", "unrolled.onnx", "--format", "json").stdout)
    assert [(layer["kind"], layer["time_steps"]) for layer in listing["layers"]] == [("leaky", 6), ("leaky", 6)]


def test_explain_json_golden_and_the_same_from_the_cache(workdir, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("NEURONOPS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    uncached = run("explain", "stepwise.onnx", "--format", "json", "--no-cache")
    assert uncached.exit_code == 0, uncached.output
    golden("cli_explain_stepwise.json", uncached.stdout)
    for _ in range(2):  # a miss that stores the analysis, then a hit that reads it
        assert run("explain", "stepwise.onnx", "-f", "json").stdout == uncached.stdout
    explained = json.loads(uncached.stdout)
    assert explained["schema"] == "neuronops.explain/1" and explained["style"] == "stepwise"
    listing = json.loads(run("layers", "stepwise.onnx", "-f", "json").stdout)
    for layer, listed in zip(explained["layers"], listing["layers"], strict=True):
        assert {key: layer[key] for key in listed} == listed  # layers' fields, and more
        assert layer["update"].startswith("1·I:") and layer["features"]["reset"] == "subtract"


@pytest.mark.parametrize("command", ["layers", "explain"])
@pytest.mark.parametrize("fmt", ["table", "json"])
def test_layers_and_explain_write_to_a_file(workdir, command, fmt):
    shown = run(command, "unrolled.onnx", "-f", fmt).stdout
    result = run(command, "unrolled.onnx", "-f", fmt, "-o", f"out/{command}.{fmt}")
    assert result.exit_code == 0 and result.stdout == ""
    assert (workdir / "out" / f"{command}.{fmt}").read_text() == shown
    assert [p.name for p in (workdir / "out").iterdir()] == [f"{command}.{fmt}"]


@pytest.mark.parametrize(("command", "present", "absent"), [
    ("estimate", ["3 uncosted layers under --strict", "--max-memory"], []),
    ("layers", ["1 the model cannot be read"], ["--strict", "--max-memory", "3 "]),
    ("explain", ["1 the model cannot be read"], ["--strict", "--max-memory", "3 "]),
    ("compare", ["1 a report or energy table cannot be read"], ["--strict", "--max-memory"]),
    ("cache", ["1 the cache folder"], ["--strict", "130"]),
    ("batch", ["1 any model failed", "2 usage error or bad manifest", "3 the only failures are uncosted"], []),
])
def test_each_command_lists_the_exit_codes_it_can_give(command, present, absent):
    epilog = " ".join(run(command, "--help").stdout.split("Exit codes:")[1].split())
    for text in present:
        assert text in epilog
    for text in absent:
        assert text not in epilog


@pytest.mark.parametrize(("command", "name", "starts"), [
    (["estimate", "unrolled.onnx", "-i", "inputs.npz"], "report.json", '{\n  "schema": "neuronops.report/1"'),
    (["estimate", "unrolled.onnx"], "report.HTML", "<!DOCTYPE html>"),
    (["estimate", "unrolled.onnx"], "report.csv", "# "),
    (["estimate", "unrolled.onnx"], "report.md", "# "),
    (["estimate", "unrolled.onnx"], "report.txt", "model: unrolled.onnx"),
    (["estimate", "unrolled.onnx"], "report.out", "model: unrolled.onnx"),  # a suffix that names no format
    (["layers", "unrolled.onnx"], "layers.json", '{\n  "schema": "neuronops.layers/1"'),
    (["layers", "unrolled.onnx"], "layers.csv", "model: unrolled.onnx"),  # layers has no csv: its table
    (["explain", "unrolled.onnx"], "why.json", '{\n  "schema": "neuronops.explain/1"'),
])
def test_the_output_suffix_names_the_format(workdir, command, name, starts):
    """-o report.json without --format writes JSON (what `compare` then reads), not the table."""
    result = run(*command, "-o", name)
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == "", result.output
    assert (workdir / name).read_text().startswith(starts)


def test_a_format_that_contradicts_the_suffix_is_obeyed_with_a_warning(workdir):
    result = run("estimate", "unrolled.onnx", "-f", "csv", "-o", "report.json")
    assert result.exit_code == 0
    assert result.stderr == "warning: writing csv to report.json (--format csv; its suffix names json)\n"
    assert (workdir / "report.json").read_text().startswith("# ")


def test_output_file_is_written_whole(workdir):
    result = run("estimate", "unrolled.onnx", "-i", "inputs.npz", "-f", "json", "-o", "out/report.json")
    assert result.exit_code == 0 and result.stdout == ""
    assert json.loads((workdir / "out" / "report.json").read_text())["samples"] == 5
    assert [p.name for p in (workdir / "out").iterdir()] == ["report.json"]  # no temp file left behind


@pytest.mark.parametrize(("args", "code", "message"), [
    (["estimate", "absent.onnx"], 1, "error: absent.onnx: no such file"),
    (["estimate", "inputs.npz"], 1, "error: inputs.npz: not a readable ONNX model"),
    (["estimate", "unrolled.onnx", "-i", "absent.npz"], 1, "error: absent.npz: no such inputs file"),
    (["estimate", "unrolled.onnx", "--convention", "other"], 2, "Invalid value for '--convention'"),
    (["estimate", "unrolled.onnx", "--batch-size", "0"], 2, "Invalid value for '--batch-size'"),
    (["frobnicate"], 2, "No such command 'frobnicate'"),
])
def test_errors_are_one_line_with_exit_codes(workdir, args, code, message):
    result = run(*args)
    assert result.exit_code == code
    assert message in result.stderr
    assert "Traceback" not in result.output
    if code == 1:
        assert len(result.stderr.strip().splitlines()) == 1


def test_inputs_that_do_not_fit_name_the_input(workdir):
    np.savez(workdir / "wrong.npz", input=np.zeros((2, 6, 11), np.float32))
    result = run("estimate", "unrolled.onnx", "-i", "wrong.npz")
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: input 'input': model expects shape (batch, 6, 10), "
                                     "the inputs array has shape (2, 6, 11)")
    np.savez(workdir / "steps.npz", input=np.zeros((2, 4, 10), np.float32))
    result = run("estimate", "unrolled.onnx", "-i", "steps.npz")
    assert "is unrolled for 6 time steps in the graph, the inputs have 4" in result.stderr


def test_help_teaches(workdir):
    text = run("--help").stdout
    assert "neuronops estimate model.onnx --inputs inputs.npz" in text and "Exit codes" in text
    estimate_help = run("estimate", "--help").stdout
    for option in ("--inputs", "--convention", "--format", "--batch-size", "--time-axis", "--steps", "--cost-table",
                   "--strict"):
        assert option in estimate_help


def test_model_without_neurons_says_what_was_looked_for(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 3), np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["y"])], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])], [weight])
    onnx.save(helper.make_model(graph), tmp_path / "mlp.onnx")
    result = run("layers", str(tmp_path / "mlp.onnx"))
    assert result.exit_code == 1
    assert "no spiking neuron layer found; looked for a threshold compare H(U − θ)" in result.stderr


def test_version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("neuronops")
    except PackageNotFoundError:
        installed = "unknown (not installed)"
    result = CliRunner().invoke(main, ["--version"], prog_name="neuronops")
    assert result.exit_code == 0
    assert result.output == f"neuronops, version {installed}\n"


def test_inputs_given_as_a_second_argument_get_a_hint(workdir):
    result = run("estimate", "unrolled.onnx", "inputs.npz")
    assert result.exit_code == 2
    assert "unexpected extra argument (inputs.npz); recorded inputs go with -i/--inputs FILE" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["estimate", "layers", "explain"])
def test_many_models_get_one_short_line(workdir, command):
    """What a shell glob gives a one-model command: the first few surplus paths and a count, and what takes many."""
    paths = [f"run{i}/model.onnx" for i in range(40)]
    result = run(command, "unrolled.onnx", *paths)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == (f"error: Got unexpected extra arguments ({' '.join(paths[:3])} … and 37 more); "
                             f"{command} takes one MODEL (for many models: neuronops batch, or a shell loop) "
                             f"(see 'main {command} --help')\n")
    assert run(command, "unrolled.onnx", "-f", "json", "--no-cache").exit_code == 0  # options still parse


def test_a_quoted_pattern_says_it_was_not_expanded(workdir):
    for args in (["estimate", "runs/*/model.onnx"], ["layers", "model?.onnx"], ["estimate", "unrolled.onnx", "-i",
                                                                              "inputs[12].npz"]):
        result = run(*args)
        assert result.exit_code == 1
        assert result.stderr.endswith("no such file; a wildcard pattern is not expanded here (was it quoted?): name "
                                      "one file, or let `neuronops batch 'PATTERN'` expand it\n") or \
            result.stderr.endswith("no such inputs file; a wildcard pattern is not expanded here (was it quoted?): "
                                   "name one file, or let `neuronops batch 'PATTERN'` expand it\n"), result.stderr
    assert run("estimate", "absent.onnx").stderr == "error: absent.onnx: no such file\n"  # no pattern, no hint


def test_rates_take_si_prefixes_and_their_unit(workdir):
    plain = run("estimate", "unrolled.onnx", "--step-rate", "1000", "--budget", "150000", "-f", "json")
    assert plain.exit_code == 0, plain.output
    for rate, budget in (("1k", "150k"), ("1kHz", "0.15M"), ("1 kHz", "150kops/s"), ("1e3", "1.5e5")):
        same = run("estimate", "unrolled.onnx", "--step-rate", rate, "--budget", budget, "-f", "json")
        assert same.stdout == plain.stdout, (rate, budget, same.output)
    for bad in ("0", "-1k", "fast", "1x", "nan", "inf"):
        refused = run("estimate", "unrolled.onnx", "--step-rate", bad)
        assert refused.exit_code == 2
        assert f"Invalid value for '--step-rate': '{bad}' is not a positive number (e.g. 1000, 1e5, 100k, 1.5M, " \
               "1kHz)" in refused.stderr


def test_compare_expands_a_quoted_pattern(workdir):
    for model in ("unrolled.onnx", "stepwise.onnx"):
        assert run("estimate", model, "-i", "inputs.npz", "-o", f"reports/{model[:-5]}.json").exit_code == 0
    listed = run("compare", "reports/stepwise.json", "reports/unrolled.json", "-f", "json")
    assert listed.exit_code == 0, listed.output
    assert run("compare", "reports/*.json", "-f", "json").stdout == listed.stdout  # sorted, as a shell expands it
    missing = run("compare", "nowhere/*.json")
    assert missing.exit_code == 1 and "nowhere/*.json: no such report file" in missing.stderr


def test_a_stepwise_replay_says_which_axis_it_took_as_time(workdir):
    """A stepwise graph cannot tell a time-major file from a batch-major one: the report says how it read it."""
    for axis, samples, steps in ((1, 5, 6), (0, 6, 5)):
        result = run("estimate", "stepwise.onnx", "-i", "inputs.npz", "--time-axis", str(axis))
        assert result.exit_code == 0, result.output
        assert (f"note: stepwise model: the inputs' shape (5, 6, 10) is read as {samples} samples × {steps} time steps "
                f"(time on axis {axis}; --time-axis says where it is)") in result.stdout
    assert "stepwise model" not in run("estimate", "unrolled.onnx", "-i", "inputs.npz").stdout  # the graph checks T


def test_convention_names_are_not_case_sensitive(workdir):
    upper = run("estimate", "unrolled.onnx", "-i", "inputs.npz", "-c", "NeuroBench", "-f", "json")
    lower = run("estimate", "unrolled.onnx", "-i", "inputs.npz", "-c", "neurobench", "-f", "json")
    assert upper.exit_code == 0 and upper.stdout == lower.stdout
    assert json.loads(upper.stdout)["convention"] == "neurobench"


def test_package_version_is_the_distribution_version():
    import estimator

    try:
        from importlib.metadata import version

        installed = version("neuronops")
    except Exception:  # a source checkout on sys.path
        installed = "0+unknown"
    assert estimator.__version__ == installed


@pytest.mark.parametrize("target", ["unrolled.onnx", "inputs.npz", "link.onnx"])
def test_o_never_replaces_a_file_the_command_reads(workdir, target):
    """-o onto the model or its inputs (or a link to one) replaced it with the report, exit 0: refused up front."""
    (workdir / "link.onnx").symlink_to("unrolled.onnx")
    before = {name: (workdir / name).read_bytes() for name in ("unrolled.onnx", "inputs.npz")}
    result = run("estimate", "unrolled.onnx", "-i", "inputs.npz", "-o", target)
    assert result.exit_code == 2
    assert result.output.startswith("error: -o ") and "which this command reads" in result.output
    assert result.output.count("\n") == 1
    assert {name: (workdir / name).read_bytes() for name in before} == before


def test_compare_o_never_replaces_a_report_it_reads(workdir):
    assert run("estimate", "unrolled.onnx", "-f", "json", "-o", "r.json").exit_code == 0
    saved = (workdir / "r.json").read_text()
    result = run("compare", "r.json", "-o", "r.json")
    assert result.exit_code == 2 and "which this command reads" in result.output
    assert (workdir / "r.json").read_text() == saved


def test_o_writes_through_a_symlink_and_into_a_fifo(workdir):
    """A symlink keeps pointing at the report (its target is replaced); a FIFO (or /dev/null) is written to, not
    replaced by a regular file (as root, -o /dev/null turned the device into a file)."""
    (workdir / "real.txt").write_text("old")
    (workdir / "report.txt").symlink_to("real.txt")
    assert run("layers", "unrolled.onnx", "-o", "report.txt").exit_code == 0
    assert (workdir / "report.txt").is_symlink() and (workdir / "real.txt").read_text().startswith("model: ")
    fifo = workdir / "pipe"
    os.mkfifo(fifo)
    import threading

    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    assert run("layers", "unrolled.onnx", "-o", "pipe").exit_code == 0
    reader.join(timeout=30)
    assert fifo.is_fifo() and received and received[0].startswith(b"model: ")


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--timeout", "inf", "'inf' is not a number of seconds above 0"),
    ("--timeout", "nan", "'nan' is not a number of seconds above 0"),
    ("--timeout", "1e12", "'1e12' is not a number of seconds above 0"),
    ("--threads", "20000", "20000 is not in the range 0<=x<=256"),
    ("--step-rate", "1e308", "'1e308' is more than 1e+18 Hz"),
    ("--step-rate", "1e-310", "'1e-310' is less than 1e-09 Hz"),
])
def test_out_of_range_option_values_are_usage_errors(workdir, option, value, message):
    """--timeout inf printed a thread's traceback (and no deadline ran), nan exited 1, --threads 20000 ran for
    minutes, --step-rate 1e308 overflowed into an 'unexpected OverflowError'."""
    result = run("estimate", "unrolled.onnx", "-i", "inputs.npz", option, value)
    assert result.exit_code == 2 and message in result.output and result.output.count("\n") == 1


def test_a_tiny_budget_is_a_usage_error_not_an_overflow(workdir):
    result = run("estimate", "unrolled.onnx", "--step-rate", "1000", "--budget", "1e-310")
    assert result.exit_code == 2 and "'1e-310' is less than 1e-09 ops/s" in result.output


def test_a_cost_beyond_any_neuron_is_refused_naming_file_and_key(workdir):
    (workdir / "huge.toml").write_text("[costs.leaky]\nsubtract = 1" + "0" * 320 + "\n")
    result = run("estimate", "unrolled.onnx", "-i", "inputs.npz", "--cost-table", "huge.toml")
    assert result.exit_code == 1
    assert "huge.toml: costs.leaky.subtract = 1000" in result.output and "(at most 1,000,000,000)" in result.output


def _cli(*args: str, **streams) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "estimator", *args], cwd=Path.cwd(), text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}, **streams)


def test_closed_or_full_standard_streams(workdir):
    """stdout closed: the report was lost with exit 0; stderr closed: a good estimate failed (isatty on None);
    /dev/full: a traceback (--help) or an 'unexpected OSError'."""
    closed = _cli("estimate", "unrolled.onnx", "-i", "inputs.npz", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                  pass_fds=(), close_fds=True, preexec_fn=lambda: os.close(1))
    assert closed.returncode == 1 and closed.stderr.startswith("error: standard output is closed")
    no_stderr = _cli("estimate", "unrolled.onnx", "-i", "inputs.npz", stdout=subprocess.PIPE,
                     preexec_fn=lambda: os.close(2))
    assert no_stderr.returncode == 0 and no_stderr.stdout.startswith("model: unrolled.onnx")
    if Path("/dev/full").exists():
        with open("/dev/full", "w") as full:
            for args in (("--help",), ("layers", "unrolled.onnx")):
                result = _cli(*args, stdout=full, stderr=subprocess.PIPE)
                assert result.returncode == 1, result.stderr
                assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
                assert "No space left on device" in result.stderr
