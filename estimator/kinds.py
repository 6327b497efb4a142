"""The registry of neuron kinds: how each is recognised, what its state is, and which cost key it uses.

The matcher (match.py) reduces one time step of a candidate layer to `UpdateFeatures` — a spelling-free summary of
the membrane update read from the dataflow. Each kind says whether those features are its own, and if not, *why not*
(the reason shows up in `neuronops explain`). Adding a kind means adding one `NeuronKind` here (or calling
`register_kind` from Python) and, if it has no cost yet, one entry in a cost table.

Symbols below: U membrane, I input current, R reset flag H(U_{t-1} − θ), S_t spike H(U_t − θ), β/α decays, θ threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

RESETS = ("subtract", "zero", "none", "value")  # value: a hard reset to a constant other than 0 (v_reset)


@dataclass(frozen=True)
class UpdateFeatures:
    """What one membrane update does, independent of how an exporter spelled it."""

    carried_states: int  # state tensors other than the membrane carried from step to step (syn, syn_exc, …)
    membrane_feedback: bool  # U_t depends on U_{t-1} directly (a decay term), not only through the reset flag
    recurrent: bool  # a current computed by a weight op from the layer's own previous output is added (RLeaky…)
    input_gain: float | None  # coefficient of the input current in U_t (1 for Leaky, Δt/C for Lapicque)
    reset: str | None  # "subtract", "zero", "none", "value", or None when the reset term has an unknown form
    unreadable_ops: tuple[str, ...] = ()  # ops in the update the matcher could not read symbolically
    nonlinear_terms: tuple[str, ...] = ()  # products of state/input terms (snnTorch updates are linear in them)


Recogniser = Callable[[UpdateFeatures], str | None]  # None: it is this kind; otherwise the reason it is not


@dataclass(frozen=True)
class NeuronKind:
    """One neuron model. `recognise` returns None when the features are this kind's, else why not."""

    name: str  # lowercase, the cost-table key and the report's `kind`
    class_names: tuple[str, ...]  # snnTorch class names, as seen in function-node exports (op_type)
    state: tuple[str, ...]  # state tensors, membrane last
    spikes: str
    recognise: Recogniser = field(compare=False)
    equation: str = ""
    # kinds whose update is this kind's for some parameters, so that structure alone reads this kind as one of them;
    # a class recorded by the exporter then decides (Lapicque with Δt/C = 1 reads as Leaky)
    same_update_as: tuple[str, ...] = ()


def _expect(features: UpdateFeatures, carried: int, feedback: bool, recurrent: bool) -> str | None:
    if features.unreadable_ops:
        return f"the update uses ops no snnTorch neuron uses ({', '.join(features.unreadable_ops)})"
    if features.nonlinear_terms:
        return f"the update is not linear in state and input (terms {', '.join(features.nonlinear_terms[:3])})"
    problems = []
    if features.carried_states != carried:
        problems.append(f"carries {features.carried_states} state tensor(s) besides the membrane, expected {carried}")
    if features.membrane_feedback and not feedback:
        problems.append("membrane decay term present")
    elif feedback and not features.membrane_feedback and features.reset is None:
        # β = 0 keeps nothing of U_{t-1} but what a reset takes off (subtract: U_t = I_t − R_t·θ; Synaptic's or
        # Lapicque's zero reset, (1 − R) times the whole new value): still this kind. Leaky's zero reset, β·(1 − R)·U,
        # vanishes with β: no reset and a zero one are then the same update, and which one (costs differ) is unknown.
        problems.append("membrane decay term missing" + (
            " (β = 0 with a zero reset or none: the same update, so which one, and its cost, cannot be told)"
            if features.input_gain is not None else ""))
    if features.recurrent != recurrent:
        problems.append("recurrent current " + ("missing" if recurrent else "present"))
    return "; ".join(problems) or None


def _gain_is_one(features: UpdateFeatures) -> bool:
    return features.input_gain is not None and bool(np.isclose(features.input_gain, 1.0))


def _leaky(f: UpdateFeatures) -> str | None:
    reason = _expect(f, 0, True, False)
    if reason is None and not _gain_is_one(f):
        reason = f"input current is scaled by {f.input_gain} (Leaky adds it unscaled; Lapicque scales it)"
    return reason


def _lapicque(f: UpdateFeatures) -> str | None:
    reason = _expect(f, 0, True, False)
    if reason is None and f.input_gain is None:
        reason = "input current has no single scalar gain"
    elif reason is None and _gain_is_one(f):
        reason = "input current is added unscaled (that is Leaky)"
    return reason


_REGISTRY: dict[str, NeuronKind] = {}


def register_kind(kind: NeuronKind, *, replace: bool = False) -> NeuronKind:
    """Add a neuron kind. Kinds are tried in registration order; the first that recognises a layer wins."""
    if kind.name != kind.name.lower():
        raise ValueError(f"kind name {kind.name!r} must be lowercase")
    if kind.name in _REGISTRY and not replace:
        raise ValueError(f"kind {kind.name!r} is already registered (pass replace=True)")
    _REGISTRY[kind.name] = kind
    return kind


def unregister_kind(name: str) -> None:
    _REGISTRY.pop(name, None)


def registered_kinds() -> tuple[NeuronKind, ...]:
    return tuple(_REGISTRY.values())


def kind_for_class(class_name: str) -> NeuronKind | None:
    """The kind whose snnTorch class is `class_name` (function-node exports name the class in op_type)."""
    base = class_name.split(".")[0]
    for kind in _REGISTRY.values():
        if base in kind.class_names:
            return kind
    return None


def classify(features: UpdateFeatures) -> tuple[NeuronKind | None, dict[str, str]]:
    """The first registered kind that recognises the features, and every kind's reason for refusing them (all of
    them, also those registered after the match: explain shows why a layer is not another kind)."""
    found: NeuronKind | None = None
    reasons: dict[str, str] = {}
    for kind in _REGISTRY.values():
        reason = kind.recognise(features)
        if reason is not None:
            reasons[kind.name] = reason
        elif found is None:
            found = kind
    return found, reasons


register_kind(NeuronKind(
    "leaky", ("Leaky",), ("mem",), "spk", _leaky,
    "U_t = βU_{t-1} + I_t − R_t·θ (subtract) | β(1−R_t)U_{t-1} + I_t (zero) | βU_{t-1} + I_t (none)",
))
register_kind(NeuronKind(
    "lapicque", ("Lapicque",), ("mem",), "spk", _lapicque,
    "U_t = I_t·Δt/C + (1 − Δt/(R·C))·U_{t-1}, reset as Leaky", same_update_as=("leaky",),
))
register_kind(NeuronKind(
    "synaptic", ("Synaptic",), ("syn", "mem"), "spk", lambda f: _expect(f, 1, True, False),
    "I_syn,t = α·I_syn,t-1 + I_t; U_t = βU_{t-1} + I_syn,t, reset as Leaky (zero resets U only)",
    same_update_as=("leaky",),  # α = 0: I_syn is this step's current, and the update Leaky's
))
register_kind(NeuronKind(
    "alpha", ("Alpha",), ("syn_exc", "syn_inh", "mem"), "spk", lambda f: _expect(f, 2, False, False),
    "I_exc,t = αI_exc,t-1 + I_t; I_inh,t = βI_inh,t-1 − I_t; U_t = τ_α(I_exc,t + I_inh,t), reset default zero",
))
register_kind(NeuronKind(
    "rleaky", ("RLeaky",), ("spk", "mem"), "spk", lambda f: _expect(f, 0, True, True),
    "U_t = βU_{t-1} + I_t + V(S_{t-1}) − R_t·θ; V (Linear/Conv/elementwise) is a synapse, not neuron work",
))
register_kind(NeuronKind(
    "rsynaptic", ("RSynaptic",), ("spk", "syn", "mem"), "spk", lambda f: _expect(f, 1, True, True),
    "I_syn,t = αI_syn,t-1 + I_t + V(S_{t-1}); U_t = βU_{t-1} + I_syn,t − R_t·θ",
))

_BUILTIN: dict[str, NeuronKind] = dict(_REGISTRY)

KindsSpec = tuple[str | NeuronKind, ...]  # the registry in order: a built-in kind by name, any other as itself


def kinds_spec() -> KindsSpec | None:
    """The registry as worker processes need it, or None when it holds just the built-in kinds, in their order."""
    spec = tuple(name if _BUILTIN.get(name) is kind else kind for name, kind in _REGISTRY.items())
    return None if spec == tuple(_BUILTIN) else spec


def restore_kinds(spec: KindsSpec | None) -> None:
    """Make this process's registry the one `kinds_spec()` described (None: the built-in kinds)."""
    kinds = [_BUILTIN[entry] if isinstance(entry, str) else entry for entry in (spec or tuple(_BUILTIN))]
    _REGISTRY.clear()
    _REGISTRY.update((kind.name, kind) for kind in kinds)
