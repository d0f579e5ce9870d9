"""v2 tensors: an infer request's inputs to records, and the prediction to an output tensor.

A request carries either one tensor per raw field, each of shape ``[n]`` (or ``[n, 1]``), or
a single 2-D tensor ``[n, k]`` of the version's features in their declared order. Tensor data
comes as JSON (flat or nested row-major) or, with the binary tensor data extension that
``tritonclient`` uses by default, as raw bytes after a JSON header of
``Inference-Header-Content-Length`` bytes. Records then take the same path as ``/v1``.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
import orjson

from modelyard.deploy.serving.errors import RequestError

if TYPE_CHECKING:
    import numpy as np

# v2 datatype -> numpy dtype of its binary form (BYTES: 4-byte little-endian length, then the bytes).
NUMPY_TYPES = {
    "BOOL": "?", "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}  # fmt: skip
DATATYPES = frozenset([*NUMPY_TYPES, "BYTES"])


Datatype = Literal[
    "BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP16", "FP32", "FP64", "BYTES"
]  # fmt: skip
Shape = Annotated[tuple[Annotated[int, msgspec.Meta(ge=0)], ...], msgspec.Meta(min_length=1, max_length=2)]


class Tensor(msgspec.Struct, frozen=True, gc=False):
    """One input tensor of a request, its data flat (row-major); ``parameters`` as sent (the binary extension's)."""

    name: str
    datatype: Datatype
    shape: Shape
    data: list[int | float | str | bool | None]  # flat; nested rows fail the one-call decode
    parameters: dict[str, Any] | None = None

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1


@dataclasses.dataclass(frozen=True)
class InferRequest:
    """A parsed ``$inference_request``: id, parameters, input tensors and the outputs asked for."""

    id: str | None
    parameters: dict[str, Any]
    inputs: list[Tensor]
    outputs: list[str]
    # The rows, when the one-call decode built them already (the same rows ``records`` would build).
    decoded_records: list[dict[str, Any]] | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def is_matrix(self) -> bool:
        """One 2-D tensor of features (``[n, k]``, k > 1) instead of one tensor per raw field."""
        return len(self.inputs) == 1 and len(self.inputs[0].shape) == 2 and self.inputs[0].shape[1] != 1

    def records(self) -> list[dict[str, Any]]:
        """One record per row of the columnar tensors (each tensor is one raw field)."""
        if self.decoded_records is not None:
            return self.decoded_records
        columns = {tensor.name: tensor.data for tensor in self.inputs}
        rows = self.inputs[0].rows
        return [{name: values[i] for name, values in columns.items()} for i in range(rows)]

    def matrix_records(self, names: Sequence[str]) -> list[dict[str, Any]]:
        """The rows of the one 2-D tensor as records of ``names`` (the version's features, in order)."""
        tensor = self.inputs[0]
        width = tensor.shape[1]
        if width != len(names):
            raise RequestError(
                f"input '{tensor.name}' has {width} columns, the model takes {len(names)} features "
                f"({', '.join(names)}); or send one tensor per raw field",
                field="inputs[0].shape",
            )
        data = tensor.data
        return [dict(zip(names, data[i * width : (i + 1) * width], strict=True)) for i in range(tensor.rows)]


def parse_infer_request(body: bytes, header_length: str | None, max_records: int) -> InferRequest:
    """An infer request from its body (``header_length``: the binary extension's JSON size, else None).

    Raises:
        RequestError: the JSON, a tensor's datatype, shape or data, or its size is wrong (400/413).
    """
    if header_length is None:
        fast = _single_row(body) or _fast_request(body, max_records)
        if fast is not None:
            return fast
    json_part, binary = _split(body, header_length)
    payload = _json(json_part)
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError("'inputs' must be a non-empty array of tensors", field="inputs")
    offset = 0
    tensors = []
    for index, raw in enumerate(inputs):
        tensor, offset = _tensor(raw, index, binary, offset)
        tensors.append(tensor)
    _same_rows(tensors, max_records)
    return InferRequest(
        id=_optional_str(payload.get("id"), "id"),
        parameters=_parameters(payload.get("parameters"), "parameters"),
        inputs=tensors,
        outputs=_output_names(payload.get("outputs")),
    )


class _OutputIn(msgspec.Struct, gc=False):
    name: str


class _RequestIn(msgspec.Struct, gc=False):
    inputs: list[Tensor]
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[_OutputIn] | None = None


_REQUEST_DECODER = msgspec.json.Decoder(_RequestIn)


class _OneValue(Tensor, frozen=True, gc=False):
    """A tensor of shape ``[1]`` holding one value and no parameters: a field of a single-row request."""

    shape: tuple[Literal[1]]
    data: Annotated[list[int | float | str | bool | None], msgspec.Meta(min_length=1, max_length=1)]
    parameters: None = None


class _SingleRowIn(msgspec.Struct, gc=False):
    inputs: Annotated[list[_OneValue], msgspec.Meta(min_length=1)]
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[_OutputIn] | None = None


_SINGLE_ROW_DECODER = msgspec.json.Decoder(_SingleRowIn)


def _single_row(body: bytes) -> InferRequest | None:
    """A one-row request of ``[1]`` tensors, its shapes and sizes checked by the decoder itself (None: not one)."""
    try:
        request = _SINGLE_ROW_DECODER.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None  # a first tensor of another shape fails within a microsecond
    tensors = request.inputs
    record = {tensor.name: tensor.data[0] for tensor in tensors}
    if len(record) != len(tensors):
        return None  # a repeated name: the checked path names it
    outputs = [o.name for o in request.outputs] if request.outputs is not None else []
    return InferRequest(request.id, request.parameters or {}, tensors, outputs, [record])  # type: ignore[arg-type]


def _fast_request(body: bytes, max_records: int) -> InferRequest | None:
    """A plain JSON request of flat tensors, decoded and typed in one msgspec call (None: take the checked path).

    Per-field tensors become records in the same pass that checks their sizes. Anything unusual
    (nested data, binary parameters, a shape or size that does not add up, a repeated name, any
    type msgspec refuses) returns None, and ``parse_infer_request``'s field-by-field path answers
    it, naming what is wrong.
    """
    try:
        request = _REQUEST_DECODER.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    tensors = request.inputs
    if not tensors:
        return None
    # The datatype, the shape's form and flat scalar data are checked by the decoder; left: the sizes.
    first = tensors[0]
    rows = first.shape[0]
    if rows == 0 or rows > max_records:
        _same_rows(tensors, max_records)  # raises, naming the count
    records = None
    if len(tensors) == 1 and len(first.shape) == 2 and first.shape[1] != 1:  # one [n, k] tensor of features
        if first.parameters or len(first.data) != rows * first.shape[1]:
            return None
    else:
        columns = {}
        for tensor in tensors:
            shape = tensor.shape
            if tensor.parameters or shape[0] != rows or shape[-1] != (1 if len(shape) == 2 else rows):
                return None
            data = tensor.data
            if len(data) != rows:
                return None
            columns[tensor.name] = data
        if len(columns) != len(tensors):
            return None  # a repeated name
        if rows == 1:
            records = [{name: data[0] for name, data in columns.items()}]
        else:
            records = [{name: data[i] for name, data in columns.items()} for i in range(rows)]
    outputs = [o.name for o in request.outputs] if request.outputs is not None else []
    return InferRequest(request.id, request.parameters or {}, tensors, outputs, records)


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    if not header_length.strip().isdigit() or int(header_length) > len(body):
        raise RequestError(
            f"Inference-Header-Content-Length {header_length!r} is not a size within the {len(body)}-byte body",
            field="Inference-Header-Content-Length",
        )
    size = int(header_length)
    return body[:size], body[size:]


def _json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise RequestError("request body is empty; send an inference request object", field="body")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"body is not valid JSON: {exc}", field="body") from None
    if not isinstance(payload, dict):
        raise RequestError(f"body must be a JSON object, got {type(payload).__name__}", field="body")
    return payload


def _tensor(raw: Any, index: int, binary: bytes, offset: int) -> tuple[Tensor, int]:
    where = f"inputs[{index}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise RequestError("each input must be an object with name, datatype, shape and data", field=where)
    name = raw["name"]
    datatype = raw.get("datatype")
    if datatype not in DATATYPES:
        raise RequestError(f"input '{name}': datatype {datatype!r} is not one of {sorted(DATATYPES)}", field=where)
    shape = _shape(raw.get("shape"), name, where)
    size = math.prod(shape)
    parameters = _parameters(raw.get("parameters"), f"{where}.parameters")
    if "binary_data_size" in parameters:
        data, offset = _binary_data(parameters["binary_data_size"], datatype, binary, offset, name)
    else:
        data = _flat(raw.get("data"), name, where)
    if len(data) != size:
        raise RequestError(f"input '{name}': shape {list(shape)} needs {size} values, got {len(data)}", field=where)
    return Tensor(name, datatype, shape, data, parameters or None), offset


def _shape(shape: Any, name: str, where: str) -> tuple[int, ...]:
    valid = isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    if not valid or not 1 <= len(shape) <= 2:
        raise RequestError(
            f"input '{name}': shape {shape!r} must be [n] (one raw field) or [n, k] (n rows of k features)",
            field=f"{where}.shape",
        )
    return tuple(shape)


def _flat(data: Any, name: str, where: str) -> list[Any]:
    if not isinstance(data, list):
        raise RequestError(f"input '{name}': 'data' must be an array", field=f"{where}.data")
    if data and all(isinstance(row, list) for row in data):  # nested row-major
        return [value for row in data for value in row]
    return data


def _binary_data(size: Any, datatype: str, binary: bytes, offset: int, name: str) -> tuple[list[Any], int]:
    import numpy as np

    if not isinstance(size, int) or size < 0 or offset + size > len(binary):
        raise RequestError(f"input '{name}': binary_data_size {size!r} is past the body's binary part", field=name)
    chunk = binary[offset : offset + size]
    if datatype == "BYTES":
        return _bytes_elements(chunk, name), offset + size
    dtype = np.dtype(NUMPY_TYPES[datatype])
    if size % dtype.itemsize:
        raise RequestError(f"input '{name}': {size} bytes are not whole {datatype} values", field=name)
    return np.frombuffer(chunk, dtype=dtype).tolist(), offset + size


def _bytes_elements(chunk: bytes, name: str) -> list[Any]:
    values: list[Any] = []
    position = 0
    while position < len(chunk):
        if position + 4 > len(chunk):
            raise RequestError(f"input '{name}': BYTES element length cut short", field=name)
        (length,) = struct.unpack_from("<I", chunk, position)
        position += 4
        element = chunk[position : position + length]
        position += length
        try:
            values.append(element.decode())
        except UnicodeDecodeError:
            raise RequestError(f"input '{name}': BYTES element {len(values)} is not UTF-8 text", field=name) from None
    return values


def _same_rows(tensors: list[Tensor], max_records: int) -> None:
    rows = {tensor.name: tensor.rows for tensor in tensors}
    if len(set(rows.values())) > 1:
        raise RequestError(
            f"inputs have different row counts {rows}: send shape [n] for every raw field", field="inputs"
        )
    count = tensors[0].rows
    if count == 0:
        raise RequestError("no rows to predict", field="inputs")
    if count > max_records:
        raise RequestError(
            f"{count} rows, at most {max_records} per request (split the request)",
            field="inputs",
            status=413,
            code="too_many_records",
        )
    names = [tensor.name for tensor in tensors]
    if len(set(names)) != len(names):
        raise RequestError(f"input names repeat: {names}", field="inputs")
    wide = next((t for t in tensors if len(t.shape) == 2 and t.shape[1] != 1), None)
    if wide is not None and len(tensors) > 1:
        raise RequestError(
            f"input '{wide.name}' has shape {list(wide.shape)}: with several inputs each is one raw field of "
            "shape [n] (or send a single [n, k] tensor of the features)",
            field=f"inputs[{tensors.index(wide)}].shape",
        )


def _optional_str(value: Any, field: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise RequestError(f"'{field}' must be a string", field=field)


def _parameters(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RequestError(f"'{field}' must be an object", field=field)
    return value


def _output_names(outputs: Any) -> list[str]:
    if outputs is None:
        return []
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise RequestError("'outputs' must be an array of objects with a name", field="outputs")
    return [o["name"] for o in outputs]


def datatype_of(array: np.ndarray) -> str:
    """The v2 datatype of a prediction array (FP32, FP64, INT64 or BOOL)."""
    kind, size = array.dtype.kind, array.dtype.itemsize
    if kind == "f":
        return "FP32" if size <= 4 else "FP64"
    if kind == "b":
        return "BOOL"
    return "INT64" if kind in "iu" else "FP64"


def output_tensor(name: str, output: np.ndarray) -> dict[str, Any]:
    """The ``$response_output`` of a prediction: ``{name, datatype, shape: [n], data}``."""
    import numpy as np

    datatype = datatype_of(output)
    data = output if datatype != "FP64" or output.dtype.kind == "f" else output.astype(np.float64)
    return {"name": name, "datatype": datatype, "shape": [len(output)], "data": data.reshape(-1)}
