"""The benchmark's snnTorch networks: built here, exported to ONNX (unrolled and stepwise), and run under NeuroBench.

Run by benchmarks/run.py in an interpreter that has torch, snntorch and neurobench (the `samples` extra):

    python benchmarks/torch_workloads.py export OUT_DIR --net fc --samples 1000 --steps 100
    python benchmarks/torch_workloads.py neurobench OUT_DIR --net fc --inputs X.npy --batch-size 100

Weights and biases are multiples of 1/64 and inputs are 0/1 spikes, so every synaptic sum is exact in float32 and
onnxruntime reproduces PyTorch's membranes bit for bit whatever order it adds in: the tool and NeuroBench can then be
compared for exact equality. The network is rebuilt from its seed in each process (no pickles between processes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import snntorch as snn
import torch
from torch import nn

warnings.filterwarnings("ignore")  # the TorchScript exporter's deprecation and tracer warnings

from workloads import NETS, SEED  # noqa: E402  (sibling module; this file runs as a script)


def _dyadic(tensor: torch.Tensor, scale: float, generator: torch.Generator) -> None:
    """Fill with N(0, scale) rounded to multiples of 1/64: exact sums in float32."""
    with torch.no_grad():
        values = torch.randn(tensor.shape, generator=generator) * scale
        tensor.copy_(torch.round(values * 64) / 64)


class Core(nn.Module):
    """Synapses and neurons of one network. `forward` is what NeuroBench's SNNTorchModel drives: one step per call,
    state held in the neurons, (spk, mem) out; the neurons are direct children, as snntorch.utils.reset (called by
    NeuroBench before each batch) only resets those. The wrappers below drive `step` for the exports."""

    def __init__(self, net: str) -> None:
        super().__init__()
        self.net = net
        generator = torch.Generator().manual_seed(SEED)
        if net == "fc":
            self.syn1 = nn.Linear(100, 256)
            self.syn2 = nn.Linear(256, 10)
            self.pool = nn.Identity()
            scales = (0.45, 0.25)
        else:
            self.syn1 = nn.Conv2d(1, 8, 5, padding=2)
            self.syn2 = nn.Linear(288, 10)
            self.pool = nn.Sequential(nn.MaxPool2d(2), nn.Flatten())
            scales = (0.5, 0.3)
        for layer, scale in zip((self.syn1, self.syn2), scales, strict=True):
            _dyadic(layer.weight, scale, generator)
            _dyadic(layer.bias, scale / 4, generator)
        self.lif1 = snn.Leaky(beta=0.9, surrogate_disable=True)
        self.lif2 = snn.Leaky(beta=0.9, surrogate_disable=True)

    def step(self, x: torch.Tensor, mem1: torch.Tensor | None, mem2: torch.Tensor | None):
        """One time step; a None membrane starts at zero (traced as ConstantOfShape(Shape(current)))."""
        cur1 = self.syn1(x)
        spk1, mem1 = self.lif1(cur1, torch.zeros_like(cur1) if mem1 is None else mem1)
        cur2 = self.syn2(self.pool(spk1))
        spk2, mem2 = self.lif2(cur2, torch.zeros_like(cur2) if mem2 is None else mem2)
        return spk2, mem1, mem2

    def forward(self, x: torch.Tensor):
        spk1, _ = self.lif1(self.syn1(x))
        spk2, mem2 = self.lif2(self.syn2(self.pool(spk1)))
        return spk2, mem2


class Stepwise(nn.Module):
    """One time step, membranes in and out as graph inputs/outputs (`lifK.mem` → `lifK.mem.next`)."""

    def __init__(self, core: Core) -> None:
        super().__init__()
        self.core = core

    def forward(self, x, mem1, mem2):
        return self.core.step(x, mem1, mem2)


class Unrolled(nn.Module):
    """The time loop traced: (batch, steps, features…) → stacked output spikes."""

    def __init__(self, core: Core, steps: int) -> None:
        super().__init__()
        self.core = core
        self.steps = steps

    def forward(self, x):
        mem1 = mem2 = None
        out = []
        for t in range(self.steps):
            spk, mem1, mem2 = self.core.step(x[:, t], mem1, mem2)
            out.append(spk)
        return torch.stack(out, dim=1)


def export(out: Path, net: str, steps: int) -> dict:
    core = Core(net).eval()
    shape = NETS[net][0]
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with torch.no_grad():
        sample = torch.zeros((2, steps) + shape)
        torch.onnx.export(Unrolled(core, steps), (sample,), str(out / "unrolled.onnx"), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
        x0 = sample[:, 0]
        spk, mem1, mem2 = core.step(x0, None, None)
        mem1, mem2 = torch.zeros_like(mem1), torch.zeros_like(mem2)
        names = ["input", "lif1.mem", "lif2.mem"]
        torch.onnx.export(Stepwise(core), (x0, mem1, mem2), str(out / "stepwise.onnx"), dynamo=False,
                          opset_version=17, input_names=names,
                          output_names=["output", "lif1.mem.next", "lif2.mem.next"],
                          dynamic_axes={name: {0: "batch"} for name in names + ["output", "lif1.mem.next",
                                                                                 "lif2.mem.next"]})
    return {"exporter": "torchscript", "opset": 17, "export_seconds": round(time.perf_counter() - started, 3),
            "torch": torch.__version__, "snntorch": snn.__version__}


def run_neurobench(net: str, inputs: Path, batch_size: int) -> dict:
    """NeuroBench 2.3's own evaluation: DataLoader over the .npy, SNNTorchModel, NeuronOperations."""
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.workload import NeuronOperations
    from neurobench.models import SNNTorchModel
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_grad_enabled(False)
    data = torch.from_numpy(np.load(inputs))
    loader = DataLoader(TensorDataset(data, torch.zeros(len(data))), batch_size=batch_size, shuffle=False)
    model = SNNTorchModel(Core(net).eval())
    benchmark = Benchmark(model, loader, [], [], [[], [NeuronOperations]])
    started = time.perf_counter()
    results = benchmark.run(quiet=True)
    loop = time.perf_counter() - started
    return {"results": results["NeuronOperations"], "loop_seconds": round(loop, 3)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["export", "neurobench"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--net", choices=sorted(NETS), required=True)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--inputs", type=Path)
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args(argv)
    if args.action == "export":
        info = export(args.out, args.net, args.steps)
        print(json.dumps(info))
    else:
        print(json.dumps(run_neurobench(args.net, args.inputs, args.batch_size)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
