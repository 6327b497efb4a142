"""The benchmark's workloads, torch-free: recorded inputs (.npy), the hand-built fallback exports, and the graphs of
the static-analysis sweep.

With torch + snnTorch available, the replay networks are real snnTorch exports (torch_workloads.py); without them
they are built here from tests/builders.py (the same shapes and weights, snnTorch's op spelling), so the benchmark
runs anywhere. Weights are multiples of 1/64 and inputs 0/1 spikes: every synaptic sum is exact in float32.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from builders import LeakyNet, _Builder, leaky_stepwise, leaky_unrolled  # noqa: E402

SEED = 5
NETS = {
    # name: (features of one time step of one sample, description)
    "fc": ((100,), "fc 100 → 256 → 10, Leaky (subtract, β 0.9)"),
    "conv": ((1, 12, 12), "Conv 1→8 5×5 pad 2 → Leaky → MaxPool 2 → fc 288 → 10 → Leaky (subtract, β 0.9)"),
}


def write_inputs(path: Path, net: str, samples: int, steps: int, seed: int = 11) -> None:
    """0/1 spikes (samples, steps, features…) float32 at a fixed rate per feature, written slice by slice straight
    into the .npy (10× the samples never sits in memory)."""
    shape = NETS[net][0]
    rng = np.random.default_rng(seed)
    rates = rng.uniform(0.05, 0.35, size=shape).astype(np.float32)
    tmp = path.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(samples, steps) + shape)
    for start in range(0, samples, 250):
        stop = min(samples, start + 250)
        out[start:stop] = rng.random((stop - start, steps) + shape, dtype=np.float32) < rates
    out.flush()
    del out
    tmp.replace(path)


def _dyadic(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    return (np.round(rng.normal(0.0, scale, size=shape) * 64) / 64).astype(np.float32)


def fc_net() -> LeakyNet:
    rng = np.random.default_rng(SEED)
    return LeakyNet([_dyadic(rng, (100, 256), 0.45), _dyadic(rng, (256, 10), 0.25)], beta=0.9)


def _conv_weights() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    return _dyadic(rng, (8, 1, 5, 5), 0.5), _dyadic(rng, (288, 10), 0.3)


def _conv_graph(steps: int | None, batch: str = "batch") -> onnx.ModelProto:
    """The conv network hand-built: unrolled over `steps`, or one step (None) with `lifK.mem` state in and out."""
    conv_w, fc_w = _conv_weights()
    net = LeakyNet([conv_w, fc_w], beta=0.9)
    b = _Builder("torchscript")
    wc = b.init(conv_w, "conv_W")
    wf = b.init(fc_w, "fc_W")
    betas = [b.beta(net), b.beta(net)]
    thetas = [b.init(net.threshold, "threshold") for _ in range(2)]

    def layer_step(x: str, mems: list[str | None]) -> str:
        currents = []
        cur1 = b.op("Conv", [x, wc], pads=[2, 2, 2, 2], kernel_shape=[5, 5])
        currents.append(cur1)
        for i in range(2):
            if i == 1:
                pooled = b.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
                cur = b.op("MatMul", [b.op("Flatten", [pooled], axis=1), wf])
            else:
                cur = cur1
            if mems[i] is None:
                mems[i] = b.op("ConstantOfShape", [b.op("Shape", [cur])],
                               value=numpy_helper.from_array(np.zeros(1, np.float32)))
            mems[i], x = b.step(net, mems[i], cur, betas[i], thetas[i])
        return x

    if steps is None:
        mems: list[str | None] = ["lif1.mem", "lif2.mem"]
        out = layer_step("input", mems)
        for i, mem in enumerate(mems, start=1):
            b.nodes.append(helper.make_node("Identity", [mem], [f"lif{i}.mem.next"]))
        b.nodes.append(helper.make_node("Identity", [out], ["output"]))
        inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 1, 12, 12]),
                  helper.make_tensor_value_info("lif1.mem", TensorProto.FLOAT, [batch, 8, 12, 12]),
                  helper.make_tensor_value_info("lif2.mem", TensorProto.FLOAT, [batch, 10])]
        outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 10]),
                   helper.make_tensor_value_info("lif1.mem.next", TensorProto.FLOAT, [batch, 8, 12, 12]),
                   helper.make_tensor_value_info("lif2.mem.next", TensorProto.FLOAT, [batch, 10])]
    else:
        mems = [None, None]
        stacked = []
        for t in range(steps):
            index = b.init(np.asarray(t, dtype=np.int64), "t")
            x = b.op("Gather", ["input", index], axis=1)
            out = layer_step(x, mems)
            axes = b.name("axes")
            b.inits.append(numpy_helper.from_array(np.asarray([1], dtype=np.int64), axes))
            stacked.append(b.op("Unsqueeze", [out, axes]))
        b.nodes.append(helper.make_node("Concat", stacked, ["output"], axis=1))
        inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, steps, 1, 12, 12])]
        outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, steps, 10])]
    graph = helper.make_graph(b.nodes, "conv", inputs, outputs, b.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def export_builders(out: Path, net: str, steps: int) -> dict:
    """The torch-free fallback: hand-built exports of the same network shapes."""
    out.mkdir(parents=True, exist_ok=True)
    if net == "fc":
        unrolled, stepwise = leaky_unrolled(fc_net(), steps), leaky_stepwise(fc_net())
    else:
        unrolled, stepwise = _conv_graph(steps), _conv_graph(None)
    onnx.save(unrolled, out / "unrolled.onnx")
    onnx.save(stepwise, out / "stepwise.onnx")
    return {"exporter": "tests/builders.py (hand-built, torchscript spelling)", "opset": 17}


def static_model(steps: int, layers: int, width: int = 64, shared: bool = True) -> onnx.ModelProto:
    """An unrolled fc Leaky network `layers` deep, `steps` long: the static-analysis sweep. `shared`: every step
    reads one copy of each constant, as snnTorch's exports do (the TorchScript export of the fc workload holds 6
    initializers for 100 steps); the hand-built graph writes a copy per step, kept with `shared=False` to show what
    400 copies of the weights (50 MB for 400 steps × 8 layers) cost the loader."""
    rng = np.random.default_rng(layers)
    sizes = [width] * (layers + 1)
    weights = [_dyadic(rng, (a, b), 0.3) for a, b in zip(sizes, sizes[1:], strict=False)]
    model = leaky_unrolled(LeakyNet(weights, beta=0.9), steps)
    return share_initializers(model) if shared else model


def share_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with byte-identical initializers merged into the first of them (inputs renamed to it)."""
    graph = model.graph
    first: dict[bytes, str] = {}
    renamed: dict[str, str] = {}
    kept = []
    for init in graph.initializer:
        named = onnx.TensorProto()
        named.CopyFrom(init)
        named.name = ""
        key = named.SerializeToString()  # everything but the name
        if key in first:
            renamed[init.name] = first[key]
        else:
            first[key] = init.name
            kept.append(init)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    for node in graph.node:
        for position, name in enumerate(node.input):
            if name in renamed:
                node.input[position] = renamed[name]
    return model
