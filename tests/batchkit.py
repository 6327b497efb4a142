"""Folders of hand-built models for the batch and Dask tests, with their independently computed (numpy) counts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from builders import LeakyNet, leaky_stepwise, leaky_unrolled, random_net

COST = 4  # Leaky with subtract or zero reset, NeuroBench's table


@dataclass
class Built:
    name: str  # the result name batch gives it: the folder name (every model is model.onnx)
    model: Path
    inputs: Path
    net: LeakyNet | None  # None: deliberately broken
    data: np.ndarray | None = None

    def expected_run(self, convention: str) -> int | None:
        """Effective ops over the whole run from the numpy reference (not from the tool)."""
        if self.net is None or self.data is None:
            return None
        counts = self.net.reference(self.data)
        return COST * sum(counts["spikes" if convention == "spikes" else "membrane_updates"])


def build_models(root: Path, count: int = 5, broken: int | None = 2, samples: int = 40, steps: int = 6,
                 features: int = 10, hidden: int = 12, seed: int = 11) -> list[Built]:
    """`count` models in root/net<i>/model.onnx with inputs.npz beside each; model `broken` is not ONNX at all."""
    rng = np.random.default_rng(seed)
    built = []
    for i in range(count):
        folder = root / f"net{i}"
        folder.mkdir(parents=True)
        model, inputs = folder / "model.onnx", folder / "inputs.npz"
        data = (rng.random((samples + i, steps, features)) < 0.35).astype(np.float32)
        np.savez(inputs, input=data)
        if i == broken:
            model.write_bytes(b"this is not an ONNX file")
            built.append(Built(f"net{i}", model, inputs, None))
            continue
        net = random_net(rng, [features, hidden, 4], reset="subtract" if i % 2 else "zero")
        onnx.save(leaky_stepwise(net) if i % 2 else leaky_unrolled(net, steps), model)
        built.append(Built(f"net{i}", model, inputs, net, data))
    return built



def fail_above_one(model_path: Path) -> None:
    """Rewrite a stepwise model so that onnxruntime itself fails on any batch holding an input value above 1 (an
    out-of-range Gather index) and computes the same figures otherwise: a failure only a worker's replay meets,
    which no check of the inputs before the replay catches."""
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(model_path)
    nodes = list(model.graph.node)
    at = next(i for i, node in enumerate(nodes) if "input" in node.input)  # the first synapse
    current = nodes[at].output[0]
    guarded = current + ".guarded"
    for node in nodes[at + 1:]:
        node.input[:] = [guarded if name == current else name for name in node.input]
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(2, np.float32), "guard.table"))
    guard = [
        helper.make_node("ReduceMax", ["input"], ["guard.max"], keepdims=0),
        helper.make_node("Cast", ["guard.max"], ["guard.index"], to=TensorProto.INT64),
        helper.make_node("Gather", ["guard.table", "guard.index"], ["guard.zero"]),
        helper.make_node("Add", [current, "guard.zero"], [guarded]),
    ]
    del model.graph.node[:]
    model.graph.node.extend(nodes[:at + 1] + guard + nodes[at + 1:])
    onnx.save(model, model_path)


def quadratic_if(features) -> str | None:
    """A kind registered from Python for the parallel tests (module level: worker processes import it by name)."""
    return None if features.nonlinear_terms == ("U·U",) else "no U² term"


def quadratic_model(folder: Path, samples: int = 90) -> tuple[Path, Path]:
    from builders import quadratic_stepwise

    rng = np.random.default_rng(2)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(quadratic_stepwise(rng.normal(size=(6, 4)).astype(np.float32)), folder / "model.onnx")
    np.save(folder / "inputs.npy", (rng.random((samples, 5, 6)) < 0.5).astype(np.float32))
    (folder / "qif.toml").write_text("[costs.qif]\nsubtract = 6\n")
    return folder / "model.onnx", folder / "inputs.npy"
