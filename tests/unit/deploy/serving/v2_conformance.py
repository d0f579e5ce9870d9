"""The Open Inference Protocol's documented REST objects as JSON Schemas, and its documented examples.

Transcribed from the protocol's REST section (KServe's "Open Inference Protocol (V2 Inference
Protocol)" page: ``$metadata_server_response``, ``$metadata_model_response``, ``$metadata_tensor``,
``$inference_request``, ``$request_input``, ``$inference_response``, ``$response_output``,
``$inference_error_response``). A field marked ``#optional`` there is optional here.
"""

from __future__ import annotations

from typing import Any

import jsonschema

_STRING = {"type": "string"}
_PARAMETERS = {"type": "object"}
METADATA_TENSOR = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": _STRING,
        "datatype": _STRING,
        "shape": {"type": "array", "items": {"type": "integer"}},
        "parameters": _PARAMETERS,  # #optional, as in MLServer's MetadataTensor
    },
}
SERVER_METADATA = {
    "type": "object",
    "required": ["name", "version", "extensions"],
    "properties": {"name": _STRING, "version": _STRING, "extensions": {"type": "array", "items": _STRING}},
}
MODEL_METADATA = {
    "type": "object",
    "required": ["name", "platform", "inputs", "outputs"],
    "properties": {
        "name": _STRING,
        "versions": {"type": "array", "items": _STRING},
        "platform": _STRING,
        "inputs": {"type": "array", "items": METADATA_TENSOR},
        "outputs": {"type": "array", "items": METADATA_TENSOR},
    },
}
RESPONSE_OUTPUT = {
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": _STRING,
        "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {
            "enum": [
                *[
                    "BOOL",
                    "UINT8",
                    "UINT16",
                    "UINT32",
                    "UINT64",
                    "INT8",
                    "INT16",
                    "INT32",
                    "INT64",
                    "FP16",
                    "FP32",
                    "FP64",
                    "BYTES",
                ]
            ]
        },
        "parameters": _PARAMETERS,
        "data": {"type": "array"},
    },
}
INFERENCE_RESPONSE = {
    "type": "object",
    "required": ["model_name", "outputs"],
    "properties": {
        "model_name": _STRING,
        "model_version": _STRING,
        "id": _STRING,
        "parameters": _PARAMETERS,
        "outputs": {"type": "array", "items": RESPONSE_OUTPUT},
    },
}
ERROR_RESPONSE = {"type": "object", "required": ["error"], "properties": {"error": _STRING}}

# The protocol page's own inference request example (POST /v2/models/mymodel/infer), except that
# its second input says shape [3] with one value; a server must refuse that, tested separately.
DOCUMENTED_REQUEST: dict[str, Any] = {
    "id": "42",
    "inputs": [
        {"name": "input0", "shape": [2, 2], "datatype": "UINT32", "data": [1, 2, 3, 4]},
        {"name": "input1", "shape": [3], "datatype": "BOOL", "data": [True]},
    ],
    "outputs": [{"name": "output0"}],
}
# The page's tensor data example: row-major, nested or flat mean the same tensor.
NESTED_DATA = [[1, 2], [4, 5]]
FLAT_DATA = [1, 2, 4, 5]


def check(schema: dict[str, Any], payload: Any) -> None:
    """Raise if ``payload`` is not the documented object ``schema``."""
    jsonschema.validate(payload, schema)


def check_outputs_consistent(response: dict[str, Any]) -> None:
    """Each output's data holds as many values as its shape says."""
    for output in response["outputs"]:
        size = 1
        for dim in output["shape"]:
            size *= dim
        assert len(output["data"]) == size, output
