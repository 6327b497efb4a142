"""The public API: what `estimator` exports resolves, and every error the API can raise can be caught by the name the
docs give it (docs/errors.md: `except estimator.MemoryLimitError`)."""

from __future__ import annotations

import inspect

import estimator
from estimator import errors


def test_every_exported_name_resolves():
    for name in estimator.__all__:
        assert getattr(estimator, name) is not None, name
    assert sorted(estimator.__all__) == sorted(set(estimator.__all__))


def test_every_error_class_is_exported_from_the_package():
    classes = {name for name, value in inspect.getmembers(errors, inspect.isclass)
               if issubclass(value, errors.NeuronopsError)}
    assert {"MemoryLimitError", "TimeLimitError", "ResourceLimitError", "OutputError", "ArgumentError"} <= classes
    assert classes <= set(estimator.__all__)
    for name in classes:
        assert getattr(estimator, name) is getattr(errors, name)
        assert issubclass(getattr(estimator, name), estimator.NeuronopsError)


def test_to_dict_is_the_json_form(tmp_path):
    """Report.to_dict() said it was the JSON form but held tuples: it equalled the CLI's JSON only after a round
    trip through json."""
    import json

    from conftest import SAMPLES

    from estimator import estimate
    from estimator.formats import format_json

    case = SAMPLES / "alpha_sub_fc1__stepwise__torchscript"
    report = estimate(case / "model.onnx", case / "inputs.npz")
    assert report.to_dict() == json.loads(format_json(report))
