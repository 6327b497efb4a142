"""neuronops: NeuroBench's NeuronOperations (dense and effective neuron ops) from an SNN's ONNX export.

    from estimator import estimate
    report = estimate("model.onnx", inputs="inputs.npz", convention="neurobench")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import analyse, estimate
    from .errors import (
        ArgumentError,
        ClusterError,
        CostTableError,
        EnergyTableError,
        FeasibilityError,
        InputError,
        ManifestError,
        MemoryLimitError,
        MissingExtraError,
        ModelLoadError,
        NeuronopsError,
        NoNeuronLayersError,
        OutputError,
        ReplayError,
        ReportFileError,
        ResourceLimitError,
        TimeLimitError,
        UncostedLayersError,
        UsageError,
    )
    from .kinds import NeuronKind, UpdateFeatures, register_kind, registered_kinds
    from .report import LayerRow, Report, Totals, Uncosted

# Names are imported on first use (PEP 562): `python -m estimator --help` runs this file, and should not pay for
# numpy and onnx before click has even parsed the command line.
_LAZY = {
    "analyse": "api", "estimate": "api",
    "ArgumentError": "errors", "ClusterError": "errors", "CostTableError": "errors", "EnergyTableError": "errors",
    "FeasibilityError": "errors", "InputError": "errors", "ManifestError": "errors", "MemoryLimitError": "errors",
    "MissingExtraError": "errors", "ModelLoadError": "errors", "NeuronopsError": "errors",
    "NoNeuronLayersError": "errors", "OutputError": "errors", "ReplayError": "errors", "ReportFileError": "errors",
    "ResourceLimitError": "errors", "TimeLimitError": "errors", "UncostedLayersError": "errors",
    "UsageError": "errors",
    "NeuronKind": "kinds", "UpdateFeatures": "kinds", "register_kind": "kinds", "registered_kinds": "kinds",
    "LayerRow": "report", "Report": "report", "Totals": "report", "Uncosted": "report",
}

__all__ = [
    "ArgumentError",
    "ClusterError",
    "CostTableError",
    "EnergyTableError",
    "FeasibilityError",
    "InputError",
    "LayerRow",
    "ManifestError",
    "MemoryLimitError",
    "MissingExtraError",
    "ModelLoadError",
    "NeuronKind",
    "NeuronopsError",
    "NoNeuronLayersError",
    "OutputError",
    "ReplayError",
    "Report",
    "ReportFileError",
    "ResourceLimitError",
    "TimeLimitError",
    "Totals",
    "Uncosted",
    "UncostedLayersError",
    "UpdateFeatures",
    "UsageError",
    "analyse",
    "estimate",
    "register_kind",
    "registered_kinds",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":  # looked up when asked for: importlib.metadata costs start-up time
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("neuronops")
        except PackageNotFoundError:  # a source checkout on sys.path, not installed
            return "0+unknown"
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'estimator' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
