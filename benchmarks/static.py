"""The static part alone — load, graph, match, dense — on one model, timed stage by stage inside one process.

    python benchmarks/static.py MODEL.onnx [--profile OUT.prof]

Run from the repository root (imports the working tree's estimator). Prints one JSON line with the seconds of each
stage (imports excluded), the node count and the layers found.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the working tree's estimator
started = time.perf_counter()
from estimator.costs import load_costs  # noqa: E402
from estimator.graph import ModelGraph  # noqa: E402
from estimator.load import load_model  # noqa: E402
from estimator.match import match_layers  # noqa: E402
from estimator.report import build_report  # noqa: E402

imported = time.perf_counter()


def analyse(path: str) -> dict:
    stages: dict[str, float] = {}
    cpu: dict[str, float] = {}
    mark, cpu_mark = time.perf_counter(), time.process_time()

    def lap(name: str) -> None:
        nonlocal mark, cpu_mark
        now, cpu_now = time.perf_counter(), time.process_time()
        stages[name], cpu[name] = round(now - mark, 4), round(cpu_now - cpu_mark, 4)
        mark, cpu_mark = now, cpu_now

    loaded = load_model(path)
    lap("load")
    graph = ModelGraph(loaded.model)
    lap("graph")
    match = match_layers(graph)
    lap("match")
    report = build_report(path, match, load_costs(()), "spikes", None, None, ())
    lap("dense")
    return {
        "nodes": len(loaded.model.graph.node),
        "layers": len(match.layers),
        "kinds": sorted({str(layer.kind) for layer in match.layers}),
        "dense_ops": report.totals.neuron_dense_ops,
        "stages": stages,
        "static_seconds": round(sum(stages.values()), 4),
        "static_cpu_seconds": round(sum(cpu.values()), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--profile", help="write a cProfile of the static part here")
    args = parser.parse_args()
    if args.profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)
        result = profiler.runcall(analyse, args.model)
        profiler.dump_stats(args.profile)
    else:
        result = analyse(args.model)
    result["import_seconds"] = round(imported - started, 4)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
