"""`neuronops batch` and the sharded replay on local worker processes: exact figures, failures kept apart, resume.

Every figure is checked against `estimate()` in one process and, for the effective ops, against the numpy reference
of the same network (tests/builders.py), never against numbers written down from an earlier run.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from batchkit import build_models, fail_above_one
from builders import checker_objects_but_runs, leaky_stepwise, leaky_unrolled, random_net
from click.testing import CliRunner
from conftest import SAMPLES

from estimator import estimate
from estimator.batch import SUMMARY_COLUMNS, collect, fingerprint, read_manifest, run_batch
from estimator.cli import main
from estimator.errors import ManifestError
from estimator.parallel import InlineBackend, ModelJob, ProcessBackend, estimate_sharded, shard_bounds

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def summary_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "summary.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def report_without_batch(path: Path) -> dict:
    data = json.loads(path.read_text())
    data.pop("batch")
    return data


@pytest.fixture(scope="module")
def pool():
    """Two spawned worker processes, shared by this module's tests (starting them is the slow part)."""
    with ProcessBackend(2) as backend:
        yield backend


# ---------------------------------------------------------------- a batch with a broken model in the middle


def test_broken_model_in_the_middle_is_reported_and_the_others_written(tmp_path):
    built = build_models(tmp_path / "models", count=5, broken=2)
    out = tmp_path / "out"
    result = run("batch", str(tmp_path / "models" / "*" / "model.onnx"), "--out", str(out), "-c", "neurobench")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == f"error: 1 of 5 models failed; see {out / 'summary.csv'}"
    assert "Traceback" not in result.output
    rows = {row["name"]: row for row in summary_rows(out)}
    assert list(rows) == [b.name for b in built]  # every model, in the order given
    broken = rows["net2"]
    assert broken["status"] == "error" and "not a readable ONNX model" in broken["error"]
    assert not (out / "results" / "net2.json").exists()
    for b in built:
        if b.net is None:
            continue
        row = rows[b.name]
        assert row["status"] == "ok" and row["error"] == ""
        assert (row["per"], row["complete"]) == ("sample", "true")  # written as the report CSVs write them
        assert int(row["effective_neuron_ops_run"]) == b.expected_run("neurobench")
        assert int(row["samples"]) == len(b.data)
        stored = report_without_batch(out / row["result"])
        assert stored == json.loads(json.dumps(estimate(b.model, b.inputs, convention="neurobench").to_dict()))
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["models"], summary["ok"], summary["failed"]) == (5, 4, 1)
    assert [row["name"] for row in summary["rows"]] == [b.name for b in built]
    assert all(list(row) == list(SUMMARY_COLUMNS) for row in summary["rows"])  # nothing private leaks out
    assert rows["net2"]["per"] == "" and rows["net2"]["complete"] == ""
    assert sorted(p.name for p in out.rglob("*") if p.name.startswith(".")) == []  # no temporary files left


def test_a_model_running_out_of_memory_fails_alone(tmp_path, monkeypatch):
    """An out-of-memory error in one model's replay ended the whole batch (exit 1, no summary, no results): it is
    that model's failure; the others are written."""
    import estimator.parallel as parallel

    built = build_models(tmp_path / "models", count=3, broken=None)
    real = parallel.replay_report

    def exhausted(shown_as, *args, **kwargs):
        if "net1" in str(shown_as):
            raise MemoryError
        return real(shown_as, *args, **kwargs)

    monkeypatch.setattr(parallel, "replay_report", exhausted)
    out = tmp_path / "out"
    result = run("batch", str(tmp_path / "models" / "*" / "model.onnx"), "--out", str(out), "--jobs", "1")
    assert result.exit_code == 1 and "Traceback" not in result.output
    rows = {row["name"]: row for row in summary_rows(out)}
    assert [rows[b.name]["status"] for b in built] == ["ok", "error", "ok"]
    assert rows["net1"]["error"].startswith("out of memory while estimating this model")
    assert (out / "results" / "net0.json").exists() and (out / "results" / "net2.json").exists()


def test_a_failing_shard_is_reported_with_its_sample_range(tmp_path):
    built = build_models(tmp_path / "models", count=3, broken=None, samples=300)
    fail_above_one(built[1].model)  # onnxruntime fails on the batch holding sample 150, and only there
    data = np.load(built[1].inputs)["input"].copy()
    data[150, 2, 3] = 5.0
    np.savez(built[1].inputs, input=data)
    out = tmp_path / "out"
    result = run("batch", str(tmp_path / "models"), "--out", str(out), "--shard-size", "64", "--batch-size", "32")
    assert result.exit_code == 1
    rows = {row["name"]: row for row in summary_rows(out)}
    error = rows["net1"]["error"]
    assert error.startswith("samples [128, 192): onnxruntime failed") and "Gather" in error, error
    assert [rows[b.name]["status"] for b in built] == ["ok", "error", "ok"]
    for b in (built[0], built[2]):
        assert int(rows[b.name]["effective_neuron_ops_run"]) == b.expected_run("spikes")


def test_non_finite_inputs_fail_the_model_before_any_shard_runs(tmp_path):
    built = build_models(tmp_path / "models", count=3, broken=None, samples=300)
    data = np.load(built[1].inputs)["input"].copy()
    data[150, 2, 3] = np.nan
    np.savez(built[1].inputs, input=data)
    out = tmp_path / "out"
    result = run("batch", str(tmp_path / "models"), "--out", str(out), "--shard-size", "64")
    assert result.exit_code == 1
    rows = {row["name"]: row for row in summary_rows(out)}
    assert rows["net1"]["error"] == ("input 'input': 1 NaN or ±Inf value(s), the first in sample 150; clean the "
                                     "data, or pass --allow-nonfinite to replay them as they are")
    assert [rows[b.name]["status"] for b in built] == ["ok", "error", "ok"]


def test_bundled_samples_with_a_broken_model_in_the_middle(tmp_path, pool):
    """Every bundled sample export, a broken model halfway: the same summary on 1 and 2 processes, and NeuroBench's
    own figures (samples/*/expected.json) for every other model."""
    cases = sorted(p.parent for p in SAMPLES.glob("*/expected.json"))
    assert len(cases) >= 20
    (tmp_path / "broken.onnx").write_bytes(b"\x08\x07 not a model")
    rows = []
    for case in cases:
        expected = json.loads((case / "expected.json").read_text())
        rows.append({"name": case.name, "model": str(case / expected["model"]),
                     "inputs": str(case / expected["inputs"]), "batch_size": expected.get("batch_size")})
    rows.insert(len(rows) // 2, {"name": "broken", "model": str(tmp_path / "broken.onnx")})
    manifest = tmp_path / "samples.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    entries = collect([str(manifest)], ModelJob(model="", convention="neurobench"))
    one = run_batch(entries, tmp_path / "one", InlineBackend())
    two = run_batch(entries, tmp_path / "two", pool)
    assert (tmp_path / "one" / "summary.csv").read_text() == (tmp_path / "two" / "summary.csv").read_text()
    assert one.failed == 1 and one.exit_code == 1
    by_name = {row["name"]: row for row in two.rows}
    assert by_name["broken"]["status"] == "error" and "not a readable ONNX model" in by_name["broken"]["error"]
    for case in cases:
        want = json.loads((case / "expected.json").read_text())["expected"]["neurobench"]
        row = by_name[case.name]
        assert row["status"] == "ok", row["error"]
        for key in ("neuron_dense_ops", "effective_neuron_ops"):
            if want[key] is not None:
                assert row[key] == pytest.approx(want[key], rel=1e-12), (case.name, key)


# ---------------------------------------------------------------- exactness: jobs, shards, conventions


@pytest.mark.parametrize("style", ["stepwise", "unrolled"])
def test_one_model_sharded_across_workers_equals_one_process(tmp_path, pool, style):
    rng = np.random.default_rng(5)
    net = random_net(rng, [16, 24, 6])
    model = tmp_path / "model.onnx"
    onnx.save(leaky_stepwise(net) if style == "stepwise" else leaky_unrolled(net, 9), model)
    data = (rng.random((203, 9, 16)) < 0.3).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", input=data)
    reference = net.reference(data)
    for convention in ("spikes", "neurobench"):
        whole = estimate(model, tmp_path / "inputs.npz", convention=convention)
        for shard_size in (None, 7, 64):  # uneven shards: the last batch of each shard is short
            sharded = estimate_sharded(model, tmp_path / "inputs.npz", backend=pool, convention=convention,
                                       shard_size=shard_size)
            assert sharded == whole
        counted = reference["spikes" if convention == "spikes" else "membrane_updates"]
        assert whole.totals.effective_neuron_ops_run == 4 * sum(counted)
        assert [row.spikes for row in whole.layers] == reference["spikes"]


def test_shards_cover_every_sample_once():
    for samples in (1, 63, 64, 65, 1000):
        for workers in (1, 2, 8):
            for size in (None, 1, 10):
                bounds = shard_bounds(samples, workers, None, size)
                assert bounds[0][0] == 0 and bounds[-1][1] == samples
                assert all(a < b and b == c for (a, b), (c, _) in zip(bounds, bounds[1:] + [(samples, 0)],
                                                                       strict=True))


def test_jobs_2_gives_exactly_the_numbers_of_jobs_1(tmp_path):
    build_models(tmp_path / "models", count=4, broken=1, samples=150)
    outs = {}
    for jobs in ("1", "2"):
        outs[jobs] = tmp_path / f"out{jobs}"
        result = run("batch", str(tmp_path / "models"), "--out", str(outs[jobs]), "--jobs", jobs,
                     "--shard-size", "32")
        assert result.exit_code == 1, result.output
        assert ("2 local worker processes" in result.stdout) == (jobs == "2")
    for name in ("summary.csv", "summary.json"):
        assert (outs["1"] / name).read_text() == (outs["2"] / name).read_text()
    results = sorted(p.name for p in (outs["1"] / "results").iterdir())
    assert len(results) == 3
    for name in results:
        assert (outs["1"] / "results" / name).read_text() == (outs["2"] / "results" / name).read_text()


def test_a_local_worker_killed_mid_run_is_replaced_and_the_results_stay_exact(tmp_path, pool):
    built = build_models(tmp_path / "models", count=1, broken=None, samples=800, steps=20)
    entries = collect([str(built[0].model)], ModelJob(model=""))
    killed = []

    def kill_one(_: int) -> None:
        if not killed:  # after the first shard is in, the others are running or queued
            pid = next(iter(pool._pool._processes))
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    summary = run_batch(entries, tmp_path / "out", pool, shard_size=50, on_samples=kill_one)
    assert killed and summary.failed == 0
    row = summary.rows[0]
    assert row["effective_neuron_ops_run"] == built[0].expected_run("spikes")
    assert row["samples"] == 800
    # a new pool took over: during the run, or (when the other worker had finished every shard before the kill was
    # noticed, as a fast machine can) at the next submission; either way the backend runs the next job
    again = run_batch(entries, tmp_path / "again", pool, shard_size=400)
    assert again.failed == 0 and again.rows[0]["effective_neuron_ops_run"] == row["effective_neuron_ops_run"]
    assert killed[0] not in pool._pool._processes


# ---------------------------------------------------------------- resume


def test_kill_and_resume_gives_the_same_summary_without_recomputing(tmp_path):
    built = build_models(tmp_path / "models", count=5, broken=3, samples=300, steps=40, features=32, hidden=48)
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    command = [sys.executable, "-m", "estimator", "batch", str(tmp_path / "models"), "--out", str(out),
               "--batch-size", "8", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results"
    try:
        while process.poll() is None and not (results.is_dir() and any(results.glob("*.json"))):
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGKILL)  # what a crash or `kill -9` of the whole job does
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the batch finished before it could be killed"
    kept = {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in results.glob("*.json")}
    assert 1 <= len(kept) < 4 and not (out / "summary.csv").exists()

    resumed = subprocess.run(command + ["--resume"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert resumed.returncode == 1, resumed.stderr
    assert f"{len(kept)} kept from an earlier run" in resumed.stdout
    for name, (mtime, text) in kept.items():  # not recomputed, not rewritten
        path = results / name
        assert (path.stat().st_mtime_ns, path.read_text()) == (mtime, text)

    complete = run("batch", str(tmp_path / "models"), "--out", str(fresh), "--batch-size", "8")
    assert complete.exit_code == 1
    for name in ("summary.csv", "summary.json"):
        assert (out / name).read_text() == (fresh / name).read_text()
    rows = {row["name"]: row for row in summary_rows(out)}
    for b in built:
        if b.net is not None:
            assert int(rows[b.name]["effective_neuron_ops_run"]) == b.expected_run("spikes")


def test_ctrl_c_on_a_batch_with_worker_processes_is_one_line(tmp_path):
    """Ctrl-C reaches the whole process group: each worker process printed its own KeyboardInterrupt traceback
    (23 lines). The workers leave it to the client, which stops them and exits 130 with one line."""
    # net0 (unrolled) is done in a moment and its worker then waits idle; net1 (stepwise, driven step by step, one
    # sample per run) keeps the other busy for seconds
    build_models(tmp_path / "models", count=2, broken=None, samples=200, steps=1500, features=8, hidden=8)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "estimator", "batch", str(tmp_path / "models"), "--out", str(out),
               "--jobs", "2", "--batch-size", "1", "--no-progress"]
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                               start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while process.poll() is None and not any((out / "results").glob("*.json")):
            time.sleep(0.01)  # the workers are up and replaying
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == "error: interrupted"
    assert len(stderr.strip().splitlines()) == 1, stderr


def test_resume_recomputes_what_is_damaged_or_was_made_differently(tmp_path):
    build_models(tmp_path / "models", count=3, broken=None)
    out = tmp_path / "out"
    assert run("batch", str(tmp_path / "models"), "--out", str(out)).exit_code == 0
    before = summary_rows(out)
    results = out / "results"
    (results / "net0.json").write_text('{"schema": "neuronops.report/1", "tot')  # cut short
    stamp = {p.name: p.stat().st_mtime_ns for p in results.iterdir()}
    result = run("batch", str(tmp_path / "models"), "--out", str(out), "--resume")
    assert result.exit_code == 0 and "2 kept from an earlier run" in result.stdout
    assert summary_rows(out) == before
    assert (results / "net1.json").stat().st_mtime_ns == stamp["net1.json"]
    assert (results / "net0.json").stat().st_mtime_ns != stamp["net0.json"]
    # another convention is another result: nothing is kept
    result = run("batch", str(tmp_path / "models"), "--out", str(out), "--resume", "-c", "neurobench")
    assert result.exit_code == 0 and "kept from an earlier run" not in result.stdout
    assert {row["convention"] for row in summary_rows(out)} == {"neurobench"}


def test_resume_recomputes_when_the_inputs_file_changed(tmp_path):
    built = build_models(tmp_path / "models", count=1, broken=None)
    job = ModelJob(str(built[0].model), str(built[0].inputs))
    first = fingerprint(job)
    np.savez(built[0].inputs, input=np.zeros((3, 6, 10), np.float32))
    assert fingerprint(job) != first


# ---------------------------------------------------------------- manifests, globs, names


def test_manifest_rows_carry_their_own_options(tmp_path):
    built = build_models(tmp_path / "models", count=3, broken=None)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("model,inputs,convention,batch_size,name\n"
                        "models/net0/model.onnx,models/net0/inputs.npz,neurobench,5,first\n"
                        "models/net1/model.onnx,models/net1/inputs.npz,,,\n"
                        "\n"
                        "models/net2/model.onnx,,spikes,,dense-only\n")
    jsonl = tmp_path / "manifest.jsonl"
    jsonl.write_text("# the same, as JSON lines\n" + "\n".join(json.dumps(row) for row in [
        {"model": "models/net0/model.onnx", "inputs": "models/net0/inputs.npz", "convention": "neurobench",
         "batch_size": 5, "name": "first"},
        {"model": "models/net1/model.onnx", "inputs": "models/net1/inputs.npz"},
        {"model": "models/net2/model.onnx", "convention": "spikes", "name": "dense-only"},
    ]) + "\n")
    outs = []
    for source in (manifest, jsonl):
        out = tmp_path / f"out-{source.suffix[1:]}"
        result = run("batch", str(source), "--out", str(out), "--convention", "spikes")
        assert result.exit_code == 0, result.output
        outs.append(summary_rows(out))
    assert outs[0] == outs[1]
    rows = outs[0]
    assert [row["name"] for row in rows] == ["first", "net1", "dense-only"]
    assert [row["convention"] for row in rows] == ["neurobench", "spikes", "spikes"]
    assert int(rows[0]["effective_neuron_ops_run"]) == built[0].expected_run("neurobench")
    assert int(rows[1]["effective_neuron_ops_run"]) == built[1].expected_run("spikes")
    assert rows[2]["samples"] == "" and rows[2]["effective_neuron_ops"] == "" and int(rows[2]["neuron_dense_ops"]) > 0


@pytest.mark.parametrize(("text", "message"), [
    ("model,colour\na.onnx,red\n", "manifest.csv:1: unknown column(s) 'colour'"),
    ("inputs\nx.npz\n", "manifest.csv: a CSV manifest needs a header row with a 'model' column"),
    ("model,batch_size\na.onnx,many\n", "manifest.csv:2: batch_size must be a whole number, got 'many'"),
    ("model,convention\na.onnx,dense\n", "manifest.csv:2: convention must be one of spikes, neurobench"),
    ("model\n", "manifest.csv: the manifest lists no model"),
])
def test_bad_manifests_are_usage_errors_naming_the_line(tmp_path, text, message):
    (tmp_path / "manifest.csv").write_text(text)
    result = run("batch", str(tmp_path / "manifest.csv"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("line", "message"), [
    ('{"model": 5}', "m.jsonl:1: model must be a string (a path or a name), got 5"),
    ('{"model": ["a.onnx"]}', "m.jsonl:1: model must be a string (a path or a name), got ['a.onnx']"),
    ('{"model": "a.onnx", "batch_size": true}', "m.jsonl:1: batch_size must be a whole number, got True"),
    ('{"model": "a.onnx", "time_axis": 1.5}', "m.jsonl:1: time_axis must be a whole number, got 1.5"),
    ('{"model": "a.onnx", "cost_table": 3}', "m.jsonl:1: cost_table must be a path or a list of paths, got 3"),
])
def test_manifest_values_of_the_wrong_type_are_refused(tmp_path, line, message):
    """JSON values were taken whatever their type: 5 as a path, true as batch size 1, 1.5 as axis 1."""
    (tmp_path / "m.jsonl").write_text(line + "\n")
    result = run("batch", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and result.stderr.strip().endswith(message), result.stderr


def test_bad_json_line_names_its_line(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"model": "a.onnx"}\n{"model": \n')
    with pytest.raises(ManifestError, match=r"m.jsonl:2: not a JSON object"):
        read_manifest(tmp_path / "m.jsonl", ModelJob(model=""))


def test_a_json_manifest_of_one_object_and_a_saved_report_given_as_one(tmp_path):
    """A .json holding one object with a 'model' key is a one-model manifest; a saved report (pretty-printed JSON,
    which is no JSON-lines file either) is named as what it is, with what reads it."""
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"model": "a.onnx", "convention": "neurobench"}, indent=2))
    ((_, job),) = read_manifest(one, ModelJob(model=""))
    assert (job.model, job.convention) == (str(tmp_path / "a.onnx"), "neurobench")
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"schema": "neuronops.report/1", "model": "a.onnx"}, indent=2))
    result = run("batch", str(report), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert result.stderr == (f"error: {report}: a saved neuronops result (neuronops.report/1), not a manifest; batch "
                             "takes models, globs, folders or manifests (.csv, .jsonl, .json: a list of objects with a "
                             "'model' key); `neuronops compare` reads saved reports\n")


def test_globs_inputs_pattern_and_unique_names(tmp_path):
    rng = np.random.default_rng(1)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        net = random_net(rng, [10, 8, 3])
        onnx.save(leaky_unrolled(net, 6), tmp_path / folder / "model.onnx")
        np.savez(tmp_path / folder / "recorded.npz", input=np.ones((4, 6, 10), np.float32))
    defaults = ModelJob(model="")
    entries = collect([str(tmp_path / "*" / "model.onnx")], defaults, "{dir}/recorded.npz")
    assert [(e.name, Path(e.job.inputs).name) for e in entries] == [("a", "recorded.npz"), ("b", "recorded.npz")]
    onnx.save(leaky_unrolled(net, 6), tmp_path / "b" / "other.onnx")  # file names differ: they stay in the names
    mixed = collect([str(tmp_path / "*" / "*.onnx")], defaults, "{dir}/recorded.npz")
    assert [e.name for e in mixed] == ["a__model", "b__model", "b__other"]
    beside = collect([str(tmp_path / "a" / "model.onnx")] * 2, defaults)  # no pattern and no inputs.npz: dense only
    assert [(e.name, e.job.inputs) for e in beside] == [("model", None), ("model-2", None)]
    with pytest.raises(ManifestError, match="matches no model"):
        collect([str(tmp_path / "*.nothing")], defaults)


def test_progress_bar_counts_models_on_stderr(tmp_path):
    build_models(tmp_path / "models", count=2, broken=None)
    result = run("batch", str(tmp_path / "models"), "--out", str(tmp_path / "out"), "--progress")
    assert result.exit_code == 0
    assert "2/2 models" in result.stderr


# ---------------------------------------------------------------- Dask is optional


def test_the_tool_starts_without_importing_dask():
    code = ("import sys; from click.testing import CliRunner; from estimator.cli import main; "
            "import estimator.batch, estimator.parallel; CliRunner().invoke(main, ['batch', '--help']); "
            "print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_scheduler_without_the_dask_extra_is_a_clear_usage_error(tmp_path, monkeypatch):
    build_models(tmp_path / "models", count=1, broken=None)
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if neuronops[dask] were not installed
    result = run("batch", str(tmp_path / "models"), "--out", str(tmp_path / "out"), "--scheduler", "local")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --scheduler needs Dask: pip install 'neuronops[dask]' (dask[distributed])"
    result = run("batch", str(tmp_path / "models"), "--out", str(tmp_path / "out"), "--ship", "bytes")
    assert result.exit_code == 2 and "needs a Dask cluster" in result.stderr


def test_inline_backend_runs_the_same_shards(tmp_path):
    built = build_models(tmp_path / "models", count=1, broken=None, samples=90)
    report = estimate_sharded(built[0].model, built[0].inputs, backend=InlineBackend(), shard_size=13)
    assert report == estimate(built[0].model, built[0].inputs)


# ---------------------------------------------------------------- `estimate --jobs`: one model, split from the CLI


@pytest.mark.parametrize("style", ["stepwise", "unrolled"])
def test_estimate_with_jobs_prints_the_one_process_report(tmp_path, style):
    rng = np.random.default_rng(17)
    net = random_net(rng, [10, 12, 5])
    model = tmp_path / "model.onnx"
    onnx.save(leaky_stepwise(net) if style == "stepwise" else leaky_unrolled(net, 6), model)
    data = (rng.random((40, 6, 10)) < 0.3).astype(np.float64)  # float64: the "rounded to float32" note must come too
    np.save(tmp_path / "inputs.npy", data)
    for convention in ("spikes", "neurobench"):
        args = ["estimate", str(model), "-i", str(tmp_path / "inputs.npy"), "-c", convention, "-f", "json"]
        one = run(*args)
        split = run(*args, "--jobs", "2", "--shard-size", "7")
        assert one.exit_code == 0 and split.exit_code == 0, split.output
        assert split.stdout == one.stdout
        report = json.loads(split.stdout)
        counted = net.reference(data.astype(np.float32))["spikes" if convention == "spikes" else "membrane_updates"]
        assert report["totals"]["effective_neuron_ops_run"] == 4 * sum(counted)
        assert any("rounded to float32" in note for note in report["notes"])


def test_sharded_runs_keep_the_models_and_the_inputs_warnings(tmp_path):
    """The ONNX checker's objection and the inputs' non-finite values are said by a split run as by one process."""
    rng = np.random.default_rng(3)
    net = random_net(rng, [6, 4])
    proto = checker_objects_but_runs(net)
    model = tmp_path / "model.onnx"
    onnx.save(proto, model)
    data = (rng.random((30, 5, 6)) < 0.4).astype(np.float32)
    data[4, 2, 1] = np.nan
    np.save(tmp_path / "inputs.npy", data)
    with pytest.raises(Exception, match="NaN"):
        estimate_sharded(model, tmp_path / "inputs.npy", backend=InlineBackend(), shard_size=8)
    whole = estimate(model, tmp_path / "inputs.npy", allow_nonfinite=True)
    assert any("ONNX checker" in w for w in whole.warnings) and any("NaN" in w for w in whole.warnings)
    for shard_size in (None, 8):  # None: one job, run whole on the worker; 8: shards merged on the client
        sharded = estimate_sharded(model, tmp_path / "inputs.npy", backend=InlineBackend(), shard_size=shard_size,
                                   allow_nonfinite=True)
        assert sharded == whole


def test_manifest_allow_nonfinite(tmp_path):
    rng = np.random.default_rng(4)
    net = random_net(rng, [6, 4])
    onnx.save(leaky_stepwise(net), tmp_path / "model.onnx")
    data = (rng.random((10, 5, 6)) < 0.4).astype(np.float32)
    data[0, 0, 0] = np.inf
    np.save(tmp_path / "inputs.npy", data)
    (tmp_path / "m.jsonl").write_text('{"model": "model.onnx", "inputs": "inputs.npy", "name": "refused"}\n'
                                      '{"model": "model.onnx", "inputs": "inputs.npy", "name": "allowed", '
                                      '"allow_nonfinite": true}\n')
    result = run("batch", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    rows = {row["name"]: row for row in summary_rows(tmp_path / "out")}
    assert rows["refused"]["status"] == "error" and "NaN or ±Inf" in rows["refused"]["error"]
    assert rows["allowed"]["status"] == "ok"
    stored = json.loads((tmp_path / "out" / rows["allowed"]["result"]).read_text())
    assert any("NaN or ±Inf" in w or "non-finite" in w for w in stored["warnings"])


# ---------------------------------------------------------------- kinds registered from Python reach the workers


def test_a_kind_registered_in_python_reaches_worker_processes(tmp_path, pool):
    from batchkit import quadratic_if, quadratic_model

    from estimator import NeuronKind, register_kind
    from estimator.errors import UsageError
    from estimator.kinds import unregister_kind

    model, inputs = quadratic_model(tmp_path)
    tables = [str(tmp_path / "qif.toml")]
    assert estimate_sharded(model, inputs, backend=pool, shard_size=16).layers[0].kind is None  # not yet known
    register_kind(NeuronKind("qif", ("QIF",), ("mem",), "spk", quadratic_if, "U = U + βU² + I − Rθ"))
    try:
        whole = estimate(model, inputs, cost_tables=tables)
        # 16: shards counted on the workers, the report made here; None: one job, the report made on a worker
        sharded = [estimate_sharded(model, inputs, backend=pool, shard_size=size, cost_tables=tables)
                   for size in (16, None)]
    finally:
        unregister_kind("qif")
    assert (whole.layers[0].kind, whole.layers[0].cost_per_update) == ("qif", 6)
    assert sharded == [whole, whole]
    assert estimate_sharded(model, inputs, backend=pool).layers[0].kind is None  # and forgotten

    register_kind(NeuronKind("qif", ("QIF",), ("mem",), "spk", lambda f: quadratic_if(f)))
    try:
        with pytest.raises(UsageError, match="neuron kind 'qif' cannot reach worker processes"):
            estimate_sharded(model, inputs, backend=pool, shard_size=16)
    finally:
        unregister_kind("qif")


def test_an_unguarded_script_gets_told_why_its_workers_die(tmp_path):
    """Spawned workers import the main script: one that starts the work at its top level starts it again in each
    worker, which multiprocessing refuses. The error says what to do (docs/batch.md shows the guard)."""
    case = SAMPLES / "leaky_sub_fc1__unrolled__torchscript"
    work = (f"with open_backend(jobs=2) as backend:\n"
            f"    report = estimate_sharded({str(case / 'model.onnx')!r}, {str(case / 'inputs.npz')!r}, "
            f"backend=backend)\n"
            f"print('OK', report.totals.neuron_dense_ops)\n")
    head = "from estimator.parallel import estimate_sharded, open_backend\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run_script(text: str) -> subprocess.CompletedProcess:
        script = tmp_path / "script.py"
        script.write_text(text)
        return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)

    unguarded = run_script(head + work)
    assert unguarded.returncode != 0
    last = unguarded.stderr.strip().splitlines()[-1]
    assert "kept dying" in last and 'if __name__ == "__main__":' in last, last
    guarded = run_script(head + 'if __name__ == "__main__":\n' + "".join(f"    {line}\n" for line in work.splitlines()))
    assert guarded.returncode == 0 and guarded.stdout.split() == ["OK", str(estimate(case / "model.onnx").totals
                                                                          .neuron_dense_ops)], guarded.stderr[-2000:]


def test_a_worker_that_died_idle_is_replaced_at_the_next_submission():
    """A local worker that dies between jobs (killed, out of memory) breaks its pool while no shard is in flight:
    the next submission used to raise BrokenProcessPool; it now starts a fresh pool."""
    backend = ProcessBackend(1)
    try:
        pid = backend.result(backend.submit(os.getpid))
        os.kill(pid, signal.SIGKILL)
        backend._pool._processes[pid].join(10)
        deadline = time.monotonic() + 10
        while not backend._pool._broken and time.monotonic() < deadline:  # the pool notices on its own thread
            time.sleep(0.01)
        assert backend._pool._broken
        assert backend.result(backend.submit(os.getpid)) != pid
    finally:
        backend.close()


@pytest.mark.skipif(sys.platform != "linux", reason="a file name that is not UTF-8 needs a POSIX file system")
def test_a_file_name_that_is_not_utf8_keeps_the_summary(tmp_path):
    """`m\\xff.onnx` failed the batch with 'unexpected UnicodeEncodeError' and no summary.csv."""
    build_models(tmp_path / "models", count=1, broken=None)
    folder = tmp_path / "models" / "net0"
    os.rename(folder / "model.onnx", os.fsdecode(bytes(folder / "model.onnx")[:-5] + b"\xff.onnx"))
    out = tmp_path / "out"
    result = run("batch", str(folder), "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = summary_rows(out)
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["model"].endswith("model\\udcff.onnx")


def test_a_result_file_that_cannot_be_written_fails_its_model_only(tmp_path):
    """A folder where a model's result file goes ended the whole batch (exit 1, summary not refreshed)."""
    build_models(tmp_path / "models", count=3, broken=None)
    out = tmp_path / "out"
    (out / "results" / "net1.json").mkdir(parents=True)
    result = run("batch", str(tmp_path / "models"), "--out", str(out))
    assert result.exit_code == 1 and "Traceback" not in result.output
    rows = {row["name"]: row for row in summary_rows(out)}
    assert [rows[name]["status"] for name in ("net0", "net1", "net2")] == ["ok", "error", "ok"]
    assert "cannot write the report there" in rows["net1"]["error"]
