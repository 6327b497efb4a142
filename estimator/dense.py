"""Stage 4 — dense: Neuron Dense Ops from shapes alone (no data needed).

Dense ops of a layer = neurons per sample × time steps × cost per update, per sample. Python integers throughout,
so a graph that declares huge shapes gives an exact (huge) number and allocates nothing.
"""

from __future__ import annotations

from .costs import Cost, CostTable
from .layers import NeuronLayer


def layer_cost(layer: NeuronLayer, table: CostTable) -> tuple[Cost | None, str | None]:
    """The cost of one update of this layer, or None and the reason it has none."""
    if layer.kind is None:
        return None, layer.problem or "no neuron kind recognised"
    if layer.reset is None:
        return None, layer.problem or "reset mechanism not recognised"
    cost = table.lookup(layer.kind, layer.reset)
    if cost is None:
        return None, (
            f"no cost for kind {layer.kind!r} with reset {layer.reset!r} in the cost tables "
            f"({', '.join(table.sources)}); add one with --cost-table"
        )
    return cost, None


def dense_ops(neurons_per_sample: int | None, time_steps: int | None, cost: Cost | None) -> int | None:
    """Per sample, over `time_steps` steps (per step when time_steps is None)."""
    if neurons_per_sample is None or cost is None:
        return None
    return neurons_per_sample * (time_steps if time_steps is not None else 1) * cost.total
