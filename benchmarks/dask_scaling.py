"""Speed-up of one replay sharded over a local Dask cluster: 1 vs 2 worker processes (one onnxruntime thread each).

    python benchmarks/dask_scaling.py [--samples 4000] [--steps 50]

Builds a stepwise snnTorch-style Leaky network (tests/builders.py) and random spike inputs in a temporary folder,
then times the same estimate: in one process, on a LocalCluster with 1 and with 2 workers, and on 2 local worker
processes (--jobs 2). Each figure is the best of --repeat runs (the machine may be shared: the load average is
printed with the figures); cluster start-up is timed apart. Every run must give exactly the single-process report.
Needs neuronops[dask].
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
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
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--sizes", default="128,256,128,10", help="layer widths, input first")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(0)
    net = random_net(rng, sizes)
    with tempfile.TemporaryDirectory() as folder:
        model, inputs = os.path.join(folder, "model.onnx"), os.path.join(folder, "inputs.npy")
        onnx.save(leaky_stepwise(net), model)
        np.save(inputs, (rng.random((args.samples, args.steps, sizes[0])) < 0.3).astype(np.float32))
        print(f"replay: stepwise Leaky {sizes}, {args.samples} samples x {args.steps} steps, "
              f"batch {args.batch_size}, {os.cpu_count()} CPUs")

        def best(run):  # best of --repeat: the least disturbed by other work on the machine
            times, result = [], None
            for _ in range(args.repeat):
                start = time.perf_counter()
                result = run()
                times.append(time.perf_counter() - start)
            return min(times), result

        print(f"load average before: {os.getloadavg()[0]:.2f}")
        cpu = time.process_time()
        base, reference = best(lambda: estimate(model, inputs, batch_size=args.batch_size, threads=1))
        cpu = (time.process_time() - cpu) / args.repeat
        print(f"  one process, 1 onnxruntime thread   {base:7.2f} s  (CPU {cpu:.2f} s per run)")
        rows = []
        for workers in (1, 2):
            start = time.perf_counter()
            with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                          dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
                client.wait_for_workers(workers)
                boot = time.perf_counter() - start
                backend = DaskBackend(client)
                before = client.run(time.process_time)
                took, report = best(lambda b=backend: estimate_sharded(model, inputs, backend=b,
                                                                       batch_size=args.batch_size))
                after = client.run(time.process_time)
            # CPU the workers spent: when it is near the wall time × workers, the workers had the cores to themselves
            cpu = sum(after[w] - before[w] for w in before) / args.repeat
            assert report == reference, "sharded report differs from the single-process one"
            rows.append(took)
            print(f"  Dask LocalCluster, {workers} worker(s)     {took:7.2f} s  (workers' CPU {cpu:.2f} s per run, "
                  f"cluster start {boot:.1f} s, speed-up vs 1 worker {rows[0] / took:.2f}x)")
        with ProcessBackend(2) as pool:
            took, report = best(lambda: estimate_sharded(model, inputs, backend=pool, batch_size=args.batch_size))
        assert report == reference
        print(f"  local pool, --jobs 2                {took:7.2f} s  (speed-up vs one process {base / took:.2f}x)")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        print(f"exact: every run gave the single-process report (effective ops/sample "
              f"{reference.totals.effective_neuron_ops})")


if __name__ == "__main__":
    main()
