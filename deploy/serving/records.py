"""Request bodies to records: our format and MLflow's scoring formats, each problem a 4xx naming the field.

``POST /v1/predict`` takes one record, a list of records or ``{"records": [...]}``;
``POST /invocations`` takes MLflow's ``dataframe_split``, ``dataframe_records``, ``inputs`` or
``instances``. Sizes are checked before any row is built, so an oversized request costs
nothing to refuse.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelyard.deploy.serving.errors import BadInput, RequestError


def parse_json(body: bytes) -> Any:
    """Decode a request body (raises ``RequestError`` naming the position)."""
    if not body.strip():
        raise RequestError("request body is empty; send a JSON object or array", field="body", code="bad_json")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"body is not valid JSON: {exc}", field="body", code="bad_json") from None


def request_records(body: bytes, max_records: int, mlflow_format: bool) -> list[Any]:
    """The records of a prediction body, in our format or MLflow's (one entry point for both routes)."""
    payload = parse_json(body)
    return mlflow_records(payload, max_records) if mlflow_format else records_of(payload, max_records)


def records_of(payload: Any, max_records: int) -> list[Any]:
    """The records of a predict body: one object, a list, or ``{"records": [...]}``."""
    if isinstance(payload, dict):
        records = payload.get("records", [payload])
        if not isinstance(records, list):
            raise RequestError("'records' must be a JSON array of objects", field="records")
    elif isinstance(payload, list):
        records = payload
    else:
        raise RequestError(
            f"body must be a JSON object (one record) or an array of records, got {type(payload).__name__}",
            field="body",
        )
    return _bounded(records, max_records)


def _bounded(records: list[Any], max_records: int) -> list[Any]:
    if not records:
        raise RequestError("no records to predict", field="records", status=422)
    if len(records) > max_records:
        raise _too_many(len(records), max_records, "records")
    return records


def mlflow_records(payload: Any, max_records: int) -> list[Any]:
    """The records of an MLflow scoring body (``dataframe_split``/``dataframe_records``/``inputs``)."""
    if not isinstance(payload, dict):
        raise RequestError("body must be a JSON object with dataframe_split, dataframe_records or inputs", field="body")
    if "dataframe_split" in payload:
        return _bounded(_split_records(payload["dataframe_split"], max_records), max_records)
    if "dataframe_records" in payload:
        records = payload["dataframe_records"]
        if not isinstance(records, list):
            raise RequestError("must be a JSON array of objects", field="dataframe_records")
        return _bounded(records, max_records)
    for key in ("inputs", "instances"):
        if key in payload:
            return _bounded(_columnar_or_records(payload[key], key, max_records), max_records)
    raise RequestError(
        f"unknown format: keys {sorted(payload)}; use dataframe_split, dataframe_records, inputs or instances",
        field="body",
    )


def _too_many(count: int, max_records: int, field: str) -> RequestError:
    return RequestError(
        f"{count} records, at most {max_records} per request (split the request)",
        field=field,
        status=413,
        code="too_many_records",
    )


def _column_names(columns: list[Any], field: str) -> list[str]:
    """Column names must be strings (a list or object as a name is a client bug, not a 500)."""
    for index, name in enumerate(columns):
        if not isinstance(name, str):
            raise RequestError(f"column names must be strings, got {type(name).__name__}", field=f"{field}[{index}]")
    return columns


def _split_records(split: Any, max_records: int) -> list[Any]:
    """``dataframe_split`` as records; names and the row count are checked before any row is built."""
    if (
        not isinstance(split, dict)
        or not isinstance(split.get("columns"), list)
        or not isinstance(split.get("data"), list)
    ):
        raise RequestError("must be {'columns': [...], 'data': [[...], ...]}", field="dataframe_split")
    columns = _column_names(split["columns"], "dataframe_split.columns")
    if len(split["data"]) > max_records:
        raise _too_many(len(split["data"]), max_records, "dataframe_split.data")
    records = []
    for index, row in enumerate(split["data"]):
        if not isinstance(row, list) or len(row) != len(columns):
            raise RequestError(
                f"row has not {len(columns)} values (one per column)", field=f"dataframe_split.data[{index}]"
            )
        records.append(dict(zip(columns, row, strict=True)))
    return records


def _columnar_or_records(inputs: Any, key: str, max_records: int) -> list[Any]:
    """``inputs``/``instances`` as records; the row count is checked before any row is built."""
    if isinstance(inputs, list):
        return inputs
    if isinstance(inputs, dict):
        columns = {name: (values if isinstance(values, list) else [values]) for name, values in inputs.items()}
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise RequestError(f"columns have different lengths {sorted(lengths)}", field=key)
        size = lengths.pop() if lengths else 0
        if size > max_records:
            raise _too_many(size, max_records, key)
        return [{name: values[i] for name, values in columns.items()} for i in range(size)]
    raise RequestError("must be a list of records or an object of column -> values", field=key)


def routing_key_of(records: list[Any], header: str | None, field: str) -> str | None:
    """The sticky routing key: the ``x-routing-key`` header, else the first record's field."""
    if header:
        return header
    first = records[0]
    value = first.get(field) if isinstance(first, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadInput(
            f"routing key must be a string or an integer, got {type(value).__name__}", field=f"records[0].{field}"
        )
    return str(value)
