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
        ([{"hour": 7}], "records[0].distance_km", "field 'distance_km' is missing; this model takes distance_km, hour"),
        (
            [{"distance_km": 1.0, "hour": 7}, {"distance_km": "far", "hour": 7}],
            "records[1].distance_km",
            """field 'distance_km' is "far": send a JSON number""",
        ),
        (
            [{"distance_km": True, "hour": 7}],
            "records[0].distance_km",
            "field 'distance_km' is true: send a JSON number",
        ),
        ([{"distance_km": None, "hour": 7}], "records[0].distance_km", "is null: send a JSON number"),
        ([{"distance_km": {"km": 1}, "hour": 7}], "records[0].distance_km", "is an object: send a JSON number"),
        ([{"distance_km": [1.0], "hour": 7}], "records[0].distance_km", "is a list: send a JSON number"),
        ([{"distance_km": 1.0, "hour": 7.5}], "records[0].hour", "field 'hour' is 7.5: send a whole number"),
        ([{"distance_km": 1.0, "hour": 7, "surge": "x"}], "records[0].surge", "send a JSON number (or null)"),
        ([{"distance_km": "NaN", "hour": 7}], "records[0].distance_km", 'is "NaN": send a JSON number'),
        ([{"distance_km": "[1]", "hour": 7}], "records[0].distance_km", 'is "[1]": send a JSON number'),
        ([{"distance_km": 1e39, "hour": 7}], "records[0].distance_km", "is 1e+39: out of the model's float range"),
        ([42], "records[0]", "record 0 is a number: each record must be a JSON object"),
        ([{"distance_km": 1.0, "hour": 7}, [1]], "records[1]", "record 1 is a list: each record must be a JSON object"),
    ],
)
def test_bad_records_name_the_record_and_field(records, field, message):
    with pytest.raises(BadInput) as caught:
        SCHEMA.to_matrix(records)
    assert caught.value.field == field
    assert message in caught.value.message
    assert caught.value.status == 422
    assert caught.value.to_dict()["field"] == field
    # msgspec's own words (Expected `float`, got `str`) stay out of what the client reads.
    assert "Expected" not in caught.value.message
    assert "`" not in caught.value.message


@pytest.mark.parametrize(
    "record",
    [
        {"a": 1.5, "b": 2, "c": 0.0},
        {"a": 1, "b": -7, "c": 3},
        {"a": 3.4e38, "b": 0, "c": -3.4e38},
        {"a": 1e39, "b": 0, "c": 0.0},  # past float32
        {"a": 1.5, "b": 2.5, "c": 0.0},  # a fraction in a whole-number column
        {"a": True, "b": 2, "c": 0.0},  # a bool is not a number here
        {"a": "1.5", "b": 2, "c": 0.0},
        {"a": 1.5, "c": 0.0},  # missing
        {"a": 1.5, "b": 2, "c": None},  # null in an optional column
        {"a": 1.5, "b": 2, "c": math.nan},
        {"a": 1.5, "b": 2, "c": math.inf},
        {"a": 1.5, "b": 2, "c": 0.0, "extra": "kept out"},
        [1.5, 2, 0.0],  # not an object
    ],
)
def test_one_record_gives_the_same_matrix_or_error_as_the_general_path(record):
    """The one-row shortcut (plain numbers) and msgspec's path agree on every record, good or bad."""
    schema = InputSchema([Feature("a", "double"), Feature("b", "long"), Feature("c", "double", required=False)])
    filler = {"a": 0.5, "b": 1, "c": 0.25}

    def outcome(records):
        try:
            return schema.to_matrix(records)[:1]
        except BadInput as exc:
            return (exc.message, exc.field)

    alone, general = outcome([record]), outcome([record, filler])  # two records: never the shortcut
    if isinstance(general, tuple):
        assert alone == general
    else:
        np.testing.assert_array_equal(alone, general)
        assert alone.dtype == np.float32
