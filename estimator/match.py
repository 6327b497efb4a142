"""Stage 3 — match: find the spiking neuron layers in a ModelGraph, by their dataflow, whatever the exporter.

How a layer is found (no op names, node names or parameter identity are trusted):
1. A *threshold compare* is `Greater(Sub(X, θ), c)` / `Greater(X, c)` (or Less with operands swapped) with θ and c
   constant and X computed from data. X is a *membrane* when it is not constant (the zero initial state is).
2. Ops are grouped into *components*: connected through non-constant tensors, cut at weight ops (MatMul, Gemm,
   Conv, …: synapses) and shape-only ops. A neuron layer's T unrolled steps stay connected through their state
   (the decay term); different layers only meet through synapses.
3. Within a component, each membrane's predecessor is the latest membrane reachable upstream of it; following those
   links gives one chain U_0 … U_{T-1} per layer (unrolled), or one computed membrane paired with a state input
   (stepwise: the tool drives the time loop).
4. One step of the chain (U_{t-1} → U_t) is read as a polynomial (algebra.py) in U, R (reset flag: the compare on
   U_{t-1}), input currents, recurrent currents and other carried state; `UpdateFeatures` summarise it and the kind
   registry (kinds.py) names the kind. Reset: an R-only term is `subtract`, R multiplying the state is `zero`, no R
   is `none`. Function-node exports name their class directly (op_type), which then decides the kind.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import onnx
from onnx import helper

from .algebra import FLAGS, Poly
from .graph import LAYOUT_OPS, SHAPE_ONLY_OPS, ModelGraph, OpNode, no_gc, same_layout
from .kinds import UpdateFeatures, classify, kind_for_class
from .layers import Dim, MatchResult, NeuronLayer, StatePair, printable

COMPARE_OPS = frozenset({"Greater", "GreaterOrEqual", "Less", "LessOrEqual"})
# ONNX's recurrent ops hold their input and recurrent weights: synapses too (and a whole time loop; see
# _all_steps_at_once)
RECURRENT_OPS = frozenset({"RNN", "GRU", "LSTM"})
WEIGHT_OPS = frozenset({
    "MatMul", "Gemm", "Conv", "ConvTranspose", "MatMulInteger", "ConvInteger", "QLinearMatMul", "QLinearConv",
    "Einsum", "FusedMatMul", "FusedGemm", "FusedConv",
    "QGemm", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",  # onnxruntime's quantised ops (com.microsoft)
}) | RECURRENT_OPS
# onnxruntime's quantised arithmetic (QOperator format): y = requantise(dq(a) op dq(b)), inputs (a, a_scale, a_zero,
# b, b_scale, b_zero, y_scale, y_zero); read as the values the operands stand for
QUANTISED_ARITHMETIC = frozenset({"QLinearAdd", "QLinearMul"})
QUANTISE_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
GEMM_OPS = frozenset({"Gemm", "FusedGemm"})  # Y = alpha·A·B + beta·C
NCHWC_DOMAIN, NCHWC_REORDERS = "com.microsoft.nchwc", frozenset({"ReorderInput", "ReorderOutput"})
ALPHA_OPS = GEMM_OPS | {"FusedMatMul"}  # ops whose product is scaled by an alpha attribute (see _gain)
INDEXING_OPS = frozenset({"Gather", "Slice", "GatherElements"})  # x[t]: one step's slice of a whole-sequence tensor
STEP_LAYOUT_OPS = LAYOUT_OPS | {"Transpose"}  # the same values, reshaped or (across steps and batch) transposed
NON_SPIKING_ACTIVATIONS = frozenset({
    "Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "Tanh", "Elu", "Selu", "Gelu", "Softplus", "HardSwish",
    "Softmax", "LogSoftmax", "Mish", "Celu",
})
SHAPED = "I:~"  # input current that ops not linear in it shaped (the symbol of the tensor they made)
FOREIGN = "I:^"  # another layer's membrane read by this layer's update (a membrane-level residual): input current
INHIBITION_NOTE = ("spikes are counted after the winner-take-all mask (inhibition=True: only the neuron furthest over "
                   "threshold fires), as emitted, not every threshold crossing")
MASK_OPS = frozenset({"ScatterND", "ScatterElements"})
WINNER_OPS = frozenset({"ArgMax", "ArgMin", "TopK"}) | MASK_OPS  # beside a layer's spikes: a winner-take-all
STATE_SUFFIXES = (".next", "_next", ".out", "_out", "_new", ".new", "_t1", "_next_state")


@dataclass(frozen=True)
class Compare:
    """A threshold compare: `output` is H(membrane − θ) as a bool tensor."""

    node: int
    output: str
    membrane: str
    threshold: str  # the θ the membrane is compared with: a constant, unless computed_threshold
    # θ_t computed by the graph (an adaptive threshold): U > θ_t (membrane U, threshold θ_t), or Greater(U − θ_t, 0)
    # (the "membrane" read is then U − θ_t, compared with the constant 0)
    computed_threshold: bool = False


# --- compares --------------------------------------------------------------------------------------------------------
def find_compares(graph: ModelGraph) -> list[Compare]:
    compares = []
    flags: set[str] = set()  # compare outputs and their casts, so far (nodes come in topological order)
    for node in graph.nodes:
        op_type = node.op_type
        if op_type not in COMPARE_OPS:
            if op_type == "Cast" and node.inputs and node.inputs[0] in flags:
                flags.add(node.outputs[0])
            elif op_type == "Where" and (shifted := _heaviside(graph, node)) is not None:
                producer = graph.node_of(shifted)
                if producer is not None and producer.op_type == "Sub" and len(producer.inputs) == 2 and \
                        graph.is_constant(producer.inputs[1]) and not graph.is_constant(producer.inputs[0]):
                    compares.append(Compare(node.index, node.outputs[0], producer.inputs[0], producer.inputs[1]))
                    flags.add(node.outputs[0])
            continue
        if len(node.inputs) != 2:
            continue
        if node.inputs[0] in flags or node.inputs[1] in flags:
            continue  # a spike compared again (torch.where(spk > 0, 0, mem)): the same flag, no neuron of its own
        upper, lower = node.inputs if node.op_type.startswith("Greater") else node.inputs[::-1]
        if graph.is_constant(upper):
            continue  # the data on the wrong side (or none): not a threshold
        if not graph.is_constant(lower):
            # both sides data: H(U − θ_t) spelled U > θ_t, a threshold the graph computes, when the flag is a value
            # of its own (cast to float, as a spike is); otherwise a comparison of two tensors, not a threshold
            if any(user.op_type == "Cast" for user in graph.users(node.outputs[0])):
                compares.append(Compare(node.index, node.outputs[0], upper, lower, True))
            continue
        membrane, threshold = upper, lower
        computed = False
        producer = graph.node_of(upper)
        if producer is not None and producer.op_type == "Sub" and len(producer.inputs) == 2:
            left, right = producer.inputs
            if graph.is_constant(right) and not graph.is_constant(left):
                membrane, threshold = left, right
            elif not graph.is_constant(right):  # H(U − θ_t − 0): compared with zero, θ_t is the threshold
                zero = graph.constant_value(lower)
                computed = zero is not None and zero.size > 0 and not np.any(zero)
        if graph.is_constant(membrane) or _selects_branches(graph, node.outputs[0]):
            continue
        membrane = graph.rounded_again(membrane)  # state_quant: fire() rounds the rounded membrane again
        membrane = graph.unquantised(membrane)  # a QDQ model compares the membrane as its QDQ pair rounds it
        compares.append(Compare(node.index, node.outputs[0], membrane, threshold, computed))
        flags.add(node.outputs[0])
    return compares


def _heaviside(graph: ModelGraph, node: OpNode) -> str | None:
    """torch.heaviside(x, 0) as the dynamo exporter spells it, Where(x == 0, 0, Where(x < 0, 0, 1)): H(x) = x > 0, a
    spike. Returns x."""
    if len(node.inputs) != 3 or _scalar(graph.constant_value(node.inputs[1])) != 0.0:
        return None
    equal, inner = graph.node_of(node.inputs[0]), graph.node_of(node.inputs[2])
    if equal is None or inner is None or equal.op_type != "Equal" or inner.op_type != "Where" or len(
            inner.inputs) != 3:
        return None
    less = graph.node_of(inner.inputs[0])
    if less is None or less.op_type != "Less" or len(less.inputs) != 2 or len(equal.inputs) != 2:
        return None
    shifted = less.inputs[0]
    zeros = (less.inputs[1], equal.inputs[1], inner.inputs[1])
    if (equal.inputs[0] != shifted or any(_scalar(graph.constant_value(name)) != 0.0 for name in zeros)
            or _scalar(graph.constant_value(inner.inputs[2])) != 1.0):
        return None
    return shifted


def _selects_branches(graph: ModelGraph, flag: str) -> bool:
    """Whether a compare only picks between two computed values (`Where(x > 20, x, softplus(x))`, as the dynamo
    exporter spells Softplus): an activation's branch, not a spike — a spike is a value (0/1) of its own."""
    users = graph.users(flag)
    return bool(users) and all(
        user.op_type == "Where" and user.inputs[0] == flag and flag not in user.inputs[1:]
        and not any(graph.is_constant(name) for name in user.inputs[1:]) for user in users)


# --- components ------------------------------------------------------------------------------------------------------
class _UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, item: int) -> int:
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _gain(node: OpNode, data_c: bool = False) -> np.float32 | None:
    """The constant factor a weight op applies to its product (None: 1): Gemm's and onnxruntime's
    FusedGemm/FusedMatMul's alpha. An optimiser folds a Mul by a constant after a bias-free Linear into it
    (Lapicque's Δt/C: MatMul + Mul(0.2) → FusedMatMul(alpha=0.2)); read as 1 it turns the update into Leaky's. With a
    constant bias C the factor is the current's only when beta scales C alike (a Mul folded into both); else the
    product is read as it is."""
    alpha = node.attributes.get("alpha", 1.0) if node.op_type in ALPHA_OPS else 1.0
    if alpha == 1.0:
        return None
    has_c = node.op_type in GEMM_OPS and len(node.inputs) > 2 and bool(node.inputs[2])
    if has_c and not data_c and node.attributes.get("beta", 1.0) != alpha:
        return None
    return np.float32(alpha)


def _scaled(current: Poly, gain: np.float32 | None) -> Poly:
    return current if gain is None else current * Poly.constant(gain)


def _adds_data(graph: ModelGraph, node: OpNode) -> bool:
    """A Gemm whose C is computed from data, Y = A·B + C: onnxruntime's MatMul + Add fusion folds a neuron's decay
    term (β·U, α·I_syn) into the synapse's bias. C is added, not weighted: the op joins C's component."""
    return (node.op_type in GEMM_OPS and len(node.inputs) > 2 and bool(node.inputs[2])
            and not graph.is_constant(node.inputs[2]))


def components(graph: ModelGraph) -> list[int]:
    """Component id per op index: ops joined by non-constant tensors, cut at weight ops and shape-only ops (but for
    a Gemm's added C computed from data: see _adds_data)."""
    uf = _UnionFind(len(graph.nodes))
    is_constant, node_of, union = graph.is_constant, graph.node_of, uf.union  # bound once: this loop sees every op
    for node in graph.nodes:
        if node.op_type in WEIGHT_OPS or node.op_type in SHAPE_ONLY_OPS:
            if _adds_data(graph, node):
                producer = node_of(node.inputs[2])
                if producer is not None and (producer.op_type not in WEIGHT_OPS or _adds_data(graph, producer)):
                    union(node.index, producer.index)
            continue
        for name in node.inputs:
            if not name or is_constant(name):
                continue
            producer = node_of(name)
            if producer is not None and (producer.op_type not in WEIGHT_OPS or _adds_data(graph, producer)):
                union(node.index, producer.index)
    return [uf.find(i) for i in range(len(graph.nodes))]


# --- stepwise state pairs -------------------------------------------------------------------------------------------
def _name_pairs(input_name: str, output_name: str) -> bool:
    if output_name == input_name:
        return False
    if any(output_name == input_name + suffix for suffix in STATE_SUFFIXES):
        return True
    for a, b in (("in", "out"), ("prev", "next"), ("old", "new")):
        if re.sub(rf"(^|[._]){a}([._]|$)", rf"\1{b}\2", input_name) == output_name:
            return True
    return False


def _shapes_compatible(a: tuple[Dim, ...] | None, b: tuple[Dim, ...] | None) -> bool:
    if a is None or b is None:
        return True
    if len(a) != len(b):
        return False
    return all(not (isinstance(x, int) and isinstance(y, int)) or x == y for x, y in zip(a, b, strict=True))


def pair_states(graph: ModelGraph, compares: list[Compare], component_of: list[int]) -> list[StatePair]:
    """Pair stepwise state inputs with the outputs that feed them back: by name (X → X.next …), else by structure
    (a compared state input and a compared computed membrane in the same component)."""
    pairs: list[StatePair] = []
    taken: set[str] = set()
    for input_name in graph.graph_inputs:
        for output_name in graph.graph_outputs:
            if output_name not in taken and _name_pairs(input_name, output_name) and _shapes_compatible(
                graph.shape(input_name), graph.shape(output_name)
            ):
                pairs.append(StatePair(input_name, output_name))
                taken.add(output_name)
                break
    named = bool(pairs)  # the states carry names (X → X.next): an input left over is data, never a guessed readout
    paired_inputs = {p.input for p in pairs}
    compared_inputs = {c.membrane for c in compares if c.membrane in graph.graph_inputs}
    computed = {c.membrane: c for c in compares if c.membrane not in graph.graph_inputs}
    for input_name in sorted(compared_inputs - paired_inputs):
        home = {component_of[n.index] for n in graph.users(input_name)}
        options = []
        for output_name in graph.graph_outputs:
            target = _output_target(graph, output_name)
            if output_name in taken or target not in computed:
                continue
            producer = graph.node_of(target)
            if producer is not None and component_of[producer.index] in home and _shapes_compatible(
                graph.shape(input_name), graph.shape(output_name)
            ):
                options.append(output_name)
        if len(options) > 1:
            # two layers in one component (a membrane residual joins them): the membrane computed from this input in
            # the fewest ops is its own; a tie pairs nothing here (the input's name decided before: mem before mem.1)
            _, distance = _reach(graph, component_of, input_name)
            reach = {name: distance.get(_output_target(graph, name)) for name in options}
            nearest = min((d for d in reach.values() if d is not None), default=None)
            options = [name for name, d in reach.items() if d is not None and d == nearest]
        if len(options) >= 1 and (len(options) == 1 or len({_output_target(graph, o) for o in options}) == 1):
            pairs.append(StatePair(input_name, options[0]))
            taken.add(options[0])
    pairs.extend(_pairs_by_dataflow(graph, compares, component_of, {p.input for p in pairs}, taken, named))
    return pairs


def _pairs_by_dataflow(graph: ModelGraph, compares: list[Compare], component_of: list[int], paired: set[str],
                       taken: set[str], named: bool = False) -> list[StatePair]:
    """State inputs that neither their names nor a compare of their own pair (a hand-written export with free names,
    or the exporter's own: onnx::Mul_1 → 15, flat_0 → sub): an input a neuron's update reads within its component
    is paired with the graph output computed from it there in the fewest ops — its value after this step — when
    that pairing is mutual and unique (the output is no nearer to another input, the input to no other output).
    An input read only through a weight (an all-to-all recurrent Linear: a spike state) pairs with a spike (a
    compare's output); any other, with a value that is no spike. The first input is data (forward(x, *state)); an
    input read through a per-step slice (x[:, t]) is never state. A state is never guessed: when a tie leaves a
    state input unpaired, or the first input reads as a state (the data comes last), nothing is paired here, and
    the replay asks for the unpaired inputs by name."""
    unpaired = [name for name in graph.graph_inputs[1:] if name not in paired]
    if not unpaired:  # (an unrolled export: one input, no state; the walks below cost a pass over every node)
        return []
    flags = {c.output for c in compares}
    for node in graph.nodes:  # the spike: the flag, cast, scaled by a constant (graded_spikes_factor)
        read = [name for name in node.inputs if name in flags]
        if read and (node.op_type == "Cast" or node.op_type == "Mul" and len(read) == 1 and all(
                graph.is_constant(name) for name in node.inputs if name not in flags)):
            flags.add(node.outputs[0])
    compared = {c.membrane for c in compares}
    computed = compared - set(graph.graph_inputs)
    # outputs that are one tensor (the spike returned and fed back, `output` and its Identity or alias) are one
    # candidate: the last listed, as the first output is the model's result (forward returns (spk, *state)); a tensor
    # already fed back is no candidate under another name
    fed_back = {_output_target(graph, name) for name in taken}
    targets = [(target, name) for target, name in {_output_target(graph, name): name for name in graph.graph_outputs
                                                   if name not in taken}.items() if target not in fed_back]

    # each input's reach, walked once: the readout pass below reads the same walks (and again on each of its passes)
    reach = functools.cache(lambda input_name: _reach(graph, component_of, input_name))

    def state_candidates(input_name: str) -> tuple[bool, dict[str, int] | None]:
        """Whether the input is read only through weights (a spike state), and the outputs it may be the state of,
        with their distance (None when no neuron's update reads it)."""
        spike_state, distance = reach(input_name)
        if input_name not in compared and not computed & distance.keys():
            return spike_state, None
        return spike_state, {output_name: distance[target] for target, output_name in targets
                             if target in distance and (target in flags) == spike_state
                             and _shapes_compatible(graph.shape(input_name), graph.shape(output_name))}

    first = graph.graph_inputs[0]
    distances: dict[tuple[str, str], int] = {}  # (input, output) → ops from one to the other
    if first not in paired:
        spike_state, candidates = state_candidates(first)
        if not spike_state and candidates:
            return []  # the first input reads as a membrane: the data input is elsewhere, and which one is a guess
        # read through a synapse, the data input looks like a spike state (when it has as many features as the layer
        # neurons): it is never paired, but an output as near to it as to a state input is no state's for certain
        distances.update({(first, output_name): d for output_name, d in (candidates or {}).items()})
    states = []  # inputs a neuron's update reads: each must be paired, or none is
    for input_name in unpaired:
        _, candidates = state_candidates(input_name)
        if candidates is not None:
            states.append(input_name)
            distances.update({(input_name, output_name): d for output_name, d in candidates.items()})
    found: list[StatePair] = []
    while distances and len(paired) + len(found) + 1 < len(graph.graph_inputs):  # one input stays data
        mutual = [(i, o) for (i, o) in distances if i != first
                  and _nearest(distances, [p for p in distances if p[0] == i]) == (i, o)
                  and _nearest(distances, [p for p in distances if p[1] == o]) == (i, o)]
        if not mutual:
            break
        input_name, output_name = mutual[0]
        found.append(StatePair(input_name, output_name))
        distances = {p: d for p, d in distances.items() if p[0] != input_name and p[1] != output_name}
    if found and set(states) - {p.input for p in found}:
        return []  # a state left over (a tie, or an output already taken): the pairs found may hold its output
    if (found or paired) and not named:
        found += _readout_pairs(graph, component_of, compares, [name for name in unpaired if name not in states],
                                targets, flags, taken | {p.output for p in found}, paired | {p.input for p in found},
                                reach)
    taken.update(p.output for p in found)
    if paired or found:  # stepwise: a state input the step does not read (dynamo keeps Alpha's unused membrane)
        unused = [name for name in unpaired if not graph.users(name) and all(p.input != name for p in found)]
        for input_name in unused:
            output_name = next((name for target, name in targets if name not in taken and target not in flags
                                and _shapes_compatible(graph.shape(input_name), graph.shape(name))), None)
            if output_name is not None:  # its value is never read: any state output of its shape keeps it fed
                found.append(StatePair(input_name, output_name))
                taken.add(output_name)
    return found


def _readout_pairs(graph: ModelGraph, component_of: list[int], compares: list[Compare], candidates: list[str],
                   targets: list[tuple[str, str]], flags: set[str], taken: set[str], states: set[str],
                   reach: Callable[[str], tuple[bool, dict[str, int]]]) -> list[StatePair]:
    """A membrane no compare reads (a readout, reset none, returned while its spike is dropped), in an export without
    names: its input is no compared neuron's, so the pairing above leaves it as data, and the replay asked for an
    array the user cannot give. Paired with its nearest non-spike output when that is unique and its update reads as
    a decaying membrane, U' = β·U + I with every β in (0, 1), and nothing else: the other unpaired inputs read as
    states, so that a second data input added to the readout's current (or scaled into a result) keeps every such
    update from reading clean, and nothing is paired — the replay then asks for the inputs by name."""
    compare_of_output = {c.output: c for c in compares}
    found: list[StatePair] = []
    waiting = list(candidates)
    while waiting:  # a Synaptic readout's membrane reads its current: paired once the current is
        unsure = set(waiting)
        paired_now = []
        for input_name in waiting:
            spike_state, distance = reach(input_name)
            options = {name: distance[target] for target, name in targets
                       if target in distance and target not in flags and name not in taken
                       and _shapes_compatible(graph.shape(input_name), graph.shape(name))}
            if spike_state or not options:
                continue
            nearest = min(options.values())
            closest = [name for name, d in options.items() if d == nearest]
            update = (_membrane_update(graph, component_of, compare_of_output, input_name,
                                       _output_target(graph, closest[0]), states | unsure)
                      if len(closest) == 1 else None)
            # its own U, currents computed in the graph, and states already paired: nothing still in doubt
            clean = update is not None and all(symbol == "U" or symbol.startswith("I:")
                                               or symbol.startswith("S:") and symbol[2:] not in unsure
                                               for symbol in update.symbols())
            decay = update.coefficient(["U"]) if clean else None
            if decay is not None and bool(np.all((decay > 0) & (decay < 1))):
                found.append(StatePair(input_name, closest[0]))
                taken.add(closest[0])
                states = states | {input_name}
                paired_now.append(input_name)
        if not paired_now:
            break
        waiting = [name for name in waiting if name not in paired_now]
    return found


def _reach(graph: ModelGraph, component_of: list[int], input_name: str) -> tuple[bool, dict[str, int]]:
    """Whether `input_name` is read only through weights (a spike state), and the tensors computed from it in its
    component(s), with how many ops away (breadth first)."""
    users = graph.users(input_name)
    spike_state = bool(users) and all(n.op_type in WEIGHT_OPS for n in users)
    starts = ([u for n in users for name in n.outputs for u in graph.users(name) if u.op_type not in WEIGHT_OPS]
              if spike_state else [n for n in users if n.op_type not in WEIGHT_OPS | INDEXING_OPS])
    home = {component_of[n.index] for n in starts}
    distance: dict[str, int] = {}
    frontier, depth, seen = starts, 1 + spike_state, {n.index for n in starts}
    while frontier:
        following = []
        for node in frontier:
            for name in node.outputs:
                if name and name not in distance:
                    distance[name] = depth
                    for user in graph.users(name):
                        if user.index not in seen and component_of[user.index] in home:
                            seen.add(user.index)
                            following.append(user)
        frontier, depth = following, depth + 1
    return spike_state, distance


def _nearest(distances: dict[tuple[str, str], int], pairs: list[tuple[str, str]]) -> tuple[str, str] | None:
    """The one pair at the least distance, or None on a tie."""
    best = min(distances[p] for p in pairs)
    closest = [p for p in pairs if distances[p] == best]
    return closest[0] if len(closest) == 1 else None


# --- reading one update step -----------------------------------------------------------------------------------------
class _StepReader:
    """Rewrites U_t as a polynomial over the symbols described in algebra.py."""

    def __init__(
        self,
        graph: ModelGraph,
        compare_of_output: dict[str, Compare],
        in_component: Callable[[OpNode], bool],
        prev: str,
        target: str,
        previous_region: Callable[[str], bool],
        own_state: set[str],
        current_step: set[str],
        foreign: frozenset[str] = frozenset(),
    ) -> None:
        self.current_step = current_step
        # the membranes of earlier steps before their same-step reset (reset_delay=False): their compare is the spike
        # S_{t-1} an RLeaky one-to-one feeds back, which is no reset flag of this step (see _earlier_spike)
        self.earlier_pre_reset: set[str] = set()
        # other layers' membranes in the same component (a membrane-level residual, fc2(s1) + 0.5·U1, joins them):
        # input current to this layer, whatever made them
        self.foreign = foreign
        self.theta: np.ndarray | None = None  # the threshold of the reset compare, once seen
        self.flags = FLAGS
        self.spike_state: set[str] = set()  # stepwise state inputs fed from this layer's spike
        self.graph = graph
        self.compare_of_output = compare_of_output
        self.in_component = in_component
        self.prev = prev
        self.target = target
        self.previous_region = previous_region
        self.own_state = own_state
        self.memo: dict[str, Poly] = {}
        self.unreadable: list[str] = []
        self.rounded: set[int] = set()  # level counts of the roundings read through (state_quant)
        self.same_value: dict[tuple, str] = {}  # see _carried

    def stateful(self, tensor: str, flags: bool = True) -> bool:
        """Whether `tensor` depends, inside the component, on this layer's state (previous membrane, carried
        state, and with `flags` any reset flag): what does not is input current, whatever ops shaped it."""
        seen: set[str] = set()
        stack = [tensor]
        while stack:
            current = stack.pop()
            if current in self.foreign:
                continue
            if current == self.prev or current in self.own_state or flags and current in self.compare_of_output:
                return True
            node = self.graph.node_of(current)
            if node is None or not self.in_component(node) or self.graph.is_constant(current):
                continue
            if current != tensor and self.previous_region(current):
                return True
            for name in node.inputs:
                if name and name not in seen:
                    seen.add(name)
                    stack.append(name)
        return False

    def recurrent(self, tensor: str) -> bool:
        """A current made by a weight op (outside the component) from this layer's own output or state: a
        recurrent synapse (RLeaky's V(S_{t-1})), as opposed to the feed-forward input of an earlier layer."""
        node = self.graph.node_of(tensor)
        if node is None:
            return False
        synapse = node.inputs[:2] if _adds_data(self.graph, node) else node.inputs  # a Gemm's C is no synapse input
        for name in map(self.graph.unquantised, synapse):  # a quantised synapse reads the spike's integer form
            if not name or self.graph.is_constant(name):
                continue
            if name in self.own_state:
                return True
            producer = self.graph.node_of(name)
            # from this layer's own state, not merely from inside the component: a spike-level residual (SEW:
            # fc3(s1 + s2)) joins two layers' components, and the later layer's synapse reads the earlier one's spike
            # (a compare output, but another layer's)
            if producer is not None and self.in_component(producer) and self.stateful(name, flags=False):
                return True
        return False

    def _sequence_input(self, node: OpNode) -> bool:
        """Whether an indexing op picks this step's slice of a tensor computed for the whole sequence from data alone
        (a Linear run once over (B, T, F), then cur[t] at each step): input current, though every step reads the
        same tensor (which puts it upstream of the previous membrane too)."""
        if not node.inputs or not all(self.graph.is_constant(name) for name in node.inputs[1:] if name):
            return False
        source = node.inputs[0]
        own = {self.prev, self.target, *self.own_state, *self.current_step} - {""}  # its flags come from these too
        return not (self.graph.ancestors(source) | {source}) & own

    def _carried(self, tensor: str, node: OpNode) -> str:
        """The name a carried tensor's symbol takes: in a quantised model, one for every op computing the same value
        from the same tensors' QDQ copies (the graph's common subexpressions, which merge a TorchScript Alpha's base
        update computed twice, cannot see through the copies)."""
        if not self.graph.quantised:
            return tensor
        inputs = tuple(map(self.graph.unquantised, node.inputs))
        key = (node.op_type, node.domain, tuple(sorted(inputs)) if node.op_type in ("Add", "Mul") else inputs,
               repr(sorted(node.attributes.items())))
        return self.same_value.setdefault(key, tensor)

    def _earlier_spike(self, node: OpNode) -> Poly | None:
        """The previous step's spike, cast and scaled by constants (graded_spikes_factor): with reset_delay=False an
        RLeaky one-to-one adds V·S_{t-1}, S_{t-1} = H(U_{t-1} − θ) on the membrane before its same-step reset, which
        lies upstream of the carried U_{t-1}: a flag (Sprev), not a carried state of its own."""
        factor = Poly.constant(1.0)
        while node.op_type in ("Mul", "Cast"):
            if node.op_type == "Mul":
                if len(node.inputs) != 2 or sum(map(self.graph.is_constant, node.inputs)) != 1:
                    return None
                constant, other = sorted(node.inputs, key=lambda name: not self.graph.is_constant(name))
                factor = factor * self.read(constant)
            else:
                other = node.inputs[0] if node.inputs else ""
            compare = self.compare_of_output.get(other)
            if compare is not None:
                return factor * Poly.symbol("Sprev") if compare.membrane in self.earlier_pre_reset else None
            producer = self.graph.node_of(other)
            if producer is None:
                return None
            node = producer
        return None

    def read(self, tensor: str, depth: int = 0) -> Poly:
        if tensor in self.memo:
            return self.memo[tensor]
        result = self._read(tensor, depth)
        self.memo[tensor] = result
        return result

    def _read(self, tensor: str, depth: int) -> Poly:
        graph = self.graph
        # a quantised model: a tensor's rounded or integer form stands for the tensor
        tensor = graph.unquantised(tensor)
        if tensor == self.prev or self.prev and graph.float_forms.get(tensor) == self.prev:
            return Poly.symbol("U")
        if tensor in self.foreign:
            return Poly.symbol(FOREIGN + tensor)
        if graph.is_constant(tensor):
            value = graph.constant_value(tensor)
            return Poly.constant(value) if value is not None else Poly.symbol(f"K:{tensor}")
        if tensor in self.compare_of_output:
            membrane = self.compare_of_output[tensor].membrane
            if membrane == self.prev:
                self.theta = self.graph.constant_value(self.compare_of_output[tensor].threshold)
                return Poly.symbol("R")
            if membrane == self.target or membrane in self.current_step:
                return Poly.symbol("Snow")
            return Poly.symbol("Rold")
        node = graph.node_of(tensor)
        if node is None:  # a graph input
            if tensor in self.spike_state:
                return Poly.symbol("V:" + tensor)  # the layer's own previous spike, fed back (RLeaky)
            return Poly.symbol(("S:" if tensor in self.own_state else "I:") + tensor)
        if node.op_type in NCHWC_REORDERS and node.domain == NCHWC_DOMAIN and node.inputs:
            # onnxruntime's blocked layout (optimisation level "all"): the same values, reordered; read through, so
            # that the conv behind it is seen as the synapse it is (a recurrent one included)
            return self.read(node.inputs[0], depth + 1)
        if _adds_data(graph, node) and self.in_component(node):
            # Y = alpha·A·B + beta·C with C from the layer's state (a fused MatMul + Add): the product is the current,
            # C is read on
            beta = node.attributes.get("beta", 1.0)
            current = Poly.symbol(("V:" if self.recurrent(tensor) else "I:") + tensor)
            return _scaled(current, _gain(node, data_c=True)) + Poly.constant(np.float32(beta)) * self.read(
                node.inputs[2], depth + 1)
        if not self.in_component(node):
            return _scaled(Poly.symbol(("V:" if self.recurrent(tensor) else "I:") + tensor), _gain(node))
        if tensor != self.target and self.previous_region(tensor):
            spike = self._earlier_spike(node) if self.earlier_pre_reset else None
            if spike is not None:
                return spike
            return Poly.symbol("S:" + self._carried(tensor, node))
        if depth > 400:
            self.unreadable.append("depth")
            return Poly.symbol(f"X:{tensor}")
        rounding = graph.roundings.get(tensor) if node.op_type == "Gather" else None
        if rounding is not None:  # the membrane rounded to levels (state_quant): read as the value it rounds
            self.rounded.add(rounding.count)
            return self.read(rounding.source, depth + 1)
        if node.op_type in INDEXING_OPS and self._sequence_input(node):
            return Poly.symbol("I:" + tensor)
        handler = _SYMBOLIC.get(node.op_type)
        if handler is None or node.domain not in ("", "ai.onnx") and node.op_type not in QUANTISED_ARITHMETIC:
            if not self.stateful(tensor):  # e.g. Conv → MaxPool → Leaky: the pooled current is still input
                return Poly.symbol("I:" + tensor)
            self.unreadable.append(node.op_type)
            return Poly.symbol(f"X:{node.op_type}:{tensor}")
        args = [self.read(name, depth + 1) if name else Poly.constant(0.0) for name in node.inputs]
        if node.op_type == "Mul":
            result = args[0].multiply(args[1], self.flags)
        elif node.op_type == "QLinearMul" and len(args) >= 6:
            result = _dequantised(args, 0).multiply(_dequantised(args, 3), self.flags)
        elif node.op_type == "Where" and len(args) == 3 and args[0].symbols() and args[0].symbols() <= FLAGS:
            # torch.where(spk > 0, 0, mem): a reset spelled as a choice on the spike, B + F·(A − B)
            result = args[2] + args[0].multiply(args[1] - args[2], self.flags)
        else:
            result = handler(node, args)
        if result is not None and result.symbols() and all(s.startswith("I:") for s in result.symbols()) and (
                any(len(m) > 1 for m in result.monomials()) or any(s.startswith(SHAPED) for s in result.symbols())):
            # An op on input current alone that is not linear in it (GELU's x·Φ(x)) shapes the current, as a ReLU
            # or a pooling does: still input current. So is anything computed from it and other input alone (GELU's
            # final ·0.5): the gain of a current is that of its last linear step into the membrane, not of a
            # constant inside its shaping.
            return Poly.symbol(SHAPED + tensor)
        if result is None and all(s.startswith("I:") for arg in args for s in arg.symbols()):
            return Poly.symbol(SHAPED + tensor)  # e.g. a division by the input's own norm
        if result is None:
            self.unreadable.append(node.op_type)
            return Poly.symbol(f"X:{node.op_type}:{tensor}")
        return result


def _div(node: OpNode, args: list[Poly]) -> Poly | None:
    denominator = args[1].constant_value()
    if denominator is None:
        return None
    return args[0].scale(1.0 / denominator)


_INTEGER_TYPES = frozenset({onnx.TensorProto.INT8, onnx.TensorProto.INT16, onnx.TensorProto.INT32,
                            onnx.TensorProto.INT64, onnx.TensorProto.UINT8, onnx.TensorProto.UINT16,
                            onnx.TensorProto.UINT32, onnx.TensorProto.UINT64})


def _cast(node: OpNode, args: list[Poly]) -> Poly | None:
    if node.attributes.get("to") in _INTEGER_TYPES and not args[0].symbols() <= FLAGS:
        return None  # a value cast to integers is truncated (sinabs' multi-spike count, trunc(U/θ)): not the value
    return args[0]


def _dequantised(args: list[Poly], at: int) -> Poly:
    """Operand `at` of a quantised op as the value it stands for: a constant's integers dequantised with the scale
    and zero point beside it, (q − zero) · scale; a tensor read as it is (the symbols stand for its values)."""
    value = args[at].constant_value()
    scale = args[at + 1].constant_value() if len(args) > at + 1 else None
    if value is None or scale is None:
        return args[at]
    zero = args[at + 2].constant_value() if len(args) > at + 2 else None
    shifted = np.asarray(value, np.float32) - (np.asarray(zero, np.float32) if zero is not None else np.float32(0))
    return Poly.constant(shifted * np.asarray(scale, np.float32))


def _quantised_add(node: OpNode, args: list[Poly]) -> Poly | None:
    return _dequantised(args, 0) + _dequantised(args, 3) if len(args) >= 6 else None


def _sum(node: OpNode, args: list[Poly]) -> Poly:
    total = args[0]
    for arg in args[1:]:
        total = total + arg
    return total


_SYMBOLIC: dict[str, Callable[[OpNode, list[Poly]], Poly | None]] = {
    "Add": lambda node, a: a[0] + a[1],
    "Sub": lambda node, a: a[0] - a[1],
    "Mul": lambda node, a: a[0] * a[1],
    "Neg": lambda node, a: -a[0],
    "Div": _div,
    "Sum": _sum,
    "Cast": _cast,
    "Unsqueeze": lambda node, a: a[0],
    "Squeeze": lambda node, a: a[0],
    "Reshape": lambda node, a: a[0],
    "Flatten": lambda node, a: a[0],
    "Expand": lambda node, a: a[0],
    # quantised models: a tensor and its integer form stand for the same values (constants are folded before)
    "QuantizeLinear": lambda node, a: a[0],
    "DequantizeLinear": lambda node, a: a[0],
    "QLinearAdd": _quantised_add,
    "QLinearMul": lambda node, a: None,  # read in _StepReader._read (the reset flags need its multiply)
    "Where": lambda node, a: None,  # read in _StepReader._read when its condition is a spike flag
}


def _scalar(value: np.ndarray | None) -> float | None:
    if value is None:
        return None
    flat = np.asarray(value).ravel()
    if flat.size == 0 or not np.allclose(flat, flat[0]):
        return None
    return float(flat[0])


def _reset_form(update: Poly, flag: str, theta: np.ndarray | None) -> tuple[str | None, bool]:
    """How `flag` enters one update — not at all, as a subtracted θ, or as X·(1 − flag) — and whether the flag also
    adds a term of its own: the previous spike through an elementwise recurrent weight (RLeaky one-to-one:
    V·S_{t-1}, where S_{t-1} is the same tensor as the reset flag)."""
    with_reset = [m for m in update.monomials() if flag in m]
    if not with_reset:
        return "none", False
    alone = update.coefficient([flag])
    products = [m for m in with_reset if m != (flag,)]
    if products:
        # zero: every term that the flag multiplies also stands without it, with the opposite coefficient
        for monomial in products:
            rest = list(monomial)
            rest.remove(flag)
            base = update.coefficient(rest)
            if base is None or not np.allclose(base, -update.coefficient(monomial)):
                return None, False
        if alone is not None and flag == "Snow":
            # X·(1 − S) + v·S with this step's own spike S: a hard reset to a value v other than 0 (SpikingJelly's
            # and Norse's v_reset). A recurrent current would be the previous step's spike, never this one's.
            return "value", False
        return "zero", alone is not None
    # subtract: the flag alone, times −θ; any other amount is θ plus a recurrent term (none + V·S reads the same
    # as subtract + (V + θ)·S; subtract is the one snnTorch users export, so that is the reading taken)
    return "subtract", theta is not None and not np.allclose(alone, -theta)


def features_of(update: Poly, unreadable: list[str], state_updates: tuple[Poly, ...] = (),
                theta: np.ndarray | None = None) -> UpdateFeatures:
    """`state_updates`: the step's updates of other carried state (stepwise exports), read the same way; they
    decide the reset when the membrane's own update is not a clean subtract or zero (Alpha subtracts θ from its
    synaptic currents)."""
    symbols = update.symbols()
    monomials = update.monomials()
    inputs = [m for m in monomials if len(m) == 1 and m[0].startswith("I:")]
    gains = {_scalar(update.coefficient(m)) for m in inputs}
    input_gain = gains.pop() if len(gains) == 1 else None
    own = {_scalar(update.coefficient(m)) for m in inputs if not m[0].startswith(FOREIGN)}
    if input_gain is None and len(own) == 1 and len(gains) > 1:
        # another layer's membrane weighted into the current (fc2(s1) + 0.5·U1): the weight is the current's own,
        # computed before the neuron adds it; the gain is that of the layer's other input
        input_gain = own.pop()
    # the flag that resets: the previous step's compare, or this step's spike when the reset is not delayed
    flag = "Snow" if "Snow" in symbols else "R"
    reset, elementwise_recurrent = _reset_form(update, flag, theta)
    if reset is None:
        alone = [p for p in (update, *state_updates) for f in (flag, "Rold") if p.coefficient([f]) is not None]
        reset = "subtract" if alone else None
    if reset == "none" and "U" not in symbols and not any(s.startswith("S:") for s in symbols):
        # nothing of U_{t-1} is kept (β = 0): Leaky's zero reset, β·(1 − R)·U, vanishes with it, so no reset and a
        # zero one are the same update here: which one it was is unknown, not "none"
        reset = None
    state_like = [[s for s in m if s not in FLAGS and not s.startswith("K:")] for m in monomials]
    nonlinear = tuple(dict.fromkeys("·".join(m) for m in state_like if len(m) > 1))  # U·U and R·U·U: one term
    return UpdateFeatures(
        nonlinear_terms=nonlinear,
        carried_states=sum(1 for s in symbols if s.startswith("S:")),
        membrane_feedback="U" in symbols,
        # V·S_{t-1} with S_{t-1} the previous step's spike before its same-step reset (RLeaky one-to-one,
        # reset_delay=False) is an elementwise recurrent weight as V·R is with the reset delayed
        recurrent=elementwise_recurrent or update.coefficient(["Sprev"]) is not None
        # (the same spike read as an older compare: onnxruntime merged the two compares the exporter made of it)
        or flag == "Snow" and update.coefficient(["Rold"]) is not None
        or any(s.startswith("V:") for s in symbols),
        input_gain=input_gain,
        reset=reset,
        unreadable_ops=tuple(sorted(set(unreadable))),
    )


# --- naming --------------------------------------------------------------------------------------------------------
def _scope_name(graph: ModelGraph, nodes: list[OpNode], tensors: list[str]) -> str | None:
    scopes: Counter[str] = Counter()
    for node in nodes:
        raw = node.metadata.get("pkg.torch.onnx.name_scopes")
        if raw:
            parts = [p.strip(" '\"") for p in raw.strip("[]").split(",")]
            name = _module_name(parts[-2]) if len(parts) >= 2 else None
            if name:
                scopes[name] += 1
    if scopes:
        return scopes.most_common(1)[0][0]
    for text in list(tensors) + [node.name for node in nodes]:
        # TorchScript names a node /<module>/<submodule>/<Op>: the innermost module is the neuron's
        path = [part for part in (text or "").split("/")[1:-1] if part] if (text or "").startswith("/") else []
        scope = ""
        for part in path:  # /blocks.0/lif/ → blocks.0.lif; /net/net.2/ (a part that repeats its parent) → net.2
            scope = part if not scope or part.startswith(scope + ".") else f"{scope}.{part}"
        name = _module_name(scope) if scope else None
        if name:
            return name
    return None


def _module_name(scope: str) -> str | None:
    """A layer's name from its module's dotted path: its own attribute name (`net.lif1` → lif1), or the whole path
    when that is a position in a container (`net.1`, nn.Sequential's), or from the innermost container on when the
    module sits inside one (`blocks.0.lif`: every block's neuron is called `lif`); never the tracer's `__self__`."""
    parts = scope.split(".")
    if not parts[-1] or parts[-1] == "__self__":
        return None
    if parts[-1].isdigit():
        return scope
    positions = [index for index, part in enumerate(parts[:-1]) if part.isdigit()]
    return ".".join(parts[max(positions[-1] - 1, 0):]) if positions else parts[-1]


def _state_base(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else name


def _chosen_name(name: str) -> bool:
    """A name someone chose, not the TorchScript exporter's own (onnx::Mul_1, 15, or mem.1: a traced argument's name
    made unique): those name no layer."""
    return "::" not in name and not name.isdigit() and not name.rsplit(".", 1)[-1].isdigit()


def _named_by_state(state_input: str | None, scope: str | None) -> str | None:
    """A stepwise layer's name: `lif1` from a state named `lif1.mem` (the X / X.next convention), else its module's
    scope, else a bare state name someone chose (`mem1`). A bare name yields to the scope: an export without names
    calls every layer's state after snnTorch's own argument (`mem`, then `mem.1`)."""
    if state_input and _chosen_name(state_input) and "." in state_input:
        return _state_base(state_input)
    return scope or (state_input if state_input and _chosen_name(state_input) else None)


# --- the matcher ---------------------------------------------------------------------------------------------------
def match_layers(graph: ModelGraph) -> MatchResult:
    with no_gc():  # see graph.no_gc
        return _match_layers(graph)


def _match_layers(graph: ModelGraph) -> MatchResult:
    compares = find_compares(graph)
    compare_of_output = {c.output: c for c in compares}
    for node in graph.nodes:  # Cast(H(·)) to float is the same flag, and so is torch.where(H(·), 1.0, 0.0)
        if node.op_type in _FLAG_FORMS and node.inputs and node.inputs[0] in compare_of_output and (
                node.op_type == "Cast" or _where_one_zero(graph, node) or _spike_over_zero(graph, node)):
            compare_of_output[node.outputs[0]] = compare_of_output[node.inputs[0]]
    component_of = components(graph)
    pairs = pair_states(graph, compares, component_of)
    state_inputs = {p.input for p in pairs}
    data_inputs = tuple(name for name in graph.graph_inputs if name not in state_inputs)
    style = "stepwise" if pairs else "unrolled"
    order = graph.topological_index()

    spike_of: dict[str, str] = {}
    for compare in compares:
        spike_of.setdefault(compare.membrane, compare.output)
    computed = {c.membrane for c in compares if c.membrane not in graph.graph_inputs}
    synthetic = _uncompared_next_membranes(graph, compares, pairs, computed, component_of)
    for target, nodes in synthetic.items():
        spike_of[target] = nodes[-1].output[0]
    membranes = sorted(computed | set(synthetic), key=lambda name: order[name])
    membrane_set = set(membranes)
    by_component: dict[int, list[str]] = {}
    for membrane in membranes:
        producer = graph.nodes[graph.producer[membrane]]
        if producer.op_type in WEIGHT_OPS:  # a simplifier folded the zero initial state: U_0 is the synapse output
            users = [u for u in graph.users(membrane) if u.op_type not in WEIGHT_OPS]
            if users:
                component_of[producer.index] = component_of[users[0].index]
        by_component.setdefault(component_of[producer.index], []).append(membrane)

    flag_tensors = set(compare_of_output)
    float_forms = graph.float_forms

    def predecessor(membrane: str, component: int) -> tuple[str | None, list[str], bool]:
        """The membrane upstream of `membrane` within its component that is its previous step (see below), the
        tensors from outside the component (synapse currents) that enter on the way — without any, the link is a
        same-step reset (reset_delay=False), not a time step — and whether the walk reads that membrane's reset
        flag."""
        candidates: list[str] = []
        outside: list[str] = []  # tensors from outside the component the update reads (synapse outputs)
        seen: set[str] = set()
        stack = [membrane]
        node_of, is_constant = graph.node_of, graph.is_constant
        while stack:
            node = node_of(stack.pop())
            for name in node.inputs:
                if not name or name in seen or is_constant(name):
                    continue
                seen.add(name)
                if name in membrane_set:
                    candidates.append(name)
                    continue
                if float_forms.get(name, membrane) != membrane and float_forms[name] in membrane_set:
                    # a quantised model (QOperator) computes on the earlier membrane's integer form
                    candidates.append(float_forms[name])
                    continue
                producer = node_of(name)
                if producer is None or component_of[producer.index] != component:
                    outside.append(name)
                    continue
                stack.append(name)  # no pruning by node order: simplifiers hoist ops, the walk must not care
        # Several membranes upstream: another layer's joins this one (a membrane-level residual, fc2(s1) + 0.5·U1,
        # reads layer 1's membrane of this step). The previous step is the one whose reset flag the update reads;
        # else (reset none) the latest that does not also feed it spikes through a synapse: that one is the layer
        # upstream (fc2(s1) + 0.5·U1 reads U1 twice, once as its spikes).
        flagged = {compare_of_output[name].membrane for name in seen & flag_tensors}  # membranes whose flag it reads
        preferred = [name for name in candidates if name in flagged]
        if not preferred and len(candidates) > 1:
            feeding = spiking_into(outside)
            preferred = [name for name in candidates if name not in feeding]
        best = max(preferred or candidates, key=order.__getitem__, default=None)
        return best, outside, best in flagged

    def spiking_into(currents: list[str]) -> set[str]:
        """The membranes whose spikes reach these currents (a backward walk that stops at spikes, membranes and
        constants: the synapses of one step, not the whole graph)."""
        def stop(name: str) -> bool:
            return name in flag_tensors or name in membrane_set or graph.is_constant(name)

        reached = set(currents).union(*(graph.ancestors(name, stop=stop) for name in currents if not stop(name)))
        return {compare_of_output[name].membrane for name in reached & flag_tensors}

    notes: list[str] = []
    paired_targets = {_target(graph, pair) for pair in pairs}  # stepwise: the computed next states
    chains: list[tuple[int, list[list[str]], str | None]] = []  # component, steps (membranes per step), problem
    flags_of: dict[str, set[str]] | None = None
    for component, members in by_component.items():
        successors: dict[str, list[str]] = {}
        heads = []
        new_step: dict[str, bool] = {}
        flagged_link: dict[str, bool] = {}
        currents: dict[str, list[str]] = {}
        for membrane in members:
            pred, currents[membrane], flagged_link[membrane] = predecessor(membrane, component)
            if pred in paired_targets and membrane in paired_targets:
                pred = None  # stepwise: each state's next value is a layer's own, whatever other layer feeds it
            new_step[membrane] = pred is None or bool(currents[membrane])
            if pred is None:
                heads.append(membrane)
            else:
                successors.setdefault(pred, []).append(membrane)
        for pred, following in successors.items():
            if len(following) < 2:
                continue
            # one later membrane reads this one's reset flag: that is the next step; the others start layers of
            # their own (a membrane-level residual feeds layer 1's first membrane into layer 2's). With reset none
            # there is no flag: the next step is the one this membrane does not also feed spikes through a synapse
            # (fc2(s1) + 0.5·U1 reads U1 and its spikes; U1's own next step reads U1 alone)
            nexts = ([m for m in following if flagged_link[m]]
                     or [m for m in following if pred not in spiking_into(currents[m])])
            if len(nexts) == 1:
                heads.extend(m for m in following if m is not nexts[0])
                successors[pred] = nexts
        if len(heads) == len(members) > 1 and all(m in paired_targets for m in members):
            # stepwise, every membrane its own state's next value: several layers in one component (a spike-level
            # residual, s1 + s2, joins them), a layer each
            chains.extend((component, [[membrane]], None) for membrane in members)
            continue
        if len(heads) == len(members) > 1:
            # No membrane reads an earlier one: the membrane is no state of its own (Alpha with reset none,
            # U_t = τ(I_exc,t + I_inh,t)), and the steps are linked through the other state the layer carries. In
            # an unrolled export they share one component (weight ops cut layers apart): one layer, a step each.
            chains.append((component, [[membrane] for membrane in members], None))
            continue
        for head in heads:
            steps, problem, current = [[head]], None, head
            while current in successors:
                nxt = successors[current]
                if len(nxt) > 1:
                    problem = f"membrane {current!r} feeds {len(nxt)} later membranes: layers not separable"
                current = nxt[0]
                if new_step[current]:
                    steps.append([current])
                else:  # a reset applied within the same step: the step's membrane is the later tensor
                    steps[-1].append(current)
            if len(steps) > 1 and len(steps[-2]) > len(steps[-1]):
                # the last step's post-reset membrane is compared by no later step: find it by analogy
                steps[-1].extend(_same_step_tail(graph, steps[-2], steps[-1][-1], component_of))
            elif not paired_targets and problem is None:
                if flags_of is None:  # built on first use: membrane → its compare's outputs (casts too)
                    flags_of = {}
                    for tensor, compare in compare_of_output.items():
                        flags_of.setdefault(compare.membrane, set()).add(tensor)
                last = _uncompared_step(graph, steps[-1][-1], component, component_of, membrane_set,
                                        flags_of.get(steps[-1][-1], set()), predecessor)
                if last is not None:  # an export returning the membrane drops the last step's spike
                    steps.append([last])
                    synthetic[last] = _spike_nodes(graph, compare_of_output[spike_of[steps[-2][0]]], last)
                    spike_of[last] = synthetic[last][-1].output[0]
            chains.append((component, steps, problem))

    layers: list[NeuronLayer] = []
    compared = {c.membrane for c in compares}

    def reset_after_compare(p: _MembranePair) -> bool:
        """The state's next value is a compared membrane of this step after its own spike reset it, and that
        membrane is computed from the state: a LIF written by hand (mem = β·mem + x; spk = H(mem − θ);
        mem = mem − spk·θ) carries the reset membrane, which no compare reads."""
        read = graph.ancestors(p.input_target, stop=membrane_set.__contains__)
        before = [m for m in read & membrane_set if spike_of.get(m) in read]
        if len(before) != 1:
            return False
        membrane = before[0]
        compare = compare_of_output.get(spike_of.get(membrane, ""))
        producer = graph.node_of(membrane)
        if compare is not None and compare.computed_threshold and producer is not None and \
                producer.op_type == "Sub":
            # H(U − θ_t) with θ_t computed (an adaptive threshold): U is the membrane, the state θ_t is computed from
            # (ALIF's adaptation b, which its spike also updates) is not
            membrane = producer.inputs[0]
        return p.pair.input in graph.ancestors(membrane) | {membrane}

    membrane_pairs = [  # stepwise: the computed next membrane of each compared state input
        p for p in (_MembranePair(pair, _target(graph, pair)) for pair in pairs)
        if p.input_target in graph.producer
        and (p.pair.input in compared or p.input_target in membrane_set or reset_after_compare(p))
    ]
    pair_of_membrane = {p.input_target: p for p in membrane_pairs}
    # a layer whose membrane is no state (Alpha with reset none, the membrane input dropped) finds its pair by component
    pair_of_component = {component_of[graph.producer[p.input_target]]: p for p in membrane_pairs}
    nodes_of: dict[int, list[OpNode]] = {}  # grouped once: a pass over all nodes per layer is quadratic
    winners_in: dict[int, set[str]] = {}  # component → the winner-take-all ops it holds (inhibition=True)
    rounding_ops = {index for rounding in graph.roundings.values() for index in rounding.ops}
    for node in graph.nodes:
        nodes_of.setdefault(component_of[node.index], []).append(node)
        if node.op_type in WINNER_OPS and node.index not in rounding_ops:
            winners_in.setdefault(component_of[node.index], set()).add(node.op_type)
    layers_in = Counter(component for component, _, _ in chains)
    # every layer's membranes, stepwise with their state inputs: another layer's are input current to a layer that
    # reads them (a membrane residual, of this step or, through the state input, of the previous one)
    def membranes_of(steps: list[list[str]]) -> set[str]:
        own = {m for step in steps for m in step}
        return own | {pair_of_membrane[m].pair.input for m in own if m in pair_of_membrane}

    ordered_chains = sorted(chains, key=lambda item: order[item[1][0][0]])  # layers in graph order
    own_membranes = [membranes_of(steps) for _, steps, _ in ordered_chains]
    all_membranes = set().union(*own_membranes)
    in_updates: set[tuple[int, str]] = set()  # (component, op type): ops a layer's update holds and could not read
    for (component, steps, problem), own in zip(ordered_chains, own_membranes, strict=True):
        component_nodes = nodes_of.get(component, [])
        membrane_pair = next((pair_of_membrane[m] for step in steps for m in step if m in pair_of_membrane),
                             pair_of_component.get(component))
        shared = layers_in[component] > 1
        foreign = frozenset(all_membranes - own)
        layer = _build_layer(graph, component, component_of, component_nodes, steps, problem, compare_of_output,
                             spike_of, membrane_pair, pairs, shared=shared, foreign=foreign,
                             masked=bool(winners_in.get(component, set()) & MASK_OPS))
        made = tuple(node for step in steps for m in step for node in synthetic.get(m, ()))
        if made:
            layer = replace(layer, extra_nodes=layer.extra_nodes + made, notes=layer.notes + (
                "this step's spike is not in the graph (the export does not use it: it returns the membrane); the "
                "replay computes it from the membrane with the layer's own threshold compare",))
        if layer.spikes and _counted_spikes(graph, compare_of_output, layer.spikes[-1]):
            # the spike sent on is a count, not a flag: the compare counted is not what the layer emits
            counted = ("a multi-spike neuron: the spike it sends on is its threshold compare times a count computed "
                       "from the membrane (sinabs' MultiSpike: trunc(U/θ) spikes a step); its spikes column counts "
                       "the steps over threshold, not the spikes emitted")
            if layer.kind is None:
                layer = replace(layer, problem=f"{counted}; {layer.problem}")
            else:
                layer = replace(layer, notes=(*layer.notes, counted))
        gates = {node.op_type for node in component_nodes} & {"Sigmoid", "Tanh"}
        if layer.kind is None and len(gates) == 2:
            # a gated cell: what it is matters more to the reader than the op the matcher stopped at
            layer = replace(layer, problem="a gated cell (Sigmoid and Tanh gates, as snnTorch's SLSTM and "
                            f"SConv2dLSTM), which no cost table prices: {layer.problem}")
            in_updates.update((component, op) for op in gates)  # the cell's own gates, not separate activations
        layers.append(layer)
        if layer.features is not None:
            in_updates.update((component, op) for op in layer.features.unreadable_ops)

    # A threshold compare alone in its component with nothing carried, U_t = input alone (an input binarised in the
    # model, (x > 0.5).float(), or a step activation between synapses), is no neuron. In an unrolled graph whose
    # neurons have several steps each it shows as one such "layer" per step, and in a stepwise graph (whose neurons
    # carry state) as one: a note, not uncosted layers. (A one-step unrolled export of real neurons looks the same,
    # and keeps its uncosted layers: nothing tells them apart.) Unrolled, they are dropped only when they come one per
    # step: a single compare beside layers of T steps may be a layer computing the whole sequence at once
    # (snnTorch's StateLeaky: a Conv over time), and is kept, uncosted, rather than silently lost.
    multi_step = {layer.time_steps for layer in layers if layer.style == "unrolled" and (layer.time_steps or 0) > 1}
    if style == "stepwise" or multi_step:
        stateless = [_stateless(layer) and _all_steps_at_once(graph, layer.membranes[0]) is None for layer in layers]
        if style != "stepwise" and not any(sum(stateless) % steps == 0 for steps in multi_step if steps):
            stateless = [False] * len(layers)
        for index, (layer, drop) in enumerate(zip(layers, stateless, strict=True)):
            if not drop and multi_step and layer.style == "unrolled" and layer.time_steps == 1 and (
                    layer.problem or "").startswith("only one time step"):
                layers[index] = replace(layer, neurons_shape=None, problem=(  # time may be in its shape
                    f"one threshold compare with no state carried from step to step, beside layers unrolled over "
                    f"{', '.join(map(str, sorted(multi_step)))} steps: a layer computing the whole sequence at once "
                    "(a Conv or a cumulative sum over time, as snnTorch's StateLeaky, LinearLeaky or "
                    "AssociativeLeaky do), which the matcher cannot read step by step?"))
        dropped = [layer.location for layer, drop in zip(layers, stateless, strict=True) if drop]
        if dropped:
            where = ", ".join(dropped[:4]) + (f" and {len(dropped) - 4} more" if len(dropped) > 4 else "")
            notes.append(f"{len(dropped)} threshold compare(s) with no state (U_t = its input alone: an input "
                         f"binarised in the model, or a step activation) at {where}: not neurons, not counted")
            layers = [layer for layer, drop in zip(layers, stateless, strict=True) if not drop]
            ordered_chains = [chain for chain, drop in zip(ordered_chains, stateless, strict=True) if not drop]

    if style == "stepwise":
        for layer, component in _uncompared_states(graph, pairs, layers, component_of, compare_of_output):
            layers.append(layer)
            ordered_chains.append((component, [list(layer.membranes)], None))
    elif layers:
        for layer, component in _uncompared_chains(graph, layers, component_of):
            layers.append(layer)
            ordered_chains.append((component, [[m] for m in layer.membranes], None))

    # names: unique, from scopes / state names, else kind + index
    used: Counter[str] = Counter()
    named = []
    for index, layer in enumerate(layers):
        base = printable(layer.name) or f"{layer.kind or 'layer'}{index + 1}"
        used[base] += 1
        named.append(base if used[base] == 1 else f"{base}_{used[base]}")
    layers = [NeuronLayer(**{**layer.__dict__, "name": name, "location": printable(layer.location),
                             "problem": printable(layer.problem) if layer.problem else layer.problem,
                             "notes": tuple(map(printable, layer.notes)), "update": printable(layer.update),
                             "near_misses": {kind: printable(why) for kind, why in layer.near_misses.items()}})
              for layer, name in zip(layers, named, strict=True)]

    # snnTorch's inhibition=True keeps only the strongest neuron's spike (argmax, scattered into a mask): the compare
    # the matcher counts fires for every neuron over threshold, more than are emitted
    for layer, (component, _, _) in zip(layers, ordered_chains, strict=True):
        held = sorted(winners_in.get(component, ()))
        if held and INHIBITION_NOTE not in layer.notes:  # a mask the matcher did not follow
            notes.append(f"{layer.name}: its spikes pass through {', '.join(held)} (a winner-take-all, snnTorch's "
                         "inhibition=True?): the spikes convention counts every neuron over threshold, which may "
                         "be more than the spikes emitted; dense ops and the neurobench convention (membranes) are "
                         "not affected")
    if layers and graph.quantised:
        notes.append(f"the model is quantised ({graph.quantised} QuantizeLinear on data: tensors rounded to an integer "
                     "grid): updates are read through the quantisation, and the counts are those of the quantised "
                     "model, whose spikes can differ from the float model's")
    # activations outside the neurons' updates (a Tanh inside a custom neuron's update is that layer's, shown by
    # explain as an op it could not read)
    activations = Counter(n.op_type for n in graph.nodes if n.op_type in NON_SPIKING_ACTIVATIONS
                          and (component_of[n.index], n.op_type) not in in_updates)
    if activations:
        listed = ", ".join(f"{op} ×{count}" for op, count in sorted(activations.items()))
        notes.append(
            f"the graph also holds non-spiking activations ({listed}): not neurons in this metric, not counted"
        )
    sliced = {name: _per_step_axes(graph, name) for name in data_inputs} if style == "unrolled" and layers else {}
    declared = []  # the time steps a data input's fixed size holds along the axis its steps are sliced from
    for name, axes in sliced.items():
        shape = graph.shape(name) or ()
        if len(axes) == 1 and (axis := next(iter(axes))) < len(shape) and isinstance(shape[axis], int):
            declared.append(shape[axis])
    if declared:
        held = max(declared)
        for index, layer in enumerate(layers):
            if layer.style == "unrolled" and layer.problem is None and 1 < (layer.time_steps or 0) < held:
                # a state that reaches the membrane a step late (v reads the previous step's current, from a zero
                # start): the first membranes are constants the exporter computed, the last inputs go unused
                layers[index] = replace(layer, kind=None, problem=(
                    f"its membrane is computed at {layer.time_steps} of the {held} time steps its input holds: the "
                    "others are constants the exporter computed (a state reaching the membrane a step late, from a "
                    "zero start) or were dropped as unused, which the matcher cannot count; export it stepwise"))
    unrolled_steps = {layer.time_steps for layer in layers if layer.style == "unrolled" and layer.problem is None}
    time_first = _time_first_inputs(graph, sliced, unrolled_steps)
    if time_first:
        notes.append(f"the model takes {', '.join(map(repr, time_first))} time first, (time, batch, …): its time loop "
                     "slices axis 0; the replay feeds the recorded (batch, time, …) samples that way (a file recorded "
                     "time first needs --time-axis 0)")
    # (every unrolled layer's steps, uncosted ones too: an input holding them is not static)
    static = _static_inputs(graph, sliced, unrolled_steps | {layer.time_steps for layer in layers
                                                              if layer.style == "unrolled"})
    if static:
        notes.append(f"every time step reads {', '.join(map(repr, static))} whole (no time axis: the same input at "
                     "each of the graph's steps, as a static image is fed in snnTorch's tutorials): its recordings are "
                     "(batch, features…), one per sample")
    return MatchResult(tuple(layers), style if layers else "none", tuple(pairs), data_inputs,
                       tuple(map(printable, notes)), time_first, static)


def _counted_spikes(graph: ModelGraph, compare_of_output: dict[str, Compare], spike: str) -> bool:
    """Whether the compare's flag is multiplied by a value computed from its own membrane before it is sent on
    (a spike count), through no winner-take-all (inhibition=True multiplies by a one-hot mask of the membrane)."""
    compare = compare_of_output.get(spike)
    if compare is None:
        return False
    flags = {spike} | {u.outputs[0] for u in graph.users(spike) if u.op_type == "Cast"}
    for flag in flags:
        for user in graph.users(flag):
            if user.op_type != "Mul":
                continue
            for other in user.inputs:
                if other in flags or not other or graph.is_constant(other):
                    continue
                upstream = graph.ancestors(other, stop=lambda name: name == compare.membrane)
                producers = {graph.node_of(name).op_type for name in upstream if graph.node_of(name) is not None}
                if compare.membrane in upstream and not producers & WINNER_OPS:
                    return True
    return False


_FLAG_FORMS = frozenset({"Cast", "Where", "Greater"})  # ops whose output can be a compare's flag again


def _spike_over_zero(graph: ModelGraph, node: OpNode) -> bool:
    """Greater(S, c) with 0 ≤ c < 1 of a 0/1 spike S: S itself (spk > 0, as a where-reset tests it)."""
    if node.op_type != "Greater" or len(node.inputs) != 2:
        return False
    bound = graph.constant_value(node.inputs[1])
    value = _scalar(bound) if bound is not None and np.size(bound) == 1 else None
    return value is not None and 0.0 <= value < 1.0


def _where_one_zero(graph: ModelGraph, node: OpNode) -> bool:
    """Where(flag, 1, 0): a spike written torch.where(mem > θ, 1.0, 0.0), the flag as a number."""
    if node.op_type != "Where" or len(node.inputs) != 3:
        return False
    one, zero = (graph.constant_value(name) for name in node.inputs[1:])
    return (one is not None and zero is not None and np.size(one) == 1 and np.size(zero) == 1
            and _scalar(one) == 1.0 and _scalar(zero) == 0.0)


def _claimed(graph: ModelGraph, layers: list[NeuronLayer], component_of: list[int]) -> set[int]:
    """The components holding the layers found: their membranes' producers, and the readers of a state input."""
    claimed: set[int] = set()
    for layer in layers:
        for name in (*layer.membranes, layer.state_input or ""):
            producer = graph.node_of(name)
            claimed.update([component_of[producer.index]] if producer is not None else
                           (component_of[user.index] for user in graph.users(name)))
    return claimed


def _uncompared_states(graph: ModelGraph, pairs: list[StatePair], layers: list[NeuronLayer],
                       component_of: list[int], compare_of_output: dict[str, Compare]
                       ) -> list[tuple[NeuronLayer, int]]:
    """Stepwise state that no layer found carries, updated as a membrane is (U_t = β·U + I, its previous value
    decayed plus a current) with no threshold compare: a neuron layer whose spikes the exporter dropped (a membrane
    readout, reset none, whose spike nothing uses). Listed as uncosted layers, so the totals say they are incomplete,
    rather than left out silently."""
    claimed = _claimed(graph, layers, component_of)
    found = []
    updates: dict[str, Poly] = {}  # state input → its update, for the layers found here
    for pair in pairs:
        target = _target(graph, pair)
        producer = graph.node_of(target)
        if producer is None or component_of[producer.index] in claimed:
            continue
        update = _membrane_update(graph, component_of, compare_of_output, pair.input, target,
                                  {p.input for p in pairs})
        if update is None:
            continue
        component = component_of[producer.index]
        features = features_of(update, [])
        found.append((NeuronLayer(
            name=_named_by_state(pair.input, _scope_name(graph, [producer], [])) or _state_base(pair.input),
            kind=None, reset=None, style="stepwise", membranes=(target,), spikes=(),
            neurons_shape=graph.shape(target), time_steps=None, state_input=pair.input, update=str(update),
            features=features, location=f"tensor {target!r}",
            problem=(f"a state updated as a membrane is (U_t = {update}) with no threshold compare: a neuron layer "
                     "whose spikes the exporter dropped (a membrane readout, reset none?); its spikes cannot be "
                     "counted, and it is not costed"),
        ), component))
        updates[pair.input] = update
    # a state another such update carries whole (a Synaptic readout's current: its new value, α·syn + I, added
    # unscaled to the membrane, so S:syn weighs α there too) is that layer's, not a layer of its own; one added
    # scaled (a second readout fed 0.5 × the first's membrane) stays a layer
    carried = set()
    for update in updates.values():
        for symbol in update.symbols():
            own = updates.get(symbol[2:]) if symbol.startswith("S:") else None
            weight, decay = update.coefficient([symbol]), own.coefficient(["U"]) if own is not None else None
            if decay is not None and weight is not None and np.shape(weight) == np.shape(decay) and np.allclose(
                    weight, decay):
                carried.add(symbol[2:])
    return [(layer, component) for layer, component in found if layer.state_input not in carried]


def _membrane_update(graph: ModelGraph, component_of: list[int], compare_of_output: dict[str, Compare],
                     state_input: str, target: str, states: set[str]) -> Poly | None:
    """The update of `target` from `state_input` when it reads as a membrane's — its previous value (U) and a
    current (I:…), every op readable — else None."""
    producer = graph.node_of(target)
    if producer is None or state_input not in graph.ancestors(target):
        return None
    component = component_of[producer.index]
    reader = _StepReader(graph, compare_of_output, lambda node, c=component: component_of[node.index] == c,
                         state_input, target, lambda name: False, states, set())
    update = reader.read(target)
    symbols = update.symbols()
    if "U" not in symbols or not any(s.startswith("I:") for s in symbols) or reader.unreadable:
        return None
    return update


def _uncompared_chains(graph: ModelGraph, layers: list[NeuronLayer], component_of: list[int]
                       ) -> list[tuple[NeuronLayer, int]]:
    """Unrolled: chains U_t = β·U_{t−1} + I_t (a decayed previous value plus a synapse's current, from zero) that no
    layer found holds and no threshold compares — a neuron layer whose spikes the exporter dropped (a membrane
    readout, reset none). Listed as uncosted layers (see _uncompared_states)."""
    claimed = _claimed(graph, layers, component_of)
    # an accumulator's output → the accumulator it decays (None: from zero; "": from the first step's current alone,
    # U_0 = I_0, the zero state folded away by a simplifier)
    previous: dict[str, str | None] = {}
    for node in graph.nodes:
        if node.op_type != "Add" or len(node.inputs) != 2 or component_of[node.index] in claimed:
            continue
        for decayed, current in (node.inputs, node.inputs[::-1]):
            scaled = graph.node_of(decayed)
            source = graph.node_of(current)
            if (scaled is None or scaled.op_type != "Mul" or source is None or source.op_type not in WEIGHT_OPS
                    or len(scaled.inputs) != 2):
                continue
            factors = [name for name in scaled.inputs if graph.is_constant(name)]
            states = [name for name in scaled.inputs if not graph.is_constant(name)]
            if len(factors) == 1 and len(states) == 1 and states[0] in previous:
                previous[node.outputs[0]] = states[0]
            elif len(factors) == 2:  # β·0: the zero initial state, folded to a constant
                previous[node.outputs[0]] = None
            elif len(factors) == 1 and len(states) == 1 and (first := graph.node_of(states[0])) is not None \
                    and first.op_type in WEIGHT_OPS and component_of[first.index] not in claimed:
                previous[states[0]] = ""  # U_0 = I_0: the first step is the synapse's output itself
                previous[node.outputs[0]] = states[0]
            break
    following = {before: after for after, before in previous.items() if before is not None}
    found = []
    for start in [name for name, before in previous.items() if before is None or before == ""]:
        chain = [start]
        while chain[-1] in following and len(chain) <= len(previous):
            chain.append(following[chain[-1]])
        if len(chain) < 2:
            continue
        component = component_of[graph.producer[chain[-1]]]
        found.append((NeuronLayer(
            name=_scope_name(graph, [graph.nodes[graph.producer[chain[0]]]], []) or "", kind=None, reset=None,
            style="unrolled", membranes=tuple(chain), spikes=(),
            neurons_shape=graph.shape(chain[-1]), time_steps=len(chain), location=f"tensor {chain[0]!r}",
            problem=("a state updated as a membrane is (U_t = β·U + I, from zero) over the steps with no threshold "
                     "compare: a neuron layer whose spikes the exporter dropped (a membrane readout, reset none?); "
                     "its spikes cannot be counted, and it is not costed"),
        ), component))
    return found


def _per_step_axes(graph: ModelGraph, name: str) -> Counter[int]:
    """The axes along which ops slice one step out of `name` (x[t]: Gather of a constant scalar index, Slice of
    one axis, Split), as the exporters trace a loop over time, with how many ops slice each."""
    rank = len(graph.shape(name) or ()) or None
    axes: Counter[int] = Counter()
    for user in graph.users(name):
        axis: int | None = None
        if user.op_type == "Gather" and len(user.inputs) == 2:
            index = graph.constant_value(user.inputs[1])
            if index is not None and np.ndim(index) == 0:
                axis = int(user.attributes.get("axis", 0))
        elif user.op_type == "Split":
            axis = int(user.attributes.get("axis", 0))
        elif user.op_type == "Slice" and len(user.inputs) >= 4:
            sliced = graph.constant_value(user.inputs[3])
            axis = int(np.ravel(sliced)[0]) if sliced is not None and np.size(sliced) == 1 else None
        if axis is not None:
            axes[axis + rank if axis < 0 and rank else axis] += 1
    return axes


def _static_inputs(graph: ModelGraph, sliced: dict[str, Counter[int]], steps: set[int | None]) -> tuple[str, ...]:
    """Data inputs of an unrolled graph that no op slices per step and whose declared shape has no axis of the
    layers' steps: every step reads them whole (`for t in range(T): fc(x)`, the same input at each step). (A fixed
    batch that happens to equal the steps leaves an input unread as static: its recordings are then refused.)"""
    return tuple(
        name for name, axes in sliced.items()
        if graph.users(name) and not axes and (shape := graph.shape(name))
        and not any(dim in steps for dim in shape if isinstance(dim, int))  # (T, batch, …): time first, not static
    )


def _time_first_inputs(graph: ModelGraph, sliced: dict[str, Counter[int]], steps: set[int | None]) -> tuple[str, ...]:
    """Data inputs whose per-step slices (x[t]: Gather of a constant scalar index, Slice of one axis, Split, as the
    exporters trace a loop over time) are taken along axis 0: a forward written `for t in range(T): fc(x[t])`, as in
    snnTorch's tutorials, takes its input time first. Without such slices (a synapse run over the whole sequence),
    a declared shape (T, batch, …) with T the layers' steps and a symbolic batch says the same."""
    found = []
    for name, axes in sliced.items():
        shape = graph.shape(name) or ()
        if axes and axes.most_common(1)[0][0] == 0 and len(shape) >= 2:
            found.append(name)
        elif not axes and len(shape) >= 2 and shape[0] in steps and isinstance(shape[1], str):
            found.append(name)
    return tuple(found)


def _all_steps_at_once(graph: ModelGraph, membrane: str) -> str | None:
    """How a membrane tensor that holds every time step at once was made, or None: by an ONNX RNN/GRU/LSTM op, or
    as a Concat of per-step tensors each computed from the one before (snnTorch's LeakyParallel, an nn.RNN, as the
    TorchScript and the dynamo exporters trace it)."""
    tensor = membrane
    for _ in range(16):
        node = graph.node_of(tensor)
        if node is None or not node.inputs:
            return None
        if node.op_type in RECURRENT_OPS:
            return f"the output of an ONNX {node.op_type} op"
        if node.op_type == "Concat":
            parts = [_under_layout(graph, name) for name in node.inputs if name and not graph.is_constant(name)]
            if len(parts) > 1 and parts[0] in graph.ancestors(parts[-1]):
                return f"a Concat of {len(parts)} steps, each computed from the one before"
            return None
        if node.op_type not in STEP_LAYOUT_OPS:
            return None
        tensor = node.inputs[0]
    return None


def _fires_on_change(graph: ModelGraph, compared: str) -> bool:
    """Whether the tensor a compare reads is |a − b| of two computed tensors (DeltaLeaky: |U_t − U_{t−1}| > δθ)."""
    size = graph.node_of(compared)
    difference = graph.node_of(size.inputs[0]) if size is not None and size.op_type == "Abs" and size.inputs else None
    return (difference is not None and difference.op_type == "Sub" and len(difference.inputs) == 2
            and not any(graph.is_constant(name) for name in difference.inputs))


def _under_layout(graph: ModelGraph, tensor: str) -> str:
    """The tensor this one reshapes, squeezes, unsqueezes or transposes (through any number of such ops)."""
    while (node := graph.node_of(tensor)) is not None and node.op_type in STEP_LAYOUT_OPS and node.inputs:
        tensor = node.inputs[0]
    return tensor


def _stateless(layer: NeuronLayer) -> bool:
    """One step, no state input, and an update that reads nothing carried: a threshold on its input alone."""
    features = layer.features
    return (layer.style == "unrolled" and layer.time_steps == 1 and layer.state_input is None
            and features is not None and features.carried_states == 0 and not features.membrane_feedback
            and not features.recurrent and not features.unreadable_ops and not features.nonlinear_terms)


def _emitted(graph: ModelGraph, spike: str) -> str:
    """The spike the layer emits: its compare, or the compare times a one-hot mask scattered from an argmax
    (snnTorch's inhibition=True: H(U − θ) · mask), which is what leaves the layer."""
    if not spike:
        return spike
    for tensor in [spike] + [u.outputs[0] for u in graph.users(spike) if u.op_type == "Cast"]:
        for user in graph.users(tensor):
            if user.op_type == "Mul" and len(user.inputs) == 2:
                other = graph.node_of(user.inputs[1] if user.inputs[0] == tensor else user.inputs[0])
                if other is not None and other.op_type in MASK_OPS:
                    return user.outputs[0]
    return spike


def _uncompared_next_membranes(graph: ModelGraph, compares: list[Compare], pairs: list[StatePair],
                               computed: set[str], component_of: list[int]) -> dict[str, tuple[onnx.NodeProto, ...]]:
    """Stepwise: a state input compared with a threshold (its reset flag) whose next value nothing compares — an
    export returning the membrane, not the spike, has no use for this step's spike, and the exporter drops it.
    Without a compare the layer would go unseen; each such next membrane gets replay-only nodes computing its spike
    the way the state input's compare does (same θ, same op)."""
    made: dict[str, tuple[onnx.NodeProto, ...]] = {}
    compare_of_input = {c.membrane: c for c in compares if c.membrane in graph.graph_inputs}
    for pair in pairs:
        compare = compare_of_input.get(pair.input)
        target = _target(graph, pair)
        producer = graph.node_of(target)
        if compare is None or target in computed or producer is None or graph.is_constant(target):
            continue
        in_component = functools.partial(_in_component, component_of, component_of[producer.index])
        inside = graph.ancestors(target, stop=lambda name, inside=in_component: not _inside(graph, name, inside))
        if inside & computed or pair.input not in inside:
            continue  # another membrane makes this one (a same-step reset), or it is not the input's next value
        made[target] = _spike_nodes(graph, compare, target)
    return made


def _uncompared_step(graph: ModelGraph, last: str, component: int, component_of: list[int], membrane_set: set[str],
                     flags: set[str], predecessor: Callable) -> str | None:
    """Unrolled: the membrane of one step more than the compares show — computed from `last` (the latest compared
    membrane) and its reset flag, with new input entering, as every step is — or None. An export that returns the
    membrane record has no use for the last step's spike: the exporter drops its compare. `flags`: the outputs of
    the compare on `last` (its reset flag, as the next step reads it)."""
    if not flags:
        return None
    op_type = graph.node_of(last).op_type
    found: list[str] = []
    seen = {last}
    stack = [last]
    while stack:
        for user in graph.users(stack.pop()):
            if component_of[user.index] != component:
                continue
            for out in user.outputs:
                if out in seen or out in membrane_set:
                    continue
                seen.add(out)
                stack.append(out)  # through the flag too: Alpha's next membrane reads `last` only through it
                if out not in flags and user.op_type == op_type and same_layout(graph.shape(out), graph.shape(last)):
                    pred, outside, flagged = predecessor(out, component)
                    if pred == last and outside and flagged:
                        found.append(out)
    # the step's update ends in the tensor no other candidate is computed from
    ends = [name for name in found if not any(name in graph.ancestors(other) for other in found if other != name)]
    return ends[0] if len(ends) == 1 else None


def _spike_nodes(graph: ModelGraph, compare: Compare, target: str) -> tuple[onnx.NodeProto, ...]:
    """Replay-only nodes computing H(target − θ) as `compare` computes it for its own membrane (same θ, same op),
    cast to float: the spike of a membrane nothing in the graph compares."""
    node = graph.nodes[compare.node]
    prefix = f"neuronops/spike/{target}"
    nodes: list[onnx.NodeProto] = []
    compared = target
    upper = 0 if node.op_type.startswith("Greater") else 1
    if node.inputs[upper] != compare.membrane:  # Greater(U − θ, c)
        nodes.append(helper.make_node("Sub", [target, compare.threshold], [f"{prefix}/shifted"]))
        compared = f"{prefix}/shifted"
    inputs = list(node.inputs)
    inputs[upper] = compared
    nodes.append(helper.make_node(node.op_type, inputs, [f"{prefix}/fired"]))
    nodes.append(helper.make_node("Cast", [f"{prefix}/fired"], [f"{prefix}/spike"], to=onnx.TensorProto.FLOAT))
    return tuple(nodes)


def _same_step_tail(graph: ModelGraph, earlier: list[str], last: str, component_of: list[int]) -> list[str]:
    """Tensors that follow `last` the way earlier[1:] followed earlier[0] (same op, reading the step's membrane)."""
    tail = []
    for previous, following in zip(earlier, earlier[1:], strict=False):
        op = graph.node_of(following)
        slot = op.inputs.index(previous) if op is not None and previous in op.inputs else None
        if slot is None:
            return tail
        shape = [graph.is_constant(name) for name in op.inputs]
        match = [
            user for user in graph.users(last)
            if user.op_type == op.op_type and len(user.inputs) > slot and user.inputs[slot] == last
            and component_of[user.index] == component_of[op.index]
            and [graph.is_constant(name) for name in user.inputs] == shape
        ]
        if len(match) != 1:
            return tail
        last = match[0].outputs[0]
        tail.append(last)
    return tail


def _rebuild(graph: ModelGraph, steps: list[list[str]], spike_of: dict[str, str],
             compare_of_output: dict[str, Compare], reset: str) -> tuple[onnx.NodeProto, ...]:
    """snnTorch's same-step reset on the last step: U = base − (S − R)·θ (subtract) or base − (S − R)·base (zero)."""
    base = steps[-1][0]
    spike = compare_of_output[spike_of[base]]
    flag = spike_of.get(steps[-2][-1])  # the reset flag: the compare on the previous step's membrane
    if flag is None:
        return ()
    prefix = f"neuronops/rebuilt/{base}"
    elem = graph.elem_type(base) or onnx.TensorProto.FLOAT
    scale = spike.threshold if reset == "subtract" else base
    return (
        helper.make_node("Cast", [spike.output], [f"{prefix}/S"], to=elem),
        helper.make_node("Cast", [flag], [f"{prefix}/R"], to=elem),
        helper.make_node("Sub", [f"{prefix}/S", f"{prefix}/R"], [f"{prefix}/do_reset"]),
        helper.make_node("Mul", [f"{prefix}/do_reset", scale], [f"{prefix}/reset_term"]),
        helper.make_node("Sub", [base, f"{prefix}/reset_term"], [f"{prefix}/membrane"]),
    )


def _target(graph: ModelGraph, pair: StatePair) -> str:
    """The tensor a stepwise state's next value is (see _output_target)."""
    return _output_target(graph, pair.output)


def _output_target(graph: ModelGraph, output: str) -> str:
    """The tensor a graph output is: through Identity aliases (and a quantised model's QuantizeLinear /
    DequantizeLinear, to the float value they stand for)."""
    return graph.unquantised(graph.canonical(output))


def _in_component(component_of: list[int], component: int, node: OpNode) -> bool:
    return component_of[node.index] == component


def _inside(graph: ModelGraph, name: str, in_component: Callable[[OpNode], bool]) -> bool:
    producer = graph.node_of(name)
    return producer is not None and in_component(producer)


def _flag_entries(graph: ModelGraph, prev: str, target: str, compare_of_output: dict[str, Compare],
                  in_component: Callable[[OpNode], bool], previous_region: Callable[[str], bool]) -> int:
    """How many op inputs of this step's update read the previous membrane's compare (the reset flag R, or the
    previous spike: one tensor), not counting casts of it."""
    flags = {tensor for tensor, compare in compare_of_output.items() if compare.membrane == prev}
    region = graph.ancestors(target, stop=lambda name: name in flags or previous_region(name)
                             or not _inside(graph, name, in_component)) | {target}
    nodes = {node for node in map(graph.node_of, region) if node is not None and in_component(node)}
    # a quantised model's QuantizeLinear / DequantizeLinear of the flag are the flag too (one DequantizeLinear output
    # may feed both the reset and the recurrent weight)
    grown = True
    while grown:
        grown = False
        for node in nodes:
            if (node.op_type in QUANTISE_OPS and node.inputs and node.inputs[0] in flags
                    and not set(node.outputs) <= flags):
                flags.update(node.outputs)
                grown = True
    return sum(sum(1 for name in node.inputs if name in flags) for node in nodes if not set(node.outputs) <= flags)


def _reset_value(graph: ModelGraph, reader: _StepReader, prev: str, target: str,
                 compare_of_output: dict[str, Compare], in_component: Callable[[OpNode], bool],
                 previous_region: Callable[[str], bool]) -> float | None:
    """U_t = β·U + I + c·R read from an unrolled step can be RLeaky one-to-one with a zero reset (V·S_{t-1}, the
    previous spike being the flag R) or a hard reset to a value v, written after the previous step's compare:
    P = U·(1 − S) + v·S, then U_t = β·P + I (c = β·v). The latter has one tensor P through which both the previous
    membrane and its flag reach this step, computed from them alone (no input current) and reading as
    U − U·R + v·R; RLeaky adds V·S apart from the decayed membrane. Returns v, or None."""
    flags = {tensor for tensor, compare in compare_of_output.items() if compare.membrane == prev}
    sources = flags | {prev}
    region = graph.ancestors(target, stop=lambda name: name in sources or previous_region(name)
                             or not _inside(graph, name, in_component))
    order = graph.topological_index()
    for candidate in sorted(region - sources, key=lambda name: order.get(name, -1)):  # the first that joins them
        upstream = graph.ancestors(candidate, stop=lambda name: name in sources or previous_region(name)
                                   or not _inside(graph, name, in_component))
        producers = [graph.node_of(name) for name in upstream - sources if not graph.is_constant(name)]
        if not (prev in upstream and upstream & flags) or not all(
                node is not None and in_component(node) for node in producers):
            continue  # not computed from the previous membrane and its flag alone
        # every path from the membrane or its flag to this step's update passes through the candidate
        seen, stack = {candidate}, list(sources)
        while stack:
            for user in graph.users(stack.pop()):
                if not in_component(user):
                    continue
                for name in user.outputs:
                    if name and name not in seen and (name in region or name == target):
                        seen.add(name)
                        stack.append(name)
        if target in seen:
            continue
        reset = reader.read(candidate)
        decay, flagged = reset.coefficient(["U"]), reset.coefficient(["R"])
        both = reset.coefficient(["R", "U"])
        if (decay is not None and flagged is not None and both is not None and np.allclose(decay, 1.0)
                and np.allclose(both, -1.0) and np.size(flagged) == 1):
            return float(np.asarray(flagged).reshape(()))
        return None
    return None


@dataclass(frozen=True)
class _MembranePair:
    pair: StatePair
    input_target: str  # the canonical tensor behind the pair's output


CLASS_METADATA = "pkg.torch.onnx.class_hierarchy"  # torch's dynamo exporter: the module classes a node came from


def _declared_class(nodes: list[OpNode], looked_at: int = 200) -> str | None:
    """The registered neuron class most of these nodes' class metadata names (the dynamo exporter records each
    node's module classes, e.g. "['Net', 'snntorch._neurons.lapicque.Lapicque', 'aten.mul.Tensor']"), or None. The
    first `looked_at` nodes that carry the metadata are enough: every step of a layer repeats it."""
    seen: Counter[str] = Counter()
    carried = 0
    for node in nodes:
        text = node.metadata.get(CLASS_METADATA)
        if not text:
            continue
        carried += 1
        for dotted in set(_DOTTED.findall(text[:2000])):
            name = dotted.rsplit(".", 1)[-1]
            if kind_for_class(name) is not None:
                seen[name] += 1
        if carried >= looked_at:
            break
    return seen.most_common(1)[0][0] if seen else None


_DOTTED = re.compile(r"[A-Za-z_][\w.]*")


def _build_layer(
    graph: ModelGraph,
    component: int,
    component_of: list[int],
    component_nodes: list[OpNode],
    steps: list[list[str]],
    problem: str | None,
    compare_of_output: dict[str, Compare],
    spike_of: dict[str, str],
    membrane_pair: _MembranePair | None,
    pairs: list[StatePair],
    shared: bool = False,  # the component holds other layers too (a spike-level residual joins them)
    foreign: frozenset[str] = frozenset(),  # other layers' membranes (and state inputs): input current to this one
    masked: bool = False,  # the component scatters a mask (inhibition=True): the emitted spike may be masked
) -> NeuronLayer:
    chain_problem = problem  # from following the chain of membranes (layers not separable)
    stacked: str | None = None  # how a membrane of every time step at once was made (see _all_steps_at_once)
    stepwise_pair = membrane_pair.pair if membrane_pair is not None and len(steps) == 1 else None
    in_component = lambda node: component_of[node.index] == component  # noqa: E731 (a closure: called per op walked)
    own_pairs = [  # stepwise: the state pairs this layer reads or writes (another layer's membrane is not its state)
        p for p in pairs if p.input not in foreign and _target(graph, p) not in foreign and (
        any(in_component(n) for n in graph.users(p.input))
        or (graph.node_of(_target(graph, p)) is not None
            and in_component(graph.node_of(_target(graph, p)))))
    ]

    def upstream(tensor: str) -> set[str]:
        """Tensors this one is computed from inside the component."""
        return graph.ancestors(tensor, stop=lambda name: not _inside(graph, name, in_component) or name in foreign)

    def own_nodes_of(tensor: str, nodes: list[OpNode]) -> list[OpNode]:
        """Those of `nodes` that compute `tensor` from this layer's own tensors (not through another layer's
        membrane): in a component of several layers, this layer's ops."""
        own = (upstream(tensor) - foreign) | {tensor}
        return [node for node in nodes if any(out in own for out in node.outputs)]

    if shared and stepwise_pair is not None:
        # another layer's state is in this component too: this layer's own is what its next membrane is computed
        # from (a synaptic current) or what is computed from it (its spike, fed back), besides the membrane itself
        membrane = membrane_pair.input_target  # type: ignore[union-attr]
        before = upstream(membrane)
        own_pairs = [p for p in own_pairs if p is stepwise_pair or p.input in before
                     or _target(graph, p) in before or membrane in upstream(_target(graph, p))]
    # a stepwise layer whose membrane is no state (Alpha with reset none: the exporter may drop the unused membrane
    # input) but which carries other state: the tool still drives it step by step
    stateless_membrane = stepwise_pair is None and len(steps) == 1 and bool(own_pairs)
    notes: list[str] = []
    # per step: the membrane after the step (what NeuroBench records) and the tensor its spike compares
    chain = [step[-1] for step in steps]
    spike_sources = [step[0] for step in steps]
    current_step: set[str] = set(steps[-1][:-1])
    # reset_delay=False in an unrolled export: the last step's post-reset membrane is dead code the exporter
    # removed. Read the update one step earlier, and rebuild that membrane for the replay (see _rebuild).
    rebuild = len(steps) > 2 and len(steps[-2]) > len(steps[-1])
    read_steps = steps[:-1] if rebuild else steps
    if stepwise_pair is not None or stateless_membrane:
        layer_style = "stepwise"
        chain = [membrane_pair.input_target] if stepwise_pair is not None else [steps[0][-1]]
        current_step = set(steps[0]) - {chain[0]}
        prev, target = (stepwise_pair.input if stepwise_pair is not None else ""), chain[0]
        own_state = {p.input for p in own_pairs}
        previous_region: Callable[[str], bool] = lambda name: False  # noqa: E731
        time_steps = None
    else:
        layer_style = "unrolled"
        time_steps = len(chain)
        if len(chain) < 2:
            prev, target = "", chain[0]
            stacked = _all_steps_at_once(graph, target)
            if stacked is not None:
                problem = problem or (
                    f"its membrane holds every time step at once ({stacked}, as snnTorch's LeakyParallel is "
                    "exported), which the matcher cannot read step by step (NeuroBench does not count LeakyParallel "
                    "either)")
            problem = problem or (
                "only one time step in the graph and no state input: the update cannot be read "
                "(export more steps, or export stepwise with the membrane as a graph input)"
            )
        else:
            prev, target = read_steps[-2][-1], read_steps[-1][-1]
            current_step = set(read_steps[-1][:-1])
        # the previous steps: upstream of U_{t-1} within this layer (other layers only reach it through synapses)
        ancestors_of_prev = graph.ancestors(prev, stop=lambda name: not _inside(graph, name, in_component)
                                            or name in foreign) | {prev} if prev else set()
        if len(read_steps) >= 3:
            # what the first step's membrane is computed from existed before any step: no state carried from one
            # step to the next but input every step reads (a static image's Conv → MaxPool, computed once). Its
            # state, if any, is that of step 0, which the last step's update (read here) does not reach.
            ancestors_of_prev -= graph.ancestors(read_steps[0][0], stop=lambda name: not _inside(
                graph, name, in_component) or name in foreign)
        previous_region = ancestors_of_prev.__contains__
        own_state = {step[-1] for step in read_steps[:-1]}
    reader = _StepReader(graph, compare_of_output, in_component, prev, target, previous_region, own_state,
                         current_step, foreign)
    if layer_style == "unrolled":
        reader.earlier_pre_reset = {m for step in read_steps[:-1] for m in step[:-1]}
    if layer_style == "stepwise":  # state fed back from this step's spike (graded or not): c·H(U_t − θ)
        reader.spike_state = {p.input for p in pairs if p.input in own_state and p is not stepwise_pair
                              and reader.read(_target(graph, p)).symbols() == {"Snow"}}
    update = reader.read(target)
    state_updates: tuple[Poly, ...] = ()
    if layer_style == "stepwise":  # the other state this layer carries, e.g. Alpha's synaptic currents
        state_updates = tuple(
            reader.read(_target(graph, p)) for p in pairs
            if p.input in own_state and p is not stepwise_pair and p.input not in reader.spike_state
        )
    features = features_of(update, reader.unreadable, state_updates, reader.theta)
    if layer_style == "unrolled" and not prev:  # one step, no previous membrane: no reset term can show, none or not
        features = replace(features, reset=None)
    if features.reset == "zero" and not features.recurrent and "Snow" not in update.symbols():
        # RLeaky one-to-one with a zero reset: V·S_{t-1}·(1 − R) vanishes because S_{t-1} is R; read again with
        # R·R kept apart, and an R² term shows the elementwise recurrent weight
        raw = _StepReader(graph, compare_of_output, in_component, prev, target, previous_region, own_state,
                          current_step, foreign)
        raw.flags = frozenset()
        if any(m.count("R") > 1 for m in raw.read(target).monomials()):
            features = replace(features, recurrent=True)

    if (layer_style == "unrolled" and prev and features.reset == "zero" and features.recurrent
            and not any(symbol.startswith("V:") for symbol in update.symbols())):
        value = _reset_value(graph, reader, prev, target, compare_of_output, in_component, previous_region)
        if value is not None:
            features = replace(features, reset="value", recurrent=False)
            notes.append(f"a hard reset to {value:g}, not 0 (U = U·(1 − S) + {value:g}·S after its compare: "
                         "SpikingJelly's and Norse's v_reset): reset 'value', costed from the cost tables")

    if (layer_style == "unrolled" and prev and features.reset == "subtract" and features.recurrent
            and not any(symbol.startswith("V:") for symbol in update.symbols())
            and _flag_entries(graph, prev, target, compare_of_output, in_component, previous_region) == 1):
        # U_t = βU + I + c·R: an elementwise recurrent V·S_{t-1} (S_{t-1} is the flag R) and a subtracted θ·R add
        # up to one coefficient. Where R enters the step once, there is no reset term: reset none + V·S.
        decay, alone = update.coefficient(["U"]), update.coefficient(["R"])
        if (decay is not None and alone is not None and reader.theta is not None
                and np.allclose(alone, -decay * reader.theta)):
            # c = −β·θ: the reset is applied before the decay, U_t = β(U − θR) + I. A LIF written by hand
            # (mem = β·mem + x; spk = H(mem − θ); mem = mem − spk·θ) carries the reset membrane, which no compare
            # reads; the one compared is before its reset. Leaky subtract, as snnTorch's reset_delay=False
            features = replace(features, recurrent=False)
            notes.append("the reset is applied before the decay (U_t = β(U − θR) + I: a LIF written as mem = mem − "
                         "spk·θ after its compare); read as Leaky subtract, counting the membrane its compare reads")
        else:
            features = replace(features, reset="none")
            notes.append("R here is also the previous spike S_{t-1}: its one term is the elementwise recurrent "
                         "weight V·S_{t-1}, and there is no reset term (reset none)")

    if layer_style == "stepwise" and features.reset == "value":
        value = update.coefficient(["Snow"])
        shown = f"{float(np.asarray(value).reshape(-1)[0]):g}" if value is not None and np.size(value) == 1 else "v"
        notes.append(f"a hard reset to {shown}, not 0 (U·(1 − S) + {shown}·S: SpikingJelly's and Norse's v_reset): "
                     "reset 'value'; the replay starts every state at 0, as snnTorch does — a framework that starts "
                     "the membrane at v_reset (SpikingJelly) counts otherwise: export it unrolled to keep its start")

    kind_name: str | None = None
    near_misses: dict[str, str] = {}
    kind_source = "structure"
    classes = Counter(
        node.function.split(":", 1)[-1].split(".")[0] for node in component_nodes if node.function
    )
    structural, near_misses = classify(features)
    compared = [compare_of_output[spike_of[m]] for m in spike_sources if spike_of.get(m) in compare_of_output]
    adaptive = any(compare.computed_threshold for compare in compared)
    resembles = None
    if adaptive:
        # H(U − θ_t) with θ_t computed: the state read as U is U − θ_t, and a kind its update happens to resemble
        # would be a wrong figure (a stepwise ALIF read as Alpha with reset none): no kind, the reason said first
        resembles, structural = structural, None
    if classes:
        class_name = classes.most_common(1)[0][0]
        kind_source = f"function {class_name}"
        declared = kind_for_class(class_name)
        if declared is None:
            problem = problem or f"function-node class {class_name!r} is not a registered neuron kind"
        else:
            kind_name = declared.name
            if structural is not None and structural.name != declared.name:
                notes.append(f"the update reads as {structural.name}, the function class says {declared.name}")
    elif structural is not None:
        kind_name = structural.name
        class_nodes = component_nodes
        if shared:  # the majority of a joined component may be another layer's class: this layer's own ops decide
            class_nodes = own_nodes_of(target, component_nodes)
        declared_class = _declared_class(class_nodes)
        declared = kind_for_class(declared_class) if declared_class else None
        if declared is not None and structural.name in declared.same_update_as:
            # the update alone cannot tell these kinds apart (Lapicque with Δt/C = 1 is Leaky with β = 1 − 1/R); the
            # exporter's record of the module's class can, and the kind decides the cost
            kind_name, kind_source = declared.name, f"class metadata {declared_class}"
            notes.append(f"the update is also a {structural.name} update; the export's class metadata names "
                         f"{declared_class}, so it is costed as {declared.name}")
        elif declared is not None and declared.name != structural.name:
            notes.append(f"the export's class metadata names {declared_class}, but the update reads as "
                         f"{structural.name}: costed as {structural.name}")
    else:
        nearest = min(near_misses.items(), key=lambda item: item[1].count(";")) if near_misses else None
        closest = f"nearest is {nearest[0]}, but {nearest[1]}" if nearest else ""
        if adaptive:
            read_as = (f": {closest}" if closest else "") if resembles is None else f": it resembles {resembles.name}"
            read_as = f" (read against a moving threshold{read_as})" if read_as else ""
            problem = problem or ("its threshold is computed by the graph, not constant (an adaptive threshold?), "
                                  f"which no registered kind has{read_as}")
        problem = problem or "update matches no registered neuron kind" + (f"; {closest}" if closest else "")
    if problem is not None and problem == chain_problem:
        kind_name = None  # steps that could not be told apart from another layer's: no figure rests on them
    if features.unreadable_ops and kind_name is None:
        problem = f"update uses ops the matcher cannot read ({', '.join(features.unreadable_ops)})"
        if _fires_on_change(graph, target):
            problem = ("its spikes fire on the size of a change, |a − b| of two computed tensors (a delta neuron, as "
                       f"snnTorch's DeltaLeaky), which no registered kind has; {problem}")
    if features.reset is None:
        problem = problem or f"reset term not recognised in U_t = {update}"
    if "Snow" in update.symbols():
        notes.append("the spike of this step resets the membrane in the same step (reset_delay=False)")
    if reader.rounded:
        counts = " or ".join(map(str, sorted(reader.rounded)))
        notes.append(f"its state is rounded to {counts} levels after each update (snnTorch's state_quant): the "
                     "update is read through the rounding, and the rounded membrane is the one counted")

    compared = tuple(spike_of.get(m, "") for m in spike_sources)
    spikes = tuple(map(functools.partial(_emitted, graph), compared)) if masked else compared
    if spikes != compared:
        notes.append(INHIBITION_NOTE)
    extra_nodes: tuple[onnx.NodeProto, ...] = ()
    if rebuild and features.reset in ("subtract", "zero") and "Snow" in update.symbols():
        extra_nodes = _rebuild(graph, steps, spike_of, compare_of_output, features.reset)
        chain[-1] = extra_nodes[-1].output[0]
        notes.append("the last step's post-reset membrane is not in the graph (the exporter dropped it as unused); "
                     "the replay rebuilds it from that step's spike and reset flag")
    tensors = ([stepwise_pair.input] if stepwise_pair else []) + list(chain)
    state_input = (stepwise_pair or own_pairs[0]).input if layer_style == "stepwise" else ""
    first_step_nodes = [n for n in component_nodes if n.index <= graph.producer[chain[0]]]
    if shared:  # only this layer's: the ops its first membrane is computed by
        first_step_nodes = own_nodes_of(chain[0], first_step_nodes)
    # the scope of the ops that make this layer's membranes first: a component can hold two layers (a spike-level
    # residual joins them), whose other ops would name it after the first
    own_nodes = [node for node in map(graph.node_of, chain) if node is not None]
    scope = _scope_name(graph, own_nodes, []) or _scope_name(graph, first_step_nodes or component_nodes, tensors)
    name = _named_by_state(state_input, scope) if state_input else scope
    if kind_name is not None and features.carried_states and name:
        # snnTorch keeps a neuron's synaptic current in its own module: a carried state named after, or computed
        # in, another module is a separate non-spiking layer (an integrator) whose membrane this one adds whole —
        # the same update, costed as one layer of this kind
        for symbol in sorted(s for s in update.symbols() if s.startswith("S:")):
            carried = symbol[2:]
            node = graph.node_of(carried)
            other = _scope_name(graph, [node] if node is not None else graph.users(carried), [])
            if other and other != name and not other.startswith(name + "."):
                notes.append(f"its carried state {carried!r} belongs to another module ({other}): a non-spiking "
                             f"layer whose membrane this one adds reads as {kind_name}'s current, and the two are "
                             f"costed as one {kind_name} layer")
                break
    location = ", ".join(dict.fromkeys(n.name for n in first_step_nodes[:3] if n.name)) or f"tensor {chain[0]!r}"
    return NeuronLayer(
        name=name or "",
        kind=kind_name,
        reset=features.reset,
        style=layer_style,
        membranes=tuple(chain),
        spikes=spikes,
        # a membrane of every step at once mixes time into its shape: neurons per sample unknown
        neurons_shape=None if stacked else graph.shape(target) or (graph.shape(prev) if prev else None),
        time_steps=time_steps,
        state_input=stepwise_pair.input if stepwise_pair else None,
        kind_source=kind_source,
        update=str(update),
        features=features,
        near_misses=near_misses,
        problem=problem,
        location=location,
        notes=tuple(notes),
        extra_nodes=extra_nodes,
    )
