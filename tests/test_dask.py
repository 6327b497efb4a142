"""The same shards on a real Dask cluster: a LocalCluster of worker processes on loopback, no mocks.

Figures are checked against `estimate()` in one process and the numpy reference (tests/builders.py).
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
from pathlib import Path

import dask
import distributed  # in the `test` extra: these tests always run in CI, never skipped
import numpy as np
import onnx
import pytest
from batchkit import build_models, fail_above_one
from builders import leaky_stepwise, leaky_unrolled, random_net
from click.testing import CliRunner

from estimator import estimate
from estimator.batch import collect, run_batch
from estimator.cli import main
from estimator.parallel import DaskBackend, ModelJob, estimate_sharded


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=":0") as local:
        yield local


@pytest.fixture
def client(cluster):
    with distributed.Client(cluster) as connected:
        connected.wait_for_workers(2, timeout=60)
        yield connected


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env)


def summary_text(out: Path) -> tuple[str, str]:
    return (out / "summary.csv").read_text(), (out / "summary.json").read_text()


@pytest.mark.parametrize("ship", ["paths", "bytes"])
@pytest.mark.parametrize("style", ["stepwise", "unrolled"])
def test_one_model_sharded_across_two_workers_equals_one_process(tmp_path, client, style, ship):
    rng = np.random.default_rng(17)
    net = random_net(rng, [16, 24, 6])
    model = tmp_path / "model.onnx"
    onnx.save(leaky_stepwise(net) if style == "stepwise" else leaky_unrolled(net, 8), model)
    data = (rng.random((301, 8, 16)) < 0.3).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", input=data)
    reference = net.reference(data)
    backend = DaskBackend(client, ship=ship)
    assert backend.workers == 2
    assert backend.description == (f"Dask scheduler {client.scheduler.address} (2 worker(s), 2 thread(s) in all, "
                                   f"shards as {ship})")
    for convention in ("spikes", "neurobench"):
        with distributed.get_task_stream(client) as stream:
            sharded = estimate_sharded(model, tmp_path / "inputs.npz", backend=backend, convention=convention,
                                       shard_size=19)
        assert len({task["worker"] for task in stream.data if task["key"].startswith("run_shard")}) == 2
        whole = estimate(model, tmp_path / "inputs.npz", convention=convention)
        assert sharded == whole
        counted = reference["spikes" if convention == "spikes" else "membrane_updates"]
        assert sharded.totals.effective_neuron_ops_run == 4 * sum(counted)


def test_a_batch_across_the_cluster_gives_the_summary_of_jobs_1(tmp_path, cluster):
    build_models(tmp_path / "models", count=4, broken=2, samples=120)
    models = str(tmp_path / "models")
    local = run("batch", models, "--out", str(tmp_path / "local"), "--jobs", "1", "-c", "neurobench")
    assert local.exit_code == 1
    address = cluster.scheduler_address
    by_option = run("batch", models, "--out", str(tmp_path / "dask"), "--scheduler", address, "-c", "neurobench",
                    "--shard-size", "16")
    assert by_option.exit_code == 1 and f"Dask scheduler {address}" in by_option.stdout
    assert "failed: net2: " in by_option.stderr
    assert summary_text(tmp_path / "dask") == summary_text(tmp_path / "local")
    for name in ("net0", "net1", "net3"):
        path = Path("results") / f"{name}.json"
        assert (tmp_path / "dask" / path).read_text() == (tmp_path / "local" / path).read_text()
    # the environment variable and a scheduler file reach the same cluster
    by_env = run("batch", models, "--out", str(tmp_path / "env"), "-c", "neurobench",
                 env={"DASK_SCHEDULER_ADDRESS": address})
    assert f"Dask scheduler {address}" in by_env.stdout
    assert summary_text(tmp_path / "env") == summary_text(tmp_path / "local")
    scheduler_file = tmp_path / "scheduler.json"
    scheduler_file.write_text(json.dumps({"type": "Scheduler", "address": address}))
    by_file = run("batch", models, "--out", str(tmp_path / "file"), "-c", "neurobench", "--scheduler-file",
                  str(scheduler_file), "--ship", "bytes")
    assert "shards as bytes" in by_file.stdout
    assert summary_text(tmp_path / "file") == summary_text(tmp_path / "local")
    # --jobs given explicitly wins over the environment
    explicit = run("batch", models, "--out", str(tmp_path / "jobs"), "-j", "1", env={"DASK_SCHEDULER_ADDRESS": address})
    assert "(1 process)" in explicit.stdout


def test_shipped_bytes_are_capped_with_a_clear_error(tmp_path, client):
    rng = np.random.default_rng(3)
    folder = tmp_path / "big"
    folder.mkdir()
    net = random_net(rng, [2048, 8, 2])
    onnx.save(leaky_stepwise(net), folder / "model.onnx")  # 64 KiB; a sample is 2048 × 40 float32: 320 KiB
    data = (rng.random((20, 40, 2048)) < 0.1).astype(np.float32)
    np.savez(folder / "inputs.npz", input=data)
    job = ModelJob(str(folder / "model.onnx"), str(folder / "inputs.npz"))
    entries = collect([str(folder / "model.onnx")], job)
    backend = DaskBackend(client, ship="bytes", max_shard_bytes=2**20)  # 1 MiB: 2 samples per shard at most
    summary = run_batch(entries, tmp_path / "fits", backend)
    assert summary.failed == 0, summary.rows[0]["error"]
    assert summary.rows[0]["effective_neuron_ops_run"] == 4 * sum(net.reference(data)["spikes"])
    summary = run_batch(entries, tmp_path / "too-big", backend, shard_size=10)
    shipped = (10 * data[:1].nbytes + (folder / "model.onnx").stat().st_size) / 2**20
    assert summary.rows[0]["error"].startswith(f"{folder / 'model.onnx'}: shard [0, 10) would ship {shipped:.1f} MiB")
    assert "above the 1.0 MiB limit (--max-shard-mb); use a smaller --shard-size, or --ship paths" \
        in summary.rows[0]["error"]


def test_killing_a_worker_mid_run_still_gives_complete_exact_results(tmp_path, client):
    built = build_models(tmp_path / "models", count=2, broken=None, samples=1200, steps=40, features=32, hidden=48)
    entries = collect([str(tmp_path / "models")], ModelJob(model="", batch_size=8))
    before = client.run(os.getpid)  # worker address → process id
    killed: list[int] = []

    def kill_a_busy_worker(_: int) -> None:
        if killed:
            return
        busy = [address for address, tasks in client.processing().items() if tasks and address in before]
        if busy:  # SIGKILL: no clean shutdown, the shard it was running is lost with it
            os.kill(before[busy[0]], signal.SIGKILL)
            killed.append(before[busy[0]])

    backend = DaskBackend(client)
    summary = run_batch(entries, tmp_path / "out", backend, shard_size=100, on_samples=kill_a_busy_worker)
    assert killed, "no worker was busy to kill"
    assert summary.failed == 0
    for built_model, row in zip(built, summary.rows, strict=True):
        assert row["samples"] == len(built_model.data)
        assert row["effective_neuron_ops_run"] == built_model.expected_run("spikes")
    client.wait_for_workers(2, timeout=60)  # the nanny restarted the worker
    assert killed[0] not in client.run(os.getpid).values()
    with open(tmp_path / "out" / "summary.csv", newline="") as handle:
        assert [row["status"] for row in csv.DictReader(handle)] == ["ok", "ok"]


def test_scheduler_options_fail_in_one_line(tmp_path):
    build_models(tmp_path / "models", count=1, broken=None)
    models, out = str(tmp_path / "models"), str(tmp_path / "out")
    missing = run("batch", models, "--out", out, "--scheduler-file", str(tmp_path / "absent.json"))
    assert missing.exit_code == 1
    assert missing.stderr.strip() == (f"error: {tmp_path / 'absent.json'}: no such scheduler file "
                                      "(dask scheduler --scheduler-file writes it)")
    both = run("batch", models, "--out", out, "--scheduler", "local", "--scheduler-file", str(tmp_path / "x.json"))
    assert both.exit_code == 2 and "give --scheduler or --scheduler-file, not both" in both.stderr


def test_a_failing_shard_on_a_worker_names_its_samples_and_keeps_the_others(tmp_path, client):
    built = build_models(tmp_path / "models", count=3, broken=None, samples=200)
    fail_above_one(built[1].model)  # onnxruntime fails on the worker holding samples [64, 96), and only there
    data = np.load(built[1].inputs)["input"].copy()
    data[77, 0, 0] = 5.0
    np.savez(built[1].inputs, input=data)
    entries = collect([str(tmp_path / "models")], ModelJob(model=""))
    summary = run_batch(entries, tmp_path / "out", DaskBackend(client), shard_size=32)
    rows = {row["name"]: row for row in summary.rows}
    assert rows["net1"]["error"].startswith("samples [64, 96): onnxruntime failed"), rows["net1"]["error"]
    for b in (built[0], built[2]):
        assert rows[b.name]["effective_neuron_ops_run"] == b.expected_run("spikes")


def test_a_shard_whose_worker_keeps_dying_fails_its_model_only(tmp_path):
    """With no second chance (allowed-failures 0), the shard a killed worker held fails: its model is reported with
    the sample range, and every other model is still complete and exact."""
    built = build_models(tmp_path / "models", count=4, broken=None, samples=600, steps=40, features=32, hidden=48)
    entries = collect([str(tmp_path / "models")], ModelJob(model="", batch_size=8))
    killed: list[int] = []
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                     dashboard_address=":0") as local, distributed.Client(local) as connected:
        connected.wait_for_workers(2, timeout=60)
        pids = connected.run(os.getpid)

        def kill_a_busy_worker(_: int) -> None:
            busy = [address for address, tasks in connected.processing().items() if tasks and address in pids]
            if busy and not killed:
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(pids[busy[0]])

        summary = run_batch(entries, tmp_path / "out", DaskBackend(connected, retries=0), shard_size=100,
                            on_samples=kill_a_busy_worker)
    assert killed
    failed = [row for row in summary.rows if row["status"] == "error"]
    assert 1 <= len(failed) < len(built)
    for row in failed:
        assert re.fullmatch(r"samples \[\d+, \d+\): KilledWorker: .+", row["error"]), row["error"]
    for b, row in zip(built, summary.rows, strict=True):
        if row["status"] == "ok":
            assert row["effective_neuron_ops_run"] == b.expected_run("spikes")
    assert summary.exit_code == 1


def test_estimate_on_the_cluster_from_the_environment(tmp_path, cluster, client):
    """`neuronops estimate` picks DASK_SCHEDULER_ADDRESS up (as batch does) and prints the one-process report."""
    rng = np.random.default_rng(23)
    net = random_net(rng, [8, 10, 4])
    model = tmp_path / "model.onnx"
    onnx.save(leaky_unrolled(net, 7), model)
    data = (rng.random((90, 7, 8)) < 0.3).astype(np.float32)
    np.save(tmp_path / "inputs.npy", data)
    args = ["estimate", str(model), "-i", str(tmp_path / "inputs.npy"), "-c", "neurobench", "-f", "json"]
    one = run(*args, env={"DASK_SCHEDULER_ADDRESS": ""})
    with distributed.get_task_stream(client) as stream:
        remote = run(*args, "--shard-size", "16", env={"DASK_SCHEDULER_ADDRESS": cluster.scheduler_address})
    assert len([task for task in stream.data if task["key"].startswith("run_shard")]) == 6  # 90 samples / 16
    assert one.exit_code == 0 and remote.exit_code == 0, remote.output
    assert remote.stdout == one.stdout
    assert json.loads(remote.stdout)["totals"]["effective_neuron_ops_run"] == \
        4 * sum(net.reference(data)["membrane_updates"])
    shipped = run(*args, "--shard-size", "16", "--ship", "bytes",
                  env={"DASK_SCHEDULER_ADDRESS": cluster.scheduler_address})
    assert shipped.exit_code == 0 and shipped.stdout == one.stdout, shipped.output


def test_a_kind_registered_in_python_reaches_dask_workers(tmp_path, client):
    """Dask pickles functions by value (cloudpickle): even a lambda-recognised kind reaches the workers."""
    from batchkit import quadratic_if, quadratic_model

    from estimator import NeuronKind, register_kind
    from estimator.kinds import unregister_kind

    model, inputs = quadratic_model(tmp_path)
    tables = [str(tmp_path / "qif.toml")]
    register_kind(NeuronKind("qif", ("QIF",), ("mem",), "spk", lambda f: quadratic_if(f)))
    try:
        whole = estimate(model, inputs, cost_tables=tables)
        sharded = [estimate_sharded(model, inputs, backend=DaskBackend(client), shard_size=size, cost_tables=tables)
                   for size in (16, None)]  # None: one job, its report made on a worker
    finally:
        unregister_kind("qif")
    assert whole.layers[0].kind == "qif" and sharded == [whole, whole]


def test_a_scheduler_address_in_the_environment_without_dask_runs_here(tmp_path, monkeypatch):
    """$DASK_SCHEDULER_ADDRESS set for other Dask work, in an environment without Dask: `estimate` used to fail with
    "--scheduler needs Dask" (an option the user never gave). It now runs in this process and says why."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "distributed" else real(name, *a))
    rng = np.random.default_rng(24)
    net = random_net(rng, [8, 6])
    model = tmp_path / "model.onnx"
    onnx.save(leaky_unrolled(net, 5), model)
    np.save(tmp_path / "inputs.npy", (rng.random((12, 5, 8)) < 0.3).astype(np.float32))
    args = ["estimate", str(model), "-i", str(tmp_path / "inputs.npy"), "-f", "json"]
    here = run(*args, env={"DASK_SCHEDULER_ADDRESS": "tcp://127.0.0.1:1"})
    assert here.exit_code == 0, here.output
    assert "warning: $DASK_SCHEDULER_ADDRESS is set (tcp://127.0.0.1:1) but Dask is not installed" in here.stderr
    assert here.stdout == run(*args, env={"DASK_SCHEDULER_ADDRESS": ""}).stdout
    quiet = run(*args, "--jobs", "1", env={"DASK_SCHEDULER_ADDRESS": "tcp://127.0.0.1:1"})
    assert quiet.exit_code == 0 and "warning" not in quiet.stderr


def test_an_unreachable_scheduler_from_the_environment_says_where_it_came_from(tmp_path, monkeypatch):
    """An address in $DASK_SCHEDULER_ADDRESS, set for other work, is easily forgotten: the error names it and the
    way to run here. (The connection is refused at once here, instead of after Dask's 20 s.)"""
    def refuse(*args, **kwargs):
        raise OSError("Timed out trying to connect")

    monkeypatch.setattr(distributed, "Client", refuse)
    rng = np.random.default_rng(25)
    model = tmp_path / "model.onnx"
    onnx.save(leaky_unrolled(random_net(rng, [8, 6]), 5), model)
    np.save(tmp_path / "inputs.npy", (rng.random((12, 5, 8)) < 0.3).astype(np.float32))
    args = ["estimate", str(model), "-i", str(tmp_path / "inputs.npy")]
    from_env = run(*args, env={"DASK_SCHEDULER_ADDRESS": "tcp://10.0.0.1:8786"})
    assert from_env.exit_code == 1
    assert from_env.stderr.startswith("error: cannot reach the Dask scheduler at tcp://10.0.0.1:8786 (from "
                                      "$DASK_SCHEDULER_ADDRESS; --jobs 1 runs in this process): Timed out")
    given = run(*args, "--scheduler", "tcp://10.0.0.2:8786", env={"DASK_SCHEDULER_ADDRESS": "tcp://10.0.0.1:8786"})
    assert given.exit_code == 1 and "DASK_SCHEDULER_ADDRESS" not in given.stderr
