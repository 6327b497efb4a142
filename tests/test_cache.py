"""The analysis cache (estimator/cache.py): a second replay of the same model file reads its analysis from
<sha256>.json + <sha256>.onnx, gives the same report as a fresh analysis, and never serves a stale, damaged or
uncacheable analysis. Every test gets a fresh cache folder through NEURONOPS_CACHE_DIR."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from batchkit import quadratic_if, quadratic_model
from builders import LeakyNet, checker_objects_but_runs, leaky_stepwise, leaky_unrolled, random_net
from click.testing import CliRunner
from conftest import sample_cases

import estimator.api as api
import estimator.cache as analysis_cache
from estimator import NeuronKind, estimate, register_kind
from estimator.api import analyse
from estimator.cli import main
from estimator.kinds import unregister_kind
from estimator.layers import MatchResult, NeuronLayer, match_from_json, match_to_json
from estimator.limits import format_size

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sample_cases()
COST = 4  # Leaky with subtract or zero reset, NeuroBench's table
NOT_ON_A_HIT = ("onnx", "estimator.match", "estimator.graph", "estimator.load")


# --- helpers ----------------------------------------------------------------------------------------------------------
@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, not yet created cache folder for this test, with the cache switched on."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("NEURONOPS_CACHE_DIR", str(folder))
    monkeypatch.delenv("NEURONOPS_CACHE", raising=False)
    return folder


def _files(folder: Path) -> list[str]:
    """Every file name in the cache folder (hidden temporary files included); [] when it does not exist."""
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _entries(folder: Path) -> list[str]:
    """The keys of the complete entries (a .json and an .onnx of the same name) in the folder."""
    names = _files(folder)
    return sorted(n[:-5] for n in names if n.endswith(".json") and n[:-5] + ".onnx" in names)


def _sample_files(case: Path) -> tuple[Path, Path, dict]:
    expected = json.loads((case / "expected.json").read_text())
    return case / expected["model"], case / expected["inputs"], expected


def _leaky(folder: Path, seed: int, style: str = "stepwise", sizes: tuple[int, ...] = (8, 10, 4),
           samples: int = 9, steps: int = 6) -> tuple[Path, Path, LeakyNet, np.ndarray]:
    """A hand-built Leaky model and inputs in `folder` (created), with the network and data for the numpy reference."""
    rng = np.random.default_rng(seed)
    net = random_net(rng, list(sizes))
    data = (rng.random((samples, steps, sizes[0])) < 0.4).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    model, inputs = folder / "model.onnx", folder / "inputs.npz"
    onnx.save(leaky_stepwise(net) if style == "stepwise" else leaky_unrolled(net, steps), model)
    np.savez(inputs, input=data)
    return model, inputs, net, data


def _reference_run(net: LeakyNet, data: np.ndarray) -> int:
    """Effective ops over the whole run (neurobench convention) from the numpy reference, not from the tool."""
    return COST * sum(net.reference(data)["membrane_updates"])


def _count_analyses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every real (uncached) analysis: a hit leaves the list as it was, a miss appends the model."""
    calls: list[str] = []
    real = api._analyse

    def spy(model, for_replay):
        calls.append(str(model))
        return real(model, for_replay)

    monkeypatch.setattr(api, "_analyse", spy)
    return calls


def _forbid_analysis(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(model, for_replay):
        raise AssertionError(f"{model} was analysed again: expected a cache hit")

    monkeypatch.setattr(api, "_analyse", refuse)


def _spy_sessions(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records, per onnxruntime session made, whether it was loaded from the onnxruntime-format (.ort) model."""
    from estimator import replay as replay_module

    made: list[bool] = []
    real = replay_module._new_session

    def spy(*args: object, **kwargs: object):
        made.append(bool(kwargs.get("ort_format")))
        return real(*args, **kwargs)

    monkeypatch.setattr(replay_module, "_new_session", spy)
    return made


def run_cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


# --- 1. every bundled sample: miss, hit and no cache give the same report ---------------------------------------------
@pytest.mark.parametrize("case", SAMPLES, ids=[c.name for c in SAMPLES])
def test_sample_hit_gives_the_same_report(case: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first run stores exactly one entry (none for a model with external data), the second is served from it
    without analysing the model, and the miss, the hit and an uncached run report the same figures."""
    model, inputs, expected = _sample_files(case)
    plain = estimate(model, inputs, convention="neurobench", cache=False).to_dict()
    assert _files(cache) == []
    miss = estimate(model, inputs, convention="neurobench").to_dict()
    names = _files(cache)
    if expected.get("external_data"):
        assert names == []  # its weights live in another file, which the key does not cover
        hit = estimate(model, inputs, convention="neurobench").to_dict()
    else:
        # the onnxruntime-format copy comes with a replay that ran the model fewer than OPTIMIZE_FROM_RUNS times
        assert [n.rsplit(".", 1)[1] for n in names] in (["json", "onnx"], ["json", "onnx", "ort"]), names
        assert len({n.rsplit(".", 1)[0] for n in names}) == 1
        _forbid_analysis(monkeypatch)
        loaded = _spy_sessions(monkeypatch)
        hit = estimate(model, inputs, convention="neurobench").to_dict()
        assert loaded[0] == names[-1].endswith(".ort")  # the hit loads the .ort when there is one
        assert set(_files(cache)) >= set(names)
    assert miss == plain
    assert hit == plain


# --- 2. a hit imports neither onnx nor the matcher --------------------------------------------------------------------
_PROBE = """
import json, sys
from estimator import estimate
report = estimate(sys.argv[1], sys.argv[2], convention="neurobench")
loaded = [name for name in json.loads(sys.argv[3]) if name in sys.modules]
print(json.dumps({"totals": report.to_dict()["totals"], "layers": report.to_dict()["layers"], "loaded": loaded}))
"""


@pytest.mark.parametrize("case", ["leaky_zero_fc2__unrolled__torchscript", "alpha_sub_fc1__functions__torchscript"])
def test_a_hit_in_a_new_process_imports_no_onnx(case: str, tmp_path: Path) -> None:
    """In fresh processes: the cold run loads onnx and the matcher; after it, a run of the same file imports none
    of onnx, estimator.match, estimator.graph, estimator.load and gives the same figures."""
    model, inputs, _ = _sample_files(ROOT / "samples" / case)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NEURONOPS_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("NEURONOPS_CACHE", None)

    def probe() -> dict:
        done = subprocess.run([sys.executable, "-c", _PROBE, str(model), str(inputs), json.dumps(NOT_ON_A_HIT)],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    cold = probe()
    assert cold["loaded"] == list(NOT_ON_A_HIT)  # the probe sees these modules when they are imported
    assert len(_entries(tmp_path / "cache")) == 1
    warm = probe()
    assert warm["loaded"] == []
    assert warm["totals"] == cold["totals"] and warm["layers"] == cold["layers"]


# --- 3. a changed model file is a miss --------------------------------------------------------------------------------
@pytest.mark.parametrize("change", ["other weights, same size and mtime", "another model"])
def test_a_rewritten_model_file_is_a_miss(change: str, tmp_path: Path, cache: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Rewriting the model file (even keeping its size and modification time) gives the new model's figures."""
    model, inputs, old_net, data = _leaky(tmp_path / "m", seed=1)
    before = estimate(model, inputs, convention="neurobench")
    assert before.totals.effective_neuron_ops_run == _reference_run(old_net, data)
    stamp = model.stat()
    if change == "another model":
        new_net = random_net(np.random.default_rng(2), [8, 6])
        onnx.save(leaky_unrolled(new_net, data.shape[1]), model)
    else:
        new_net = LeakyNet([w * 1.7 + 0.05 for w in old_net.weights])
        onnx.save(leaky_stepwise(new_net), model)
        assert model.stat().st_size == stamp.st_size
        os.utime(model, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    calls = _count_analyses(monkeypatch)
    after = estimate(model, inputs, convention="neurobench")
    assert calls == [str(model)]
    want = _reference_run(new_net, data)
    assert want != before.totals.effective_neuron_ops_run  # the two models differ in their figures
    assert after.totals.effective_neuron_ops_run == want
    assert [row.neurons_per_sample for row in after.layers] == [w.shape[1] for w in new_net.weights]
    assert len(_entries(cache)) == 2  # the old entry stays (its key is the old bytes'), the new one is added


def test_a_hit_replays_the_new_inputs(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the analysis is cached, never counts: a hit on other inputs gives those inputs' figures."""
    model, inputs, net, _ = _leaky(tmp_path / "m", seed=11, style="unrolled")
    estimate(model, inputs)
    other = (np.random.default_rng(12).random((5, 6, 8)) < 0.6).astype(np.float32)
    np.save(tmp_path / "other.npy", other)
    calls = _count_analyses(monkeypatch)
    report = estimate(model, tmp_path / "other.npy", convention="neurobench")
    assert calls == []
    assert report.samples == 5
    assert report.totals.effective_neuron_ops_run == _reference_run(net, other)


def test_a_model_too_big_for_an_entry_is_not_cached(tmp_path: Path, cache: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A model whose exposed copy exceeds MAX_ENTRY_BYTES is analysed every time and never stored."""
    monkeypatch.setattr(analysis_cache, "MAX_ENTRY_BYTES", 64)
    model, inputs, net, data = _leaky(tmp_path / "m", seed=13)
    calls = _count_analyses(monkeypatch)
    for _ in range(2):
        assert estimate(model, inputs, convention="neurobench").totals.effective_neuron_ops_run == \
            _reference_run(net, data)
    assert calls == [str(model)] * 2
    assert _files(cache) == []


@pytest.mark.parametrize("variable", ["XDG_CACHE_HOME", "HOME"])
def test_the_default_folder(variable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without NEURONOPS_CACHE_DIR entries go to $XDG_CACHE_HOME/neuronops, else ~/.cache/neuronops."""
    monkeypatch.delenv("NEURONOPS_CACHE_DIR")
    monkeypatch.delenv("NEURONOPS_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv(variable, str(home))
    folder = home / "neuronops" if variable == "XDG_CACHE_HOME" else home / ".cache" / "neuronops"
    model, inputs, _, _ = _leaky(tmp_path / "m", seed=14)
    estimate(model, inputs)
    assert len(_entries(folder)) == 1 and len(_files(folder)) in (2, 3)
    assert run_cli("cache").stdout.startswith(f"analysis cache: {folder}: 1 entry, ")


# --- 4. damaged entries are misses and are written again --------------------------------------------------------------
def _damage_json(meta: Path, change) -> None:
    data = json.loads(meta.read_text())
    change(data)
    meta.write_text(json.dumps(data))


DAMAGE = {
    "json not parseable": lambda meta, model: meta.write_text('{"schema": "neuronops.analysis-cache/1", "match'),
    "json not an object": lambda meta, model: meta.write_text("[1, 2, 3]"),
    "json of another schema": lambda meta, model: _damage_json(meta, lambda d: d.update(schema="other/1")),
    "json without tensors": lambda meta, model: _damage_json(meta, lambda d: d.pop("tensors")),
    "onnx missing": lambda meta, model: model.unlink(),
    "onnx truncated": lambda meta, model: model.write_bytes(model.read_bytes()[: model.stat().st_size // 2]),
    "onnx grown": lambda meta, model: model.write_bytes(model.read_bytes() + b"\0"),
    # same size, other bytes: only the recorded SHA-256 tells (onnxruntime would run it and count other figures)
    "onnx same size, other bytes": lambda meta, model: model.write_bytes(_flip_last_weights(model.read_bytes())),
    "onnx zeroed": lambda meta, model: model.write_bytes(bytes(model.stat().st_size)),
    "ort missing": lambda meta, model: model.with_suffix(".ort").unlink(),
    "ort same size, other bytes": lambda meta, model: model.with_suffix(".ort").write_bytes(
        bytes(b ^ 0x55 for b in model.with_suffix(".ort").read_bytes())),
}


def _flip_last_weights(blob: bytes) -> bytes:
    """The .onnx with a weight tensor's raw bytes changed in place (same length): a model that still parses and
    runs, and counts other figures."""
    import onnx

    model = onnx.ModelProto.FromString(blob)
    raw = next(init.raw_data for init in model.graph.initializer if len(init.raw_data) >= 16)
    values = np.frombuffer(raw, dtype=np.float32)
    changed = blob.replace(raw, (values * 2 + 1).astype(np.float32).tobytes(), 1)
    assert len(changed) == len(blob) and changed != blob
    return changed


def _without_ort(meta: bytes) -> dict:
    data = json.loads(meta)
    data.pop("ort_sha256", None)
    return data


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_entry_is_a_miss_and_is_rewritten(damage: str, tmp_path: Path, cache: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A damaged entry is re-analysed (same figures), written again whole, and served on the next run."""
    model, inputs, net, data = _leaky(tmp_path / "m", seed=3, style="unrolled")
    first = estimate(model, inputs, convention="neurobench").to_dict()
    (key,) = _entries(cache)
    meta, session = cache / f"{key}.json", cache / f"{key}.onnx"
    assert (cache / f"{key}.ort").is_file()  # an unrolled export replayed in one run: its .ort was saved
    good_meta, good_session = meta.read_bytes(), session.read_bytes()
    DAMAGE[damage](meta, session)
    calls = _count_analyses(monkeypatch)
    again = estimate(model, inputs, convention="neurobench").to_dict()
    assert calls == [str(model)]
    assert again == first
    assert again["totals"]["effective_neuron_ops_run"] == _reference_run(net, data)
    assert _files(cache) == [f"{key}.json", f"{key}.onnx", f"{key}.ort"]  # no temporary file left
    assert _without_ort(meta.read_bytes()) == _without_ort(good_meta) and session.read_bytes() == good_session
    # onnxruntime writes the .ort anew (not byte for byte the same each time): the JSON records the new one
    assert json.loads(meta.read_text())["ort_sha256"] == hashlib.sha256((cache / f"{key}.ort").read_bytes()).hexdigest()
    assert estimate(model, inputs, convention="neurobench").to_dict() == first
    assert calls == [str(model)]  # the rewritten entry is a hit


# --- 5. off switches write nothing; dense-only runs keep the layers found -------------------------------------------
@pytest.mark.parametrize("switch", ["cache=False", "NEURONOPS_CACHE=0", "NEURONOPS_CACHE=off", "--no-cache",
                                    "no inputs, cache=False", "no inputs (CLI) --no-cache", "layers --no-cache",
                                    "explain --no-cache"])
def test_nothing_is_written_when_the_cache_is_off(switch: str, tmp_path: Path, cache: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """cache=False, NEURONOPS_CACHE=0/off and --no-cache neither write nor read entries, with inputs or without."""
    model, inputs, net, data = _leaky(tmp_path / "m", seed=4)
    if switch.startswith("NEURONOPS_CACHE="):
        monkeypatch.setenv("NEURONOPS_CACHE", switch.split("=")[1])
    calls = _count_analyses(monkeypatch)
    for _ in range(2):  # the second run is not served from anything either
        if switch == "--no-cache":
            result = run_cli("estimate", model, "--inputs", inputs, "-c", "neurobench", "-f", "json", "--no-cache")
            assert result.exit_code == 0, result.output
            assert json.loads(result.stdout)["totals"]["effective_neuron_ops_run"] == _reference_run(net, data)
        elif switch == "no inputs (CLI) --no-cache":
            result = run_cli("estimate", model, "--steps", 6, "-f", "json", "--no-cache")
            assert result.exit_code == 0, result.output
            assert json.loads(result.stdout)["totals"]["neuron_dense_ops"] == (10 + 4) * 6 * COST
        elif switch == "no inputs, cache=False":
            assert estimate(model, steps=6, cache=False).totals.neuron_dense_ops == (10 + 4) * 6 * COST
        elif switch in ("layers --no-cache", "explain --no-cache"):
            result = run_cli(switch.split()[0], model, "--no-cache")
            assert result.exit_code == 0 and "lif1" in result.output, result.output
        else:
            report = estimate(model, inputs, convention="neurobench", cache=switch != "cache=False")
            assert report.totals.effective_neuron_ops_run == _reference_run(net, data)
    assert _files(cache) == []
    assert calls == [str(model)] * 2


@pytest.mark.parametrize("first", ["estimate", "estimate (CLI)", "layers", "explain"])
def test_a_dense_only_run_keeps_the_layers_and_a_replay_completes_the_entry(first: str, tmp_path: Path, cache: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A run without inputs stores the layers found (the JSON alone: no model file is written for it) and the next
    one reads them. A replay needs the whole entry: it analyses again, writes it, and is right; dense-only runs read
    that entry too."""
    model, inputs, net, data = _leaky(tmp_path / "m", seed=5)
    calls = _count_analyses(monkeypatch)

    def dense_only() -> str:
        if first == "estimate":
            return json.dumps(estimate(model, steps=6).to_dict(), sort_keys=True)
        args = ("estimate", model, "--steps", 6, "-f", "json") if first == "estimate (CLI)" else (first, model)
        result = run_cli(*args)
        assert result.exit_code == 0, result.output
        return result.output

    cold = dense_only()
    (json_name,) = _files(cache)
    key = json_name.removesuffix(".json")
    assert _files(cache) == [f"{key}.json"]  # no .onnx: a dense-only run never serialises the model for onnxruntime
    assert dense_only() == cold and calls == [str(model)]  # the second run is a hit
    monkeypatch.setenv("NEURONOPS_CACHE", "0")
    assert dense_only() == cold  # and says what an uncached analysis says
    monkeypatch.delenv("NEURONOPS_CACHE")
    report = estimate(model, inputs, convention="neurobench")
    assert report.totals.effective_neuron_ops_run == _reference_run(net, data)
    assert calls == [str(model)] * 3  # (the uncached run above, then) the replay missed the JSON-only entry
    assert sorted(_files(cache)) == sorted([f"{key}.json", f"{key}.onnx", f"{key}.ort"])
    assert dense_only() == cold and len(calls) == 3  # the whole entry serves dense-only runs too
    assert estimate(model, inputs, convention="neurobench").to_dict() == report.to_dict() and len(calls) == 3


def test_a_dense_only_hit_in_a_new_process_imports_no_onnx(tmp_path: Path) -> None:
    """`layers` twice in new processes: the second reads the JSON entry and imports neither onnx nor onnxruntime."""
    model, _, _, _ = _leaky(tmp_path / "m", seed=6)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NEURONOPS_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("NEURONOPS_CACHE", None)
    code = ("import sys; from estimator.cli import main\n"
            "try:\n    main(['layers', sys.argv[1], '-f', 'json'])\nexcept SystemExit:\n    pass\n"
            "print('LOADED', sorted(m for m in ('onnx', 'onnxruntime', 'estimator.match') if m in sys.modules))")
    runs = [subprocess.run([sys.executable, "-c", code, str(model)], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=300) for _ in range(2)]
    assert all(run.returncode == 0 for run in runs), [run.stderr for run in runs]
    assert "LOADED ['estimator.match', 'onnx']" in runs[0].stdout  # the miss analyses the graph
    assert "LOADED []" in runs[1].stdout
    assert runs[0].stdout.split("LOADED")[0] == runs[1].stdout.split("LOADED")[0]


def test_cache_false_does_not_read_an_existing_entry(tmp_path: Path, cache: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """With an entry present, cache=False and NEURONOPS_CACHE=0 analyse the model anyway and leave the entry as is."""
    model, inputs, _, _ = _leaky(tmp_path / "m", seed=5)
    estimate(model, inputs)
    stored = {name: (cache / name).read_bytes() for name in _files(cache)}
    calls = _count_analyses(monkeypatch)
    estimate(model, inputs, cache=False)
    monkeypatch.setenv("NEURONOPS_CACHE", "0")
    estimate(model, inputs)
    assert calls == [str(model)] * 2
    assert {name: (cache / name).read_bytes() for name in _files(cache)} == stored


# --- 6. external data -------------------------------------------------------------------------------------------------
def test_a_model_with_external_data_is_not_cached(tmp_path: Path, cache: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Weights in another file are not covered by the key: such a model is analysed every time, never stored, and
    its figures are right (numpy reference, and the same as the model saved in one file)."""
    inline, inputs, net, data = _leaky(tmp_path / "m", seed=6, style="unrolled")
    proto = onnx.load(inline)
    external = tmp_path / "ext" / "model.onnx"
    external.parent.mkdir()
    onnx.save_model(proto, external, save_as_external_data=True, all_tensors_to_one_file=True, size_threshold=0,
                    location="weights.bin", convert_attribute=True)
    assert (external.parent / "weights.bin").stat().st_size > 0
    want = estimate(inline, inputs, convention="neurobench", cache=False).to_dict()
    calls = _count_analyses(monkeypatch)
    for _ in range(2):
        got = estimate(external, inputs, convention="neurobench").to_dict()
        assert got["totals"] == want["totals"] and got["layers"] == want["layers"]
        assert got["totals"]["effective_neuron_ops_run"] == _reference_run(net, data)
        dense = estimate(external).to_dict()  # nor without inputs
        assert dense["totals"]["neuron_dense_ops"] == want["totals"]["neuron_dense_ops"]
    assert calls == [str(external)] * 4
    assert _files(cache) == []


# --- 7. custom kinds --------------------------------------------------------------------------------------------------
def test_nothing_is_cached_or_read_while_a_custom_kind_is_registered(tmp_path: Path, cache: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A recogniser is code the key cannot cover: while one is registered nothing is stored, and an entry made with
    the built-in kinds is not served (the custom kind must see the layer)."""
    model, inputs = quadratic_model(tmp_path / "q", samples=12)
    table = tmp_path / "q" / "qif.toml"
    builtin = estimate(model, inputs)  # built-in kinds: the quadratic neuron is not recognised, but is cached
    assert builtin.layers[0].kind is None
    stored = {name: (cache / name).read_bytes() for name in _files(cache)}
    assert len(_entries(cache)) == 1
    leaky, leaky_inputs, net, data = _leaky(tmp_path / "m", seed=7)
    calls = _count_analyses(monkeypatch)
    register_kind(NeuronKind("qif", ("QIF",), ("mem",), "spk", quadratic_if, "U = U + βU² + I − Rθ"))
    try:
        custom = [estimate(model, inputs, cost_tables=[table]) for _ in range(2)]
        dense = estimate(model, cost_tables=[table])  # dense-only: neither read nor stored either
        plain = estimate(leaky, leaky_inputs, convention="neurobench")
    finally:
        unregister_kind("qif")
    assert [(r.layers[0].kind, r.layers[0].cost_per_update) for r in custom + [dense]] == [("qif", 6)] * 3
    assert plain.totals.effective_neuron_ops_run == _reference_run(net, data)
    assert calls == [str(model), str(model), str(model), str(leaky)]
    assert {name: (cache / name).read_bytes() for name in _files(cache)} == stored
    # back to the built-in kinds: the entry is served again, and new entries are stored
    assert estimate(model, inputs).layers[0].kind is None
    estimate(leaky, leaky_inputs)
    assert calls == [str(model), str(model), str(model), str(leaky), str(leaky)]
    assert len(_entries(cache)) == 2


# --- 8. a cache folder that cannot be made ----------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["folder is a file", "parent is a file"])
def test_an_unusable_cache_folder_does_not_fail_the_estimate(where: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache is a help: when its folder cannot be created, estimates still give the right figures."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file")
    folder = blocker if where == "folder is a file" else blocker / "cache"
    monkeypatch.setenv("NEURONOPS_CACHE_DIR", str(folder))
    model, inputs, net, data = _leaky(tmp_path / "m", seed=8)
    for _ in range(2):
        report = estimate(model, inputs, convention="neurobench")
        assert report.totals.effective_neuron_ops_run == _reference_run(net, data)
    result = run_cli("estimate", model, "--inputs", inputs, "-c", "neurobench", "-f", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["totals"]["effective_neuron_ops_run"] == _reference_run(net, data)
    assert blocker.read_text() == "a regular file"
    assert list(tmp_path.glob("blocker*")) == [blocker]


# --- 9. pruning -------------------------------------------------------------------------------------------------------
def _entry_bytes(folder: Path, key: str) -> int:
    return sum(path.stat().st_size for path in folder.glob(f"{key}.*"))


def _last_used(folder: Path, key: str, seconds_ago: float) -> None:
    when = (folder / f"{key}.json").stat().st_mtime - seconds_ago
    os.utime(folder / f"{key}.json", (when, when))


def test_pruning_removes_the_least_recently_used(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_TOTAL_BYTES the least recently *used* entries go (a hit counts as a use), the newest stays."""
    models = [_leaky(tmp_path / f"m{i}", seed=20 + i)[:2] for i in range(5)]  # same shapes: same entry sizes
    keys = []
    for model, inputs in models[:3]:
        estimate(model, inputs)
        keys.append(next(k for k in _entries(cache) if k not in keys))
    a, b, c = keys
    assert _entry_bytes(cache, a) == _entry_bytes(cache, b) == _entry_bytes(cache, c)
    size = _entry_bytes(cache, a)
    _last_used(cache, a, 300)
    _last_used(cache, b, 200)
    _last_used(cache, c, 100)
    monkeypatch.setattr(analysis_cache, "MAX_TOTAL_BYTES", 3 * size)  # room for three entries
    estimate(*models[3])  # d: one too many, so a (least recently used) goes
    (d,) = set(_entries(cache)) - {a, b, c}
    assert _entries(cache) == sorted([b, c, d])
    _last_used(cache, d, 50)
    calls = _count_analyses(monkeypatch)
    estimate(*models[1])  # a hit on b: now c is the least recently used
    assert calls == []
    estimate(*models[4])
    (e,) = set(_entries(cache)) - {b, c, d}
    assert _entries(cache) == sorted([b, d, e])
    monkeypatch.setattr(analysis_cache, "MAX_TOTAL_BYTES", 1)  # room for none: the newest still stays
    estimate(*models[0])
    assert _entries(cache) == [a]
    assert [name.split(".")[0] for name in _files(cache)] == [a] * len(_files(cache))


# --- 10. the `cache` command ------------------------------------------------------------------------------------------
def test_cache_command_shows_and_clears(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`neuronops cache` says where the cache is, how many entries and bytes it holds; --clear removes them all
    (and stray temporary files); with NEURONOPS_CACHE=0 it says the cache is off."""

    def shown() -> str:
        result = run_cli("cache")
        assert result.exit_code == 0, result.output
        return result.stdout

    def cleared() -> str:
        result = run_cli("cache", "--clear")
        assert result.exit_code == 0, result.output
        return result.stdout

    def on_disk() -> int:
        return sum((cache / name).stat().st_size for name in _files(cache))

    assert shown() == f"analysis cache: {cache}: 0 entries, 0 B\n"  # not even created yet
    assert cleared() == f"analysis cache: {cache}: 0 entries removed\n"
    cache.mkdir()
    assert shown() == f"analysis cache: {cache}: 0 entries, 0 B\n"
    first = _leaky(tmp_path / "m1", seed=30)[:2]
    estimate(*first)
    assert shown() == f"analysis cache: {cache}: 1 entry, {format_size(on_disk())}\n"
    assert cleared() == f"analysis cache: {cache}: 1 entry removed\n"
    assert _files(cache) == []
    estimate(*first)
    estimate(*_leaky(tmp_path / "m2", seed=31, style="unrolled")[:2])
    assert len(_entries(cache)) == 2
    assert shown() == f"analysis cache: {cache}: 2 entries, {format_size(on_disk())}\n"
    (cache / ".abc.onnx.x1y2.tmp").write_bytes(b"half an entry")  # what an interrupted write leaves
    assert cleared() == f"analysis cache: {cache}: 2 entries removed\n"
    assert _files(cache) == []
    monkeypatch.setenv("NEURONOPS_CACHE", "0")
    assert shown() == "analysis cache: off (NEURONOPS_CACHE=0)\n"
    assert cleared() == "analysis cache: off (NEURONOPS_CACHE=0)\n"


def test_cache_command_refuses_a_file_as_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A NEURONOPS_CACHE_DIR that names a file makes every run uncached: `cache` says so, instead of '0 entries'."""
    not_a_folder = tmp_path / "cache.txt"
    not_a_folder.write_text("x")
    monkeypatch.setenv("NEURONOPS_CACHE_DIR", str(not_a_folder))
    for args in (["cache"], ["cache", "--clear"]):
        result = run_cli(*args)
        assert result.exit_code == 1 and result.stdout == ""
        assert result.stderr == (f"error: {not_a_folder}: the analysis cache folder is a file; set NEURONOPS_CACHE_DIR "
                                 "to a folder (or NEURONOPS_CACHE=0 to run without the cache)\n")
    assert not_a_folder.read_text() == "x"


# --- 11. the model's warnings survive a hit ---------------------------------------------------------------------------
def test_the_onnx_checker_warning_is_kept_on_a_hit(tmp_path: Path, cache: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A model that fails the ONNX checker but runs is analysed with a warning; a hit reports the same warning."""
    rng = np.random.default_rng(9)
    net = random_net(rng, [6, 4])
    proto = checker_objects_but_runs(net)
    model = tmp_path / "model.onnx"
    onnx.save(proto, model)
    data = (rng.random((8, 5, 6)) < 0.4).astype(np.float32)
    np.save(tmp_path / "inputs.npy", data)
    cold = estimate(model, tmp_path / "inputs.npy", convention="neurobench")
    assert any("fails the ONNX checker" in w for w in cold.warnings)
    assert len(_entries(cache)) == 1
    _forbid_analysis(monkeypatch)
    hit = estimate(model, tmp_path / "inputs.npy", convention="neurobench")
    assert hit.warnings == cold.warnings
    assert hit.to_dict() == cold.to_dict()
    assert hit.totals.effective_neuron_ops_run == _reference_run(net, data)


# --- 12. the match round-trips through JSON ---------------------------------------------------------------------------
def _same_value(got: object, want: object, where: str) -> None:
    assert got == want, where
    assert type(got) is type(want), f"{where}: {type(got).__name__} instead of {type(want).__name__}"


@pytest.mark.parametrize("case", SAMPLES, ids=[c.name for c in SAMPLES])
def test_match_round_trips_through_json(case: Path) -> None:
    """match_from_json(match_to_json(m)) rebuilds every field of every layer (near_misses and features included,
    extra_nodes aside: they live in the cached .onnx), also through json.dumps/loads as the cache stores it."""
    model, _, _ = _sample_files(case)
    match = analyse(model).match
    assert match.layers
    want = replace(match, layers=tuple(replace(layer, extra_nodes=()) for layer in match.layers))
    for data in (match_to_json(match), json.loads(json.dumps(match_to_json(match), allow_nan=False))):
        got = match_from_json(data)
        for field in fields(MatchResult):
            if field.name != "layers":
                _same_value(getattr(got, field.name), getattr(want, field.name), field.name)
        assert len(got.layers) == len(want.layers)
        for index, (layer, expected) in enumerate(zip(got.layers, want.layers, strict=True)):
            for field in fields(NeuronLayer):
                _same_value(getattr(layer, field.name), getattr(expected, field.name),
                            f"layers[{index}].{field.name}")
        assert got == want


def test_a_half_written_entry_is_counted_and_cleared(tmp_path: Path, cache: Path) -> None:
    """An .onnx whose JSON never came (full disk, killed process) is an entry for `cache`, pruning and --clear:
    model-sized leftovers never hide from the size limit."""
    estimate(*_leaky(tmp_path / "m", seed=40)[:2])
    orphan = cache / ("ab" * 32 + ".onnx")
    orphan.write_bytes(b"x" * 5000)
    assert run_cli("cache").stdout.startswith(f"analysis cache: {cache}: 2 entries, ")
    assert run_cli("cache", "--clear").stdout == f"analysis cache: {cache}: 2 entries removed\n"
    assert _files(cache) == []


def test_pruning_never_removes_the_entry_just_written(tmp_path: Path, cache: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Another entry stamped in the future (clock skew, a copied folder) goes first, not the one just written."""
    estimate(*_leaky(tmp_path / "m1", seed=41)[:2])
    (old,) = _entries(cache)
    ahead = time.time() + 3600
    for suffix in (".json", ".onnx"):
        os.utime(cache / f"{old}{suffix}", (ahead, ahead))
    monkeypatch.setattr(analysis_cache, "MAX_TOTAL_BYTES", 1)
    estimate(*_leaky(tmp_path / "m2", seed=42, style="unrolled")[:2])
    (new,) = _entries(cache)
    assert new != old


# --- batch and split runs ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("switch", ["cache", "--no-cache"])
def test_batch_reads_and_writes_the_cache(switch: str, tmp_path: Path, cache: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`batch` stores each replayed model's entry; a later batch (a fresh worker: nothing kept in memory) reads them
    instead of analysing, with the same results; `--no-cache` neither writes nor reads."""
    from estimator import parallel

    models = [_leaky(tmp_path / f"m{i}", seed=50 + i, style=style)[:2] for i, style in enumerate(("stepwise",
                                                                                                   "unrolled"))]
    sources = [str(model) for model, _ in models]
    extra = ["--no-cache"] if switch == "--no-cache" else []

    def run(out: str) -> dict:
        parallel._MODELS.clear()  # a new worker process: only the disk cache can spare the analysis
        result = run_cli("batch", *sources, "--out", tmp_path / out, "--no-progress", *extra)
        assert result.exit_code == 0, result.output
        return json.loads((tmp_path / out / "summary.json").read_text())

    calls = _count_analyses(monkeypatch)
    first = run("first")
    assert len(_entries(cache)) == (0 if extra else 2)
    second = run("second")
    assert sorted(calls) == sorted(sources * (2 if extra else 1))  # analysed again only without the cache
    assert first["ok"] == second["ok"] == 2
    for a, b in zip(first["rows"], second["rows"], strict=True):
        assert {k: v for k, v in a.items() if k != "result"} == {k: v for k, v in b.items() if k != "result"}
        assert a["effective_neuron_ops"] is not None


def test_a_split_estimate_uses_the_cache_and_agrees(tmp_path: Path, cache: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A replay cut into shards (in-process here) stores the entry and, next time, reads it on the client and in
    the worker: the same report as one process without the cache."""
    from estimator import parallel

    model, inputs, net, data = _leaky(tmp_path / "m", seed=60, style="unrolled")
    plain = estimate(model, inputs, convention="neurobench", cache=False).to_dict()
    calls = _count_analyses(monkeypatch)
    for _ in range(2):
        parallel._MODELS.clear()
        with parallel.open_backend(1) as backend:
            split = parallel.estimate_sharded(model, inputs, backend=backend, convention="neurobench",
                                              shard_size=3)
        assert split.to_dict() == plain
    assert calls == [str(model)]  # the first client analysis; every later one (client and worker) is a hit
    assert len(_entries(cache)) == 1


def test_a_failed_ort_save_does_not_fail_the_replay(tmp_path: Path, cache: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime refuses to make a session whose .ort copy it cannot write (the cache folder vanished, a full
    disk): the replay goes on without the copy, with the right figures, and nothing half-written is stored."""
    model, inputs, net, data = _leaky(tmp_path / "m", seed=70, style="unrolled")
    monkeypatch.setattr(analysis_cache, "ort_temp_path", lambda slot: str(tmp_path / "gone" / "x.ort"))
    report = estimate(model, inputs, convention="neurobench")
    assert report.totals.effective_neuron_ops_run == _reference_run(net, data)
    (key,) = _entries(cache)
    assert not (cache / f"{key}.ort").exists()
    assert "ort_sha256" not in json.loads((cache / f"{key}.json").read_text())
    monkeypatch.undo()
    monkeypatch.setenv("NEURONOPS_CACHE_DIR", str(cache))
    assert estimate(model, inputs, convention="neurobench").to_dict() == report.to_dict()
    assert (cache / f"{key}.ort").is_file()  # the next replay saves it


@pytest.mark.parametrize(("style", "steps", "named"), [("unrolled", 6, 1), ("stepwise", 60, 0)])
def test_the_ort_file_is_named_only_for_a_replay_that_saves_one(style: str, steps: int, named: int, tmp_path: Path,
                                                               cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stepwise replay of many steps runs optimised and saves no onnxruntime-format copy: it makes no temporary
    file for one either (an unrolled one of a few runs does, and stores it)."""
    model, inputs, net, data = _leaky(tmp_path / "m", seed=80, style=style, steps=steps)
    made: list[str] = []
    real = analysis_cache.ort_temp_path
    monkeypatch.setattr(analysis_cache, "ort_temp_path", lambda slot: made.append(real(slot)) or made[-1])
    for _ in range(2):
        report = estimate(model, inputs, convention="neurobench")
        assert report.totals.effective_neuron_ops_run == _reference_run(net, data)
    assert len(made) == named  # the second run finds the .ort (unrolled) or, stepwise, never wants one
    (key,) = _entries(cache)
    assert (cache / f"{key}.ort").is_file() == bool(named)
    assert [name for name in _files(cache) if name.endswith(".tmp")] == []


def test_the_graph_of_a_cached_analysis_is_built_on_first_use(tmp_path: Path, cache: Path) -> None:
    """analyse(...).graph works whether or not the analysis came from the cache: on a hit it is built when asked
    for, and it is the graph an uncached analysis gives."""
    model, _, _, _ = _leaky(tmp_path / "m", seed=8)
    fresh = analyse(model)
    hit = analyse(model)
    assert fresh.built_graph is not None and hit.built_graph is None  # the second is a hit
    assert [(n.op_type, n.inputs, n.outputs) for n in hit.graph.nodes] == \
        [(n.op_type, n.inputs, n.outputs) for n in fresh.graph.nodes]
    assert hit.graph is hit.graph  # built once
    assert hit.graph.nx.number_of_nodes() == fresh.graph.nx.number_of_nodes()


def test_an_ort_copy_that_asks_for_inputs_the_replay_does_not_feed_is_not_used(tmp_path: Path, cache: Path) -> None:
    """A model with ir_version 0 (the checker objects; analysed on trust): onnxruntime's saved copy of it turns the
    constants it folded into required inputs. A hit then runs the ONNX model instead (found by fuzzing: the second
    run of such a model failed)."""
    case = next(c for c in SAMPLES if c.name == "leaky_zero_fc2__unrolled__torchscript")
    model_path, inputs, _ = _sample_files(case)
    model = onnx.load(model_path)
    model.ir_version = 0
    onnx.save(model, tmp_path / "model.onnx")
    first = estimate(tmp_path / "model.onnx", inputs)
    assert any(name.endswith(".ort") for name in _files(cache))  # the miss saved a copy (the few-runs case)
    again = estimate(tmp_path / "model.onnx", inputs)
    assert again.to_dict() == first.to_dict()
    assert any("ONNX checker" in warning for warning in again.warnings)


def test_a_stepwise_replay_of_many_runs_does_not_use_the_ort_copy(tmp_path: Path, cache: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The onnxruntime-format copy holds basic optimisations only, which onnxruntime cannot add to when loading it:
    after a short replay stored one, a stepwise replay that runs the model many times makes its session from the
    ONNX model, fully optimised (milliseconds for one step's graph); a short replay again uses the copy. The figures
    are the same either way. (An unrolled replay keeps the copy: full optimisation of T steps costs more than it
    saves in many graphs.)"""
    from estimator import replay as replay_stage

    model, _, net, data = _leaky(tmp_path / "m", seed=90, samples=2, steps=60)
    short = tmp_path / "short.npy"
    np.save(short, data[:, :3])  # 3 runs
    np.save(tmp_path / "long.npy", data)  # 60 runs (one batch of 2 samples, 60 steps)
    sessions: list[tuple[bool, bool]] = []
    real = replay_stage._new_session

    def spy(ort, model_bytes, threads, optimize, save_ort=None, ort_format=False):
        sessions.append((ort_format, optimize))
        return real(ort, model_bytes, threads, optimize, save_ort=save_ort, ort_format=ort_format)

    monkeypatch.setattr(replay_stage, "_new_session", spy)
    estimate(model, short)  # a miss: saves the copy
    (key,) = _entries(cache)
    assert (cache / f"{key}.ort").is_file() and sessions == [(False, False)]
    long_run = estimate(model, tmp_path / "long.npy", convention="neurobench")
    assert sessions[1:] == [(False, True)]  # the ONNX model, optimised; not the copy
    assert long_run.totals.effective_neuron_ops_run == _reference_run(net, data)
    estimate(model, short)
    assert sessions[2:] == [(True, False)]  # the copy, for the short replay it was made for


def test_an_unrolled_replay_of_many_runs_keeps_the_ort_copy(tmp_path: Path, cache: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Fully optimising an unrolled graph (T steps) costs more set-up than it saves in many graphs, and more memory:
    a replay of many runs (here 60 batches of one sample) loads the stored copy, as a short one does."""
    from estimator import replay as replay_stage

    model, inputs, net, data = _leaky(tmp_path / "m", seed=91, style="unrolled", samples=60, steps=4)
    sessions: list[bool] = []
    real = replay_stage._new_session

    def spy(ort, model_bytes, threads, optimize, save_ort=None, ort_format=False):
        sessions.append(ort_format)
        return real(ort, model_bytes, threads, optimize, save_ort=save_ort, ort_format=ort_format)

    monkeypatch.setattr(replay_stage, "_new_session", spy)
    estimate(model, inputs)  # one batch: saves the copy
    many = estimate(model, inputs, convention="neurobench", batch_size=1)
    assert sessions == [False, True]
    assert many.totals.effective_neuron_ops_run == _reference_run(net, data)
