#!/usr/bin/env python3
"""Generate neuronops' sample ONNX exports of snnTorch networks, with reference figures.

For every case this script
  1. builds a small snnTorch network (fixed seed),
  2. makes recorded inputs shaped (batch, time, features...),
  3. exports it to ONNX in one style (unrolled / stepwise / functions) with one exporter (torchscript / dynamo),
  4. runs NeuroBench 2.3's NeuronOperations metric (its Benchmark + SNNTorchModel harness) on the same PyTorch
     model and data, and independently counts spikes and membrane updates per layer in PyTorch,
  5. checks that onnxruntime reproduces the PyTorch outputs,
  6. writes samples/<case>/{model.onnx[, model.onnx.data], inputs.npz, expected.json}, samples/index.json and
     samples/README.md.

Usage:  python samples/generate.py [--only SUBSTR] [--out samples] [--list]
Needs:  pip install '.[samples]'   (torch==2.13.0 first, CPU build; snntorch 1.0.0; neurobench 2.3.0; onnx,
        onnxruntime, onnxscript; onnxslim / onnxsim optional, for the __simplified variants)
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import snntorch as snn
import torch
import torch.nn as nn
from snntorch.functional import quant

HERE = Path(__file__).resolve().parent
logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" chatter of the dynamo exporter

# --------------------------------------------------------------------------------------------------------------------
# Neuron kinds

# state tensors each kind carries between steps, in the order its forward() takes them
KIND_STATES = {
    "leaky": ("mem",),
    "lapicque": ("mem",),
    "synaptic": ("syn", "mem"),
    "alpha": ("syn_exc", "syn_inh", "mem"),
    "rleaky": ("spk", "mem"),
    "rsynaptic": ("spk", "syn", "mem"),
}
# kinds whose forward() returns the spike as part of the state (spk, ...) rather than (spk, *state)
SPIKE_IN_STATE = {"rleaky", "rsynaptic"}
# NeuroBench 2.3.0's cost table (neurobench/metrics/workload/neuron_operations.py), keyed by lower-case class name
NB_COST = {
    "leaky": {"subtract": 4, "zero": 4},
    "synaptic": {"subtract": 6, "zero": 8},
    "lapicque": {"subtract": 11, "zero": 11},
    "alpha": {"subtract": 18, "zero": 24},
}
NEURON_CLASSES = {
    "leaky": snn.Leaky, "lapicque": snn.Lapicque, "synaptic": snn.Synaptic, "alpha": snn.Alpha,
    "rleaky": snn.RLeaky, "rsynaptic": snn.RSynaptic,
}


def kind_of(m: nn.Module) -> str:
    return type(m).__name__.lower()


def is_neuron(m: nn.Module) -> bool:
    return isinstance(m, snn.SpikingNeuron)


def clear_state(m: nn.Module) -> None:
    """Put a neuron's state buffers back to snnTorch's initial empty tensors (shape [0]).

    snnTorch keeps state in non-persistent buffers; after a PyTorch run they keep the last batch's shape, and an
    export made then can bake that batch size into the graph. Clearing them first keeps the batch dim free."""
    for s in KIND_STATES[kind_of(m)]:
        setattr(m, s, torch.zeros(0))


def init_state(m: nn.Module) -> tuple:
    """snnTorch's own state initialisation (reset_mem / init_leaky & co.): zeros shaped like the state buffer."""
    r = m.reset_mem()
    return tuple(r) if isinstance(r, tuple) else (r,)


# --------------------------------------------------------------------------------------------------------------------
# Networks and the wrappers around them


class Core(nn.Module):
    """A feed-forward stack of modules (synapses, pooling, ReLU, snnTorch neurons), run one time step at a time."""

    def __init__(self, layers: list[tuple[str, nn.Module]]):
        super().__init__()
        self.mods = nn.ModuleDict(layers)

    def neurons(self) -> list[tuple[str, nn.Module]]:
        return [(n, m) for n, m in self.mods.items() if is_neuron(m)]

    def state_names(self) -> list[str]:
        return [f"{n}.{s}" for n, m in self.neurons() for s in KIND_STATES[kind_of(m)]]

    def step(self, x, states=None):
        """One time step. states: {layer: tuple of state tensors} or None to use the layers' own buffers (as
        NeuroBench's harness does). Returns (output, new_states, spikes per layer)."""
        new, spikes = {}, {}
        for name, m in self.mods.items():
            if is_neuron(m):
                outs = m(x) if states is None else m(x, *states[name])
                spk = outs[0]
                new[name] = tuple(outs) if kind_of(m) in SPIKE_IN_STATE else tuple(outs[1:])
                spikes[name] = spk
                x = spk
            else:
                x = m(x)
        return x, new, spikes


class NBNet(nn.Module):
    """What NeuroBench's SNNTorchModel expects: forward(x_t) -> (spk, mem) with state kept in the layers, and a
    reset() that it calls once per batch."""

    def __init__(self, core: Core):
        super().__init__()
        self.core = core

    def reset(self):
        for _, m in self.core.neurons():
            m.reset_mem()

    def forward(self, x):
        out, new, _ = self.core.step(x)
        return out, list(new.values())[-1][-1]


class Unrolled(nn.Module):
    """forward(x: (batch, time, features...)) -> spikes (batch, time, out): the time loop inside the graph. With
    `membrane`, the last layer's membrane record instead of its spikes."""

    def __init__(self, core: Core, membrane: bool = False, time_first: bool = False, static_steps: int = 0):
        super().__init__()
        self.core, self.membrane, self.time_first, self.static_steps = core, membrane, time_first, static_steps
        self.last = core.neurons()[-1][0]

    def forward(self, x):
        states = {n: init_state(m) for n, m in self.core.neurons()}
        outs = []
        for t in range(self.static_steps or (x.shape[0] if self.time_first else x.shape[1])):
            step_input = x if self.static_steps else x[t] if self.time_first else x[:, t]
            o, states, _ = self.core.step(step_input, states)
            outs.append(states[self.last][-1] if self.membrane else o)
        return torch.stack(outs, dim=0 if self.time_first else 1)


class Stepwise(nn.Module):
    """forward(x_t, *states) -> (spk, *next_states): one time step, state as graph inputs / outputs. With
    `membrane`, the last layer's membrane instead of its spikes comes first."""

    def __init__(self, core: Core, membrane: bool = False):
        super().__init__()
        self.core, self.membrane = core, membrane
        self.layout = [(n, len(KIND_STATES[kind_of(m)])) for n, m in core.neurons()]

    def forward(self, x, *flat):
        states, i = {}, 0
        for n, k in self.layout:
            states[n] = tuple(flat[i:i + k])
            i += k
        o, new, _ = self.core.step(x, states)
        head = new[self.layout[-1][0]][-1] if self.membrane else o
        return (head, *[t for n, _ in self.layout for t in new[n]])


# --------------------------------------------------------------------------------------------------------------------
# Network definitions


@dataclass
class Net:
    name: str                      # <kind>_<reset>_<net>, or nb_unit_*
    description: str
    build: Callable[[], list]      # -> [(name, module)], called after torch.manual_seed(seed)
    inputs: Callable[[np.random.Generator], np.ndarray]
    batch_size: int
    seed: int = 0
    calibrate: bool = True         # scale each neuron layer's incoming weights for a moderate firing rate
    styles: tuple = (("unrolled", "torchscript"), ("unrolled", "dynamo"),
                     ("stepwise", "torchscript"), ("stepwise", "dynamo"))
    external_data: tuple = ()      # (style, exporter) pairs saved with model.onnx.data
    simplified: tuple = ()         # (style, exporter, tool) triples also written as __simplified cases
    fixed_batch: tuple = ()        # (style, exporter) pairs also exported with a fixed batch, as __fixedbatch cases
    returns_membrane: bool = False  # the export returns the last layer's membrane record, not its spikes (the
    #                                 exporter then drops that layer's unused spike compare)
    time_first: bool = False  # the unrolled export takes (time, batch, features...) and loops over x[t], as snnTorch's
    #                           tutorials write a forward (the recorded inputs stay (batch, time, ...))
    static_input: bool = False  # the unrolled export takes (batch, features...) and reads it at every step (a static
    #                             image, as snnTorch's tutorials feed MNIST); the inputs repeat one frame over time,
    #                             and inputs.npz holds that frame: (batch, features...)


def binary(shape, p):
    return lambda rng: (rng.random(shape) < p).astype(np.float32)


def floats(shape, scale=1.0):
    return lambda rng: (rng.random(shape) * scale).astype(np.float32)


def fc_stack(sizes, kind, reset, *, bias=True, beta=0.9, names=None, **kw):
    """Linear -> neuron, repeated; sizes = [in, h1, h2, ...]."""
    prefix = {"leaky": "lif", "synaptic": "syn", "lapicque": "lap", "alpha": "alp", "rleaky": "rlif",
              "rsynaptic": "rsyn"}[kind]
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
        layers.append((f"fc{i}", nn.Linear(a, b, bias=bias)))
        layers.append((f"{prefix}{i}", make_neuron(kind, reset, b, beta=beta, **kw)))
    return layers


def make_neuron(kind, reset, n, *, beta=0.9, **kw):
    if kind == "leaky":
        return snn.Leaky(beta=beta, reset_mechanism=reset, **kw)
    if kind == "synaptic":
        return snn.Synaptic(alpha=kw.pop("alpha", 0.8), beta=beta, reset_mechanism=reset, **kw)
    if kind == "lapicque":
        return snn.Lapicque(beta=beta, reset_mechanism=reset, **kw)
    if kind == "alpha":
        return snn.Alpha(alpha=kw.pop("alpha", 0.9), beta=kw.pop("alpha_beta", 0.8), reset_mechanism=reset, **kw)
    if kind == "rleaky":
        if kw.get("all_to_all") is False:  # one-to-one: an elementwise recurrent weight V
            return snn.RLeaky(beta=beta, reset_mechanism=reset, **kw)
        return snn.RLeaky(beta=beta, reset_mechanism=reset, all_to_all=True, linear_features=n, **kw)
    if kind == "rsynaptic":
        return snn.RSynaptic(alpha=kw.pop("alpha", 0.8), beta=beta, reset_mechanism=reset, all_to_all=True,
                             linear_features=n, **kw)
    raise ValueError(kind)


def conv_net():
    return [
        ("conv1", nn.Conv2d(1, 4, 3)),
        ("lif1", snn.Leaky(beta=0.85, reset_mechanism="subtract")),
        ("pool1", nn.MaxPool2d(2)),
        ("flat", nn.Flatten()),
        ("fc2", nn.Linear(4 * 3 * 3, 10)),
        ("lif2", snn.Leaky(beta=0.85, reset_mechanism="subtract")),
    ]


def conv_kind_net(kind, reset):
    """conv_net with another neuron kind: its state tensors are feature maps in the first layer."""
    prefix = {"synaptic": "syn", "lapicque": "lap", "alpha": "alp"}[kind]
    return lambda: [
        ("conv1", nn.Conv2d(1, 4, 3)),
        (f"{prefix}1", make_neuron(kind, reset, None)),
        ("pool1", nn.MaxPool2d(2)),
        ("flat", nn.Flatten()),
        ("fc2", nn.Linear(4 * 3 * 3, 10)),
        (f"{prefix}2", make_neuron(kind, reset, 10)),
    ]


def vecbeta_net():
    betas1 = torch.linspace(0.6, 0.95, 16)
    betas2 = torch.linspace(0.7, 0.9, 6)
    return [
        ("fc1", nn.Linear(14, 16)),
        ("lif1", snn.Leaky(beta=betas1, learn_beta=True, reset_mechanism="subtract")),
        ("fc2", nn.Linear(16, 6)),
        ("lif2", snn.Leaky(beta=betas2, learn_beta=True, reset_mechanism="subtract")),
    ]


def relu_net():
    return [
        ("fc1", nn.Linear(16, 12)),
        ("relu1", nn.ReLU()),
        ("fc2", nn.Linear(12, 8)),
        ("lif1", snn.Leaky(beta=0.9, reset_mechanism="subtract")),
    ]


LEAKY_STYLES = (("unrolled", "torchscript"), ("unrolled", "dynamo"), ("stepwise", "torchscript"),
                ("stepwise", "dynamo"))
FN = (("functions", "torchscript"), ("functions-unrolled", "torchscript"))
FN_BOTH = FN + (("functions", "dynamo"),)  # dynamo accepts export_modules_as_functions but writes no function

NETS: list[Net] = [
    # ---- Leaky first
    Net("leaky_sub_fc1", "1 layer fc, Leaky subtract, binary input",
        lambda: fc_stack([20, 16], "leaky", "subtract"), binary((8, 12, 20), 0.3), 4, seed=1,
        styles=LEAKY_STYLES + FN_BOTH),
    Net("leaky_zero_fc2", "2 layers fc (no bias), Leaky zero, sparse binary input (some membranes stay put)",
        lambda: fc_stack([16, 24, 8], "leaky", "zero", bias=False), binary((6, 15, 16), 0.12), 3, seed=2,
        styles=LEAKY_STYLES + FN, simplified=(("unrolled", "torchscript", "onnxslim"),),
        fixed_batch=(("unrolled", "dynamo"), ("stepwise", "dynamo"))),
    Net("leaky_sub_fc3", "3 layers fc, Leaky subtract, float input",
        lambda: fc_stack([12, 20, 14, 6], "leaky", "subtract", beta=0.8), floats((8, 10, 12), 1.0), 4, seed=3,
        external_data=(("unrolled", "dynamo"),), simplified=(("stepwise", "dynamo", "onnxsim"),)),
    Net("leaky_sub_conv", "Conv2d(1,4,3) + Leaky + MaxPool2d + Flatten + Linear + Leaky, 8x8 binary images",
        conv_net, binary((6, 10, 1, 8, 8), 0.3), 3, seed=4),
    Net("leaky_none_fc1", "Leaky reset none (NeuroBench: KeyError -> 0)",
        lambda: fc_stack([14, 12], "leaky", "none", beta=0.8), binary((6, 12, 14), 0.25), 3, seed=5),
    Net("leaky_sub_fc2_vecbeta", "2 layers fc, Leaky subtract, per-neuron learnable beta (learn_beta=True)",
        vecbeta_net, binary((6, 12, 14), 0.3), 3, seed=6),
    Net("leaky_sub_fc2_nodelay", "2 layers fc, Leaky subtract with reset_delay=False (reset in the same step)",
        lambda: fc_stack([16, 12, 6], "leaky", "subtract", reset_delay=False), binary((6, 12, 16), 0.3), 3,
        seed=7),
    Net("leaky_zero_fc1_nodelay", "1 layer fc (no bias), Leaky zero with reset_delay=False, sparse input",
        lambda: fc_stack([16, 10], "leaky", "zero", bias=False, reset_delay=False), binary((6, 12, 16), 0.15), 3,
        seed=8),
    Net("leaky_sub_fc2_thresh", "2 layers fc, Leaky subtract with thresholds 0.5 and 1.5 (the reset term is R*theta)",
        lambda: [("fc1", nn.Linear(16, 12)), ("lif1", snn.Leaky(beta=0.9, threshold=0.5)),
                 ("fc2", nn.Linear(12, 6)), ("lif2", snn.Leaky(beta=0.9, threshold=1.5))],
        binary((6, 12, 16), 0.3), 3, seed=9),
    # ---- NeuroBench's own unit test
    Net("nb_unit_ones", "NeuroBench unit test: Linear(20,5,bias=False)+Leaky(0.9), ones (5,10,20)",
        lambda: [("fc1", nn.Linear(20, 5, bias=False)), ("lif1", snn.Leaky(beta=0.9))],
        lambda rng: np.ones((5, 10, 20), np.float32), 5, seed=0, calibrate=False),
    Net("nb_unit_zeros", "NeuroBench unit test: Linear(20,5,bias=False)+Leaky(0.9), zeros (5,10,20)",
        lambda: [("fc1", nn.Linear(20, 5, bias=False)), ("lif1", snn.Leaky(beta=0.9))],
        lambda rng: np.zeros((5, 10, 20), np.float32), 5, seed=0, calibrate=False),
    # ---- other kinds
    Net("synaptic_sub_fc2", "2 layers fc, Synaptic subtract",
        lambda: fc_stack([16, 14, 6], "synaptic", "subtract"), binary((8, 12, 16), 0.3), 4, seed=11,
        styles=LEAKY_STYLES + FN),
    Net("synaptic_zero_fc2", "2 layers fc (no bias), Synaptic zero, sparse binary input",
        lambda: fc_stack([16, 12, 6], "synaptic", "zero", bias=False), binary((6, 12, 16), 0.15), 3, seed=12),
    Net("lapicque_sub_fc1", "1 layer fc, Lapicque subtract (beta given; R, C derived)",
        lambda: fc_stack([16, 12], "lapicque", "subtract"), binary((6, 12, 16), 0.3), 3, seed=13,
        styles=LEAKY_STYLES + FN),
    Net("alpha_zero_fc1", "1 layer fc, Alpha zero (alpha 0.9 > beta 0.8)",
        lambda: fc_stack([16, 12], "alpha", "zero"), binary((6, 12, 16), 0.3), 3, seed=14),
    Net("alpha_sub_fc1", "1 layer fc, Alpha subtract (alpha 0.9 > beta 0.8)",
        lambda: fc_stack([16, 12], "alpha", "subtract"), binary((6, 12, 16), 0.3), 3, seed=15,
        styles=LEAKY_STYLES + FN),
    Net("alpha_sub_fc2_memout", "2 layers fc, Alpha subtract; the export returns the last layer's membrane record, "
        "not its spikes (the exporter drops the unused spike compare)",
        lambda: fc_stack([16, 12, 6], "alpha", "subtract"), binary((6, 10, 16), 0.3), 3, seed=41,
        returns_membrane=True),
    Net("leaky_sub_fc2_memout", "2 layers fc, Leaky subtract; the export returns the last layer's membrane record, "
        "not its spikes (the exporter drops the unused spike compare)",
        lambda: fc_stack([16, 12, 6], "leaky", "subtract"), binary((6, 10, 16), 0.3), 3, seed=42,
        returns_membrane=True),
    Net("leaky_sub_fc2_statequant", "2 layers fc, Leaky subtract with state_quant (membrane on 4-bit uniform levels)",
        lambda: [("fc1", nn.Linear(16, 12)),
                 ("lif1", snn.Leaky(beta=0.9, state_quant=quant.state_quant(num_bits=4, uniform=True, threshold=1))),
                 ("fc2", nn.Linear(12, 6)),
                 ("lif2", snn.Leaky(beta=0.9, state_quant=quant.state_quant(num_bits=4, uniform=True, threshold=1)))],
        binary((6, 10, 16), 0.3), 3, seed=43),
    Net("synaptic_zero_fc2_statequant", "2 layers fc, Synaptic zero with state_quant (current and membrane on 3-bit "
        "uniform levels)",
        lambda: [("fc1", nn.Linear(16, 12)),
                 ("syn1", snn.Synaptic(alpha=0.8, beta=0.9, reset_mechanism="zero",
                                       state_quant=quant.state_quant(num_bits=3, uniform=True, threshold=1))),
                 ("fc2", nn.Linear(12, 6)),
                 ("syn2", snn.Synaptic(alpha=0.8, beta=0.9, reset_mechanism="zero",
                                       state_quant=quant.state_quant(num_bits=3, uniform=True, threshold=1)))],
        binary((6, 10, 16), 0.3), 3, seed=44),
    Net("leaky_sub_fc2_timefirst", "2 layers fc, Leaky subtract; the unrolled export takes (time, batch, features) and "
        "loops over x[t], as snnTorch's tutorials write a forward (the recorded inputs are (batch, time, features))",
        lambda: fc_stack([16, 12, 6], "leaky", "subtract"), binary((6, 10, 16), 0.3), 3, seed=45, time_first=True,
        styles=(("unrolled", "torchscript"), ("unrolled", "dynamo"))),
    Net("leaky_sub_fc2_static", "2 layers fc, Leaky subtract; the unrolled export takes (batch, features) and reads it "
        "at every step (a static image, as snnTorch's tutorials feed MNIST); inputs.npz holds that frame",
        lambda: fc_stack([16, 12, 6], "leaky", "subtract"),
        lambda rng: np.repeat(binary((6, 1, 16), 0.3)(rng), 10, axis=1), 3, seed=46, static_input=True,
        styles=(("unrolled", "torchscript"), ("unrolled", "dynamo"))),
    Net("rleaky_sub_fc1", "RLeaky subtract, all-to-all Linear recurrence (NeuroBench: KeyError -> 0)",
        lambda: fc_stack([16, 12], "rleaky", "subtract"), binary((6, 12, 16), 0.3), 3, seed=16,
        styles=LEAKY_STYLES + FN),
    Net("rleaky_zero_fc1_onetoone", "RLeaky zero, one-to-one recurrence (all_to_all=False, elementwise V=0.5)",
        lambda: fc_stack([16, 12], "rleaky", "zero", all_to_all=False, V=0.5), binary((6, 12, 16), 0.3), 3,
        seed=19),
    Net("rleaky_none_fc1_onetoone", "RLeaky reset none, one-to-one recurrence (all_to_all=False, elementwise V=0.5)",
        lambda: fc_stack([16, 12], "rleaky", "none", all_to_all=False, V=0.5), binary((6, 12, 16), 0.25), 3,
        seed=31),
    Net("rleaky_sub_fc1_onetoone", "RLeaky subtract, one-to-one recurrence (all_to_all=False, elementwise V=0.5)",
        lambda: fc_stack([16, 12], "rleaky", "subtract", all_to_all=False, V=0.5), binary((6, 12, 16), 0.3), 3,
        seed=32),
    Net("rleaky_sub_fc1_onetoone_nodelay", "RLeaky subtract, one-to-one recurrence, reset_delay=False (V·S_{t-1} reads "
        "the spike before the same-step reset)",
        lambda: fc_stack([16, 12], "rleaky", "subtract", all_to_all=False, V=0.5, reset_delay=False),
        binary((6, 12, 16), 0.3), 3, seed=47),
    Net("rsynaptic_sub_fc1", "RSynaptic subtract, all-to-all Linear recurrence (NeuroBench: KeyError -> 0)",
        lambda: fc_stack([16, 12], "rsynaptic", "subtract"), binary((6, 12, 16), 0.3), 3, seed=17,
        styles=LEAKY_STYLES + FN),
    # ---- the rest of the kind x reset matrix, and conv networks of other kinds
    Net("synaptic_none_fc1", "1 layer fc, Synaptic reset none (NeuroBench: KeyError -> 0)",
        lambda: fc_stack([16, 12], "synaptic", "none"), binary((6, 12, 16), 0.25), 3, seed=20),
    Net("lapicque_zero_fc1", "1 layer fc, Lapicque zero",
        lambda: fc_stack([16, 12], "lapicque", "zero"), binary((6, 12, 16), 0.3), 3, seed=21),
    Net("lapicque_none_fc1", "1 layer fc, Lapicque reset none (NeuroBench: KeyError -> 0)",
        lambda: fc_stack([16, 12], "lapicque", "none"), binary((6, 12, 16), 0.25), 3, seed=22),
    Net("leaky_sub_fc2_beta0", "2 layers fc, Leaky subtract with beta=0 (nothing kept but what the reset takes off)",
        lambda: fc_stack([16, 20, 8], "leaky", "subtract", beta=0.0), binary((6, 12, 16), 0.4), 3, seed=94),
    Net("lapicque_sub_fc2_nobias", "2 layers fc (no bias), Lapicque subtract: its input scaling Δt/C is a Mul after "
        "a bare MatMul, which onnxruntime's optimiser folds into FusedMatMul's alpha",
        lambda: fc_stack([16, 20, 8], "lapicque", "subtract", bias=False), binary((6, 12, 16), 0.3), 3, seed=93),
    Net("alpha_none_fc1", "1 layer fc, Alpha reset none (NeuroBench: KeyError -> 0)",
        lambda: fc_stack([16, 12], "alpha", "none"), binary((6, 12, 16), 0.25), 3, seed=23),
    Net("rleaky_none_fc1", "RLeaky reset none, all-to-all Linear recurrence (NeuroBench: KeyError -> 0)",
        lambda: fc_stack([16, 12], "rleaky", "none"), binary((6, 12, 16), 0.25), 3, seed=24),
    Net("rsynaptic_zero_fc1", "RSynaptic zero, all-to-all Linear recurrence (NeuroBench: KeyError -> 0)",
        lambda: fc_stack([16, 12], "rsynaptic", "zero"), binary((6, 12, 16), 0.3), 3, seed=25),
    Net("rsynaptic_none_fc1", "RSynaptic reset none, all-to-all Linear recurrence (NeuroBench: KeyError -> 0)",
        lambda: fc_stack([16, 12], "rsynaptic", "none"), binary((6, 12, 16), 0.25), 3, seed=26),
    Net("synaptic_sub_conv", "Conv2d(1,4,3) + Synaptic + MaxPool2d + Flatten + Linear + Synaptic, 8x8 binary images",
        conv_kind_net("synaptic", "subtract"), binary((6, 10, 1, 8, 8), 0.3), 3, seed=27),
    Net("alpha_zero_conv", "Conv2d(1,4,3) + Alpha + MaxPool2d + Flatten + Linear + Alpha, 8x8 binary images",
        conv_kind_net("alpha", "zero"), binary((6, 10, 1, 8, 8), 0.3), 3, seed=28),
    Net("lapicque_sub_conv", "Conv2d(1,4,3) + Lapicque + MaxPool2d + Flatten + Linear + Lapicque, 8x8 binary images",
        conv_kind_net("lapicque", "subtract"), binary((6, 10, 1, 8, 8), 0.3), 3, seed=29),
    Net("rleaky_sub_conv", "Conv2d(1,4,3) + RLeaky (recurrent Conv2d 4->4, 3x3) + MaxPool2d + Flatten + Linear + Leaky",
        lambda: [("conv1", nn.Conv2d(1, 4, 3)),
                 ("rlif1", snn.RLeaky(beta=0.85, all_to_all=True, conv2d_channels=4, kernel_size=3)),
                 ("pool1", nn.MaxPool2d(2)), ("flat", nn.Flatten()), ("fc2", nn.Linear(4 * 3 * 3, 10)),
                 ("lif2", snn.Leaky(beta=0.85))],
        binary((6, 10, 1, 8, 8), 0.3), 3, seed=33),
    Net("synaptic_sub_fc2_vecparams", "2 layers fc, Synaptic subtract, per-neuron learnable alpha and beta",
        lambda: [("fc1", nn.Linear(14, 12)),
                 ("syn1", snn.Synaptic(alpha=torch.linspace(0.5, 0.9, 12), beta=torch.linspace(0.6, 0.95, 12),
                                       learn_alpha=True, learn_beta=True)),
                 ("fc2", nn.Linear(12, 6)),
                 ("syn2", snn.Synaptic(alpha=torch.linspace(0.7, 0.8, 6), beta=torch.linspace(0.8, 0.9, 6)))],
        binary((6, 12, 14), 0.3), 3, seed=30),
    Net("leaky_sub_relumix", "fc -> ReLU -> fc -> Leaky subtract (NeuroBench: AttributeError on the ReLU -> 0)",
        relu_net, floats((6, 10, 16), 1.0), 3, seed=18),
]


# --------------------------------------------------------------------------------------------------------------------
# Running PyTorch: counts per layer


def torch_run(core: Core, x: torch.Tensor, batch: int):
    """Run the network like NeuroBench's harness (per batch, zero state, loop over axis 1) with explicit state, and
    count per layer: spikes, membrane updates (B*N at step 0, then count_nonzero(U_t - U_{t-1})). Also returns the
    unrolled outputs and per-step (input, states, outputs) for ONNX comparisons."""
    core = copy.deepcopy(core)
    for _, m in core.neurons():
        clear_state(m)
    names = [n for n, _ in core.neurons()]
    counts = {n: {"spikes": 0, "membrane_updates": 0, "neurons_per_sample": None} for n in names}
    outputs, step_records = [], []
    with torch.no_grad():
        for b0 in range(0, x.shape[0], batch):
            xb = x[b0:b0 + batch]
            for _, m in core.neurons():
                clear_state(m)
            states = {n: init_state(m) for n, m in core.neurons()}
            prev_mem = {}
            outs, recs = [], []
            for t in range(xb.shape[1]):
                st_in = states
                o, states, spikes = core.step(xb[:, t], states)
                recs.append((xb[:, t], st_in, o, states))
                outs.append(o)
                for n in names:
                    mem = states[n][-1]
                    c = counts[n]
                    c["neurons_per_sample"] = mem[0].numel()
                    c["spikes"] += int(torch.count_nonzero(spikes[n]).item())
                    if t == 0:
                        c["membrane_updates"] += mem.numel()
                    else:
                        c["membrane_updates"] += int(torch.count_nonzero(mem - prev_mem[n]).item())
                    prev_mem[n] = mem
            outputs.append(torch.stack(outs, 1))
            step_records.append(recs)
    return counts, torch.cat(outputs), step_records


def calibrate(core: Core, x: torch.Tensor, batch: int, target=0.2):
    """Scale the weights feeding each neuron layer (in order) so that its firing rate is near `target`."""
    gains = [0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8.0, 11.0]
    mods = list(core.mods.items())
    T = x.shape[1]
    for i, (name, m) in enumerate(mods):
        if not is_neuron(m):
            continue
        syn = next((mm for _, mm in reversed(mods[:i]) if isinstance(mm, (nn.Linear, nn.Conv2d))), None)
        if syn is None:
            continue
        w0 = syn.weight.detach().clone()
        b0 = None if syn.bias is None else syn.bias.detach().clone()
        best = None
        for g in gains:
            with torch.no_grad():
                syn.weight.copy_(w0 * g)
                if b0 is not None:
                    syn.bias.copy_(b0 * g)
            counts, _, _ = torch_run(core, x, batch)
            c = counts[name]
            rate = c["spikes"] / (x.shape[0] * T * c["neurons_per_sample"])
            if best is None or abs(rate - target) < abs(best[1] - target):
                best = (g, rate)
        with torch.no_grad():
            syn.weight.copy_(w0 * best[0])
            if b0 is not None:
                syn.bias.copy_(b0 * best[0])


def neurobench_run(core: Core, x: torch.Tensor, batch: int):
    """NeuroBench 2.3's NeuronOperations through its own Benchmark and SNNTorchModel harness."""
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.workload import NeuronOperations
    from neurobench.models import SNNTorchModel
    from torch.utils.data import DataLoader, TensorDataset

    net = NBNet(copy.deepcopy(core))
    for _, m in net.core.neurons():
        clear_state(m)
    model = SNNTorchModel(net)
    loader = DataLoader(TensorDataset(x, torch.zeros(x.shape[0])), batch_size=batch, shuffle=False)
    bench = Benchmark(model, loader, [], [], [[], [NeuronOperations]])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), torch.no_grad():
        res = bench.run(quiet=False)
    bench.workload_metric_manager.cleanup_hooks(model)
    errors = sorted(set(re.findall(r"Error running workload metric 'NeuronOperations': (.*)", out.getvalue())))
    return res["NeuronOperations"], errors


# --------------------------------------------------------------------------------------------------------------------
# Export


def export(core: Core, style: str, exporter: str, x: torch.Tensor, batch: int, path: Path, external: bool,
           dynamic: bool = True, membrane: bool = False, time_first: bool = False, static_input: bool = False):
    """Export one style with one exporter. Returns (opset, notes)."""
    core = copy.deepcopy(core).eval()
    for _, m in core.neurons():
        clear_state(m)
    notes = []
    xb = x[:batch]
    functions = style.startswith("functions")
    base = "unrolled" if style in ("unrolled", "functions-unrolled") else "stepwise"
    if base == "unrolled":
        module = Unrolled(core, membrane, time_first, xb.shape[1] if static_input else 0).eval()
        args = (xb.transpose(0, 1).contiguous(),) if time_first else (xb[:, 0],) if static_input else (xb,)
        in_names, out_names = ["input"], ["output"]
    else:
        module = Stepwise(core, membrane).eval()
        # zero state of the right shapes: one PyTorch step tells them
        with torch.no_grad():
            c2 = copy.deepcopy(core)
            _, st, _ = c2.step(xb[:, 0], {n: init_state(m) for n, m in c2.neurons()})
        flat = [torch.zeros_like(t) for n, _ in module.layout for t in st[n]]
        args = (xb[:, 0], *flat)
        in_names = ["input"] + core.state_names()
        out_names = ["output"] + [f"{s}.next" for s in core.state_names()]
    for _, m in core.neurons():
        clear_state(m)
    fn_classes = {type(m) for _, m in core.neurons()} if functions else False
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            opset = 17
            dyn = {n: {1 if time_first else 0: "batch"} for n in in_names + out_names} if dynamic else None
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset, input_names=in_names,
                              output_names=out_names, dynamic_axes=dyn,
                              export_modules_as_functions=fn_classes)
            renamed = restore_output_names(path, out_names)
            if renamed:
                notes.append("graph output names restored after export (" + ", ".join(renamed) + "): with"
                             " export_modules_as_functions the TorchScript exporter gives the requested names to the"
                             " function's inner outputs and numbers the graph outputs")
        else:
            opset = 18
            batch_dim = torch.export.Dim("batch", min=1, max=1024)
            # stepwise forward(x, *flat): dynamic_shapes mirror the signature, the varargs as one tuple
            dyn_shapes = (({1 if time_first else 0: batch_dim},) if len(args) == 1
                          else ({0: batch_dim}, tuple({0: batch_dim} for _ in args[1:])))
            kwargs = {}
            if functions:
                kwargs["export_modules_as_functions"] = fn_classes
            prog = None
            if not dynamic:
                dyn_shapes = None
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    prog = torch.onnx.export(module, args, dynamo=True, opset_version=opset, input_names=in_names,
                                             output_names=out_names, dynamic_shapes=dyn_shapes, **kwargs)
            except Exception as e:  # noqa: BLE001 - record why the batch dim could not stay dynamic
                notes.append(f"dynamic batch refused ({summarize_error(e)}); exported with a fixed"
                             f" batch of {batch}")
                for _, m in core.neurons():
                    clear_state(m)
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    prog = torch.onnx.export(module, args, dynamo=True, opset_version=opset, input_names=in_names,
                                             output_names=out_names, **kwargs)
            strip_stack_traces(prog)
            prog.save(str(path), external_data=external)
    return opset, notes


def restore_output_names(path: Path, names: list[str]) -> list[str]:
    """Rename the graph outputs to `names` (in order) where the exporter numbered them instead."""
    import onnx

    m = onnx.load(str(path))
    mapping = {o.name: n for o, n in zip(m.graph.output, names, strict=True) if o.name != n}
    if not mapping:
        return []
    for node in m.graph.node:
        for i, o in enumerate(node.output):
            if o in mapping:
                node.output[i] = mapping[o]
        for i, x in enumerate(node.input):
            if x in mapping:
                node.input[i] = mapping[x]
    for o in m.graph.output:
        o.name = mapping.get(o.name, o.name)
    for vi in m.graph.value_info:
        vi.name = mapping.get(vi.name, vi.name)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return [f"{k} -> {v}" for k, v in mapping.items()]


def strip_stack_traces(prog) -> None:
    """Drop the dynamo exporter's `pkg.torch.onnx.stack_trace` node metadata before saving: it holds this machine's
    file paths (files would differ per checkout) and is most of an unrolled graph's size. Scopes and the rest stay.
    Done on the exporter's own in-memory model, so that ONNXProgram.save lays out external data as it does by
    default."""
    from onnx_ir.traversal import RecursiveGraphIterator

    graphs = [prog.model.graph] + [f.graph if hasattr(f, "graph") else f for f in prog.model.functions.values()]
    for g in graphs:
        for node in RecursiveGraphIterator(g):
            node.metadata_props.pop("pkg.torch.onnx.stack_trace", None)


def summarize_error(e: BaseException, n=400) -> str:
    """The root cause of an export error in one line, with the user-code line that raised it when torch names it."""
    root = e
    while root.__cause__ is not None and root.__cause__ is not root:
        root = root.__cause__
    text = str(root)
    msg = f"{type(root).__name__}: {first_line(root, n)}"
    m = re.search(r'The following call raised this error:\s*\n\s*File "([^"]+)", line (\d+), in \w+\s*\n\s*(.+)', text)
    if m:
        path = m.group(1)
        short = path.split("site-packages/")[-1]
        msg += f" — at {short}:{m.group(2)} `{m.group(3).strip()}`"
    return msg


def first_line(e: BaseException, n=300) -> str:
    s = str(e).strip().splitlines()
    s = s[0] if s else ""
    return s[:n]


def simplify(src: Path, dst: Path, tool: str) -> str:
    import onnx

    m = onnx.load(str(src))
    if tool == "onnxslim":
        import onnxslim

        out = onnxslim.slim(m)
        version = f"onnxslim {onnxslim.__version__}"
    else:
        import onnxsim

        out, ok = onnxsim.simplify(m)
        if not ok:
            raise RuntimeError("onnxsim could not validate the simplified model")
        version = f"onnxsim {onnxsim.__version__}"
    onnx.save(out, str(dst))
    return version


def graph_batch(path: Path, time_first: bool = False):
    """The fixed batch size of the graph's first input, or None when it is symbolic."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    d = m.graph.input[0].type.tensor_type.shape.dim[1 if time_first else 0]
    return d.dim_value if d.HasField("dim_value") else None


# --------------------------------------------------------------------------------------------------------------------
# onnxruntime vs PyTorch


def ort_compare(path: Path, style: str, core: Core, x: torch.Tensor, batch: int, torch_out, step_records,
                fixed_batch, membrane: bool = False, time_first: bool = False, static_input: bool = False):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    in_names = [i.name for i in sess.get_inputs()]
    last = core.neurons()[-1][0]
    max_diff, mismatched = 0.0, 0
    ort_updates = {}

    def cmp(a, b):
        nonlocal max_diff, mismatched
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            raise RuntimeError(f"onnxruntime output shape {a.shape} != torch {b.shape}")
        d = np.abs(a - b)
        max_diff = max(max_diff, float(d.max(initial=0.0)))
        mismatched += int((d > 1e-5 + 1e-6 * np.abs(b)).sum())  # a flipped spike is off by 1

    if style in ("unrolled", "functions-unrolled"):
        for b0 in range(0, x.shape[0], batch):
            xb = x[b0:b0 + batch].numpy()
            if static_input:
                xb = np.ascontiguousarray(xb[:, 0])
            if fixed_batch and xb.shape[0] != fixed_batch:
                raise RuntimeError("samples not a multiple of the fixed batch")
            (o,) = sess.run(None, {in_names[0]: np.ascontiguousarray(xb.transpose(1, 0, *range(2, xb.ndim)))
                                   if time_first else xb})
            if time_first:
                o = o.transpose(1, 0, *range(2, o.ndim))
            if membrane:  # the last layer's membrane record, from the PyTorch run's states
                want = torch.stack([st_out[last][-1] for _, _, _, st_out in step_records[b0 // batch]], 1)
                cmp(o, want.numpy())
            else:
                cmp(o, torch_out[b0:b0 + batch].numpy())
    else:
        state_names = core.state_names()
        mem_idx = [i for i, s in enumerate(state_names) if s.endswith(".mem")]
        for recs in step_records:
            feeds_state = None
            prev = None
            for t, (xt, _st_in, o, st_out) in enumerate(recs):
                flat_out = [s for n, _ in core.neurons() for s in st_out[n]]
                if feeds_state is None:
                    feeds_state = [np.zeros(s.shape, np.float32) for s in flat_out]
                feed = {in_names[0]: xt.numpy()}
                # a state input no node reads (Alpha's membrane with reset none) is pruned by the TorchScript exporter
                feed.update((name, value) for name, value in zip(state_names, feeds_state, strict=True)
                            if name in in_names)
                res = sess.run(None, feed)
                cmp(res[0], (st_out[last][-1] if membrane else o).numpy())
                for a, b in zip(res[1:], flat_out, strict=True):
                    cmp(a, b.numpy())
                feeds_state = list(res[1:])
                for k in mem_idx:
                    mem = res[1 + k]
                    key = state_names[k]
                    ort_updates.setdefault(key, 0)
                    ort_updates[key] += mem.size if t == 0 else int(np.count_nonzero(mem - prev[k]))
                prev = res[1:]
    return {"max_abs_diff_vs_torch": max_diff, "mismatched_outputs": mismatched}, ort_updates


# --------------------------------------------------------------------------------------------------------------------
# One case


def fmt_number(v):
    if v is None:
        return None
    return int(v) if float(v).is_integer() else float(v)


def totals(layers, samples, convention):
    dense = eff = 0.0
    for L in layers:
        cost = NB_COST.get(L["kind"], {}).get(L["reset"])
        if cost is None:
            return {"neuron_dense_ops": None, "effective_neuron_ops": None}
        dense += cost * L["neurons_per_sample"] * L["time_steps"]
        n = L["membrane_updates"] if convention == "neurobench" else L["spikes"]
        eff += cost * n
    return {"neuron_dense_ops": fmt_number(dense), "effective_neuron_ops": eff / samples}


@dataclass
class Prepared:
    net: Net
    core: Core
    x: torch.Tensor
    counts: dict
    torch_out: torch.Tensor
    step_records: list
    nb: object
    nb_errors: list
    layers: list = field(default_factory=list)


def prepare(net: Net) -> Prepared:
    torch.manual_seed(net.seed)
    rng = np.random.default_rng(1000 + net.seed)
    core = Core(net.build()).eval()
    for p in core.parameters():
        p.requires_grad_(False)
    x = torch.from_numpy(net.inputs(rng))
    if net.calibrate:
        calibrate(core, x, net.batch_size)
    counts, out, recs = torch_run(core, x, net.batch_size)
    nb, nb_errors = neurobench_run(core, x, net.batch_size)
    layers = []
    for n, m in core.neurons():
        c = counts[n]
        layers.append({"name": n, "kind": kind_of(m), "reset": m._reset_mechanism,
                       "neurons_per_sample": c["neurons_per_sample"], "time_steps": int(x.shape[1]),
                       "spikes": c["spikes"], "membrane_updates": c["membrane_updates"]})
    return Prepared(net, core, x, counts, out, recs, nb, nb_errors, layers)


def write_case(p: Prepared, style: str, exporter: str, out_dir: Path, variant: str | None = None):
    net = p.net
    style_name = "functions" if style.startswith("functions") else style
    case = case_name(net, style, exporter, variant)
    simplified = variant.split(":", 1)[1] if variant and variant.startswith("simplified:") else None
    d = out_dir / case
    tmp = Path(tempfile.mkdtemp(prefix="nops-"))
    try:
        external = (style, exporter) in net.external_data and not simplified
        opset, notes = export(p.core, style, exporter, p.x, net.batch_size, tmp / "model.onnx", external,
                              dynamic=variant != "fixedbatch", membrane=net.returns_membrane,
                              time_first=net.time_first, static_input=net.static_input)
        if variant == "fixedbatch":
            notes.append(f"exported on purpose without a dynamic batch (batch {net.batch_size} fixed in the graph)")
        if simplified:
            raw = tmp / "raw"
            raw.mkdir()
            (tmp / "model.onnx").rename(raw / "model.onnx")
            if (tmp / "model.onnx.data").exists():
                (tmp / "model.onnx.data").rename(raw / "model.onnx.data")
            tool_version = simplify(raw / "model.onnx", tmp / "model.onnx", simplified)
            shutil.rmtree(raw)
            notes.append(f"simplified with {tool_version}")
        has_data = (tmp / "model.onnx.data").exists()
        fixed = graph_batch(tmp / "model.onnx", net.time_first)
        if fixed and p.x.shape[0] % fixed:
            raise RuntimeError(f"graph fixes batch {fixed}, which does not divide {p.x.shape[0]} samples")
        ort_cmp, ort_updates = ort_compare(tmp / "model.onnx", style, p.core, p.x, net.batch_size, p.torch_out,
                                           p.step_records, fixed, net.returns_membrane, net.time_first,
                                           net.static_input)
        for L in p.layers:  # stepwise: the membrane counts replayed through onnxruntime must equal PyTorch's
            key = f"{L['name']}.mem"
            if key in ort_updates and ort_updates[key] != L["membrane_updates"]:
                raise RuntimeError(f"onnxruntime membrane updates {ort_updates[key]} != torch"
                                   f" {L['membrane_updates']} for {key}")
        if ort_cmp["mismatched_outputs"]:
            raise RuntimeError(f"onnxruntime disagrees with torch: {ort_cmp}")

        samples = int(p.x.shape[0])
        nb_tot = totals(p.layers, samples, "neurobench")
        sp_tot = totals(p.layers, samples, "spikes")
        if isinstance(p.nb, dict):
            reported = {k: float(v) for k, v in p.nb.items()}
            if not (math.isclose(reported["Effective Neuron Ops"], nb_tot["effective_neuron_ops"], rel_tol=1e-12)
                    and math.isclose(reported["Neuron Dense Ops"], nb_tot["neuron_dense_ops"], rel_tol=1e-12)):
                raise RuntimeError(f"NeuroBench {reported} != formula on PyTorch counts {nb_tot}")
            source = "neurobench 2.3.0 on snntorch 1.0.0 (and equal to the formula on PyTorch counts)"
        else:
            reported = float(p.nb)
            why = "; ".join(p.nb_errors) if p.nb_errors else "no error text"
            if nb_tot["neuron_dense_ops"] is not None:
                source = f"formula on PyTorch counts; NeuroBench 2.3.0 reported 0.0 (its metric raised: {why})"
            else:
                source = (f"PyTorch counts only, totals null: NeuroBench's table has no cost for a layer here;"
                          f" NeuroBench 2.3.0 reported 0.0 (its metric raised: {why})")
        exp = {
            "case": case,
            "description": net.description + (f" [{notes[-1]}]" if simplified else ""),
            "model": "model.onnx",
            "inputs": "inputs.npz",
            "input_layout": "(batch, features...)" if net.static_input else "(batch, time, features...)",
            **({"model_input_layout": "(time, batch, features...)"} if net.time_first else {}),
            "time_axis": 1,
            "style": style_name,
            "exporter": exporter,
            "opset": opset,
            "external_data": has_data,
            "fixed_batch_in_graph": fixed is not None,
            "samples": samples,
            "batch_size": int(fixed or net.batch_size),
            "steps": int(p.x.shape[1]),
            "expected": {"neurobench": nb_tot, "spikes": sp_tot},
            "neurobench_reported": reported,
            "source": source,
            "layers": p.layers,
            "ort_vs_torch": ort_cmp,
        }
        if notes:
            exp["notes"] = notes
        if simplified:
            exp["simplifier"] = notes[-1].replace("simplified with ", "")
        if style.startswith("functions"):
            exp["functions_of"] = "unrolled" if style == "functions-unrolled" else "stepwise"
        if style.startswith("functions"):
            import onnx

            m = onnx.load(str(tmp / "model.onnx"), load_external_data=False)
            fn_nodes = [n.op_type for n in m.graph.node if n.domain.startswith("snntorch")]
            if not fn_nodes:
                raise RuntimeError("export_modules_as_functions wrote no function nodes (the exporter ignored it)")
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        shutil.move(str(tmp / "model.onnx"), d / "model.onnx")
        if has_data:
            shutil.move(str(tmp / "model.onnx.data"), d / "model.onnx.data")
        recorded = p.x[:, 0] if net.static_input else p.x  # a static input: the frame every step reads
        np.savez_compressed(d / "inputs.npz", input=recorded.numpy().astype(np.float32))
        (d / "expected.json").write_text(json.dumps(exp, indent=1) + "\n")
        return exp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------------------------------
# Index and README


README_SAMPLE = "leaky_zero_fc2__unrolled__torchscript"  # the README's and CI's example: 2-layer Leaky, unrolled


def write_index(out_dir: Path, failures: dict):
    cases = []
    for d in sorted(p for p in out_dir.iterdir() if (p / "expected.json").is_file()):
        e = json.loads((d / "expected.json").read_text())
        size = sum(f.stat().st_size for f in d.iterdir() if f.name.startswith("model.onnx"))
        cases.append({
            "case": e["case"], "path": d.name, "description": e["description"], "style": e["style"],
            "exporter": e["exporter"], "opset": e["opset"], "external_data": e["external_data"],
            "fixed_batch_in_graph": e["fixed_batch_in_graph"], "simplifier": e.get("simplifier"),
            "kinds": sorted({L["kind"] for L in e["layers"]}), "resets": sorted({L["reset"] for L in e["layers"]}),
            "layers": len(e["layers"]), "samples": e["samples"], "steps": e["steps"],
            "neurobench_reported_zero": e["neurobench_reported"] == 0.0, "model_bytes": size,
        })
    index = {
        "schema": "neuronops.samples/1",
        "generator": "samples/generate.py",
        "versions": versions(),
        "readme_sample": README_SAMPLE if any(c["path"] == README_SAMPLE for c in cases) else None,
        "cases": [c["path"] for c in cases],
        "details": cases,
        "not_exported": [{"case": k, "error": v} for k, v in sorted(failures.items())],
    }
    (out_dir / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    return index


def versions():
    import onnx
    import onnxruntime

    v = {"torch": torch.__version__, "snntorch": snn.__version__, "onnx": onnx.__version__,
         "onnxruntime": onnxruntime.__version__}
    for mod in ("neurobench", "onnxscript", "onnxslim", "onnxsim"):
        try:
            v[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            try:
                from importlib.metadata import version

                v[mod] = version(mod)
            except Exception:  # noqa: BLE001
                pass
    return v


README_HEAD = """\
# samples/

ONNX exports of small snnTorch networks, with recorded inputs and the figures they must give. Generated by
[`generate.py`](generate.py) — deterministic (fixed seeds); do not edit the case folders by hand.

Each case folder `<kind>_<reset>_<net>__<style>__<exporter>` holds

- `model.onnx` (and `model.onnx.data` where the weights are stored outside the model),
- `inputs.npz` — key `input`, float32, layout (batch, time, features…), time on axis 1 (a model that reads one
  static input at every step: (batch, features…), its `input_layout` says so),
- `expected.json` — how the export was made (`style`, `exporter`, `opset`, `external_data`,
  `fixed_batch_in_graph`, `batch_size`), the expected totals **per sample** in both conventions
  (`expected.neurobench`, `expected.spikes`: `neuron_dense_ops`, `effective_neuron_ops`), what NeuroBench 2.3.0
  itself reported (`neurobench_reported`: its dict, or `0.0` where it failed), where the figures come from
  (`source`), the per-layer counts over the whole run (`layers[]`: `kind`, `reset`, `neurons_per_sample`,
  `time_steps`, `spikes`, `membrane_updates`), and how closely onnxruntime reproduces PyTorch (`ort_vs_torch`).

A few cases carry extra keys: `notes` (anything done to the export after the exporter, or a fallback),
`simplifier` (for `__simplified` cases) and `functions_of` (`stepwise` / `unrolled`, for `functions` cases).
The layout is the one of `../shared/conformance`, so its checker runs on these too:
`python ../shared/conformance/check.py samples`.

`index.json` has `cases` (the folder names), `details` (one record per case: style, exporter, kinds, resets,
sizes…), `readme_sample` (the case that the top-level README and CI use as their example), `not_exported` (the
combinations that could not be exported, with the error) and the `versions` of everything used.

Dynamo exports have their `pkg.torch.onnx.stack_trace` node metadata removed before saving (it holds the
generating machine's file paths, and is most of an unrolled graph's size); scopes and other metadata stay.

## How the figures are made

1. The network is built under `torch.manual_seed`; the weights feeding each neuron layer are scaled (a fixed list
   of gains, deterministic) so that each layer fires at a moderate rate (about 20 %), except in the `nb_unit_*`
   cases which are NeuroBench's own unit test.
2. **NeuroBench**: the same PyTorch network runs under NeuroBench 2.3.0's own `Benchmark` with its
   `SNNTorchModel` harness (data (batch, time, features…), loop over axis 1, `net.reset()` once per batch) and the
   `NeuronOperations` metric. Its dict is `neurobench_reported`.
3. **PyTorch counts**, independently: per batch from zero state, per layer, `spikes` = nonzero spike outputs
   summed over samples and steps, `membrane_updates` = B·N at step 0 + Σ_{t≥1} count_nonzero(U_t − U_{t−1}),
   summed over batches.
4. **Expected totals**: `neurobench` convention = Σ_layers cost × membrane_updates / samples; `spikes`
   convention = Σ_layers cost × spikes / samples; `neuron_dense_ops` = Σ_layers cost × N × T (both conventions),
   with NeuroBench's cost table (Leaky 4/4, Synaptic 6/8, Lapicque 11/11, Alpha 18/24 for subtract/zero). Where
   NeuroBench reported figures, the script checks they equal the formula (it stops otherwise). Where NeuroBench
   reported 0.0 (it swallows an exception: reset `none` and RLeaky/RSynaptic → `KeyError`, a net with an
   `nn.ReLU` → `AttributeError`), the totals are the formula on the PyTorch counts, or `null` when the table has no
   cost for a layer (reset `none`, RLeaky, RSynaptic); the per-layer counts are always there.
5. **onnxruntime** runs each exported model on the same inputs (per batch; stepwise exports are driven step by step
   from zero state, feeding back its own state) and must reproduce PyTorch's outputs and states
   (`mismatched_outputs` = 0 at tolerance 1e-5 + 1e-6·|value|; `max_abs_diff_vs_torch` is the largest difference
   seen), and, for stepwise exports, give exactly the same membrane-update counts.

## Export styles

- `unrolled` — `forward(x: (batch, time, feats…))` runs the time loop inside (state initialised with snnTorch's
  `reset_mem()` / `init_*()`), returns the stacked spikes (batch, time, out). Graph input `input`, output `output`.
- `stepwise` — `forward(x_t, *state)` → `(spk, *next_state)`. Graph inputs `input`, `<layer>.<state>`
  (`mem`; `syn`, `mem`; `syn_exc`, `syn_inh`, `mem`; `spk`, `mem`; `spk`, `syn`, `mem`), outputs `output`,
  `<layer>.<state>.next`. The caller drives the loop from zero state, once per batch.
- `*_memout` nets — both styles return the last layer's membrane (record) in `output` instead of its spikes, as a
  net returning `mem_rec` does; the exporter then drops that layer's unused spike compare.
- `functions` — TorchScript exporter with `export_modules_as_functions={the snnTorch neuron classes}`: one node
  per neuron layer and step, op_type = class name (`Leaky`, `Synaptic`, `RLeaky`; domain `snntorch._neurons.*`),
  backed by a model-local function. `<net>__functions__torchscript` is the stepwise module (`functions_of:
  stepwise`; the exporter numbers its graph outputs when a function node produces them, so the generator puts the
  stepwise names back and says so in `notes`); `<net>__functions__torchscript__unrolled` is the unrolled one
  (several function variants per class, `Leaky`, `Leaky.1`, …). The unrolled function exports are the only files
  that are not byte-identical from run to run: the exporter numbers the variants in a run-dependent order (the
  graph, its figures and every other file are reproducible).
- Exporters: `torchscript` = `torch.onnx.export(..., dynamo=False, opset_version=17)` with `dynamic_axes` on the
  batch; `dynamo` = `torch.onnx.export(..., dynamo=True, opset_version=18)` with a dynamic batch `Dim`. Where a
  graph still fixes the batch, `fixed_batch_in_graph` is true and `batch_size` is that size.
- `__simplified` — the export above passed through onnxslim or onnxsim (`simplifier` in expected.json).

## Regenerating

```bash
python3 -m venv /tmp/venv-samples && . /tmp/venv-samples/bin/activate
pip install torch==2.13.0          # first, so that nothing pulls a CUDA build
pip install '.[samples]'
python samples/generate.py                    # all cases
python samples/generate.py --only leaky_sub   # only cases whose name contains the string
python samples/generate.py --list             # list the case names
```

`--only` rewrites only the matching cases; `index.json` and this README are rebuilt from every case folder present.
A full run takes about 6 minutes on 2 cores. Keep cases small: every model is well under 200 KB (unrolled dynamo
graphs are the largest, about 10 KB per layer and step) and the folder under 5 MB.

NeuroBench 2.3.0 installs with plain pip next to torch 2.13.0 (it asks for `torch>=2.0.1` and keeps the installed
CPU build, no CUDA package comes along). It also brings `torchaudio` 2.11.1, `tonic`, `librosa` and `numba`; that
torchaudio wheel cannot be imported next to the CPU torch 2.13 (`libc10_cuda.so` missing), which does not matter:
the parts of NeuroBench used here (`Benchmark`, `SNNTorchModel`, `NeuronOperations`) never import it.
"""


FAILURE_PROSE = """\
Why, in short:

- **`reset_delay=False` × dynamo** (Leaky, any reset, both styles): with `reset_delay=False` snnTorch 1.0.0 picks
  the same-step reset at forward time with `if self.reset_mechanism_val == 0:` — a Python branch on the value of a
  buffer. `torch.export` (strict and non-strict) cannot guard on a tensor's value (`GuardOnDataDependentSymNode`), so
  the dynamo exporter fails. TorchScript tracing evaluates the branch once and bakes it in, so the torchscript
  exports of the same nets are here. (With the default `reset_delay=True` the reset is chosen in `__init__`, and
  dynamo exports fine.)
- **`state_quant` × dynamo** (Leaky, Synaptic, both styles): snnTorch's rounding (`StateQuant.forward`) repeats the
  flattened state once per level with a count it computes from a tensor (`repeat_dims` built from `.tolist()`), a
  data-dependent size that `torch.export` cannot specialise (`GuardOnDataDependentSymNode ... TruncToInt`). The
  TorchScript exports of the same nets are here.
- **`functions` × dynamo**: `torch.onnx.export(..., dynamo=True, export_modules_as_functions=...)` accepts the
  argument and silently writes a flat graph with no function (the generator refuses it as a `functions` case; the
  flat graph would only duplicate the `stepwise__dynamo` case). Function exports exist for the TorchScript exporter
  only."""
ALL_ELSE_PROSE = """\
Nothing else failed: every kind here (Leaky, Synaptic, Lapicque, Alpha, RLeaky, RSynaptic) with each of its resets
here, without `reset_delay=False` or `state_quant`, was exported in both styles by both exporters."""


def write_readme(out_dir: Path, index: dict):
    lines = [README_HEAD, "", "## Cases", "",
             "| case | kind / reset | style | exporter | fixed batch | ext. data | NeuroBench"
             " | dense / eff. (neurobench) | eff. (spikes) | bytes |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | ---: |"]
    for c in index["details"]:
        e = json.loads((out_dir / c["path"] / "expected.json").read_text())
        nb, sp = e["expected"]["neurobench"], e["expected"]["spikes"]

        def f(v):
            return "null" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))

        kr = ", ".join(sorted({f"{L['kind']}/{L['reset']}" for L in e["layers"]}))
        exporter = c["exporter"] + (f" + {c['simplifier']}" if c["simplifier"] else "")
        lines.append(
            f"| `{c['case']}` | {kr} | {c['style']} | {exporter}"
            f" | {'yes' if c['fixed_batch_in_graph'] else 'no'} | {'yes' if c['external_data'] else 'no'}"
            f" | {'0.0 (failed)' if c['neurobench_reported_zero'] else 'reported'}"
            f" | {f(nb['neuron_dense_ops'])} / {f(nb['effective_neuron_ops'])} | {f(sp['effective_neuron_ops'])}"
            f" | {c['model_bytes']} |")
    lines += ["", "## Nets", ""]
    for n in NETS:
        lines.append(f"- `{n.name}` — {n.description}.")
    lines += ["", "## Combinations that could not be exported", ""]
    if index["not_exported"]:
        lines += [FAILURE_PROSE]
        known = ("reset_mechanism_val", "wrote no function nodes", "TruncToInt")
        if all(any(k in f_["error"] for k in known) for f_ in index["not_exported"]):
            lines += ["", ALL_ELSE_PROSE]
        lines += ["", "Attempted by `generate.py` and skipped (root cause of the error):", ""]
        for f_ in index["not_exported"]:
            lines.append(f"- `{f_['case']}` — {f_['error']}")
    else:
        lines.append("None: every combination attempted was exported.")
    refused = [c["path"] for c in index["details"] if c["fixed_batch_in_graph"] and "fixedbatch" not in c["path"]]
    lines += ["", "Dynamic batch: " + ("the dynamo exporter kept the batch dim dynamic in every case (the"
              " `__fixedbatch` cases fix it on purpose)." if not refused else
              "the dynamo exporter refused a dynamic batch for " + ", ".join(f"`{r}`" for r in refused)
              + " (see `notes` in their expected.json); those graphs fix the batch.")]
    lines += ["", "Versions used: " + ", ".join(f"{k} {v}" for k, v in index["versions"].items()) + ".", ""]
    (out_dir / "README.md").write_text("\n".join(lines))


# --------------------------------------------------------------------------------------------------------------------


def planned_cases():
    for net in NETS:
        for style, exporter in net.styles:
            yield net, style, exporter, None
        for style, exporter, tool in net.simplified:
            yield net, style, exporter, f"simplified:{tool}"
        for style, exporter in net.fixed_batch:
            yield net, style, exporter, "fixedbatch"


def case_name(net, style, exporter, variant=None):
    if style == "functions-unrolled":
        return f"{net.name}__functions__{exporter}__unrolled"
    suffix = "" if not variant else "__" + variant.split(":")[0]
    return f"{net.name}__{style}__{exporter}{suffix}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="only cases whose name contains this string")
    ap.add_argument("--out", default=str(HERE), help="output folder (default: this script's folder)")
    ap.add_argument("--list", action="store_true", help="list the case names and exit")
    ns = ap.parse_args()
    out_dir = Path(ns.out).resolve()
    if ns.list:
        for c in planned_cases():
            print(case_name(*c))
        return 0
    torch.set_num_threads(1)
    out_dir.mkdir(parents=True, exist_ok=True)
    old_failures = {}
    if (out_dir / "index.json").exists():
        try:
            old_failures = {f["case"]: f["error"] for f in json.loads((out_dir / "index.json").read_text())
                            .get("not_exported", [])}
        except Exception:  # noqa: BLE001
            old_failures = {}
    failures = {k: v for k, v in old_failures.items() if ns.only not in k}
    prepared = {}
    ok = 0
    for net, style, exporter, variant in planned_cases():
        name = case_name(net, style, exporter, variant)
        if ns.only not in name:
            continue
        try:
            if net.name not in prepared:
                prepared[net.name] = prepare(net)
                p = prepared[net.name]
                rates = ", ".join(
                    f"{L['name']} {L['spikes'] / (p.x.shape[0] * L['time_steps'] * L['neurons_per_sample']):.2f}"
                    for L in p.layers)
                nb = p.nb if not isinstance(p.nb, dict) else {k: round(v, 3) for k, v in p.nb.items()}
                print(f"# {net.name}: firing rates {rates}; NeuroBench {nb}", flush=True)
            write_case(prepared[net.name], style, exporter, out_dir, variant)
            print(f"ok    {name}", flush=True)
            ok += 1
        except Exception as e:  # noqa: BLE001
            msg = summarize_error(e)
            failures[name] = msg
            print(f"FAIL  {name}: {msg}", flush=True)
            if os.environ.get("NOPS_TRACE"):
                traceback.print_exc()
            stale = out_dir / name
            if stale.exists():
                shutil.rmtree(stale)
    index = write_index(out_dir, failures)
    write_readme(out_dir, index)
    print(f"{ok} written, {len([f for f in failures if ns.only in f])} failed; {len(index['cases'])} cases in"
          f" {out_dir / 'index.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
