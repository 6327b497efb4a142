#!/usr/bin/env python3
"""neuronops benchmark: the estimator against plain onnxruntime (the floor) and NeuroBench 2.3, whole processes.

    python benchmarks/run.py [--quick] [--out benchmarks/results.json] [--torch-python PATH] [--markdown FILE]

Measured in one run, each command as a separate process (wall time, CPU time and peak RSS of that process from
os.wait4's rusage):
  (a) `neuronops estimate` (`python -m estimator` from this tree) in the spikes and neurobench conventions,
  (b) the floor: plain onnxruntime inference of the same export over the same .npy (benchmarks/floor.py), with
      onnxruntime's defaults, and again with idle-thread spinning off (b′; the estimator's setting with --threads or
      when every core is busy),
  (c) NeuroBench 2.3's NeuronOperations on the same PyTorch model and data (needs torch + snntorch + neurobench).
on a 2-layer fc network and a conv network, each exported unrolled and stepwise; then 10× the samples (peak memory),
and the static part alone (load + graph + match + dense) on unrolled exports of 25–400 steps × 1–8 layers.
Each command runs several times, interleaved; the best wall and CPU times are kept (the median is in the JSON).

The workloads are snnTorch exports when an interpreter with torch, snntorch and neurobench is found (this one,
--torch-python, or $NEURONOPS_BENCH_TORCH_PYTHON), else hand-built graphs of the same networks (tests/builders.py);
the output says which. Generated files are cached in benchmarks/.cache/ (git-ignored).
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / ".cache"
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import workloads  # noqa: E402

MARK_BEGIN = "<!-- benchmark results: begin (written by benchmarks/run.py) -->"
MARK_END = "<!-- benchmark results: end -->"

TARGETS = {
    "spikes_over_floor": 1.25,
    "neurobench_over_floor": 1.5,
    "neurobench_speedup": 5.0,
    "peak_growth_10x": 1.10,
    "static_400x8_seconds": 2.0,
    "static_growth_4x_steps": 4.5,
}


# --- running a process ------------------------------------------------------------------------------------------------
def measure(cmd: list[str], cwd: Path = ROOT) -> dict[str, Any]:
    """Run `cmd` to completion through launch.py: wall, CPU (user + system) and peak RSS of that process."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.run([sys.executable, "-S", str(HERE / "launch.py"), *cmd], cwd=cwd, stdout=out, stderr=err)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    lines = stderr.rstrip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"rc": proc.returncode or 1, "stderr": stderr[-2000:], "stdout": stdout}
    usage = json.loads(lines[-1])
    return {
        "wall": round(usage["wall"], 4),
        "cpu": round(usage["cpu"], 4),
        "peak_mb": round(usage["peak_kb"] / 1024, 1),
        "rc": usage["rc"],
        "stdout": stdout,
        "stderr": "\n".join(lines[:-1])[-2000:],
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median wall, CPU and peak of repeated runs (all walls kept)."""
    failed = [r for r in runs if r["rc"] != 0]
    if failed:
        raise SystemExit(f"benchmark command failed (exit {failed[0]['rc']}): {failed[0]['stderr'].strip()[-800:]}")
    # Best of N (as timeit does): on a shared machine the slower runs measure the other load, not the command.
    return {
        "wall": min(r["wall"] for r in runs),
        "cpu": min(r["cpu"] for r in runs),
        "peak_mb": statistics.median(r["peak_mb"] for r in runs),
        "wall_median": statistics.median(r["wall"] for r in runs),
        "walls": [r["wall"] for r in runs],
        "stdout": min(runs, key=lambda r: r["wall"])["stdout"],  # the best run's (its own loop timings)
        "stdouts": [r["stdout"] for r in runs],
    }


def run_all(commands: dict[str, list[str]], repeats: int, at_most: dict[str, int] | None = None
            ) -> dict[str, dict[str, Any]]:
    """Each command `repeats` times (or `at_most[name]`), interleaved: drift and other load spread over all alike."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in commands}
    for round_ in range(repeats):
        for name, cmd in commands.items():
            if round_ < (at_most or {}).get(name, repeats):
                runs[name].append(measure(cmd))
    return {name: summarise(found) for name, found in runs.items()}


# --- environment ---------------------------------------------------------------------------------------------------
def find_torch_python(explicit: str | None) -> str | None:
    probe = "import torch, snntorch, neurobench"
    candidates = [explicit] if explicit else [os.environ.get("NEURONOPS_BENCH_TORCH_PYTHON"), sys.executable]
    for candidate in candidates:
        if candidate and subprocess.run([candidate, "-c", probe], capture_output=True).returncode == 0:
            return candidate
    if explicit:
        raise SystemExit(f"--torch-python {explicit}: cannot import torch, snntorch and neurobench")
    return None


def machine(torch_python: str | None) -> dict[str, Any]:
    import onnxruntime

    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["ram_gib"] = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    if torch_python:
        probe = ("import json, torch, snntorch, neurobench.version as v; "
                 "print(json.dumps([torch.__version__, snntorch.__version__, v.__version__]))")
        found = subprocess.run([torch_python, "-c", probe], capture_output=True, text=True)
        if found.returncode == 0:
            info["torch"], info["snntorch"], info["neurobench"] = json.loads(found.stdout)
    return info


# --- workloads -----------------------------------------------------------------------------------------------------
def inputs_file(net: str, samples: int, steps: int) -> Path:
    path = CACHE / "inputs" / f"{net}-{samples}x{steps}.npy"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        workloads.write_inputs(path, net, samples, steps)
    return path


def exports(net: str, steps: int, torch_python: str | None) -> tuple[Path, dict[str, Any]]:
    """unrolled.onnx and stepwise.onnx of `net` (cached); from torch when available, else hand-built."""
    source = "torch" if torch_python else "builders"
    folder = CACHE / source / f"{net}-{steps}steps"
    meta_path = folder / "meta.json"
    if meta_path.exists():
        return folder, json.loads(meta_path.read_text())
    started = time.perf_counter()
    if torch_python:
        done = subprocess.run([torch_python, str(HERE / "torch_workloads.py"), "export", str(folder), "--net", net,
                               "--steps", str(steps)], capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(f"exporting {net} with torch failed: {done.stderr.strip()[-800:]}")
        meta = json.loads(done.stdout.strip().splitlines()[-1])
    else:
        meta = workloads.export_builders(folder, net, steps)
    meta.update(source=source, net=net, steps=steps, seconds=round(time.perf_counter() - started, 2),
                description=workloads.NETS[net][1])
    meta_path.write_text(json.dumps(meta, indent=1))
    return folder, meta


def static_model_file(steps: int, layers: int, shared: bool = True) -> Path:
    path = CACHE / "static" / f"leaky-{steps}x{layers}-{'shared' if shared else 'perstep'}.onnx"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(workloads.static_model(steps, layers, shared=shared), path)
    return path


# --- the parts of the benchmark ---------------------------------------------------------------------------------------
def tool(*args: str) -> list[str]:
    return [sys.executable, "-m", "estimator", *args]


def estimate_cmd(model: Path, data: Path, convention: str, batch: int, cold: bool = False) -> list[str]:
    """`cold`: --no-cache, the whole static analysis in the process; else the analysis cache is warm (run.py primes
    it once per model before the measured runs: the state of any second run of a model)."""
    return tool("estimate", str(model), "--inputs", str(data), "--convention", convention, "--format", "json",
                "--batch-size", str(batch), *(["--no-cache"] if cold else []))


def floor_cmd(model: Path, data: Path, batch: int, *extra: str) -> list[str]:
    return [sys.executable, str(HERE / "floor.py"), str(model), str(data), "--batch-size", str(batch), *extra]


def replay_part(net: str, folder: Path, data: Path, batch: int, repeats: int, torch_python: str | None,
                checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    commands: dict[str, list[str]] = {}
    for style in ("unrolled", "stepwise"):
        model = folder / f"{style}.onnx"
        commands[f"{style}/floor"] = floor_cmd(model, data, batch)
        commands[f"{style}/floor-nospin"] = floor_cmd(model, data, batch, "--no-spin")
        for convention in ("spikes", "neurobench"):
            commands[f"{style}/{convention}"] = estimate_cmd(model, data, convention, batch)
            commands[f"{style}/{convention}-cold"] = estimate_cmd(model, data, convention, batch, cold=True)
        # a model's first run as a user gets it by default: a cache miss, which also stores the analysis
        commands[f"{style}/spikes-first"] = ["--fresh-cache", *estimate_cmd(model, data, "spikes", batch)]
        prime = measure(estimate_cmd(model, data, "spikes", batch))  # fills the analysis cache (not a figure)
        if prime["rc"] != 0:
            raise SystemExit(f"benchmark command failed: {prime['stderr'].strip()[-800:]}")
    if torch_python:
        commands["neurobench"] = [torch_python, str(HERE / "torch_workloads.py"), "neurobench", str(folder),
                                  "--net", net, "--inputs", str(data), "--batch-size", str(batch)]
    print(f"  {net}: {len(commands)} commands × {repeats}", flush=True)
    found = run_all(commands, repeats, {"neurobench": min(repeats, 3)})  # NeuroBench: ≥ 5× longer, 3 runs do
    reports = {name: json.loads(result["stdout"]) for name, result in found.items() if "/" in name
               and "/floor" not in name}
    rows = []
    nb = found.get("neurobench")
    nb_result = json.loads(nb["stdout"].strip().splitlines()[-1]) if nb else None
    for style in ("unrolled", "stepwise"):
        floor = found[f"{style}/floor"]
        floor_out = json.loads(floor["stdout"])
        row: dict[str, Any] = {"net": net, "style": style, "samples": floor_out["samples"],
                               "steps": floor_out["steps"], "batch_size": batch,
                               "floor": _fig(floor, loop=floor_out["loop_seconds"])}
        nospin = found[f"{style}/floor-nospin"]
        row["floor_nospin"] = _fig(nospin, loop=json.loads(nospin["stdout"])["loop_seconds"])
        for convention in ("spikes", "neurobench"):
            row[convention] = _fig(found[f"{style}/{convention}"])
            row[f"{convention}_cold"] = _fig(found[f"{style}/{convention}-cold"])
            checks.append(_check(f"{net} {style} {convention}: the same report with and without the analysis cache",
                                 json.loads(found[f"{style}/{convention}"]["stdout"]),
                                 json.loads(found[f"{style}/{convention}-cold"]["stdout"])))
        row["spikes_first"] = _fig(found[f"{style}/spikes-first"])
        checks.append(_check(f"{net} {style} spikes: the same report on a first run (cache miss) and a cached one",
                             json.loads(found[f"{style}/spikes"]["stdout"]),
                             json.loads(found[f"{style}/spikes-first"]["stdout"])))
        if nb:
            row["neurobench_harness"] = _fig(nb, loop=nb_result["loop_seconds"])
        rows.append(derive(row))
        # the tool's last layer fires exactly the output spikes the floor saw
        last = reports[f"{style}/spikes"]["layers"][-1]["spikes"]
        checks.append(_check(f"{net} {style}: output-layer spikes = the floor's output spikes", last,
                             floor_out["output_spikes"]))
        if nb_result:
            got = reports[f"{style}/neurobench"]["totals"]
            want = nb_result["results"]
            checks.append(_check(f"{net} {style}: Effective Neuron Ops = NeuroBench's", got["effective_neuron_ops"],
                                 want["Effective Neuron Ops"]))
            checks.append(_check(f"{net} {style}: Neuron Dense Ops = NeuroBench's", got["neuron_dense_ops"],
                                 want["Neuron Dense Ops"]))
    per_layer = {style: [(row["spikes"], row["membrane_updates"]) for row in reports[f"{style}/spikes"]["layers"]]
                 for style in ("unrolled", "stepwise")}
    checks.append(_check(f"{net}: unrolled and stepwise exports give the same per-layer counts",
                         per_layer["unrolled"], per_layer["stepwise"]))
    if net == "fc" and not torch_python:  # the hand-built network has an independent numpy reference
        want = workloads.fc_net().reference(np.load(data))
        got = [list(layer) for layer in zip(*per_layer["unrolled"], strict=True)]
        checks.append(_check("fc: counts = numpy reference of the hand-built network", got,
                             [want["spikes"], want["membrane_updates"]]))
    return rows


def _fig(result: dict[str, Any], loop: float | None = None) -> dict[str, Any]:
    fig = {key: result[key] for key in ("wall", "cpu", "peak_mb", "wall_median", "walls")}
    if loop is not None:
        fig["loop"] = loop
    return fig


def _check(what: str, got: Any, want: Any) -> dict[str, Any]:
    if isinstance(got, float) or isinstance(want, float):
        ok = math.isclose(float(got), float(want), rel_tol=1e-12, abs_tol=1e-9)
    else:
        ok = got == want
    return {"check": what, "ok": ok, "got": got, "want": want}


def scale_part(folder: Path, samples: int, steps: int, batch: int, base: list[dict[str, Any]],
               repeats: int) -> list[dict[str, Any]]:
    """The fc network with 10× the samples: peak memory must not grow."""
    data = inputs_file("fc", samples * 10, steps)
    commands: dict[str, list[str]] = {}
    for style in ("unrolled", "stepwise"):
        model = folder / f"{style}.onnx"
        for convention in ("spikes", "neurobench"):
            commands[f"{style}/{convention}"] = estimate_cmd(model, data, convention, batch)
        commands[f"{style}/floor"] = floor_cmd(model, data, batch)
    print(f"  fc ×10 samples: {len(commands)} commands × {repeats}", flush=True)
    found = run_all(commands, repeats)
    rows = []
    for style in ("unrolled", "stepwise"):
        one = next(row for row in base if row["net"] == "fc" and row["style"] == style)
        for what in ("spikes", "neurobench", "floor"):
            ten = found[f"{style}/{what}"]
            rows.append({"style": style, "run": what, "samples": samples * 10, "wall": ten["wall"],
                         "cpu": ten["cpu"], "peak_mb": ten["peak_mb"], "peak_mb_1x": one[what]["peak_mb"],
                         "peak_growth": round(ten["peak_mb"] / one[what]["peak_mb"], 3),
                         "wall_growth": round(ten["wall"] / one[what]["wall"], 2)})
    return rows


def static_part(steps_list: list[int], layers_list: list[int], repeats: int) -> list[dict[str, Any]]:
    """The sweep (constants shared by the steps, as in real exports), then its largest model again with a copy of
    the weights per step (row "weights": "per step")."""
    rows = []
    sweep = [(steps, layers, True) for layers in layers_list for steps in steps_list]
    sweep.append((max(steps_list), max(layers_list), False))
    print(f"  static: {len(sweep)} models × {repeats}", flush=True)
    for steps, layers, shared in sweep:
        model = static_model_file(steps, layers, shared)
        measure(tool("estimate", str(model), "--format", "json"))  # primes the analysis cache for "cached"
        found = run_all({"static": [sys.executable, str(HERE / "static.py"), str(model)],
                         "process": tool("estimate", str(model), "--format", "json", "--no-cache"),
                         "cached": tool("estimate", str(model), "--format", "json")}, repeats)
        details = sorted((json.loads(text) for text in found["static"]["stdouts"]),
                         key=lambda d: d["static_seconds"])
        detail = details[0]  # the best run, stages and all (as for the processes)
        rows.append({"steps": steps, "layers": layers, "weights": "shared" if shared else "per step",
                     "nodes": detail["nodes"], "model_mb": round(model.stat().st_size / 2**20, 1),
                     "layers_found": detail["layers"], "static_seconds": detail["static_seconds"],
                     "static_runs": [d["static_seconds"] for d in details],
                     "stages": detail["stages"], "process_wall": found["process"]["wall"],
                     "process_peak_mb": found["process"]["peak_mb"], "cached_wall": found["cached"]["wall"]})
    return rows


def imports_part() -> dict[str, Any]:
    """What the light commands import (`python -X importtime`), and how long they take as processes."""
    small = static_model_file(25, 1)
    out: dict[str, Any] = {}
    for name, args in {"--help": ["--help"], "layers": ["layers", str(small), "--no-cache"],
                       "estimate (dense only)": ["estimate", str(small), "--no-cache"]}.items():
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "estimator", *args], capture_output=True,
                              text=True, cwd=ROOT)
        modules = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines()
                   if line.startswith("import time:") and "|" in line}
        timed = run_all({"cmd": tool(*args)}, 3)["cmd"]
        out[name] = {"wall": timed["wall"], "peak_mb": timed["peak_mb"],
                     "imports": sorted(m for m in ("onnxruntime", "networkx", "onnx", "numpy", "torch", "click")
                                       if m in modules)}
    return out


# --- targets, table, markdown ---------------------------------------------------------------------------------------
def derive(row: dict[str, Any]) -> dict[str, Any]:
    """Ratios of a replay row. The floor is the faster of (b) and (b′): running the model cannot cost less than
    either, and on a loaded machine onnxruntime's default spinning threads can make (b) slower than the tool."""
    floor = min(row["floor"]["wall"], row["floor_nospin"]["wall"])
    row["floor_wall"] = floor
    for convention in ("spikes", "neurobench"):
        row[f"{convention}_over_floor"] = round(row[convention]["wall"] / floor, 3)
        row[f"{convention}_cpu_over_floor_nospin"] = round(row[convention]["cpu"] / row["floor_nospin"]["cpu"], 3)
        if f"{convention}_cold" in row:  # results of runs before the analysis cache have no cold figures
            row[f"{convention}_cold_over_floor"] = round(row[f"{convention}_cold"]["wall"] / floor, 3)
    if "spikes_first" in row:
        row["spikes_first_over_floor"] = round(row["spikes_first"]["wall"] / floor, 3)
    if "neurobench_harness" in row:
        row["harness_over_tool"] = round(row["neurobench_harness"]["wall"] / row["neurobench"]["wall"], 2)
        if "neurobench_cold" in row:
            row["harness_over_tool_cold"] = round(row["neurobench_harness"]["wall"] / row["neurobench_cold"]["wall"],
                                                  2)
    return row


def verdicts(result: dict[str, Any]) -> list[dict[str, Any]]:
    found = []

    def add(target: str, value: float, limit: float, ok: bool, where: str) -> None:
        found.append({"target": target, "where": where, "value": value, "limit": limit, "met": ok})

    for row in result["replay"]:
        for cache, suffix in (("analysis cached", ""), ("cold: --no-cache", "_cold")):
            if f"spikes{suffix}_over_floor" not in row:
                continue
            where = f"{row['net']} {row['style']}, {cache}"
            value = row[f"spikes{suffix}_over_floor"]
            add("spikes wall / floor wall ≤ 1.25 (floor: faster of b, b′)", value, TARGETS["spikes_over_floor"],
                value <= TARGETS["spikes_over_floor"], where)
            value = row[f"neurobench{suffix}_over_floor"]
            add("neurobench wall / floor wall ≤ 1.5 (floor: faster of b, b′)", value,
                TARGETS["neurobench_over_floor"], value <= TARGETS["neurobench_over_floor"], where)
            if f"harness_over_tool{suffix}" in row:
                value = row[f"harness_over_tool{suffix}"]
                add("NeuroBench wall / tool wall ≥ 5", value, TARGETS["neurobench_speedup"],
                    value >= TARGETS["neurobench_speedup"], where)
        if "spikes_first_over_floor" in row:
            value = row["spikes_first_over_floor"]
            add("spikes wall / floor wall ≤ 1.25 (floor: faster of b, b′)", value, TARGETS["spikes_over_floor"],
                value <= TARGETS["spikes_over_floor"], f"{row['net']} {row['style']}, first run (cache miss)")
        where = f"{row['net']} {row['style']}"
        if "neurobench_harness" in row:
            add("tool peak < NeuroBench peak (MB)", row["neurobench"]["peak_mb"],
                row["neurobench_harness"]["peak_mb"],
                row["neurobench"]["peak_mb"] < row["neurobench_harness"]["peak_mb"], where)
    for row in result["scale_samples"]:
        if row["run"] != "floor":
            add("peak 10× samples / peak 1× ≤ 1.10", row["peak_growth"], TARGETS["peak_growth_10x"],
                row["peak_growth"] <= TARGETS["peak_growth_10x"], f"fc {row['style']} {row['run']}")
    static = {(row["steps"], row["layers"]): row for row in result["static"] if row.get("weights") != "per step"}
    if (400, 8) in static:
        value = static[(400, 8)]["static_seconds"]
        add("static part, 400 steps × 8 layers < 2 s (in process)", value, TARGETS["static_400x8_seconds"],
            value < TARGETS["static_400x8_seconds"], "static")
        value = static[(400, 8)]["process_wall"]
        add("… and as a whole `estimate` process < 2 s", value, TARGETS["static_400x8_seconds"],
            value < TARGETS["static_400x8_seconds"], "static")
    for (steps, layers), row in static.items():
        if steps * 4 in {s for s, _ in static} and (steps * 4, layers) in static:
            ratio = round(static[(steps * 4, layers)]["static_seconds"] / row["static_seconds"], 2)
            add(f"static time {steps * 4} / {steps} steps ≤ 4.5", ratio, TARGETS["static_growth_4x_steps"],
                ratio <= TARGETS["static_growth_4x_steps"], f"{layers} layer(s)")
    return found


def table(result: dict[str, Any]) -> str:
    lines = []
    lines.append("Replay, whole processes: best wall s / best CPU s / median peak MB. (b) onnxruntime defaults, (b′) "
                 "idle threads not spinning (the tool's setting with --threads or on a busy machine).")
    lines.append("a/b: tool wall over the faster floor; CPU a/b′: tool CPU over (b′) CPU; c/a: NeuroBench wall over "
                 "the tool's (neurobench convention).")
    lines.append("(a) with the analysis cache warm (any second run of a model); cold (--no-cache: load, match and "
                 "onnx in the process) in the columns marked cold; first: a model's first run (a cache miss, which "
                 "also stores the analysis), spikes.")
    head = f"{'net':5} {'style':9} {'floor (b)':>17} {'floor (b′)':>17} {'spikes (a)':>17} " \
           f"{'neurobench (a)':>17} {'NeuroBench (c)':>19} {'a/b sp':>6} {'a/b nb':>6} {'CPU sp':>6} {'CPU nb':>6} " \
           f"{'c/a':>5} {'cold: sp':>17} {'cold: nb':>17} {'a/b sp':>6} {'a/b nb':>6} {'c/a':>5} {'first: sp':>17} " \
           f"{'a/b':>6}"
    lines += [head, "-" * len(head)]
    for row in result["replay"]:
        def cell(fig: dict[str, Any] | None) -> str:
            return "—" if fig is None else f"{fig['wall']:.2f}/{fig['cpu']:.2f}/{fig['peak_mb']:.0f}"
        harness = row.get("neurobench_harness")
        lines.append(f"{row['net']:5} {row['style']:9} {cell(row['floor']):>17} {cell(row['floor_nospin']):>17} "
                     f"{cell(row['spikes']):>17} {cell(row['neurobench']):>17} {cell(harness):>19} "
                     f"{row['spikes_over_floor']:>6.2f} {row['neurobench_over_floor']:>6.2f} "
                     f"{row['spikes_cpu_over_floor_nospin']:>6.2f} {row['neurobench_cpu_over_floor_nospin']:>6.2f} "
                     f"{row['harness_over_tool'] if harness else '—':>5} {cell(row.get('spikes_cold')):>17} "
                     f"{cell(row.get('neurobench_cold')):>17} {row.get('spikes_cold_over_floor', '—'):>6} "
                     f"{row.get('neurobench_cold_over_floor', '—'):>6} {row.get('harness_over_tool_cold', '—'):>5} "
                     f"{cell(row.get('spikes_first')):>17} {row.get('spikes_first_over_floor', '—'):>6}")
    if result["scale_samples"]:
        lines += ["", "10× the samples (fc):",
                  f"{'style':9} {'run':10} {'wall s':>7} {'peak MB':>8} {'peak 1×':>8} {'growth':>7}"]
        for row in result["scale_samples"]:
            lines.append(f"{row['style']:9} {row['run']:10} {row['wall']:>7.2f} {row['peak_mb']:>8.0f} "
                         f"{row['peak_mb_1x']:>8.0f} {row['peak_growth']:>7.3f}")
    lines += ["", "Static part (load + graph + match + dense), in process; `estimate MODEL --no-cache` as a process; "
                  "and `estimate MODEL` with its analysis cached:",
              f"{'steps':>5} {'layers':>6} {'nodes':>6} {'MB':>5} {'static s':>9} {'load':>6} {'graph':>6} "
              f"{'match':>6} {'process s':>9} {'cached s':>8}"]
    for row in result["static"]:
        stages = row["stages"]
        cached = f"{row['cached_wall']:>8.2f}" if "cached_wall" in row else f"{'—':>8}"
        size = f"{row['model_mb']:>5.1f}" if "model_mb" in row else f"{'—':>5}"
        lines.append(f"{row['steps']:>5} {row['layers']:>6} {row['nodes']:>6} {size} {row['static_seconds']:>9.3f} "
                     f"{stages['load']:>6.3f} {stages['graph']:>6.3f} {stages['match']:>6.3f} "
                     f"{row['process_wall']:>9.2f} {cached}"
                     + ("  (a copy of the weights per step)" if row.get("weights") == "per step" else ""))
    lines += ["", "Light commands: " + "; ".join(f"{name} {info['wall']:.2f} s (imports {', '.join(info['imports'])})"
                                                 for name, info in result["imports"].items())]
    lines += ["", "Checks:"] + [f"  {'ok ' if c['ok'] else 'FAIL'} {c['check']}" for c in result["checks"]]
    lines += ["", "Targets:"] + [
        f"  {'met   ' if v['met'] else 'MISSED'} {v['target']} [{v['where']}]: {v['value']} (limit {v['limit']})"
        for v in result["targets"]]
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [MARK_BEGIN, "", f"Measured {result['date']} with `{result['command']}`.", "",
             f"- Machine: {m['nproc']} cores ({m['cpu']}), {m.get('ram_gib', '?')} GiB RAM, {m['platform']}",
             f"- Python {m['python']}, onnxruntime {m['onnxruntime']}, onnx {m['onnx']}, numpy {m['numpy']}"
             + (f"; torch {m['torch']}, snntorch {m['snntorch']}, neurobench {m['neurobench']}" if "torch" in m
                else ""),
             f"- Workloads: {result['workload_source']}; load average {result['load_before']} before, "
             f"{result['load_after']} after; best of {result['repeats']} run(s) (NeuroBench: of "
             f"{min(result['repeats'], 3)})", ""]
    lines += ["```", table(result), "```", "", MARK_END]
    return "\n".join(lines)


def write_markdown(path: Path, result: dict[str, Any]) -> None:
    block = markdown(result)
    text = path.read_text() if path.exists() else "# Benchmarks\n\n" + MARK_BEGIN + "\n" + MARK_END + "\n"
    if MARK_BEGIN in text and MARK_END in text:
        text = text[:text.index(MARK_BEGIN)] + block + text[text.index(MARK_END) + len(MARK_END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --- main ------------------------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="one run each, fc only, a smaller static sweep (a smoke test, not figures to quote)")
    parser.add_argument("--out", type=Path, help="where the figures go (default: benchmarks/results.json; with "
                        "--quick benchmarks/.cache/results-quick.json, leaving the committed figures alone)")
    parser.add_argument("--markdown", type=Path,
                        help="update this markdown file's results block (default: docs/benchmarks.md, not --quick)")
    parser.add_argument("--torch-python", help="an interpreter with torch, snntorch and neurobench")
    parser.add_argument("--builders", action="store_true", help="use the hand-built graphs even when torch is found")
    parser.add_argument("--repeats", type=int, help="runs per command, the best one kept (default 5, --quick 1)")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--render", type=Path, metavar="RESULTS_JSON",
                        help="measure nothing: recompute ratios and targets of a saved run, print, update --markdown")
    args = parser.parse_args()
    if args.render is not None:
        saved = json.loads(args.render.read_text())
        saved["replay"] = [derive(row) for row in saved["replay"]]
        saved["targets"] = verdicts(saved)
        print(table(saved))
        args.render.write_text(json.dumps(saved, indent=1) + "\n")
        if args.markdown is not None:
            write_markdown(args.markdown, saved)
        return 0
    repeats = args.repeats or (1 if args.quick else 5)
    # A private analysis cache, empty at the start: the measured processes inherit it (never the user's ~/.cache)
    os.environ["NEURONOPS_CACHE_DIR"] = tempfile.mkdtemp(prefix="neuronops-bench-cache-")
    atexit.register(shutil.rmtree, os.environ["NEURONOPS_CACHE_DIR"], True)
    # Byte-compile the tree as an installed package would be (PYTHONDONTWRITEBYTECODE would otherwise make every
    # measured process compile the estimator's sources again).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "estimator"), str(HERE)], check=True)
    torch_python = None if args.builders else find_torch_python(args.torch_python)
    source = (f"snnTorch exports (torch via {torch_python})" if torch_python
              else "hand-built graphs (tests/builders.py); torch/snntorch/neurobench not found, NeuroBench skipped")
    print(f"workloads: {source}", flush=True)
    result: dict[str, Any] = {
        "schema": "neuronops.benchmark/1",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
        "machine": machine(torch_python),
        "workload_source": source,
        "repeats": repeats,
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "targets_set": TARGETS,
    }
    checks: list[dict[str, Any]] = []
    nets = ["fc"] if args.quick else ["fc", "conv"]
    result["workloads"] = {}
    result["replay"] = []
    for net in nets:
        folder, meta = exports(net, args.steps, torch_python)
        data = inputs_file(net, args.samples, args.steps)
        result["workloads"][net] = meta
        result["replay"] += replay_part(net, folder, data, args.batch_size, repeats, torch_python, checks)
    fc_folder = CACHE / ("torch" if torch_python else "builders") / f"fc-{args.steps}steps"
    result["scale_samples"] = scale_part(fc_folder, args.samples, args.steps, args.batch_size, result["replay"],
                                         1 if args.quick else min(repeats, 3))
    steps_list, layers_list = ([25, 100], [1, 8]) if args.quick else ([25, 100, 400], [1, 2, 4, 8])
    result["static"] = static_part(steps_list, layers_list, repeats)
    result["imports"] = imports_part()
    result["checks"] = checks
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    result["targets"] = verdicts(result)
    print()
    print(table(result))
    args.out = args.out or (HERE / ".cache" / "results-quick.json" if args.quick else HERE / "results.json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nfigures written to {args.out}")
    docs = args.markdown or (None if args.quick else ROOT / "docs" / "benchmarks.md")
    if docs is not None:
        write_markdown(docs, result)
        print(f"summary written to {docs}")
    return 0 if all(c["ok"] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
