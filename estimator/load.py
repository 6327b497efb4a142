"""Stage 1 — load: read an ONNX file safely, inline model-local functions, infer shapes.

Model files are untrusted: external data may only live inside the model's own folder, and nothing is unpickled.
Function-node exports (`export_modules_as_functions`) are inlined so the rest of the pipeline sees one flat graph;
each inlined node is tagged with the function (the neuron class) it came from, so the matcher can name its kind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from .errors import ModelLoadError

FUNCTION_TAG = "neuronops.function"  # metadata key: "<domain>:<function name>" of the function a node was inlined from


@dataclass(frozen=True)
class LoadedModel:
    """A parsed, inlined, shape-inferred model and where it came from."""

    path: Path
    model: onnx.ModelProto  # inlined, with inferred value_info; external data loaded into memory
    original: onnx.ModelProto  # as read from disk (external data loaded), for onnxruntime
    had_functions: bool


def _check_external_data(model: onnx.ModelProto, folder: Path) -> None:
    """Refuse external-data locations that leave the model's folder, and missing or short data files."""
    base = folder.resolve()
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if not onnx.external_data_helper.uses_external_data(tensor):
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        if not location or os.path.isabs(location) or Path(location).drive:
            raise ModelLoadError(f"tensor {tensor.name!r}: external data location {location!r} is not a relative path")
        target = (base / location).resolve()
        if base != target and base not in target.parents:
            raise ModelLoadError(
                f"tensor {tensor.name!r}: external data location {location!r} points outside the model's folder"
            )
        if not target.is_file():
            raise ModelLoadError(f"tensor {tensor.name!r}: external data file {location!r} is missing beside the model")
        offset = int(info.get("offset", 0) or 0)
        length = int(info.get("length", 0) or 0)
        if offset + length > target.stat().st_size:
            raise ModelLoadError(
                f"tensor {tensor.name!r}: external data file {location!r} is truncated "
                f"(needs {offset + length} bytes, has {target.stat().st_size})"
            )


def _tensors(graph: onnx.GraphProto | onnx.FunctionProto, initializers: bool):
    """Every tensor of a graph that onnx.external_data_helper._get_all_tensors visits (initializers, node attribute
    tensors, subgraphs'), in one flat pass: that helper's nested generators cost more than the rest of loading on a
    long unrolled graph, and are run only when some tensor does live outside the file."""
    if initializers:
        yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g, True)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph, True)


def _uses_external_data(model: onnx.ModelProto) -> bool:
    uses = onnx.external_data_helper.uses_external_data
    return any(uses(tensor) for tensor in _tensors(model.graph, True)) or any(
        uses(tensor) for function in model.functions for tensor in _tensors(function, False)
    )


def _tag_functions(model: onnx.ModelProto) -> None:
    for function in model.functions:
        for node in function.node:
            prop = node.metadata_props.add()
            prop.key = FUNCTION_TAG
            prop.value = f"{function.domain}:{function.name}"


def load_model(path: str | os.PathLike[str]) -> LoadedModel:
    """Read `path` (ONNX protobuf, weights inline or in external files beside it) into a LoadedModel."""
    model_path = Path(path)
    if not model_path.exists():
        raise ModelLoadError(f"{model_path}: no such file")
    if model_path.is_dir():
        raise ModelLoadError(f"{model_path}: is a directory, expected an .onnx file")
    if model_path.stat().st_size == 0:
        raise ModelLoadError(f"{model_path}: file is empty")
    try:
        raw = model_path.read_bytes()
        original = onnx.ModelProto.FromString(raw)  # what onnx.load does, keeping the bytes for shape inference
    except (DecodeError, ValueError, RuntimeError, OSError) as err:
        raise ModelLoadError(f"{model_path}: not a readable ONNX model ({type(err).__name__})") from None
    if not original.HasField("graph") or len(original.graph.node) == 0:
        raise ModelLoadError(f"{model_path}: not an ONNX model (no graph or no nodes)")
    if not original.opset_import:
        raise ModelLoadError(f"{model_path}: not an ONNX model (no opset_import)")
    external = _uses_external_data(original)
    if external:
        _check_external_data(original, model_path.parent)
        try:
            onnx.external_data_helper.load_external_data_for_model(original, str(model_path.parent))
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"{model_path}: cannot read external data ({err})") from None

    had_functions = len(original.functions) > 0
    if had_functions:
        from onnx import inliner  # only function-node exports need it

        working = onnx.ModelProto()
        working.CopyFrom(original)
        _tag_functions(working)
        try:
            working = inliner.inline_local_functions(working)
        except Exception as err:  # the inliner raises plain C++ errors
            raise ModelLoadError(f"{model_path}: cannot inline model-local functions ({err})") from None
    try:
        # From the file's bytes when they hold the whole model: spares serialising it again for the C++ side
        # (infer_shapes never modifies the model it is given).
        source = working if had_functions else original if external else raw
        working = onnx.shape_inference.infer_shapes(source, data_prop=True)
    except Exception:  # shape inference is a help, not a requirement: shapes are re-checked at replay
        if not had_functions:
            working = onnx.ModelProto()
            working.CopyFrom(original)
    return LoadedModel(path=model_path, model=working, original=original, had_functions=had_functions)
