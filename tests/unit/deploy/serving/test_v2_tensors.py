"""v2 request bodies to records: JSON tensors (flat or nested), the binary extension, and every refusal."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from modelyard.deploy.serving.errors import RequestError
from modelyard.deploy.serving.protocol_v2.tensors import datatype_of, output_tensor, parse_infer_request
from tests.unit.deploy.serving.v2_conformance import DOCUMENTED_REQUEST, FLAT_DATA, NESTED_DATA


def _parse(payload: object, max_records: int = 100):
    return parse_infer_request(orjson.dumps(payload), None, max_records)


def test_columnar_tensors_become_one_record_per_row():
    request = _parse(
        {
            "id": "r1",
            "parameters": {"routing_key": "c-9"},
            "inputs": [
                {"name": "x", "datatype": "FP64", "shape": [2], "data": [1.5, 2.5]},
                {
                    "name": "event_time",
                    "datatype": "BYTES",
                    "shape": [2, 1],
                    "data": [["2026-03-20T18:30:00+07:00"], ["2026-03-21T08:00:00+07:00"]],
                },
            ],
        }
    )
    assert not request.is_matrix
    assert request.id == "r1"
    assert request.parameters == {"routing_key": "c-9"}
    assert request.records() == [
        {"x": 1.5, "event_time": "2026-03-20T18:30:00+07:00"},
        {"x": 2.5, "event_time": "2026-03-21T08:00:00+07:00"},
    ]


def test_nested_and_flat_data_are_the_same_tensor_as_documented():
    nested = _parse({"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [2, 2], "data": NESTED_DATA}]})
    flat = _parse({"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [2, 2], "data": FLAT_DATA}]})
    assert nested.is_matrix
    assert nested.matrix_records(["a", "b"]) == flat.matrix_records(["a", "b"]) == [{"a": 1, "b": 2}, {"a": 4, "b": 5}]


def test_a_matrix_of_the_wrong_width_names_the_features():
    request = _parse({"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]})
    with pytest.raises(RequestError, match=r"3 columns, the model takes 2 features \(a, b\)"):
        request.matrix_records(["a", "b"])


def test_the_documented_example_with_its_shape_mismatch_is_refused():
    with pytest.raises(RequestError, match=r"input 'input1': shape \[3\] needs 3 values, got 1"):
        _parse(DOCUMENTED_REQUEST)


def test_the_documented_example_once_consistent_parses():
    fixed = {**DOCUMENTED_REQUEST, "inputs": [DOCUMENTED_REQUEST["inputs"][0]]}
    request = _parse(fixed)
    assert request.id == "42"
    assert request.outputs == ["output0"]
    assert request.inputs[0].shape == (2, 2)
    assert request.inputs[0].data == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "'inputs' must be a non-empty array"),
        ({"inputs": [{"name": "x", "datatype": "FLOAT", "shape": [1], "data": [1]}]}, "datatype 'FLOAT'"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1, 1], "data": [1]}]}, "must be \\[n\\]"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": 1}]}, "'data' must be an array"),
        (
            {
                "inputs": [
                    {"name": "x", "datatype": "FP32", "shape": [1], "data": [1]},
                    {"name": "y", "datatype": "FP32", "shape": [2], "data": [1, 2]},
                ]
            },
            "different row counts",
        ),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [0], "data": []}]}, "no rows"),
        ({"inputs": [{"name": "x"}], "outputs": "p"}, "datatype None"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "id": 7}, "'id' must be a string"),
    ],
)
def test_a_bad_request_is_refused_naming_what_is_wrong(payload, message):
    with pytest.raises(RequestError, match=message) as caught:
        _parse(payload)
    assert caught.value.status == 400


def test_too_many_rows_is_a_413():
    with pytest.raises(RequestError) as caught:
        _parse({"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2, 3]}]}, max_records=2)
    assert caught.value.status == 413


def test_binary_inputs_as_tritonclient_sends_them():
    times = [b"2026-03-20T18:30:00+07:00", b"2026-03-21T08:00:00+07:00"]
    strings = b"".join(struct.pack("<I", len(t)) + t for t in times)
    numbers = np.asarray([1.5, 2.5], dtype=np.float32).tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": len(numbers)}},
                {"name": "t", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(strings)}},
            ]
        }
    )
    request = parse_infer_request(header + numbers + strings, str(len(header)), 10)
    assert request.records() == [{"x": 1.5, "t": times[0].decode()}, {"x": 2.5, "t": times[1].decode()}]


def test_binary_data_past_the_body_is_refused():
    header = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}]}
    )
    with pytest.raises(RequestError, match="past the body's binary part"):
        parse_infer_request(header + b"\0\0\0\0", str(len(header)), 10)
    with pytest.raises(RequestError, match="Inference-Header-Content-Length"):
        parse_infer_request(header, "9999", 10)


def test_output_tensor_carries_the_prediction_dtype_and_shape():
    assert output_tensor("probability", np.asarray([0.25, 0.5], dtype=np.float32))["datatype"] == "FP32"
    tensor = output_tensor("predict", np.asarray([1, 2]))
    assert (tensor["datatype"], tensor["shape"]) == ("INT64", [2])
    assert datatype_of(np.asarray([1.0])) == "FP64"


def test_the_one_call_decoder_and_the_checked_path_read_a_plain_request_alike():
    payload = {
        "id": "r2",
        "parameters": {"routing_key": 7},
        "inputs": [
            {"name": "x", "datatype": "FP64", "shape": [2], "data": [1.5, 2.5]},
            {"name": "event_time", "datatype": "BYTES", "shape": [2, 1], "data": ["2026-03-20T18:30:00+07:00", "b"]},
        ],
        "outputs": [{"name": "probability", "parameters": {"binary_data": False}}],
    }
    body = orjson.dumps(payload)
    fast = parse_infer_request(body, None, 100)
    checked = parse_infer_request(body, str(len(body)), 100)  # the binary extension's header: the checked path
    assert fast == checked
    assert fast.records() == [{"x": 1.5, "event_time": "2026-03-20T18:30:00+07:00"}, {"x": 2.5, "event_time": "b"}]
    assert fast.outputs == ["probability"]
    with pytest.raises(
        RequestError, match=r"input 'x': shape \[3\] needs 3 values, got 2"
    ):  # named by the checked path
        _parse({"inputs": [{"name": "x", "datatype": "FP64", "shape": [3], "data": [1.0, 2.0]}]})


def test_a_wide_tensor_among_several_inputs_is_refused_not_cut_to_its_first_column():
    payload = {
        "inputs": [
            {"name": "x", "datatype": "FP64", "shape": [1], "data": [1.5]},
            {"name": "y", "datatype": "FP64", "shape": [1, 2], "data": [2.5, 3.5]},
        ]
    }
    with pytest.raises(RequestError, match=r"input 'y' has shape \[1, 2\]: with several inputs") as caught:
        _parse(payload)
    assert caught.value.field == "inputs[1].shape"


def test_a_repeated_input_name_is_named_not_overwritten():
    one = {"name": "x", "datatype": "FP64", "shape": [1], "data": [1.5]}
    with pytest.raises(RequestError, match="input names repeat"):
        _parse({"inputs": [one, {**one, "data": [2.5]}]})


def test_a_single_row_request_reads_alike_on_its_own_decoder_and_the_checked_path():
    payload = {
        "id": "r1",
        "inputs": [
            {"name": "x", "datatype": "FP64", "shape": [1], "data": [1.5]},
            {"name": "n", "datatype": "INT64", "shape": [1], "data": [3]},
            {"name": "area", "datatype": "BYTES", "shape": [1], "data": ["airport"]},
        ],
        "outputs": [{"name": "probability"}],
    }
    body = orjson.dumps(payload)
    fast = parse_infer_request(body, None, 100)
    checked = parse_infer_request(body, str(len(body)), 100)
    assert [(t.name, t.datatype, t.shape, t.data) for t in fast.inputs] == [
        (t.name, t.datatype, t.shape, t.data) for t in checked.inputs
    ]
    assert fast.records() == checked.records() == [{"x": 1.5, "n": 3, "area": "airport"}]
    assert (fast.id, fast.outputs) == ("r1", ["probability"])
    # One value too many for its [1] shape: not the single-row decoder's, and named by the checked path.
    payload["inputs"][0]["data"] = [1.5, 2.5]
    with pytest.raises(RequestError, match=r"input 'x': shape \[1\] needs 1 values, got 2"):
        _parse(payload)
