"""Speed-up of one replay sharded over a local Dask cluster: 1 vs 2 worker processes (one onnxruntime thread each).

    python benchmarks/dask_scaling.py [--samples 12000] [--steps 50] [--repeat 5]

Builds a stepwise snnTorch-style Leaky network (tests/builders.py) and random spike inputs (.npy) in a temporary
folder, starts a LocalCluster with 1 worker, one with 2 workers and a local pool of 2 processes, then times the same
estimate in turns: in one process, on each cluster, on the pool — round after round, so that whatever else runs on
the machine disturbs every configuration alike. Prints the median and best wall time of each (cluster start-up
excluded, timed apart) and the load average. Every run must give exactly the single-process report.
Needs neuronops[dask].
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import distributed  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
from builders import leaky_stepwise, random_net  # noqa: E402

from estimator import estimate  # noqa: E402
from estimator.parallel import DaskBackend, ProcessBackend, estimate_sharded  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=12000)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--sizes", default="128,256,128,10", help="layer widths, input first")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(0)
    net = random_net(rng, sizes)
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        model, inputs = os.path.join(folder, "model.onnx"), os.path.join(folder, "inputs.npy")
        onnx.save(leaky_stepwise(net), model)
        np.save(inputs, (rng.random((args.samples, args.steps, sizes[0])) < 0.3).astype(np.float32))
        print(f"replay: stepwise Leaky {sizes}, {args.samples} samples x {args.steps} steps, "
              f"batch {args.batch_size}, {os.cpu_count()} CPUs, {args.repeat} rounds")

        runs: dict[str, Callable[[], object]] = {
            "one process, 1 onnxruntime thread": lambda: estimate(model, inputs, batch_size=args.batch_size,
                                                                  threads=1),
        }
        for workers in (1, 2):
            start = time.perf_counter()
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"))
            client = stack.enter_context(distributed.Client(cluster))
            client.wait_for_workers(workers)
            print(f"  (LocalCluster with {workers} worker(s) started in {time.perf_counter() - start:.1f} s)")
            backend = DaskBackend(client)
            runs[f"Dask LocalCluster, {workers} worker(s)"] = (
                lambda b=backend: estimate_sharded(model, inputs, backend=b, batch_size=args.batch_size))
        pool = stack.enter_context(ProcessBackend(2))
        runs["local pool, --jobs 2"] = lambda: estimate_sharded(model, inputs, backend=pool,
                                                                batch_size=args.batch_size)

        loads = [os.getloadavg()[0]]
        times: dict[str, list[float]] = {name: [] for name in runs}
        reference = None
        for _ in range(args.repeat + 1):  # round 0 warms every worker up (sessions, page cache) and is not counted
            for name, run in runs.items():
                start = time.perf_counter()
                report = run()
                times[name].append(time.perf_counter() - start)
                reference = reference or report
                assert report == reference, f"{name}: the report differs from the single-process one"
            loads.append(os.getloadavg()[0])
        base = statistics.median(times["Dask LocalCluster, 1 worker(s)"][1:])
        for name, measured in times.items():
            counted = measured[1:]
            median = statistics.median(counted)
            print(f"  {name:36s} median {median:6.2f} s  best {min(counted):6.2f} s  "
                  f"(vs 1 Dask worker: {base / median:.2f}x)")
        print(f"load average (1 min) during the rounds: {min(loads):.2f} to {max(loads):.2f} on {os.cpu_count()} CPUs")
        print("exact: every run gave the single-process report "
              f"(effective ops/sample {reference.totals.effective_neuron_ops})")


if __name__ == "__main__":
    main()
