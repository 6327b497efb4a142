"""Hand-built ONNX graphs of snnTorch-style Leaky networks, and a numpy reference of the same network.

These let tests vary what real exports vary (op spelling, node order, names, shared constants, Identity nodes)
without torch, and check the tool against an independent computation. Parity with NeuroBench itself comes from the
committed exports in samples/.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


@dataclass
class LeakyNet:
    """fc layers, each followed by a Leaky neuron layer."""

    weights: list[np.ndarray]  # (in, out) per layer
    beta: float | np.ndarray = 0.9
    threshold: float = 1.0
    reset: str = "subtract"  # subtract | zero | none
    reset_delay: bool = True  # False: snnTorch applies the reset of this step's spike within the same step
    residual: bool = False  # the last layer's synapse reads the sum of the two layers' spikes before it (SEW)
    membrane_residual: float = 0.0  # c ≠ 0: each later layer's current adds c × the previous layer's membrane
    residual_reads_previous_step: bool = False  # ... that membrane as it was before this step (its state input)
    classes: list[str] | None = None  # per layer, the module class the dynamo exporter records on its nodes
    returns_membrane: bool = False  # the graph returns the last layer's membrane; its spike goes unused (dropped)
    binarise_input: float | None = None  # c: the model thresholds its input first, x ← H(ReLU(x) − c) (no state)
    reset_before_decay: bool = False  # subtract, written by hand: U_t = β(U − θR) + I (mem = mem − spk·θ after the
    #                                   compare; the membrane compared is the one before the reset)
    rectify_current: bool = False  # a ReLU between each synapse and its neuron (a conv net's activation or pooling)

    def reference(self, data: np.ndarray) -> dict[str, list[int]]:
        """Per layer: spikes and NeuroBench membrane updates over all samples of `data` (B, T, F)."""
        samples, steps = data.shape[:2]
        beta = np.clip(np.asarray(self.beta, dtype=np.float32), 0, 1)
        theta = np.float32(self.threshold)
        spikes, updates = [0] * len(self.weights), [0] * len(self.weights)
        mems = [np.zeros((samples, w.shape[1]), np.float32) for w in self.weights]
        for t in range(steps):
            x = data[:, t].astype(np.float32)
            if self.binarise_input is not None:
                x = (np.maximum(x, 0) - np.float32(self.binarise_input) > 0).astype(np.float32)
            fired: list[np.ndarray] = []
            before = list(mems)
            for i, w in enumerate(self.weights):
                if self.residual and i == len(self.weights) - 1:
                    x = fired[-2] + fired[-1]
                current = x @ w
                if self.rectify_current:
                    current = np.maximum(current, np.float32(0))
                if self.membrane_residual and i > 0:
                    source = before[i - 1] if self.residual_reads_previous_step else mems[i - 1]
                    current = current + np.float32(self.membrane_residual) * source
                prev = mems[i]
                reset = (prev - theta > 0).astype(np.float32)
                if self.reset == "subtract" and self.reset_before_decay:
                    mem = beta * (prev - reset * theta) + current
                elif self.reset == "subtract":
                    mem = beta * prev + current - reset * theta
                elif self.reset == "zero":
                    mem = beta * ((1 - reset) * prev) + current
                else:
                    mem = beta * prev + current
                spk = (mem - theta > 0).astype(np.float32)
                if not self.reset_delay and self.reset != "none":
                    do_reset = spk - reset  # snnTorch: avoid resetting twice
                    mem = mem - do_reset * (theta if self.reset == "subtract" else mem)
                spikes[i] += int(spk.sum())
                updates[i] += samples * mem.shape[1] if t == 0 else int(np.count_nonzero(mem != prev))
                mems[i] = mem
                x = spk
                fired.append(spk)
        return {"spikes": spikes, "membrane_updates": updates}


@dataclass
class _Builder:
    spelling: str
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    inits: list[onnx.TensorProto] = field(default_factory=list)
    counter: int = 0
    scope: str | None = None  # a module class to record on the nodes made now (as the dynamo exporter does)

    def name(self, hint: str) -> str:
        self.counter += 1
        return f"{hint}_{self.counter}"

    def const(self, value, hint: str = "c") -> str:
        name = self.name(hint)
        array = np.asarray(value, dtype=np.float32)
        if self.spelling == "torchscript":
            self.nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array)))
        else:
            self.inits.append(numpy_helper.from_array(array, name))
        return name

    def init(self, value, hint: str) -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs) -> str:
        out = self.name(hint or op_type.lower())
        node = helper.make_node(op_type, inputs, [out], **attrs)
        if self.scope is not None:
            entry = node.metadata_props.add()
            entry.key, entry.value = "pkg.torch.onnx.class_hierarchy", f"['Net', '{self.scope}', 'aten.op']"
        self.nodes.append(node)
        return out

    def synapse(self, x: str, weight: np.ndarray) -> str:
        if self.spelling == "torchscript":
            return self.op("MatMul", [x, self.init(weight, "W")])
        return self.op("Gemm", [x, self.init(weight.T.copy(), "W")], transB=1)

    def flag(self, mem: str, theta: str) -> str:
        shifted = self.op("Sub", [mem, theta])
        return self.op("Cast", [self.op("Greater", [shifted, self.const(0.0, "zero")])], to=TensorProto.FLOAT)

    def step(self, net: LeakyNet, mem: str, current: str, beta: str, theta: str) -> tuple[str, str]:
        reset = self.flag(mem, theta)
        if net.reset == "subtract" and net.reset_before_decay:
            after = self.op("Sub", [mem, self.op("Mul", [reset, theta])])
            new = self.op("Add", [self.op("Mul", [beta, after]), current], "mem")
        elif net.reset == "subtract":
            base = self.op("Add", [self.op("Mul", [beta, mem]), current])
            new = self.op("Sub", [base, self.op("Mul", [reset, theta])], "mem")
        elif net.reset == "zero":
            keep = self.op("Sub", [self.const(1.0, "one"), reset])
            new = self.op("Add", [self.op("Mul", [beta, self.op("Mul", [keep, mem])]), current], "mem")
        else:
            new = self.op("Add", [self.op("Mul", [beta, mem]), current], "mem")
        spike = self.flag(new, theta)
        if not net.reset_delay and net.reset != "none":
            do_reset = self.op("Sub", [spike, reset])
            scale = theta if net.reset == "subtract" else new
            new = self.op("Sub", [new, self.op("Mul", [do_reset, scale])], "mem_after")
        return new, spike

    def beta(self, net: LeakyNet) -> str:
        raw = self.init(net.beta, "beta")
        if self.spelling == "torchscript":
            return self.op("Clip", [raw, self.const(0.0), self.const(1.0)])
        return raw


def leaky_stepwise(net: LeakyNet, spelling: str = "torchscript", batch: int | str = "batch") -> onnx.ModelProto:
    """One time step; membranes `lifK.mem` in, `lifK.mem.next` out."""
    b = _Builder(spelling)
    n_in = net.weights[0].shape[0]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, n_in])]
    outputs = []
    x = "input" if net.binarise_input is None else b.flag(b.op("Relu", ["input"]), b.const(net.binarise_input))
    fired: list[str] = []
    for i, w in enumerate(net.weights, start=1):
        state = f"lif{i}.mem"
        inputs.append(helper.make_tensor_value_info(state, TensorProto.FLOAT, [batch, w.shape[1]]))
        theta = b.init(net.threshold, "threshold")
        if net.residual and i == len(net.weights):
            x = b.op("Add", [fired[-2], fired[-1]])
        current = b.synapse(x, w)
        if net.membrane_residual and i > 1:
            source = f"lif{i - 1}.mem" + ("" if net.residual_reads_previous_step else ".next")
            current = b.op("Add", [current, b.op("Mul", [source, b.const(net.membrane_residual)])])
        b.scope = net.classes[i - 1] if net.classes else None
        new, spike = b.step(net, state, current, b.beta(net), theta)
        b.scope = None
        fired.append(spike)
        b.nodes.append(helper.make_node("Identity", [new], [f"{state}.next"]))
        outputs.append(helper.make_tensor_value_info(f"{state}.next", TensorProto.FLOAT, [batch, w.shape[1]]))
        x = spike
    b.nodes.append(helper.make_node("Identity", [f"lif{len(net.weights)}.mem.next" if net.returns_membrane else x],
                                    ["output"]))
    outputs.insert(0, helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, net.weights[-1].shape[1]]))
    graph = helper.make_graph(_live(b.nodes, outputs), "stepwise", inputs, outputs, b.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _live(nodes: list[onnx.NodeProto], outputs: list[onnx.ValueInfoProto]) -> list[onnx.NodeProto]:
    """The nodes the outputs need, in order: what an exporter keeps (an unused spike's compare is dropped)."""
    needed = {output.name for output in outputs}
    kept = []
    for node in reversed(nodes):
        if needed & set(node.output):
            kept.append(node)
            needed.update(node.input)
    return kept[::-1]


def leaky_unrolled(net: LeakyNet, steps: int, spelling: str = "torchscript",
                   batch: int | str = "batch", time_first: bool = False,
                   static_input: bool = False) -> onnx.ModelProto:
    """The time loop traced: input (batch, steps, features) → stacked output spikes (batch, steps, out); with
    `time_first`, as a forward looping over x[step] of snnTorch's tutorials takes it: input (steps, batch, features)
    → output (steps, batch, out); with `static_input`, as snnTorch's tutorials feed a static image: input (batch,
    features), the same at every step."""
    b = _Builder(spelling)
    n_in = net.weights[0].shape[0]
    betas = [b.beta(net) for _ in net.weights]
    thetas = [b.init(net.threshold, "threshold") for _ in net.weights]
    shared = [b.init(w, "W") for w in net.weights] if static_input else []
    mems: list[str | None] = [None] * len(net.weights)
    stacked = []
    for t in range(steps):
        index = b.name("t")
        b.inits.append(numpy_helper.from_array(np.asarray(t, dtype=np.int64), index))
        x = "input" if static_input else b.op("Gather", ["input", index], axis=0 if time_first else 1)
        if net.binarise_input is not None:
            x = b.flag(b.op("Relu", [x]), b.const(net.binarise_input))
        fired: list[str] = []
        before = list(mems)
        for i, w in enumerate(net.weights):
            if net.residual and i == len(net.weights) - 1:
                x = b.op("Add", [fired[-2], fired[-1]])
            # a static input's steps share their weights, as an exporter writes them (one parameter): the same
            # synapse at every step, which the graph then computes once
            current = b.op("MatMul", [x, shared[i]]) if static_input else b.synapse(x, w)
            if net.rectify_current:
                current = b.op("Relu", [current])
            if net.membrane_residual and i > 0:
                source = before[i - 1] if net.residual_reads_previous_step else mems[i - 1]
                if source is not None:  # (the previous step's, at the first step: the zero state, nothing to add)
                    current = b.op("Add", [current, b.op("Mul", [source, b.const(net.membrane_residual)])])
            if mems[i] is None:
                mems[i] = b.op("ConstantOfShape", [b.op("Shape", [current])],
                               value=numpy_helper.from_array(np.zeros(1, np.float32)))
            b.scope = net.classes[i] if net.classes else None
            mems[i], x = b.step(net, mems[i], current, betas[i], thetas[i])
            b.scope = None
            fired.append(x)
        axes = b.name("axes")
        b.inits.append(numpy_helper.from_array(np.asarray([0 if time_first else 1], dtype=np.int64), axes))
        stacked.append(b.op("Unsqueeze", [mems[-1] if net.returns_membrane else x, axes]))
    b.nodes.append(helper.make_node("Concat", stacked, ["output"], axis=0 if time_first else 1))
    out_shape = [steps, batch, net.weights[-1].shape[1]] if time_first else [batch, steps, net.weights[-1].shape[1]]
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)]
    graph = helper.make_graph(
        _live(b.nodes, outputs), "unrolled",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                       [batch, n_in] if static_input else
                                       [steps, batch, n_in] if time_first else [batch, steps, n_in])],
        outputs,
        b.inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def leaky_unrolled_sequence_synapses(net: LeakyNet, steps: int) -> onnx.ModelProto:
    """Layer by layer, each synapse run once over the whole sequence (Linear on (B, T, F), with its bias Add) and each
    step reading its slice, `cur[:, t]`, as a net that applies `fc` before its time loop exports."""
    b = _Builder("torchscript")
    n_in = net.weights[0].shape[0]
    sequence = "input"
    for w in net.weights:
        current = b.op("Add", [b.op("MatMul", [sequence, b.init(w, "W")]), b.init(np.zeros(w.shape[1]), "bias")])
        beta, theta = b.beta(net), b.init(net.threshold, "threshold")
        mem, fired = None, []
        for t in range(steps):
            index = b.name("t")
            b.inits.append(numpy_helper.from_array(np.asarray(t, dtype=np.int64), index))
            step_current = b.op("Gather", [current, index], axis=1)
            if mem is None:
                mem = b.op("ConstantOfShape", [b.op("Shape", [step_current])],
                           value=numpy_helper.from_array(np.zeros(1, np.float32)))
            mem, spike = b.step(net, mem, step_current, beta, theta)
            axes = b.name("axes")
            b.inits.append(numpy_helper.from_array(np.asarray([1], dtype=np.int64), axes))
            fired.append(b.op("Unsqueeze", [spike, axes]))
        sequence = b.op("Concat", fired, axis=1)
    b.nodes.append(helper.make_node("Identity", [sequence], ["output"]))
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", steps, net.weights[-1].shape[1]])]
    graph = helper.make_graph(b.nodes, "sequence_synapses",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", steps, n_in])],
                              outputs, b.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def checker_objects_but_runs(net: LeakyNet) -> onnx.ModelProto:
    """A stepwise Leaky model the ONNX checker objects to (a metadata key twice) and onnxruntime runs."""
    proto = leaky_stepwise(net)
    proto.metadata_props.add(key="k", value="1")
    proto.metadata_props.add(key="k", value="2")
    return proto


def random_net(rng: np.random.Generator, sizes: list[int], reset: str = "subtract", beta: float = 0.9) -> LeakyNet:
    pairs = zip(sizes[:-1], sizes[1:], strict=True)
    weights = [rng.normal(0.0, 1.2 / np.sqrt(a), size=(a, b)).astype(np.float32) for a, b in pairs]
    return LeakyNet(weights, beta=beta, reset=reset)


def quadratic_stepwise(weight: np.ndarray, beta: float = 0.5, threshold: float = 1.0,
                       reset_mechanism: str = "subtract") -> onnx.ModelProto:
    """A neuron snnTorch does not have: U_t = U + β·U² + I − R·θ (a quadratic integrate-and-fire), or with reset
    `zero` U_t = (U + β·U² + I)·(1 − R)."""
    b = _Builder("torchscript")
    n_in, n_out = weight.shape
    theta = b.init(threshold, "threshold")
    reset = b.flag("q1.mem", theta)
    square = b.op("Mul", ["q1.mem", "q1.mem"])
    grown = b.op("Add", ["q1.mem", b.op("Mul", [b.init(beta, "beta"), square])])
    base = b.op("Add", [grown, b.synapse("input", weight)])
    if reset_mechanism == "zero":
        new = b.op("Mul", [base, b.op("Sub", [b.init(1.0, "one"), reset])])
    else:
        new = b.op("Sub", [base, b.op("Mul", [reset, theta])])
    return _custom_stepwise(b, "q1", new, theta, n_in, n_out)


def adaptive_threshold_stepwise(weight: np.ndarray, beta: float = 0.9, rho: float = 0.8, adaptation: float = 0.5,
                                compare: str = "sub") -> onnx.ModelProto:
    """A neuron whose threshold follows its own spikes (ALIF), as a hand-written PyTorch module exports it:
    θ = 1 + a·b, U' = β·U + I, S = H(U' − θ), U_t = U' − S·θ, b_t = ρ·b + S. State `a1.mem` and `a1.b`.
    `compare`: "sub" spells S as (U' − θ > 0), "greater" as (U' > θ)."""
    b = _Builder("torchscript")
    n_in, n_out = weight.shape
    theta = b.op("Add", [b.init(1.0, "theta0"), b.op("Mul", [b.init(adaptation, "adapt"), "a1.b"])])
    base = b.op("Add", [b.op("Mul", [b.init(beta, "beta"), "a1.mem"]), b.synapse("input", weight)])
    if compare == "greater":
        spike = b.op("Cast", [b.op("Greater", [base, theta])], to=TensorProto.FLOAT)
    else:
        spike = b.flag(base, theta)
    b.nodes.append(helper.make_node("Sub", [base, b.op("Mul", [spike, theta])], ["a1.mem.next"]))
    b.nodes.append(helper.make_node("Add", [b.op("Mul", [b.init(rho, "rho"), "a1.b"]), spike], ["a1.b.next"]))
    b.nodes.append(helper.make_node("Identity", [spike], ["output"]))
    graph = helper.make_graph(
        b.nodes, "a1",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_in])]
        + [helper.make_tensor_value_info(f"a1.{state}", TensorProto.FLOAT, ["batch", n_out]) for state in ("mem", "b")],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", n_out])]
        + [helper.make_tensor_value_info(f"a1.{state}.next", TensorProto.FLOAT, ["batch", n_out])
           for state in ("mem", "b")],
        b.inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _hand_written_reset(b: _Builder, base: str, spike: str, theta: str, reset: str, v_reset: float) -> str:
    if reset == "zero":
        return b.op("Mul", [base, b.op("Sub", [b.const(1.0, "one"), spike])])
    if reset == "where":  # torch.where(spk > 0, 0.0, mem): a zero reset spelled as a choice
        return b.op("Where", [b.op("Greater", [spike, b.const(0.0, "zero")]), b.const(0.0, "zero"), base])
    if reset == "value":  # SpikingJelly's / Norse's hard reset to v_reset: mem·(1 − spk) + v_reset·spk
        kept = b.op("Mul", [base, b.op("Sub", [b.const(1.0, "one"), spike])])
        return b.op("Add", [kept, b.op("Mul", [spike, b.const(v_reset, "v_reset")])])
    return b.op("Sub", [base, b.op("Mul", [spike, theta])])


def hand_written_lif_stepwise(weight: np.ndarray, reset: str = "subtract", beta: float = 0.9,
                              threshold: float = 1.0, v_reset: float = 0.0) -> onnx.ModelProto:
    """A LIF written in plain PyTorch, one step: mem' = β·mem + x; spk = H(mem' − θ); the state carried is the
    membrane after its reset, mem' − spk·θ (subtract), mem'·(1 − spk) (zero) or mem'·(1 − spk) + v_reset·spk
    (value). No compare reads the state."""
    b = _Builder("torchscript")
    n_in, n_out = weight.shape
    theta = b.init(threshold, "threshold")
    base = b.op("Add", [b.op("Mul", [b.init(beta, "beta"), "h1.mem"]), b.synapse("input", weight)])
    spike = b.flag(base, theta)
    new = _hand_written_reset(b, base, spike, theta, reset, v_reset)
    b.nodes.append(helper.make_node("Identity", [new], ["h1.mem.next"]))
    b.nodes.append(helper.make_node("Identity", [spike], ["output"]))
    return helper.make_model(_one_state_graph(b.nodes, "h1", n_in, n_out, b.inits),
                             opset_imports=[helper.make_opsetid("", 17)])


def hand_written_lif_unrolled(weights: list[np.ndarray], steps: int, reset: str = "value", beta: float = 0.9,
                              threshold: float = 1.0, v_reset: float = 0.0,
                              spelling: str = "torchscript") -> onnx.ModelProto:
    """The same hand-written LIF layers with the time loop traced: input (batch, steps, features) → stacked spikes.
    Each step's membrane is reset after its compare, and the next step decays that reset membrane."""
    b = _Builder(spelling)
    theta = b.init(threshold, "threshold")
    decay = b.init(beta, "beta")
    mems: list[str | None] = [None] * len(weights)
    stacked = []
    for t in range(steps):
        index = b.name("t")
        b.inits.append(numpy_helper.from_array(np.asarray(t, dtype=np.int64), index))
        x = b.op("Gather", ["input", index], axis=1)
        for i, weight in enumerate(weights):
            current = b.synapse(x, weight)
            base = current if mems[i] is None else b.op("Add", [b.op("Mul", [decay, mems[i]]), current])
            x = b.flag(base, theta)
            mems[i] = _hand_written_reset(b, base, x, theta, reset, v_reset)
        axes = b.name("axes")
        b.inits.append(numpy_helper.from_array(np.asarray([1], dtype=np.int64), axes))
        stacked.append(b.op("Unsqueeze", [x, axes]))
    b.nodes.append(helper.make_node("Concat", stacked, ["output"], axis=1))
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", steps, weights[-1].shape[1]])]
    graph = helper.make_graph(
        _live(b.nodes, outputs), "unrolled",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", steps, weights[0].shape[0]])],
        outputs, b.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def hand_written_lif_reference(weights: list[np.ndarray], data: np.ndarray, reset: str = "value",
                               beta: float = 0.9, threshold: float = 1.0,
                               v_reset: float = 0.0) -> dict[str, list[int]]:
    """Spikes and membrane updates per layer of the hand-written LIF, the membrane counted after its reset
    (stepwise: the state carried) and before it (unrolled: the tensor the compare reads)."""
    samples, steps = data.shape[:2]
    mems = [np.zeros((samples, w.shape[1]), np.float32) for w in weights]
    bases = [np.zeros((samples, w.shape[1]), np.float32) for w in weights]
    spikes, after, before = [0] * len(weights), [0] * len(weights), [0] * len(weights)
    for t in range(steps):
        x = data[:, t]
        for i, weight in enumerate(weights):
            base = np.float32(beta) * mems[i] + x @ weight
            spike = (base - np.float32(threshold) > 0).astype(np.float32)
            if reset == "value":
                new = base * (np.float32(1.0) - spike) + spike * np.float32(v_reset)
            elif reset in ("zero", "where"):
                new = base * (np.float32(1.0) - spike)
            else:
                new = base - spike * np.float32(threshold)
            spikes[i] += int(spike.sum())
            after[i] += new.size if t == 0 else int(np.count_nonzero(new != mems[i]))
            before[i] += base.size if t == 0 else int(np.count_nonzero(base != bases[i]))
            mems[i], bases[i], x = new, base, spike
    return {"spikes": spikes, "after_reset": after, "before_reset": before}


def rounded_lif_stepwise(weight: np.ndarray, levels: np.ndarray, spelling: str = "tile", beta: float = 0.9,
                         threshold: float = 1.0) -> onnx.ModelProto:
    """A Leaky step (subtract) whose membrane is rounded to the nearest of `levels` after each update, as snnTorch's
    state_quant does: Q(x) = levels[argmin_k |levels_k − x|]; the spike compares Q(mem) again, as snnTorch's fire()
    does. `spelling` "tile": Reshape to flat, Unsqueeze, Tile, Sub(levels, x) (TorchScript's); "expand": Flatten,
    Unsqueeze, Expand, Sub(x, levels), and the spike compares the rounded membrane itself."""
    b = _Builder("torchscript")
    n_in, n_out = weight.shape
    theta = b.init(threshold, "threshold")
    levels = np.asarray(levels, np.float32)

    def ints(values: list[int], hint: str) -> str:
        name = b.name(hint)
        b.inits.append(numpy_helper.from_array(np.asarray(values, np.int64), name))
        return name

    def rounded(x: str) -> str:
        if spelling == "tile":
            flat = b.op("Reshape", [x, ints([-1], "flat")])
            spread = b.op("Tile", [b.op("Unsqueeze", [flat, ints([-1], "axis")]),
                                   ints([1, len(levels)], "repeats")])
            difference = b.op("Sub", [b.init(levels, "levels"), spread])
        else:
            flat = b.op("Flatten", [x], axis=0)  # (1, B·N)
            spread = b.op("Expand", [b.op("Unsqueeze", [flat, ints([-1], "axis")]),
                                     ints([1, 1, len(levels)], "spread")])
            difference = b.op("Sub", [spread, b.init(levels, "levels")])
        index = b.op("ArgMin", [b.op("Abs", [difference])], axis=-1, keepdims=0)
        picked = b.op("Gather", [b.init(levels, "levels"), index], axis=0)
        return b.op("Reshape", [picked, ints([-1, n_out], "back")])

    reset = b.flag("q1.mem", theta)
    base = b.op("Add", [b.op("Mul", [b.init(beta, "beta"), "q1.mem"]), b.synapse("input", weight)])
    new = rounded(b.op("Sub", [base, b.op("Mul", [reset, theta])]))
    spike = b.flag(rounded(new) if spelling == "tile" else new, theta)
    b.nodes.append(helper.make_node("Identity", [new], ["q1.mem.next"]))
    b.nodes.append(helper.make_node("Identity", [spike], ["output"]))
    return helper.make_model(_one_state_graph(b.nodes, "q1", n_in, n_out, b.inits),
                             opset_imports=[helper.make_opsetid("", 17)])


def all_steps_at_once_then_leaky(spelling: str = "rnn", steps: int = 5, n_in: int = 6, hidden: int = 5,
                                 n_out: int = 3) -> onnx.ModelProto:
    """Time-first input (T, B, F) → a layer whose membrane holds every step at once, as snnTorch's LeakyParallel
    (an nn.RNN, ReLU, diagonal recurrent weight β) is exported — `spelling` "rnn": one ONNX RNN op (TorchScript);
    "concat": the steps traced one by one, ReLU(x_t·W + h_{t−1}·R), then concatenated (dynamo) — or as StateLeaky
    computes it ("conv": a causal convolution over time with the kernel β^k) — then H(U − θ) over all steps, then a
    Leaky layer unrolled over the same steps."""
    rng = np.random.default_rng(62)
    b = _Builder("torchscript")
    weight = rng.normal(0.0, 0.8, size=(n_in, hidden)).astype(np.float32)
    recurrent = np.diag(np.full(hidden, 0.9, np.float32))
    theta = b.init(1.0, "threshold")

    def index(t: int) -> str:
        name = b.name("t")
        b.inits.append(numpy_helper.from_array(np.asarray(t, np.int64), name))
        return name

    if spelling == "rnn":
        out = b.name("rnn_y")
        b.nodes.append(helper.make_node(
            "RNN", ["input", b.init(weight.T[None], "W"), b.init(recurrent[None], "R")], [out],
            hidden_size=hidden, activations=["Relu"]))
        axis = b.name("axis")
        b.inits.append(numpy_helper.from_array(np.asarray([1], np.int64), axis))
        membrane = b.op("Squeeze", [out, axis])  # (T, B, H)
    elif spelling == "conv":  # snnTorch's StateLeaky: a causal convolution over time with the decay kernel
        current = b.op("MatMul", ["input", b.init(weight, "W")])  # (T, B, H)
        perm = b.op("Transpose", [current], perm=[1, 2, 0])  # (B, H, T)
        pads = b.name("pads")
        b.inits.append(numpy_helper.from_array(np.asarray([0, 0, steps - 1, 0, 0, 0], np.int64), pads))
        kernel = np.tile(0.9 ** np.arange(steps, dtype=np.float32)[::-1], (hidden, 1, 1))
        convolved = b.op("Conv", [b.op("Pad", [perm, pads]), b.init(kernel, "kernel")], group=hidden)
        membrane = b.op("Transpose", [convolved], perm=[2, 0, 1])  # (T, B, H)
    else:
        w, r, h, parts = b.init(weight, "W"), b.init(recurrent, "R"), None, []
        for t in range(steps):
            current = b.op("MatMul", [b.op("Gather", ["input", index(t)], axis=0), w])
            h = b.op("Relu", [current if h is None else b.op("Add", [current, b.op("MatMul", [h, r])])])
            axis = b.name("axis")
            b.inits.append(numpy_helper.from_array(np.asarray([0], np.int64), axis))
            parts.append(b.op("Unsqueeze", [h, axis]))
        membrane = b.op("Concat", parts, axis=0)
    spikes = b.flag(membrane, theta)
    net = LeakyNet([rng.normal(0.0, 0.8, size=(hidden, n_out)).astype(np.float32)])
    beta, mem, fired = b.beta(net), None, []
    second = b.init(net.weights[0], "W2")
    for t in range(steps):
        current = b.op("MatMul", [b.op("Gather", [spikes, index(t)], axis=0), second])
        if mem is None:  # the zero initial state, as exporters fold it
            mem = b.op("Mul", [b.const(1.0, "one"), current], "mem")
            fired.append(b.flag(mem, theta))
            continue
        mem, spike = b.step(net, mem, current, beta, theta)
        fired.append(spike)
    b.nodes.append(helper.make_node("Concat", fired, ["output"], axis=0))
    graph = helper.make_graph(b.nodes, "all_at_once",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [steps, "batch", n_in])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)], b.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _one_state_graph(nodes: list[onnx.NodeProto], layer: str, n_in: int, n_out: int,
                     inits: list[onnx.TensorProto]) -> onnx.GraphProto:
    """One stepwise layer's graph: `input` and `<layer>.mem` in, `output` and `<layer>.mem.next` out."""
    return helper.make_graph(
        nodes, layer,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_in]),
         helper.make_tensor_value_info(f"{layer}.mem", TensorProto.FLOAT, ["batch", n_out])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", n_out]),
         helper.make_tensor_value_info(f"{layer}.mem.next", TensorProto.FLOAT, ["batch", n_out])],
        inits,
    )


def _custom_stepwise(b: _Builder, layer: str, new: str, theta: str, n_in: int, n_out: int) -> onnx.ModelProto:
    """The model around one hand-written stepwise update `new` of state `<layer>.mem`: its spike is the output."""
    b.nodes.append(helper.make_node("Identity", [new], [f"{layer}.mem.next"]))
    b.nodes.append(helper.make_node("Identity", [b.flag(new, theta)], ["output"]))
    return helper.make_model(_one_state_graph(b.nodes, layer, n_in, n_out, b.inits),
                             opset_imports=[helper.make_opsetid("", 17)])


def delta_stepwise(weight: np.ndarray, beta: float = 0.9, delta: float = 0.5) -> onnx.ModelProto:
    """A delta neuron (snnTorch's DeltaLeaky): U_t = β·U + I, and a spike when the membrane moved by more than δ,
    H(|U_t − U| − δ); no reset."""
    b = _Builder("torchscript")
    n_in, n_out = weight.shape
    new = b.op("Add", [b.op("Mul", [b.init(beta, "beta"), "d1.mem"]), b.synapse("input", weight)])
    moved = b.op("Abs", [b.op("Sub", [new, "d1.mem"])])
    b.nodes.append(helper.make_node("Identity", [new], ["d1.mem.next"]))
    b.nodes.append(helper.make_node("Identity", [b.flag(moved, b.init(delta, "delta"))], ["output"]))
    return helper.make_model(_one_state_graph(b.nodes, "d1", n_in, n_out, b.inits),
                             opset_imports=[helper.make_opsetid("", 17)])


def tanh_stepwise(weight: np.ndarray, threshold: float = 1.0) -> onnx.ModelProto:
    """A neuron with an activation inside its update, fed a rectified current: U_t = tanh(U) + ReLU(I) − R·θ."""
    b = _Builder("torchscript")
    n_in, n_out = weight.shape
    theta = b.init(threshold, "threshold")
    reset = b.flag("t1.mem", theta)
    current = b.op("Relu", [b.synapse("input", weight)])
    base = b.op("Add", [b.op("Tanh", ["t1.mem"]), current])
    new = b.op("Sub", [base, b.op("Mul", [reset, theta])])
    return _custom_stepwise(b, "t1", new, theta, n_in, n_out)


def multi_spike_stepwise(weight: np.ndarray, threshold: float = 1.0, spelling: str = "cast") -> onnx.ModelProto:
    """sinabs' IAF with MultiSpike, one step: U' = U + I; S = H(U') · trunc(U'/θ) (several spikes a step, the
    truncation spelled as a cast to int32 and back by TorchScript, as Floor by dynamo); U = U' − S·θ."""
    b = _Builder("torchscript")
    n_in, n_out = weight.shape
    theta = b.init(threshold, "threshold")
    base = b.op("Add", ["m1.mem", b.synapse("input", weight)])
    ratio = b.op("Div", [base, theta])
    count = (b.op("Cast", [b.op("Cast", [ratio], to=TensorProto.INT32)], to=TensorProto.FLOAT)
             if spelling == "cast" else b.op("Floor", [ratio]))
    above = b.op("Cast", [b.op("Greater", [base, b.const(0.0, "zero")])], to=TensorProto.FLOAT)
    spikes = b.op("Mul", [above, count])
    new = b.op("Sub", [base, b.op("Mul", [spikes, theta])])
    b.nodes.append(helper.make_node("Identity", [new], ["m1.mem.next"]))
    b.nodes.append(helper.make_node("Identity", [spikes], ["output"]))
    return helper.make_model(_one_state_graph(b.nodes, "m1", n_in, n_out, b.inits),
                             opset_imports=[helper.make_opsetid("", 17)])


def gated_stepwise(weight: np.ndarray, threshold: float = 1.0) -> onnx.ModelProto:
    """An LSTM-like gated neuron (as snnTorch's SLSTM): U_t = σ(I)·tanh(U) + I − R·θ."""
    b = _Builder("torchscript")
    n_in, n_out = weight.shape
    theta = b.init(threshold, "threshold")
    reset = b.flag("g1.mem", theta)
    current = b.synapse("input", weight)
    gated = b.op("Mul", [b.op("Sigmoid", [current]), b.op("Tanh", ["g1.mem"])])
    new = b.op("Sub", [b.op("Add", [gated, current]), b.op("Mul", [reset, theta])])
    return _custom_stepwise(b, "g1", new, theta, n_in, n_out)


def function_node_stepwise(net: LeakyNet, class_name: str, domain: str = "my.neurons") -> onnx.ModelProto:
    """A stepwise single-layer Leaky net whose neuron is one function node `class_name` (as
    export_modules_as_functions writes it): the tool must take the kind from the class name."""
    body = _Builder("torchscript")
    theta = "threshold"
    new, spike = body.step(net, "mem", "current", "beta", theta)
    body.nodes.append(helper.make_node("Identity", [new], ["mem_out"]))
    body.nodes.append(helper.make_node("Identity", [spike], ["spk"]))
    body.nodes[:0] = [helper.make_node("Constant", [], [n], value=i) for n, i in
                      ((i.name, i) for i in body.inits)]
    function = helper.make_function(domain, class_name, ["current", "mem", "beta", theta], ["spk", "mem_out"],
                                    body.nodes, [helper.make_opsetid("", 17)])
    outer = _Builder("torchscript")
    weight = net.weights[0]
    current = outer.synapse("input", weight)
    beta = outer.init(net.beta, "beta")
    threshold = outer.init(net.threshold, "threshold")
    outer.nodes.append(helper.make_node(class_name, [current, "lif1.mem", beta, threshold],
                                        ["output", "lif1.mem.next"], domain=domain, name=f"/lif1/{class_name}"))
    n_in, n_out = weight.shape
    graph = _one_state_graph(outer.nodes, "lif1", n_in, n_out, outer.inits)
    return helper.make_model(graph, functions=[function],
                             opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)])
