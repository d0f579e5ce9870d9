"""JSON records to a model matrix, validated against the signature, naming the field."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelyard.deploy.serving.errors import BadInput
from modelyard.deploy.serving.schema import Feature, InputSchema

SCHEMA = InputSchema(
    [Feature("distance_km", "double"), Feature("hour", "long"), Feature("surge", "double", required=False)]
)


def test_records_become_a_float32_matrix_in_signature_order():
    matrix = SCHEMA.to_matrix(
        [{"hour": 7, "distance_km": 1.5, "surge": 1.2, "customer_id": "c1"}, {"hour": 0, "distance_km": 2}]
    )
    assert matrix.dtype == np.float32
    assert matrix.shape == (2, 3)
    assert matrix[0].tolist() == pytest.approx([1.5, 7.0, 1.2])
    assert math.isnan(matrix[1, 2])  # optional feature left out -> missing value for the model


@pytest.mark.parametrize(
    ("records", "field", "message"),
    [
        ([{"hour": 7}], "records[0].distance_km", "required feature is missing"),
        (
            [{"distance_km": 1.0, "hour": 7}, {"distance_km": "far", "hour": 7}],
            "records[1].distance_km",
            "Expected 'float', got 'str'",
        ),
        ([{"distance_km": True, "hour": 7}], "records[0].distance_km", "got 'bool'"),
        ([{"distance_km": None, "hour": 7}], "records[0].distance_km", "got 'null'"),
        ([{"distance_km": {"km": 1}, "hour": 7}], "records[0].distance_km", "got 'object'"),
        ([{"distance_km": [1.0], "hour": 7}], "records[0].distance_km", "got 'array'"),
        ([{"distance_km": 1.0, "hour": 7.5}], "records[0].hour", "Expected 'int', got 'float'"),
        ([{"distance_km": "NaN", "hour": 7}], "records[0].distance_km", "got 'str'"),
        ([{"distance_km": 1e39, "hour": 7}], "records[0].distance_km", "does not fit a 32-bit float"),
        ([42], "records[0]", "each record must be a JSON object"),
    ],
)
def test_bad_records_name_the_record_and_field(records, field, message):
    with pytest.raises(BadInput) as caught:
        SCHEMA.to_matrix(records)
    assert caught.value.field == field
    assert message in caught.value.message
    assert caught.value.status == 422
    assert caught.value.to_dict()["field"] == field
