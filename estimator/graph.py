"""Stage 2 — graph: the model as a networkx graph of operations and tensors, with what is constant known as such.

Nodes of `ModelGraph.nx` are op indices (int) and tensor names (str); edges run tensor -> op (an input) and
op -> tensor (an output). `Identity` ops are folded away (their output becomes an alias of their input), because
exporters insert them freely and they carry no meaning for matching.

Two notions matter for matching and are computed once here:
- *constant*: an initializer, a Constant, or any op whose inputs are all constant; `Shape`/`Size`/`ConstantOfShape`
  outputs count as constant too (they depend on shapes, never on data values);
- *value*: the numeric value of a constant tensor where it can be computed with numpy (`constant_value`).
"""

from __future__ import annotations

import gc
import heapq
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .layers import Dim
from .load import FUNCTION_TAG

if TYPE_CHECKING:
    import networkx as nx


# Ops that produce data from shapes only: their outputs never depend on input *values*.
MAX_FOLDED = 1 << 24  # elements of a constant the graph folds (see _compute_value)
SHAPE_ONLY_OPS = frozenset({"Shape", "Size", "ConstantOfShape", "EyeLike", "RandomNormal", "RandomUniform"})


@dataclass(slots=True, eq=False)
class OpNode:
    """One ONNX node, with inputs already resolved through Identity aliases. Read-only by convention, not frozen:
    unrolled exports have tens of thousands of nodes, and a frozen dataclass's __init__ (object.__setattr__ per
    field) costs 4× a plain one. Identity is the node object (one per graph node)."""

    index: int
    op_type: str
    domain: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: dict[str, Any]
    metadata: dict[str, str]

    @property
    def function(self) -> str | None:
        """`domain:name` of the model-local function this node was inlined from, if any."""
        return self.metadata.get(FUNCTION_TAG)


_A = onnx.AttributeProto
# helper.get_attribute_value's results, read straight from the field its type names (the helper tries the types one
# by one: a third of the graph's build time on a long unrolled export)
_ATTRIBUTE_READERS: dict[int, Callable[[onnx.AttributeProto], Any]] = {
    _A.FLOAT: lambda a: a.f, _A.INT: lambda a: a.i, _A.STRING: lambda a: a.s, _A.TENSOR: lambda a: a.t,
    _A.FLOATS: lambda a: list(a.floats), _A.INTS: lambda a: list(a.ints), _A.STRINGS: lambda a: list(a.strings),
    _A.TENSORS: lambda a: list(a.tensors),
    _A.GRAPH: lambda a: None, _A.GRAPHS: lambda a: None,  # subgraphs (If/Loop/Scan bodies) are not analysed
}


def _attribute_value(attr: onnx.AttributeProto) -> Any:
    read = _ATTRIBUTE_READERS.get(attr.type)
    if read is None or attr.ref_attr_name:  # the rarer types, and what the helper refuses: its answer
        return helper.get_attribute_value(attr)
    return read(attr)


@contextmanager
def no_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector: building a graph of tens of thousands of nodes allocates hundreds of
    thousands of containers, none of them garbage, and each collection re-walks all of them (time superlinear in
    the graph's size); reference counting still frees everything as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class ModelGraph:
    """The flat graph of a loaded model, with lookups the matcher needs."""

    def __init__(self, model: onnx.ModelProto) -> None:
        with no_gc():
            self._build(model)

    def _build(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.model = model
        self.initializers: dict[str, onnx.TensorProto] = {init.name: init for init in graph.initializer}
        self.graph_inputs: tuple[str, ...] = tuple(i.name for i in graph.input if i.name not in self.initializers)
        self.graph_outputs: tuple[str, ...] = tuple(o.name for o in graph.output)
        # declared and inferred types by name; each read only when asked for (reading all of them costs more than
        # naming them, and a long unrolled export has tens of thousands)
        self._infos: dict[str, onnx.ValueInfoProto] = {
            info.name: info for info in chain(graph.value_info, graph.input, graph.output)
        }
        self.alias: dict[str, str] = {}
        self.nodes: list[OpNode] = []
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[int]] = {}
        self._producer_node: dict[str, OpNode] = {}

        # Hot loop (tens of thousands of nodes in unrolled exports): each protobuf field is read once per node.
        alias, nodes, producer, consumers = self.alias, self.nodes, self.producer, self.consumers
        producer_node = self._producer_node
        canonical = self.canonical
        seen_ops: dict[tuple, tuple[str, ...]] = {}
        listed = list(graph.node)
        fields = [(node.op_type, node.domain, list(node.input), tuple(node.output)) for node in listed]
        order, cyclic = _topological_order(fields)
        # a tensor on a cycle (ONNX graphs are acyclic; the matcher's walks assume it), or None
        self.cycle_tensor: str | None = next((name for name in fields[cyclic[0]][3] if name), None) if cyclic else None
        for position in order:
            raw = listed[position]
            op_type, domain, raw_inputs, outputs = fields[position]
            inputs = tuple([canonical(name) if name in alias else name for name in raw_inputs])
            if op_type == "Identity" and domain in ("", "ai.onnx") and inputs and inputs[0]:
                alias[outputs[0]] = inputs[0]
                continue
            attributes = raw.attribute
            # Common subexpressions: exporters recompute the same value (TorchScript's Synaptic/Alpha zero reset
            # computes the base update twice); one tensor per value keeps state counting honest.
            key = _cse_key(op_type, domain, attributes, inputs)
            if key is not None:
                if key in seen_ops and len(seen_ops[key]) == len(outputs):
                    for mine, theirs in zip(outputs, seen_ops[key], strict=True):
                        if mine:
                            alias[mine] = theirs
                    continue
                seen_ops[key] = outputs
            index = len(nodes)
            metadata = raw.metadata_props
            node = OpNode(
                index=index,
                op_type=op_type,
                domain=domain,
                name=raw.name,
                inputs=inputs,
                outputs=outputs,
                attributes={a.name: _attribute_value(a) for a in attributes} if attributes else {},
                metadata={p.key: p.value for p in metadata} if metadata else {},
            )
            nodes.append(node)
            for name in inputs:
                if name:
                    if name in consumers:
                        consumers[name].append(index)
                    else:
                        consumers[name] = [index]
            for name in outputs:
                if name:
                    producer[name] = index
                    producer_node[name] = node
        # protobuf hands a string field that is not valid UTF-8 back as bytes: such a name matches no other tensor,
        # and onnx's helpers and the report fail on it (checked over the dict keys and node fields, C-level passes)
        def texts() -> Iterator[Any]:
            return chain(producer, consumers, alias, self.initializers, self.graph_inputs, self.graph_outputs,
                         *(map(attrgetter(field), nodes) for field in ("name", "op_type", "domain")))

        self.undecodable_name: bytes | None = None
        if set(map(type, texts())) - {str}:
            self.undecodable_name = next(text for text in texts() if type(text) is not str)
        self._constant: dict[str, bool] = {}
        self._values: dict[str, np.ndarray | None] = {}
        self._shapes: dict[bytes, tuple[Dim, ...] | None] = {}  # a tensor type's bytes -> its shape (see shape)
        self._classify_constants()

    @cached_property
    def nx(self) -> nx.DiGraph:
        """The graph as a networkx DiGraph (built on first use: importing and filling it costs more than the whole
        static analysis of a small model, and the pipeline itself does not need it)."""
        import networkx

        graph = networkx.DiGraph()
        for node in self.nodes:
            graph.add_node(node.index)
            for name in node.inputs:
                if name:
                    graph.add_edge(name, node.index)
            for name in node.outputs:
                if name:
                    graph.add_edge(node.index, name)
        return graph

    @cached_property
    def op_types(self) -> frozenset[str]:
        """The op types the graph holds: lookups for rarer patterns (roundings, quantisation) skip graphs without
        them instead of walking tens of thousands of nodes."""
        return frozenset(map(attrgetter("op_type"), self.nodes))

    # --- rounding to levels ------------------------------------------------------------------------------------
    @cached_property
    def roundings(self) -> dict[str, Rounding]:
        """Tensors rounded to the nearest of a fixed set of levels, y = L[argmin_k |L_k − x|], by the output of their
        Gather: how exporters trace snnTorch's `state_quant` (flatten, unsqueeze, tile against the levels, Sub, Abs,
        ArgMin over the last axis, Gather from the levels). Found by that dataflow, whatever the node names."""
        found: dict[str, Rounding] = {}
        if "ArgMin" not in self.op_types:
            return found
        for node in self.nodes:
            if node.op_type != "Gather" or len(node.inputs) != 2 or node.attributes.get("axis", 0) != 0:
                continue
            index = self.node_of(node.inputs[1])
            if index is None or index.op_type != "ArgMin" or index.attributes.get("keepdims", 1) != 0:
                continue
            distance = self.node_of(index.inputs[0]) if index.inputs else None
            if distance is None or distance.op_type != "Abs" or not distance.inputs:
                continue
            difference = self.node_of(distance.inputs[0])
            if difference is None or difference.op_type != "Sub" or len(difference.inputs) != 2:
                continue
            levels = self.constant_value(node.inputs[0])
            if levels is None or levels.ndim != 1 or levels.size < 2 or levels.dtype.kind != "f":
                continue
            constant = [self.is_constant(name) for name in difference.inputs]
            if constant.count(True) != 1:
                continue
            other = self.constant_value(difference.inputs[constant.index(True)])
            if other is None or other.size != levels.size or not np.array_equal(other.ravel(), levels):
                continue
            # the levels along a new last axis: x unsqueezed, then tiled or expanded to one copy per level
            spread = difference.inputs[constant.index(False)]
            axis = index.attributes.get("axis", 0)
            rank = self.shape(spread)
            if not (axis == -1 or rank is not None and axis == len(rank) - 1):
                continue
            ops = [node.index, index.index, distance.index, difference.index]
            while (producer := self.node_of(spread)) is not None and producer.inputs \
                    and producer.op_type in ("Tile", "Expand", "Unsqueeze"):
                ops.append(producer.index)
                spread = producer.inputs[0]
            if self.is_constant(spread) or len(ops) == 4:  # nothing broadcast: not one level per element
                continue
            found[node.outputs[0]] = Rounding(spread, len(levels), levels, tuple(ops))
        return found

    def rounded_again(self, tensor: str) -> str:
        """For a tensor that rounds an already rounded tensor to the same levels (snnTorch's `fire` rounds the
        membrane `state_quant` rounded: Q(Q(U)) = Q(U)), the earlier tensor holding the same values in the same
        shape; otherwise the tensor itself."""
        roundings = self.roundings
        if not roundings:
            return tensor
        outer = roundings.get(_through_layout(self, tensor)[-1])
        if outer is None:
            return tensor
        chain = _through_layout(self, outer.source)
        inner = roundings.get(chain[-1])
        wanted = self.shape(tensor)
        if inner is None or not np.array_equal(inner.levels, outer.levels) or wanted is None or None in wanted:
            return tensor
        return next((name for name in chain if same_layout(self.shape(name), wanted)), tensor)

    def unquantised(self, tensor: str) -> str:
        """The float tensor a quantised model's data tensor stands for: back through QuantizeLinear of data (its
        integer form: onnxruntime's QOperator format) and DequantizeLinear(QuantizeLinear(x)) on one grid (the QDQ
        format's rounding), to x; otherwise the tensor itself."""
        if not self.quantised:
            return tensor
        for _ in range(64):
            node = self.node_of(tensor)
            if node is None or not node.inputs:
                return tensor
            if node.op_type == "DequantizeLinear":
                quantise = self.node_of(node.inputs[0])
                if quantise is None or quantise.op_type != "QuantizeLinear" or not self._same_grid(quantise, node):
                    return tensor
                node = quantise
            elif node.op_type != "QuantizeLinear":
                return tensor
            if not node.inputs or self.is_constant(node.inputs[0]):
                return tensor
            tensor = node.inputs[0]
        return tensor

    @cached_property
    def quantised(self) -> int:
        """How many QuantizeLinear ops quantise data (not constants): a quantised model's."""
        if "QuantizeLinear" not in self.op_types:
            return 0
        return sum(1 for node in self.nodes if node.op_type == "QuantizeLinear" and node.inputs
                   and not self.is_constant(node.inputs[0]))

    @cached_property
    def float_forms(self) -> dict[str, str]:
        """A quantised model's integer tensors of data by the float tensor a DequantizeLinear makes of them: the
        QOperator format computes on the integer form (QLinearAdd, QLinearMul) and compares the float one."""
        forms: dict[str, str] = {}
        if not self.quantised:
            return forms
        for node in self.nodes:
            if node.op_type == "DequantizeLinear" and node.inputs and not self.is_constant(node.inputs[0]):
                forms.setdefault(node.inputs[0], node.outputs[0])
        return forms

    def _same_grid(self, quantise: OpNode, dequantise: OpNode) -> bool:
        """Whether a QuantizeLinear and a DequantizeLinear use the same scale, zero point and axis."""
        if quantise.attributes.get("axis", 1) != dequantise.attributes.get("axis", 1):
            return False
        for slot in (1, 2):
            mine = quantise.inputs[slot] if len(quantise.inputs) > slot else ""
            theirs = dequantise.inputs[slot] if len(dequantise.inputs) > slot else ""
            if mine == theirs:
                continue
            a, b = (self.constant_value(name) if name else None for name in (mine, theirs))
            if a is None or b is None or a.shape != b.shape or not np.array_equal(a, b):
                return False
        return True

    # --- names -------------------------------------------------------------------------------------------------
    def canonical(self, name: str) -> str:
        """The tensor a name stands for once Identity ops are folded away."""
        seen = 0
        while name in self.alias and seen < 10_000:
            name = self.alias[name]
            seen += 1
        return name

    def node_of(self, tensor: str) -> OpNode | None:
        return self._producer_node.get(tensor)

    def users(self, tensor: str) -> list[OpNode]:
        return [self.nodes[i] for i in self.consumers.get(tensor, ())]

    # --- constants ----------------------------------------------------------------------------------------------
    def _classify_constants(self) -> None:
        flags = self._constant
        for name in self.initializers:
            flags[name] = True
        for name in self.graph_inputs:
            flags[name] = False
        for node in self.nodes:  # in dataflow order
            if node.op_type == "Constant" or node.op_type in SHAPE_ONLY_OPS:
                constant = True
            else:
                constant = True
                for name in node.inputs:
                    if name and not flags.get(name, True):
                        constant = False
                        break
            for name in node.outputs:
                flags[name] = constant

    def is_constant(self, tensor: str) -> bool:
        """True when the tensor's value does not depend on any graph input's values."""
        # Every graph input has a flag (_classify_constants), so a name without one is not a graph input.
        return self._constant.get(tensor, True)

    def constant_value(self, tensor: str) -> np.ndarray | None:
        """The numeric value of a constant tensor, or None when it cannot be computed statically."""
        if tensor in self._values:
            return self._values[tensor]
        value = self._compute_value(tensor) if self.is_constant(tensor) else None
        if value is not None and np.asarray(value).dtype.kind not in "iuf":
            value = None  # bools, strings, complex numbers…: no neuron's update is read from them
        self._values[tensor] = value
        return value

    def _compute_value(self, tensor: str) -> np.ndarray | None:
        if tensor in self.initializers:
            try:
                return numpy_helper.to_array(self.initializers[tensor])
            except Exception:
                return None
        node = self.node_of(tensor)
        if node is None:
            return None
        if node.op_type == "Constant":
            for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
                if key in node.attributes and node.attributes[key] is not None:
                    value = node.attributes[key]
                    try:
                        if isinstance(value, onnx.TensorProto):
                            return numpy_helper.to_array(value)
                        return np.asarray(value)
                    except Exception:  # data that does not fit its dims (a damaged file): not a usable constant
                        return None
            return None
        if node.op_type == "ConstantOfShape":
            fill = node.attributes.get("value")
            return numpy_helper.to_array(fill).reshape(()) if fill is not None else np.asarray(0.0, dtype=np.float32)
        evaluate = _CONSTANT_FOLDERS.get(node.op_type)
        if evaluate is None or node.domain not in ("", "ai.onnx"):
            return None
        args = [self.constant_value(name) if name else None for name in node.inputs]
        try:
            # a result much larger than its inputs (Add of an N×1 and a 1×N constant) is not folded: a tiny file
            # must not make the analysis allocate gigabytes; no neuron's update needs such a constant
            if math.prod(np.broadcast_shapes(*(np.shape(arg) for arg in args if arg is not None))) > MAX_FOLDED:
                return None
            return evaluate(node, args)
        except Exception:
            return None

    # --- shapes -------------------------------------------------------------------------------------------------
    def shape(self, tensor: str) -> tuple[Dim, ...] | None:
        """Static shape of a tensor (ints, symbolic names, or None per dim), or None when unknown."""
        if tensor in self.initializers:
            return tuple(self.initializers[tensor].dims)
        type_proto = self._tensor_type(tensor)
        if type_proto is None:
            return None
        # An unrolled export declares the same few types thousands of times: each is read once, keyed by its bytes
        # (serialising a small TypeProto costs a fraction of walking its dims through protobuf's accessors).
        key = type_proto.SerializeToString()
        if key in self._shapes:
            return self._shapes[key]
        shape = read_shape(type_proto.tensor_type)
        self._shapes[key] = shape
        return shape

    def elem_type(self, tensor: str) -> int | None:
        if tensor in self.initializers:
            return self.initializers[tensor].data_type
        type_proto = self._tensor_type(tensor)
        return type_proto.tensor_type.elem_type if type_proto is not None else None

    def _tensor_type(self, tensor: str) -> onnx.TypeProto | None:
        info = self._infos.get(tensor)
        if info is None:
            return None
        type_proto = info.type
        return type_proto if type_proto.HasField("tensor_type") else None

    # --- traversal ----------------------------------------------------------------------------------------------
    def topological_index(self) -> dict[str, int]:
        """Position of each produced tensor in node order (ONNX node lists are topologically sorted)."""
        return {name: node.index for node in self.nodes for name in node.outputs}

    def ancestors(self, tensor: str, stop: Callable[[str], bool] | None = None) -> set[str]:
        """Tensors upstream of `tensor` (not including it), not walking past tensors where `stop` is true."""
        seen: set[str] = set()
        stack = [tensor]
        node_of = self._producer_node.get
        while stack:
            node = node_of(stack.pop())
            if node is None:
                continue
            for name in node.inputs:
                if name and name not in seen:
                    seen.add(name)
                    if stop is None or not stop(name):
                        stack.append(name)
        return seen

    def op_counts(self, indices: Iterable[int] | None = None) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self.nodes if indices is None else (self.nodes[i] for i in indices):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
        return counts


@dataclass(frozen=True, eq=False)
class Rounding:
    """y = levels[argmin_k |levels_k − source|], elementwise (see ModelGraph.roundings)."""

    source: str  # the tensor rounded (as the rounding reads it, before its broadcast against the levels)
    count: int  # how many levels
    levels: np.ndarray
    ops: tuple[int, ...]  # op indices of the rounding: Gather, ArgMin, Abs, Sub and the broadcast


LAYOUT_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze"})


def same_layout(shape: tuple[Dim, ...] | None, wanted: tuple[Dim, ...] | None) -> bool:
    """The same shape, or the same rank and the same fixed dims (symbolic ones may be named apart: a quantised model's
    shape inference names its batch afresh per tensor)."""
    if shape == wanted:
        return True
    return shape is not None and wanted is not None and len(shape) == len(wanted) and all(
        a == b for a, b in zip(shape, wanted, strict=True) if isinstance(a, int) or isinstance(b, int))


def _through_layout(graph: ModelGraph, tensor: str) -> list[str]:
    """`tensor`, then the tensors it is a reshaping of (Reshape, Flatten, Squeeze, Unsqueeze: the same values in
    the same order; and a quantised model's QuantizeLinear / DequantizeLinear of them), upstream until another op."""
    chain = [tensor]
    while len(chain) < 64:
        producer = graph.node_of(chain[-1])
        if producer is not None and producer.op_type in LAYOUT_OPS and producer.inputs:
            chain.append(producer.inputs[0])
        elif (unquantised := graph.unquantised(chain[-1])) != chain[-1]:
            chain.append(unquantised)
        else:
            break
    return chain


def read_shape(tensor_type: onnx.TypeProto.Tensor) -> tuple[Dim, ...] | None:
    """A tensor type's dims: ints, symbolic names, or None for an unknown dim; None when it has no shape. A negative
    dim (invalid ONNX: a damaged or hand-edited file) is an unknown one."""
    if not tensor_type.HasField("shape"):
        return None
    dims: list[Dim] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value) if dim.dim_value >= 0 else None)
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return tuple(dims)


def _topological(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Nodes in dataflow order (Kahn), whatever order the file lists them in; the file's order breaks ties."""
    listed = list(graph.node)
    order, _ = _topological_order([(n.op_type, n.domain, list(n.input), tuple(n.output)) for n in listed])
    return [listed[i] for i in order]


def _topological_order(fields: list[tuple[str, str, list[str], tuple[str, ...]]]) -> tuple[list[int], list[int]]:
    """Positions of the nodes (op_type, domain, inputs, outputs) in dataflow order (Kahn); ties by file order."""
    produced_by = {name: i for i, (_, _, _, outputs) in enumerate(fields) for name in outputs if name}
    get = produced_by.get
    # Exporters write nodes in dataflow order: then Kahn's order with the file's order breaking ties *is* the file's
    # order (the smallest unplaced index is always ready), and one pass proves it.
    if all(get(name, -1) < i for i, (_, _, inputs, _) in enumerate(fields) for name in inputs):
        return list(range(len(fields))), []
    waiting = [0] * len(fields)
    users: dict[int, list[int]] = {}
    for i, (_, _, inputs, _) in enumerate(fields):
        for name in set(inputs):
            j = get(name)
            if j is not None:  # j == i: a node reading its own output, a cycle of one
                waiting[i] += 1
                users.setdefault(j, []).append(i)
    ready = [i for i, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for k in users.get(i, ()):
            waiting[k] -= 1
            if waiting[k] == 0:
                heapq.heappush(ready, k)
    cyclic: list[int] = []
    if len(order) != len(fields):  # a cycle: keep the file's order for the rest (the caller refuses the graph)
        placed = set(order)
        cyclic = [i for i in range(len(fields)) if i not in placed]
        order.extend(cyclic)
    return order, cyclic


_COMMUTATIVE = frozenset({"Add", "Mul", "Sum", "Max", "Min", "And", "Or", "Equal"})
_NOT_PURE = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                       "Bernoulli", "Dropout", "Constant"})


_SUBGRAPHS = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)


def _cse_key(op_type: str, domain: str, attributes: Any, inputs: tuple[str, ...]) -> tuple | None:
    """A key equal for two nodes that compute the same value, or None when the node must stay as it is."""
    if op_type in _NOT_PURE or not inputs:
        return None
    try:
        ordered = tuple(sorted(inputs)) if op_type in _COMMUTATIVE else inputs
    except TypeError:  # a name protobuf could not decode (bytes among str): never merged; refused after the build
        return None
    if not attributes:
        return (domain, op_type, ordered, ())
    if len(attributes) == 1:
        attribute = attributes[0]
        if attribute.type in _SUBGRAPHS:
            return None
        return (domain, op_type, ordered, ((attribute.name, attribute.SerializeToString()),))
    if any(a.type in _SUBGRAPHS for a in attributes):
        return None
    attrs = tuple(sorted((a.name, a.SerializeToString()) for a in attributes))
    return (domain, op_type, ordered, attrs)


def _unary(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[OpNode, list], np.ndarray]:
    return lambda node, args: fn(args[0])


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[[OpNode, list], np.ndarray]:
    return lambda node, args: fn(args[0], args[1])


def _clip(node: OpNode, args: list) -> np.ndarray:
    value = args[0]
    low = args[1] if len(args) > 1 and args[1] is not None else node.attributes.get("min")
    high = args[2] if len(args) > 2 and args[2] is not None else node.attributes.get("max")
    if low is not None:
        value = np.maximum(value, low)
    if high is not None:
        value = np.minimum(value, high)
    return value


def _cast(node: OpNode, args: list) -> np.ndarray:
    return args[0].astype(helper.tensor_dtype_to_np_dtype(node.attributes["to"]))


def _per_axis(node: OpNode, value: np.ndarray, parameter: np.ndarray | None) -> np.ndarray | None:
    """A scale or zero point shaped to broadcast against `value`: a scalar, or one per slice along `axis`."""
    if parameter is None:
        return None
    parameter = np.asarray(parameter)
    if parameter.ndim == 0 or parameter.size == 1:
        return parameter.reshape(())
    axis = node.attributes.get("axis", 1)
    axis = axis + value.ndim if axis < 0 else axis
    if parameter.ndim != 1 or not 0 <= axis < value.ndim or value.shape[axis] != parameter.size:
        raise ValueError("scale does not fit the tensor")  # blocked or malformed: not folded
    shape = [1] * value.ndim
    shape[axis] = parameter.size
    return parameter.reshape(shape)


def _quantize(node: OpNode, args: list) -> np.ndarray:
    """QuantizeLinear: saturate(round_half_even(x / scale) + zero_point), in the zero point's integer type."""
    if node.attributes.get("block_size") or node.attributes.get("output_dtype"):
        raise ValueError("blocked or typed quantisation")  # opset 21 forms: not folded
    value = np.asarray(args[0], np.float32)
    point = args[2] if len(args) > 2 and args[2] is not None else np.asarray(0, np.uint8)
    limits = np.iinfo(np.asarray(point).dtype)  # a float8 zero point raises: not folded
    scaled = np.rint(value / _per_axis(node, value, args[1])) + _per_axis(node, value, point)
    return np.clip(scaled, limits.min, limits.max).astype(np.asarray(point).dtype)


def _dequantize(node: OpNode, args: list) -> np.ndarray:
    """DequantizeLinear: (x − zero_point) · scale."""
    if node.attributes.get("block_size"):
        raise ValueError("blocked quantisation")
    value = np.asarray(args[0])
    point = args[2] if len(args) > 2 and args[2] is not None else np.asarray(0)
    shifted = value.astype(np.float32) - _per_axis(node, value, point).astype(np.float32)
    return (shifted * _per_axis(node, value, args[1])).astype(np.asarray(args[1]).dtype)


def _keep_values(node: OpNode, args: list) -> np.ndarray:
    """Reshape-like ops: the values matter for matching, not the layout."""
    return args[0]


_CONSTANT_FOLDERS: dict[str, Callable[[OpNode, list], np.ndarray]] = {
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "Div": _binary(np.divide),
    "Pow": _binary(np.power),
    "Min": _binary(np.minimum),
    "Max": _binary(np.maximum),
    "Neg": _unary(np.negative),
    "Abs": _unary(np.abs),
    "Log": _unary(np.log),
    "Exp": _unary(np.exp),
    "Sqrt": _unary(np.sqrt),
    "Reciprocal": _unary(np.reciprocal),
    "Sigmoid": _unary(lambda x: 1.0 / (1.0 + np.exp(-x))),
    "Tanh": _unary(np.tanh),
    "Clip": _clip,
    "Cast": _cast,
    "QuantizeLinear": _quantize,
    "DequantizeLinear": _dequantize,
    "Unsqueeze": _keep_values,
    "Squeeze": _keep_values,
    "Reshape": _keep_values,
    "Flatten": _keep_values,
    "Expand": _keep_values,
}
