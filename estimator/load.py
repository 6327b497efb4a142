"""Stage 1 — load: read an ONNX file safely, inline model-local functions, infer shapes.

Model files are untrusted: external data may only live inside the model's own folder (checked before a byte of it
is read), and nothing is unpickled. A model that fails the ONNX checker is analysed anyway, with a warning: the
shapes are often all the dense ops need, and onnxruntime is the judge of whether it can be replayed. If such a model
then breaks the analysis, it is refused with the checker's reason (see api.analyse).
Function-node exports (`export_modules_as_functions`) are inlined so the rest of the pipeline sees one flat graph;
each inlined node is tagged with the function (the neuron class) it came from, so the matcher can name its kind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from .errors import ModelLoadError, require_file

FUNCTION_TAG = "neuronops.function"  # metadata key: "<domain>:<function name>" of the function a node was inlined from


@dataclass(frozen=True)
class LoadedModel:
    """A parsed, inlined, shape-inferred model and where it came from."""

    path: Path
    model: onnx.ModelProto  # inlined, with inferred value_info; external data loaded into memory
    original: onnx.ModelProto  # as read from disk (external data loaded), for onnxruntime
    had_functions: bool
    warnings: tuple[str, ...] = ()  # e.g. the ONNX checker's objection; shown in the report
    external_data: bool = False  # some tensors were read from files beside the model
    checker_objection: str | None = None  # the warning saying why the ONNX checker rejects the model, if it does


def _byte_count(info: dict[str, str], key: str, tensor: str) -> int:
    raw = info.get(key, "") or "0"
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ModelLoadError(f"tensor {tensor!r}: external data {key} {raw!r} is not a byte count")
    return value


def _stored_size(tensor: onnx.TensorProto) -> int | None:
    """Bytes the raw data of `tensor` must have, from its dims and type (None for strings and unknown types)."""
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, TypeError, ValueError):
        return None
    if tensor.data_type == onnx.TensorProto.STRING:
        return None
    count = 1
    for dim in tensor.dims:  # Python ints: a forged huge shape cannot overflow
        count *= max(int(dim), 0)
    if tensor.data_type in _PACKED_4BIT:
        return (count + 1) // 2
    return count * itemsize


_PACKED_4BIT = {getattr(onnx.TensorProto, name) for name in ("INT4", "UINT4", "FLOAT4E2M1") if
                hasattr(onnx.TensorProto, name)}


def _check_external_data(model: onnx.ModelProto, folder: Path) -> None:
    """Refuse external-data locations that leave the model's folder, and missing or short data files, before any of
    it is read."""
    base = folder.resolve()
    for graph in (model.graph, *model.functions):
        for sparse in _sparse_tensors(graph):
            if any(onnx.external_data_helper.uses_external_data(part) for part in (sparse.values, sparse.indices)):
                # onnx's loader leaves them to onnxruntime, which resolves their location against the working
                # folder, not the model's: never read
                raise ModelLoadError(f"sparse tensor {sparse.values.name!r}: its data is stored outside the model, "
                                     "which is not supported for sparse tensors; save the model with them inline")
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if not onnx.external_data_helper.uses_external_data(tensor):
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        if not location or os.path.isabs(location) or Path(location).drive or "\0" in location:
            raise ModelLoadError(f"tensor {tensor.name!r}: external data location {location!r} is not a relative path")
        try:
            target = (base / location).resolve()
            if base != target and base not in target.parents:
                raise ModelLoadError(
                    f"tensor {tensor.name!r}: external data location {location!r} points outside the model's folder"
                )
            if not target.is_file():
                raise ModelLoadError(
                    f"tensor {tensor.name!r}: external data file {location!r} is missing beside the model")
            size = target.stat().st_size
        except OSError as err:  # a name too long, a loop of links…
            raise ModelLoadError(f"tensor {tensor.name!r}: external data file {location!r} cannot be read "
                                 f"({err.strerror or err})") from None
        offset = _byte_count(info, "offset", tensor.name)
        length = _byte_count(info, "length", tensor.name) if info.get("length") else _stored_size(tensor) or 0
        expected = _stored_size(tensor)
        if info.get("length") and expected is not None and length != expected:
            raise ModelLoadError(
                f"tensor {tensor.name!r}: external data length {length} does not match its shape "
                f"{list(tensor.dims)} ({expected} bytes)"
            )
        if offset + length > size:
            raise ModelLoadError(
                f"tensor {tensor.name!r}: external data file {location!r} is truncated "
                f"(needs {offset + length} bytes, has {size})"
            )


def _graphs(graph: onnx.GraphProto | onnx.FunctionProto):
    """The graph and every subgraph in its nodes' attributes (If, Loop, Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _graphs(attribute.g)
            for subgraph in attribute.graphs:
                yield from _graphs(subgraph)


def _tensors(graph: onnx.GraphProto | onnx.FunctionProto, initializers: bool):
    """Every tensor of a graph that onnx.external_data_helper._get_all_tensors visits (initializers, node attribute
    tensors, subgraphs'), in one flat pass: that helper's nested generators cost more than the rest of loading on a
    long unrolled graph, and are run only when some tensor does live outside the file. `initializers`: the top
    graph's too (a function has none)."""
    for inner in _graphs(graph):
        if initializers or inner is not graph:
            yield from inner.initializer
        for node in inner.node:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    yield attribute.t
                yield from attribute.tensors


def _sparse_tensors(graph: onnx.GraphProto | onnx.FunctionProto):
    """Every sparse tensor of a graph: sparse initializers, node attributes, subgraphs'."""
    for inner in _graphs(graph):
        yield from getattr(inner, "sparse_initializer", ())
        for node in inner.node:
            for attribute in node.attribute:
                if attribute.HasField("sparse_tensor"):
                    yield attribute.sparse_tensor
                yield from attribute.sparse_tensors


def _uses_external_data(model: onnx.ModelProto, raw: bytes | None = None) -> bool:
    """Whether any tensor lives outside the file. Every external tensor names its file under the key "location":
    a file without those bytes has none, and is spared a walk over every node's attributes (a tenth of a second on
    a 40 000-node unrolled export)."""
    if raw is not None and b"location" not in raw:
        return False
    uses = onnx.external_data_helper.uses_external_data
    return any(uses(tensor) for tensor in _tensors(model.graph, True)) or any(
        uses(tensor) for function in model.functions for tensor in _tensors(function, False)
    ) or any(uses(sparse.values) or uses(sparse.indices) for graph in (model.graph, *model.functions)
             for sparse in _sparse_tensors(graph))


def _strip_tags(model: onnx.ModelProto) -> None:
    """Remove FUNCTION_TAG entries a file carries itself: the tag names the neuron class a node was inlined from, so
    a forged one could name any kind (and a malformed one break the matcher)."""
    for nodes in (model.graph.node, *(function.node for function in model.functions)):
        for node in nodes:
            if node.metadata_props:
                kept = [(p.key, p.value) for p in node.metadata_props if p.key != FUNCTION_TAG]
                if len(kept) != len(node.metadata_props):
                    del node.metadata_props[:]
                    for key, value in kept:
                        node.metadata_props.add(key=key, value=value)


def _tag_functions(model: onnx.ModelProto) -> None:
    for function in model.functions:
        for node in function.node:
            prop = node.metadata_props.add()
            prop.key = FUNCTION_TAG
            prop.value = f"{function.domain}:{function.name}"


def load_model(path: str | os.PathLike[str]) -> LoadedModel:
    """Read `path` (ONNX protobuf, weights inline or in external files beside it) into a LoadedModel."""
    model_path = Path(path)
    require_file(model_path, ModelLoadError, "no such file", "an .onnx file")
    try:
        if model_path.stat().st_size == 0:
            raise ModelLoadError(f"{model_path}: file is empty")
        raw = model_path.read_bytes()
        original = onnx.ModelProto.FromString(raw)  # what onnx.load does, keeping the bytes for shape inference
    except (DecodeError, ValueError, RuntimeError, OSError, UnicodeDecodeError) as err:
        reason = "truncated or not ONNX protobuf" if isinstance(err, DecodeError) else type(err).__name__
        raise ModelLoadError(f"{model_path}: not a readable ONNX model ({reason})") from None
    if not original.HasField("graph") or len(original.graph.node) == 0:
        raise ModelLoadError(f"{model_path}: not an ONNX model (no graph or no nodes)")
    if not original.opset_import:
        raise ModelLoadError(f"{model_path}: not an ONNX model (no opset_import)")
    external = _uses_external_data(original, raw)
    if external:
        try:
            _check_external_data(original, model_path.parent)
        except ModelLoadError as err:
            raise ModelLoadError(f"{model_path}: {err}") from None
        try:
            onnx.external_data_helper.load_external_data_for_model(original, str(model_path.parent))
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"{model_path}: cannot read external data ({err})") from None
    _refuse_without_parameters(model_path, original)
    warnings, objection = _checker_warnings(original if external else raw, original)
    # (the bytes first, as for external data: a pass over every node costs ≈ 10 ms on a 40 000-node unrolled export)
    if b"BatchNormalization" in raw and any(
            node.op_type == "BatchNormalization" and any(a.name == "training_mode" and a.i for a in node.attribute)
            for node in original.graph.node):
        warnings.append("the graph normalises each batch by its own statistics (BatchNormalization in training "
                        "mode): samples in a batch interact, so the counts depend on --batch-size; export the model "
                        "in eval mode (model.eval(), torch.onnx.export(..., training=TrainingMode.EVAL))")

    had_functions = len(original.functions) > 0
    if had_functions:
        from onnx import inliner  # only function-node exports need it

        working = onnx.ModelProto()
        working.CopyFrom(original)
        _strip_tags(working)
        _tag_functions(working)
        try:
            working = inliner.inline_local_functions(working)
        except Exception as err:  # the inliner raises plain C++ errors
            raise ModelLoadError(f"{model_path}: cannot inline model-local functions ({err})") from None
    try:
        # From the file's bytes when they hold the whole model: spares serialising it again for the C++ side
        # (infer_shapes never modifies the model it is given).
        source = working if had_functions else original if external else raw
        # Data propagation computes constant values, and on a model the checker rejects it can be told to build
        # anything (a 4-byte initializer declaring 2**40 elements: gigabytes); shapes alone are safe.
        working = onnx.shape_inference.infer_shapes(source, data_prop=objection is None)
    except Exception:  # shape inference is a help, not a requirement: shapes are re-checked at replay
        if not had_functions:
            working = onnx.ModelProto()
            working.CopyFrom(original)
    if not had_functions and FUNCTION_TAG.encode() in raw:
        _strip_tags(working)  # the file's own: only the loader says which function a node came from
    return LoadedModel(path=model_path, model=working, original=original, had_functions=had_functions,
                       warnings=tuple(warnings), external_data=external, checker_objection=objection)


def _refuse_without_parameters(path: Path, model: onnx.ModelProto) -> None:
    """torch.onnx.export(..., export_params=False) leaves every parameter (weights, β, θ) a graph input and the
    graph without initializers: nothing can be read (θ looks computed) and nothing replayed without them."""
    if model.graph.initializer:
        return
    inputs = {value.name for value in model.graph.input}
    weights = [node.input[1] for node in model.graph.node
               if node.op_type in ("MatMul", "Gemm", "Conv") and len(node.input) > 1 and node.input[1] in inputs]
    if weights:
        shown = ", ".join(map(repr, list(dict.fromkeys(weights))[:3])) + (" …" if len(set(weights)) > 3 else "")
        raise ModelLoadError(f"{path}: the model holds no parameters: its weights ({shown}) are graph inputs "
                             "(exported with export_params=False?); export it with its parameters")


def _checker_warnings(source: onnx.ModelProto | bytes, model: onnx.ModelProto) -> tuple[list[str], str | None]:
    """What the ONNX checker and the opset stamps say; warnings, not refusals (see the module docstring), and the
    checker's objection among them (None when it accepts the model). `source` is the file's bytes when they hold the
    whole model (no second serialisation for the C++ checker)."""
    warnings: list[str] = []
    objection = None
    newest = onnx.defs.onnx_opset_version()
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version > newest:
            warnings.append(f"the model asks for ONNX opset {opset.version}; this onnx knows up to {newest}")
    try:
        onnx.checker.check_model(source)
    except Exception as err:  # ValidationError, ValueError for protos over 2 GB, …: the checker only advises
        reason = " ".join(str(err).split())
        objection = f"the model fails the ONNX checker: {reason[:300]}"
        warnings.append(objection)
    return warnings, objection
