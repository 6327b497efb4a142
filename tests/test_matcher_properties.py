"""The matcher reads dataflow, not spelling: renaming, reordering, Identity nodes, shared constants change nothing."""

from __future__ import annotations

import numpy as np
import onnx
from builders import leaky_stepwise, leaky_unrolled, random_net
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper, numpy_helper

from estimator import estimate


def _rename(model: onnx.ModelProto, rng: np.random.Generator) -> None:
    keep = {i.name for i in model.graph.input} | {o.name for o in model.graph.output}
    names = {n for node in model.graph.node for n in list(node.input) + list(node.output) if n} | {
        i.name for i in model.graph.initializer}
    mapping = {n: n if n in keep else f"t{rng.integers(1 << 40):x}_{k}" for k, n in enumerate(sorted(names))}
    for node in model.graph.node:
        node.name = f"n{rng.integers(1 << 40):x}"
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]
    for init in model.graph.initializer:
        init.name = mapping[init.name]


def _shuffle(model: onnx.ModelProto, rng: np.random.Generator) -> None:
    nodes = list(model.graph.node)
    order = rng.permutation(len(nodes))
    del model.graph.node[:]
    model.graph.node.extend(nodes[i] for i in order)


def _insert_identities(model: onnx.ModelProto, rng: np.random.Generator, count: int) -> None:
    for k in range(count):
        nodes = [n for n in model.graph.node if n.input]
        node = nodes[int(rng.integers(len(nodes)))]
        slot = int(rng.integers(len(node.input)))
        if not node.input[slot]:
            continue
        alias = f"identity_alias_{k}"
        model.graph.node.append(helper.make_node("Identity", [node.input[slot]], [alias]))
        node.input[slot] = alias


def _share_constants(model: onnx.ModelProto) -> None:
    """What the dynamo exporter does: one initializer for every equal value, whatever its role."""
    first: dict[tuple, str] = {}
    rename: dict[str, str] = {}
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        key = (array.dtype.str, array.shape, array.tobytes())
        rename[init.name] = first.setdefault(key, init.name)
    kept = [i for i in model.graph.initializer if rename[i.name] == i.name]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    for node in model.graph.node:
        node.input[:] = [rename.get(n, n) for n in node.input]


def _summary(path, inputs) -> list[tuple]:
    report = estimate(path, inputs, convention="neurobench")
    return [(r.kind, r.reset, r.neurons_per_sample, r.time_steps, r.spikes, r.membrane_updates) for r in report.layers]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    style=st.sampled_from(["stepwise", "unrolled"]),
    spelling=st.sampled_from(["torchscript", "dynamo"]),
    reset=st.sampled_from(["subtract", "zero", "none"]),
    rename=st.booleans(),
    shuffle=st.booleans(),
    identities=st.integers(0, 6),
    share=st.booleans(),
)
def test_spelling_changes_nothing(tmp_path, seed, style, spelling, reset, rename, shuffle, identities, share):
    rng = np.random.default_rng(seed)
    net = random_net(rng, [6, 7, 3], reset=reset)
    data = (rng.random((3, 5, 6)) < 0.4).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", input=data)
    build = (lambda: leaky_stepwise(net, spelling)) if style == "stepwise" else (
        lambda: leaky_unrolled(net, 5, spelling))
    onnx.save(build(), tmp_path / "plain.onnx")
    variant = build()
    if share:
        _share_constants(variant)
    if identities:
        _insert_identities(variant, rng, identities)
    if rename:
        _rename(variant, rng)
    if shuffle:
        _shuffle(variant, rng)
    onnx.save(variant, tmp_path / "variant.onnx")
    plain = _summary(tmp_path / "plain.onnx", tmp_path / "inputs.npz")
    assert plain == _summary(tmp_path / "variant.onnx", tmp_path / "inputs.npz")
    want = net.reference(data)
    assert [row[4] for row in plain] == want["spikes"]
    assert [row[5] for row in plain] == want["membrane_updates"]
