"""Graphs saved by onnxruntime after its own optimisations (`SessionOptions.optimized_model_filepath`, extended
level: MatMul + Add fused into Gemm, which can fold a neuron's decay term into the synapse's bias): the same layers
and exactly the same figures as the export they came from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnxruntime as ort
import pytest
from conftest import SAMPLES
from parity import check_case

CASES = [
    "synaptic_zero_fc2__stepwise__torchscript",  # α·I_syn in the Gemm's C: read as Leaky (cost 4 for 8) before
    "leaky_zero_fc2__stepwise__torchscript",  # the whole decay β·(1 − R)·U in the Gemm's C: uncosted before
    "nb_unit_zeros__stepwise__torchscript",
    "leaky_sub_fc1__unrolled__torchscript",
    "alpha_zero_fc1__unrolled__dynamo",
    "rleaky_sub_fc1__stepwise__torchscript",
    # Lapicque's Δt/C, a Mul after a bare MatMul, folded into FusedMatMul's alpha: read as Leaky (cost 4 for 11) before
    "lapicque_sub_fc2_nobias__unrolled__torchscript",
    "lapicque_sub_fc2_nobias__stepwise__torchscript",
    "lapicque_sub_fc2_nobias__unrolled__dynamo",
    # onnxruntime merges the two compares TorchScript makes of one spike (its reset, and V·S_{t-1} of the next step):
    # the recurrent term then reads as an older compare, and the layer was costed as Leaky (4 for 5) before
    "rleaky_sub_fc1_onetoone_nodelay__unrolled__torchscript",
]
# at the "all" level: the blocked layout (com.microsoft.nchwc Conv, ReorderOutput) hid a recurrent Conv: Leaky before
ALL_LEVEL = ["rleaky_sub_conv__unrolled__torchscript", "rleaky_sub_conv__stepwise__dynamo"]


@pytest.mark.parametrize(("name", "level"), [(name, "EXTENDED") for name in CASES]
                         + [(name, "ALL") for name in ALL_LEVEL])
def test_an_onnxruntime_optimised_export_gives_the_same_figures(name: str, level: str, tmp_path: Path):
    case = SAMPLES / name
    optimised = tmp_path / name
    shutil.copytree(case, optimised)
    model = optimised / json.loads((case / "expected.json").read_text())["model"]
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, f"ORT_ENABLE_{level}")
    options.optimized_model_filepath = str(model)
    options.log_severity_level = 4
    ort.InferenceSession(str(case / "model.onnx"), options, providers=["CPUExecutionProvider"])
    assert check_case(optimised, "neurobench") == []
    assert check_case(optimised, "spikes") == []
