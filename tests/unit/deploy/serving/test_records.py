"""Request bodies: our formats and MLflow's, each problem a 4xx naming the field, sizes checked first."""

from __future__ import annotations

import pytest

from modelyard.deploy.serving.errors import BadInput, RequestError
from modelyard.deploy.serving.records import mlflow_records, parse_json, records_of, routing_key_of


def test_one_record_a_list_or_an_envelope():
    one = {"a": 1}
    assert records_of(one, 10) == [one]
    assert records_of([one, one], 10) == [one, one]
    assert records_of({"records": [one]}, 10) == [one]


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ([], 422, "records"),
        ({"records": []}, 422, "records"),
        ({"records": {"a": 1}}, 400, "records"),
        ("text", 400, "body"),
        (3, 400, "body"),
        ([{"a": 1}] * 11, 413, "records"),
    ],
)
def test_bad_shapes(payload, status, field):
    with pytest.raises(RequestError) as caught:
        records_of(payload, 10)
    assert (caught.value.status, caught.value.field) == (status, field)


@pytest.mark.parametrize("body", [b"", b"   ", b'{"a": ', b'{"a": NaN}', b"{'a': 1}", b'{"a": 1e400}'])
def test_bad_json_is_400(body):
    with pytest.raises(RequestError) as caught:
        parse_json(body)
    assert caught.value.status == 400
    assert caught.value.field == "body"


def test_mlflow_formats_become_records():
    expected = [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    assert mlflow_records({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}}, 10) == expected
    assert mlflow_records({"dataframe_records": expected}, 10) == expected
    assert mlflow_records({"inputs": {"a": [1, 3], "b": [2, 4]}}, 10) == expected
    assert mlflow_records({"instances": expected}, 10) == expected


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}, "dataframe_split.data[0]"),
        ({"dataframe_split": [[1]]}, "dataframe_split"),
        ({"inputs": {"a": [1, 2], "b": [1]}}, "inputs"),
        ({"unknown": 1}, "body"),
        ([1, 2], "body"),
    ],
)
def test_bad_mlflow_bodies(payload, field):
    with pytest.raises(RequestError) as caught:
        mlflow_records(payload, 10)
    assert caught.value.field == field


def test_routing_key_comes_from_header_then_first_record():
    assert routing_key_of([{"customer_id": 7}], "hdr", "customer_id") == "hdr"
    assert routing_key_of([{"customer_id": 7}], None, "customer_id") == "7"
    assert routing_key_of([{"x": 1}], None, "customer_id") is None
    with pytest.raises(BadInput) as caught:
        routing_key_of([{"customer_id": {"id": 1}}], None, "customer_id")
    assert caught.value.field == "records[0].customer_id"


# ---------------------------------------------------------------------------- limits before work


def test_dataframe_split_rows_are_counted_before_any_row_is_checked():
    # Rows that are not even lists: a 413 (not a 400 about row 0) shows nothing was built first.
    with pytest.raises(RequestError) as caught:
        mlflow_records({"dataframe_split": {"columns": ["a"], "data": [None] * 11}}, 10)
    assert (caught.value.status, caught.value.field) == (413, "dataframe_split.data")


@pytest.mark.parametrize("bad", [["a", "b"], {"a": 1}, 3, None])
def test_dataframe_split_column_names_must_be_strings(bad):
    with pytest.raises(RequestError) as caught:
        mlflow_records({"dataframe_split": {"columns": ["ok", bad], "data": [[1, 2]]}}, 10)
    assert (caught.value.status, caught.value.field) == (400, "dataframe_split.columns[1]")
    assert "column names must be strings" in caught.value.message


def test_columnar_inputs_are_counted_before_rows_are_built():
    with pytest.raises(RequestError) as caught:
        mlflow_records({"inputs": {"a": list(range(11)), "b": list(range(11))}}, 10)
    assert (caught.value.status, caught.value.field) == (413, "inputs")
    assert "11 records, at most 10" in caught.value.message
