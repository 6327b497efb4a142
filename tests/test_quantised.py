"""Models quantised with onnxruntime's static quantisation, QDQ format (QuantizeLinear → DequantizeLinear around
every tensor and constant) or QOperator (QGemm, QLinearAdd, QLinearMul on integers): the same layers, kinds, resets
and dense ops as the float export they came from. (Effective ops follow what the quantised model computes; the tests
of test_pipeline.py check those against a run of the quantised model.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import SAMPLES

from estimator import estimate

# one case per way a quantised graph differs from its float export
CASES = [
    ("rleaky_sub_fc1__stepwise__torchscript", "QDQ"),  # the recurrent weight reads the spike state's QDQ copy
    ("rsynaptic_zero_fc1__stepwise__torchscript", "QOperator"),  # ... its integer form
    ("synaptic_none_fc1__stepwise__dynamo", "QDQ"),  # the next states are DequantizeLinear outputs
    ("rleaky_sub_fc1_onetoone__unrolled__dynamo", "QDQ"),  # one DequantizeLinear of the flag feeds reset and V
    ("leaky_none_fc1__unrolled__torchscript", "QOperator"),  # each step computes on the last one's integer form
    ("synaptic_none_fc1__unrolled__torchscript", "QOperator"),
    ("leaky_zero_fc2__unrolled__dynamo", "QOperator"),
    ("lapicque_sub_conv__stepwise__dynamo", "QDQ"),
    ("leaky_sub_fc2_statequant__unrolled__torchscript", "QDQ"),  # fire()'s second rounding reads a QDQ copy
    ("alpha_zero_fc1__unrolled__torchscript", "QDQ"),  # Alpha's base update computed twice, from different copies
    ("leaky_sub_fc2_memout__unrolled__torchscript", "QDQ"),  # the uncompared last step, its batch named apart
]


def _quantise(case: Path, out: Path, quant_format: str) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(case / "model.onnx"))
    arrays = np.load(case / "inputs.npz")
    data = arrays[next(iter(arrays.keys()))]
    fed = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    rng = np.random.default_rng(0)

    def feed(value: onnx.ValueInfoProto) -> np.ndarray:
        if value is fed[0]:
            return data if len(fed) == 1 else data[:, 0]  # stepwise: one step, and states of the same batch
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim][1:]
        return rng.normal(0.0, 0.5, [len(data), *dims]).astype(np.float32)

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = iter([{value.name: feed(value) for value in fed}])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.left, None)

    quantize_static(str(case / "model.onnx"), str(out), Feeds(), quant_format=getattr(QuantFormat, quant_format),
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)


@pytest.mark.parametrize(("name", "quant_format"), CASES, ids=[f"{n}-{f}" for n, f in CASES])
def test_a_quantised_sample_keeps_its_layers_kinds_and_dense_ops(tmp_path, name, quant_format):
    case = SAMPLES / name
    _quantise(case, tmp_path / "model.onnx", quant_format)
    inputs = case / "inputs.npz"
    float_report = estimate(case / "model.onnx", inputs, convention="neurobench", cache=False)
    report = estimate(tmp_path / "model.onnx", inputs, convention="neurobench", cache=False)
    shape = [(row.kind, row.reset, row.neurons_per_sample, row.time_steps) for row in report.layers]
    assert shape == [(row.kind, row.reset, row.neurons_per_sample, row.time_steps) for row in float_report.layers]
    assert report.totals.neuron_dense_ops == float_report.totals.neuron_dense_ops is not None
    assert report.totals.complete and sum(row.spikes for row in report.layers) > 0
    assert any("the model is quantised" in note for note in report.notes)
    expected = json.loads((case / "expected.json").read_text())
    assert [row.kind for row in report.layers] == [layer["kind"] for layer in expected["layers"]]
