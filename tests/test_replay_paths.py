"""The replay's fast paths against independent computations: per-step spike counts, padded fixed batches in both
styles, cast and time-moved memory-mapped inputs, and releasing a memory map's pages without losing data."""

from __future__ import annotations

import numpy as np
import pytest
from builders import LeakyNet, leaky_stepwise, leaky_unrolled, random_net
from conftest import sample_cases

from estimator import estimate
from estimator.api import analyse
from estimator.inputs import release


def _per_step_reference(net: LeakyNet, data: np.ndarray) -> list[list[int]]:
    """Spikes per layer per time step, by a plain numpy loop over the same equations (subtract reset)."""
    samples, steps = data.shape[:2]
    beta, theta = np.float32(net.beta), np.float32(net.threshold)
    mems = [np.zeros((samples, w.shape[1]), np.float32) for w in net.weights]
    counts = [[0] * steps for _ in net.weights]
    for t in range(steps):
        x = data[:, t].astype(np.float32)
        for i, w in enumerate(net.weights):
            reset = (mems[i] - theta > 0).astype(np.float32)
            mems[i] = beta * mems[i] + x @ w - reset * theta
            x = (mems[i] - theta > 0).astype(np.float32)
            counts[i][t] = int(x.sum())
    return counts


def _data(rng: np.random.Generator, samples: int, steps: int, features: int) -> np.ndarray:
    return (rng.random((samples, steps, features)) < 0.4).astype(np.float32)


@pytest.mark.parametrize("style", ["unrolled", "stepwise"])
def test_spikes_per_step_equal_reference(write_model, tmp_path, style):
    rng = np.random.default_rng(21)
    net = random_net(rng, [9, 11, 5])
    data = _data(rng, 6, 7, 9)
    model = leaky_unrolled(net, 7) if style == "unrolled" else leaky_stepwise(net)
    report = estimate(write_model(model, inputs=data), tmp_path / "inputs.npz", batch_size=4)
    want = _per_step_reference(net, data)
    assert [list(row.spikes_per_step) for row in report.layers] == want
    assert [row.spikes for row in report.layers] == [sum(steps) for steps in want]


@pytest.mark.parametrize("held_bytes", [1, 1000, 2**30])  # blocks of 1 step, of a few, of 16
def test_stepwise_counts_do_not_depend_on_the_block_of_held_steps(write_model, tmp_path, monkeypatch, held_bytes):
    """A stepwise replay counts its steps in blocks sized by HELD_BYTES: every block size (one step, a few, up to
    STEP_BLOCK), with a last block cut short, gives the numpy reference's spikes per step and membrane updates."""
    from estimator import replay as replay_module

    monkeypatch.setattr(replay_module, "HELD_BYTES", held_bytes)
    rng = np.random.default_rng(23)
    net = random_net(rng, [9, 11, 5], reset="zero")  # reset to 0 and sparse input: membranes that stay unchanged
    data = (rng.random((10, 20, 9)) < 0.1).astype(np.float32)  # 20 steps: blocks of 3 and 16 end short
    unrolled = estimate(write_model(leaky_unrolled(net, 20), inputs=data), tmp_path / "inputs.npz", cache=False)
    path = write_model(leaky_stepwise(net), inputs=data)
    report = estimate(path, tmp_path / "inputs.npz", convention="neurobench", batch_size=5, cache=False)
    want = net.reference(data)
    assert sum(want["membrane_updates"]) < 10 * 20 * (11 + 5)  # so a wrong previous step would show
    assert [row.membrane_updates for row in report.layers] == want["membrane_updates"]
    assert [row.spikes for row in report.layers] == want["spikes"]
    # per step: as the unrolled export of the same network counts them (no blocks there)
    assert [row.spikes_per_step for row in report.layers] == [row.spikes_per_step for row in unrolled.layers]


@pytest.mark.parametrize("style", ["unrolled", "stepwise"])
def test_fixed_batch_padding_counts_only_real_rows(write_model, tmp_path, style):
    rng = np.random.default_rng(22)
    net = random_net(rng, [8, 6, 3])
    data = _data(rng, 7, 5, 8)  # batch fixed at 3 in the graph: the last batch holds 1 real row and 2 zero rows
    model = leaky_unrolled(net, 5, "dynamo", batch=3) if style == "unrolled" else leaky_stepwise(net, batch=3)
    report = estimate(write_model(model, inputs=data), tmp_path / "inputs.npz", convention="neurobench")
    want = net.reference(data)
    assert [row.spikes for row in report.layers] == want["spikes"]
    assert [row.membrane_updates for row in report.layers] == want["membrane_updates"]
    assert [list(row.spikes_per_step) for row in report.layers] == _per_step_reference(net, data)


@pytest.mark.parametrize("style", ["unrolled", "stepwise"])
def test_memory_mapped_inputs_cast_and_time_moved(write_model, tmp_path, style):
    """A float64 .npy with time on axis 0 (a non-contiguous, cast view of a memory map) counts like float32 data."""
    rng = np.random.default_rng(23)
    net = random_net(rng, [7, 9])
    data = _data(rng, 5, 6, 7)
    path = write_model(leaky_unrolled(net, 6) if style == "unrolled" else leaky_stepwise(net))
    np.save(tmp_path / "time_first.npy", np.moveaxis(data, 1, 0).astype(np.float64))
    report = estimate(path, tmp_path / "time_first.npy", time_axis=0, batch_size=2)
    want = net.reference(data)
    assert [row.spikes for row in report.layers] == want["spikes"]
    assert [row.membrane_updates for row in report.layers] == want["membrane_updates"]


def test_release_keeps_data_and_leaves_writable_maps_alone(tmp_path):
    values = np.arange(4096 * 8, dtype=np.float32).reshape(8, 4096)
    np.save(tmp_path / "a.npy", values)
    read_only = np.load(tmp_path / "a.npy", mmap_mode="r")
    view = np.moveaxis(read_only, 1, 0)
    assert float(view.sum()) == float(values.sum())
    release(view)  # pages dropped from the process; reading again faults them back in from the file
    assert np.array_equal(read_only, values)
    private = np.load(tmp_path / "a.npy", mmap_mode="c")  # copy-on-write: changes live only in this process
    private[0, 0] = -1.0
    release(private[2:])
    assert private[0, 0] == -1.0
    release(values)  # an ordinary array: nothing to do
    assert values[0, 0] == 0.0


def test_networkx_view_built_on_demand(write_model):
    rng = np.random.default_rng(24)
    graph = analyse(write_model(leaky_stepwise(random_net(rng, [4, 3])))).graph
    assert "nx" not in graph.__dict__
    view = graph.nx
    for node in graph.nodes:
        assert all(view.has_edge(name, node.index) for name in node.inputs if name)
        assert all(view.has_edge(node.index, name) for name in node.outputs if name)
    assert view.number_of_nodes() == len(graph.nodes) + len({n for node in graph.nodes
                                                             for n in node.inputs + node.outputs if n})


def _modules_after(args: list[str], cwd) -> set[str]:
    """The top-level modules a CLI invocation leaves imported, in a fresh interpreter."""
    import json
    import subprocess
    import sys

    code = ("import sys, json\nfrom estimator.cli import main\n"
            "try:\n    main(sys.argv[1:], prog_name='neuronops')\nexcept SystemExit:\n    pass\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, check=True)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_light_commands_import_no_runtime(write_model):
    from conftest import ROOT

    model = write_model(leaky_stepwise(random_net(np.random.default_rng(25), [4, 3])))
    help_modules = _modules_after(["--help"], ROOT)
    assert not {"onnxruntime", "onnx", "numpy", "networkx"} & help_modules
    layers_modules = _modules_after(["layers", str(model)], ROOT)
    assert "onnx" in layers_modules  # the model was read…
    assert not {"onnxruntime", "networkx"} & layers_modules  # …without the runtime or networkx


@pytest.mark.parametrize(("threads", "load", "cores", "spins"), [
    (0, 0.4, 2, True),  # an idle machine: onnxruntime's default
    (0, 2.5, 2, False),  # every core busy: spinning threads would compete for them
    (1, 0.0, 2, False),  # a batch worker (or a user) sized the pool: never spin
    (4, 0.0, 8, False),
])
def test_idle_threads_spin_only_with_a_core_to_spare(monkeypatch, threads, load, cores, spins):
    from estimator import replay as replay_module

    monkeypatch.setattr(replay_module.os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(replay_module.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert replay_module._may_spin(threads) is spins


def test_spinning_allowed_where_no_load_average(monkeypatch):
    from estimator import replay as replay_module

    def unavailable() -> tuple[float, float, float]:
        raise OSError("no load average")

    monkeypatch.setattr(replay_module.os, "getloadavg", unavailable)
    assert replay_module._may_spin(0) is True
    assert replay_module._may_spin(2) is False


def test_session_option_follows_the_spin_rule(write_model, monkeypatch):
    """The session really gets allow_spinning=0 when the rule says sleep, and onnxruntime's default otherwise."""
    import onnxruntime as ort

    from estimator import replay as replay_module

    model = write_model(leaky_stepwise(random_net(np.random.default_rng(3), [4, 3])))
    plan = analyse(model, for_replay=True, cache=False).plan
    for spins in (True, False):
        monkeypatch.setattr(replay_module, "_may_spin", lambda threads, spins=spins: spins)
        session = replay_module.open_session(plan)
        entry = session.get_session_options().get_session_config_entry
        if spins:
            with pytest.raises(RuntimeError, match="does not have configuration"):  # unset: onnxruntime's default
                entry("session.intra_op.allow_spinning")
        else:
            assert entry("session.intra_op.allow_spinning") == "0"
        assert isinstance(session, ort.InferenceSession)


@pytest.mark.parametrize("value_range", [True, False])
def test_scan_counts_nonfinite_values_exactly_when_sums_overflow(value_range):
    """The one-pass check (a finite sum) must not miss NaN/±Inf, nor report any when only the sum overflows."""
    from estimator.replay import _scan

    huge = np.full((40, 3, 5), 3e38, np.float32)  # every value finite, the sum is not
    assert _scan(huge, value_range).nonfinite == 0
    opposite = huge.copy()
    opposite[7, 1, 2], opposite[30, 0, 0] = np.inf, -np.inf  # would cancel to NaN in a sum, still two values
    found = _scan(opposite, value_range)
    assert (found.nonfinite, found.first_bad) == (2, 7)
    small = np.ones((10, 4), np.float16)
    small[9, 3] = np.nan
    assert (_scan(small, value_range).nonfinite, _scan(small, value_range).first_bad) == (1, 9)
    assert _scan(np.arange(12, dtype=np.int64).reshape(3, 4), value_range).nonfinite == 0
    if value_range:  # the range covers the finite values only
        assert (found.low, found.high) == (pytest.approx(3e38), pytest.approx(3e38))


def test_replay_alone_refuses_nonfinite_inputs_but_not_huge_finite_ones(write_model, tmp_path):
    """replay() called without check_inputs checks each batch itself: NaN is refused with its sample, while finite
    values whose sum overflows float32 are replayed."""
    from estimator.errors import InputError
    from estimator.inputs import RecordedInputs
    from estimator.replay import replay

    net = random_net(np.random.default_rng(5), [4, 3])
    path = write_model(leaky_stepwise(net))
    plan = analyse(path, for_replay=True, cache=False).plan
    huge = np.full((6, 3, 4), 3e38, np.float32)
    counts = replay(plan, RecordedInputs({"input": huge}, tmp_path / "huge.npy"))
    assert counts.samples == 6
    bad = huge.copy()
    bad[4, 1, 2] = np.nan
    with pytest.raises(InputError, match="sample 4 holds NaN"):
        replay(plan, RecordedInputs({"input": bad}, tmp_path / "bad.npy"))


def _reference_other_bytes(graph, fetched: set[str]) -> int:
    """The memory estimate's sum written the plain way: every unfetched value_info's per-sample bytes."""
    from estimator.replay import _sample_bytes

    return sum(_sample_bytes(graph.shape(info.name), graph.elem_type(info.name)) or 0
               for info in graph.model.graph.value_info if info.name not in fetched)


@pytest.mark.parametrize("case", sample_cases(), ids=lambda p: p.name)
def test_unfetched_tensor_bytes_equal_the_plain_sum(case):
    from estimator.replay import _fetch_names, _other_bytes

    found = analyse(case / "model.onnx", cache=False)
    fetched = set(_fetch_names(found.match))
    assert _other_bytes(found.graph, fetched) == _reference_other_bytes(found.graph, fetched)


def test_unfetched_tensor_bytes_skip_unknown_dims_and_non_tensors():
    from onnx import TensorProto, helper

    from estimator.graph import ModelGraph
    from estimator.replay import _other_bytes

    infos = [helper.make_tensor_value_info("known", TensorProto.FLOAT, ["batch", 3, 5]),  # 60 bytes
             helper.make_tensor_value_info("same_type", TensorProto.FLOAT, ["batch", 3, 5]),  # 60, type seen
             helper.make_tensor_value_info("halves", TensorProto.FLOAT16, [7, 4]),  # 8
             helper.make_tensor_value_info("symbolic", TensorProto.FLOAT, ["batch", "n"]),  # unknown: 0
             helper.make_tensor_value_info("unknown_dim", TensorProto.FLOAT, [2, None]),  # 0
             helper.make_tensor_value_info("no_shape", TensorProto.FLOAT, None),  # 0
             helper.make_tensor_value_info("scalar", TensorProto.FLOAT, []),  # no batch axis: 0
             helper.make_tensor_value_info("fetched", TensorProto.DOUBLE, [1, 1000]),  # skipped
             helper.make_tensor_sequence_value_info("sequence", TensorProto.FLOAT, [1, 9])]  # not a tensor: 0
    nodes = [helper.make_node("Identity", ["x"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], value_info=infos)
    model_graph = ModelGraph(helper.make_model(graph))
    assert _other_bytes(model_graph, {"fetched"}) == 60 + 60 + 8
    assert _other_bytes(model_graph, {"fetched"}) == _reference_other_bytes(model_graph, {"fetched"})
    assert model_graph.shape("known") == ("batch", 3, 5) and model_graph.shape("same_type") == ("batch", 3, 5)
    assert model_graph.shape("unknown_dim") == (2, None) and model_graph.shape("no_shape") is None
    assert model_graph.shape("sequence") is None and model_graph.shape("scalar") == ()


@pytest.mark.parametrize("shape", [(8, 600), (4, 7)])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32, np.int8, np.bool_])
def test_spike_counts_equal_count_nonzero_for_every_dtype(dtype, shape):
    """The replay counts float spikes as `x != 0` (faster than counting floats): the same count as np.count_nonzero,
    NaN and ±Inf counted, −0.0 not."""
    from estimator.replay import _nonzero_counts

    rng = np.random.default_rng(5)
    arrays = [(rng.random(shape) < 0.3).astype(dtype) for _ in range(3)]  # above and below the compare-first size
    if np.dtype(dtype).kind == "f":
        arrays[0][0, :4] = [np.nan, -0.0, np.inf, -np.inf]
        arrays[1][:] = -0.0
    expected = [int(np.count_nonzero(array)) for array in arrays]
    assert _nonzero_counts(arrays) == expected
    assert all(type(count) is int for count in _nonzero_counts(arrays))
    if np.dtype(dtype).kind == "f":
        assert expected[1] == 0 and expected[0] >= 3


def test_a_layer_the_matcher_could_not_follow_is_not_blamed_on_the_inputs():
    """A layer read as fewer steps than the graph has because its chain broke (state_quant's quantiser made one
    membrane feed two): the refusal says the matcher could not follow the time loop, not 'record 1 steps'."""
    from estimator.errors import InputError
    from estimator.layers import MatchResult, NeuronLayer
    from estimator.replay import _check_steps

    broken = NeuronLayer(name="lif1", kind=None, reset=None, style="unrolled", membranes=("m",), spikes=("s",),
                         neurons_shape=("batch", 4), time_steps=1,
                         problem="membrane 'm' feeds 2 later membranes: layers not separable")
    match = MatchResult((broken,), "unrolled", (), ("input",), ())
    with pytest.raises(InputError, match=r"layer 'lif1' was read as 1 time step\(s\) \(membrane 'm' feeds 2 later "
                                         r"membranes: layers not separable\), the inputs have 10: the matcher could "
                                         r"not follow the time loop"):
        _check_steps(match, 10)
    fine = NeuronLayer(name="lif1", kind="leaky", reset="subtract", style="unrolled", membranes=("m",),
                       spikes=("s",), neurons_shape=("batch", 4), time_steps=1)
    with pytest.raises(InputError, match="record 1 steps or export the model stepwise"):
        _check_steps(MatchResult((fine,), "unrolled", (), ("input",), ()), 10)
