"""neuronops: NeuroBench's NeuronOperations (dense and effective neuron ops) from an SNN's ONNX export.

    from estimator import estimate
    report = estimate("model.onnx", inputs="inputs.npz", convention="neurobench")
"""

from .api import analyse, estimate
from .errors import (
    CostTableError,
    InputError,
    ModelLoadError,
    NeuronopsError,
    NoNeuronLayersError,
    ReplayError,
    UncostedLayersError,
)
from .kinds import NeuronKind, UpdateFeatures, register_kind, registered_kinds
from .report import LayerRow, Report, Totals, Uncosted

__all__ = [
    "CostTableError",
    "InputError",
    "LayerRow",
    "ModelLoadError",
    "NeuronKind",
    "NeuronopsError",
    "NoNeuronLayersError",
    "ReplayError",
    "Report",
    "Totals",
    "Uncosted",
    "UncostedLayersError",
    "UpdateFeatures",
    "analyse",
    "estimate",
    "register_kind",
    "registered_kinds",
]
