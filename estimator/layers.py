"""What the matcher finds, as plain data: neuron layers, stepwise state pairs, the match result.

Kept apart from match.py (which needs onnx) so that a replay from the analysis cache (cache.py) can rebuild these
from JSON without importing onnx. Everything here but `NeuronLayer.extra_nodes` (replay-only nodes, baked into the
cached session model) round-trips through `to_json`/`from_json`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from .kinds import UpdateFeatures

if TYPE_CHECKING:
    import onnx

Dim = int | str | None


def printable(text: str) -> str:
    """Text from a model file (tensor, node and scope names) as one printable line: a newline or an escape sequence in
    a name would break every table and reach the terminal otherwise."""
    return text if text.isprintable() else "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


@dataclass(frozen=True)
class StatePair:
    """A stepwise model's state: fed back from `output` to `input` at the next step."""

    input: str
    output: str  # the graph output's own name (may be an Identity alias)


@dataclass(frozen=True)
class NeuronLayer:
    """One neuron layer found in the graph (all its unrolled steps grouped)."""

    name: str
    kind: str | None  # registered kind name; None when no kind recognised it
    reset: str | None
    style: str  # "unrolled" or "stepwise"
    membranes: tuple[str, ...]  # U_t per step (stepwise: the one computed membrane)
    spikes: tuple[str, ...]  # the bool compare H(U_t − θ) per step
    neurons_shape: tuple[Dim, ...] | None  # shape of one step's membrane, batch first
    time_steps: int | None  # steps in the graph (unrolled); None for stepwise (driven by the data)
    state_input: str | None = None  # stepwise: the membrane's state input
    kind_source: str = "structure"  # "structure" or "function <Class>"
    update: str = ""  # U_t as read from the graph (explain)
    features: UpdateFeatures | None = None
    near_misses: dict[str, str] = field(default_factory=dict, compare=False)
    problem: str | None = None  # why the layer has no kind (or no readable update)
    location: str = ""  # where in the graph (first node names)
    notes: tuple[str, ...] = ()
    extra_nodes: tuple[onnx.NodeProto, ...] = field(default=(), compare=False)  # replay-only nodes (see _rebuild)

    @property
    def neurons_per_sample(self) -> int | None:
        if self.neurons_shape is None or len(self.neurons_shape) < 1:
            return None
        count = 1
        for dim in self.neurons_shape[1:]:
            if not isinstance(dim, int) or dim < 0:  # symbolic, unknown, or a negative dim (a damaged file)
                return None
            count *= dim
        return count


@dataclass(frozen=True)
class MatchResult:
    layers: tuple[NeuronLayer, ...]
    style: str  # "unrolled", "stepwise" or "none"
    state_pairs: tuple[StatePair, ...]
    data_inputs: tuple[str, ...]
    notes: tuple[str, ...]
    # unrolled: data inputs the graph takes time first, (T, B, …) (its time loop slices axis 0): fed so by the replay
    time_first_inputs: tuple[str, ...] = ()
    # unrolled: data inputs every step reads whole (no time axis: the same input at each step, a static image)
    static_inputs: tuple[str, ...] = ()

    def static_steps(self) -> dict[str, int]:
        """The steps the graph runs on each static input: its unrolled layers' (the recordings have no time axis)."""
        steps = [layer.time_steps for layer in self.layers
                 if layer.style == "unrolled" and layer.problem is None and layer.time_steps]
        return {name: max(steps) for name in self.static_inputs} if steps else {}


def match_to_json(match: MatchResult) -> dict[str, Any]:
    """The match as JSON-ready data (extra_nodes left out: see the module docstring)."""
    layers = []
    for layer in match.layers:
        data = {f.name: getattr(layer, f.name) for f in fields(layer) if f.name != "extra_nodes"}
        data["features"] = asdict(layer.features) if layer.features is not None else None
        layers.append(data)
    return {"layers": layers, "style": match.style, "state_pairs": [[p.input, p.output] for p in match.state_pairs],
            "data_inputs": list(match.data_inputs), "notes": list(match.notes),
            "time_first_inputs": list(match.time_first_inputs), "static_inputs": list(match.static_inputs)}


def match_from_json(data: dict[str, Any]) -> MatchResult:
    """Inverse of match_to_json; KeyError/TypeError/ValueError on malformed data."""
    layers = []
    for raw in data["layers"]:
        values = dict(raw)
        for key in ("membranes", "spikes", "notes"):
            values[key] = tuple(values[key])
        if values["neurons_shape"] is not None:
            values["neurons_shape"] = tuple(values["neurons_shape"])
        features = values["features"]
        if features is not None:
            features = dict(features)
            for key in ("unreadable_ops", "nonlinear_terms"):
                features[key] = tuple(features[key])
            values["features"] = UpdateFeatures(**features)
        layers.append(NeuronLayer(**values))
    return MatchResult(tuple(layers), data["style"], tuple(StatePair(i, o) for i, o in data["state_pairs"]),
                       tuple(data["data_inputs"]), tuple(data["notes"]), tuple(data.get("time_first_inputs", ())),
                       tuple(data.get("static_inputs", ())))
