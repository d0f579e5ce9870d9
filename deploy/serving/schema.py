"""A model signature's inputs: JSON records validated and turned straight into a numpy matrix.

msgspec checks every record against the signature's columns in one call (no pandas); a
problem raises ``BadInput`` naming the record and field, e.g. ``records[3].hour_sin``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from modelyard.deploy.serving.errors import BadInput, ModelLoadFailed

if TYPE_CHECKING:
    import numpy as np

_PYTHON_TYPES: dict[str, type] = {"double": float, "float": float, "long": int, "integer": int, "boolean": bool}
FLOAT32_MAX = 3.4028234663852886e38
# The exact types of a JSON value msgspec takes for a numeric column (a whole number is a float too; never a bool).
_NUMBER, _WHOLE = frozenset({float, int}), frozenset({int})
_ACCEPTED: dict[str, frozenset[type]] = {"double": _NUMBER, "float": _NUMBER, "long": _WHOLE, "integer": _WHOLE}


@dataclasses.dataclass(frozen=True)
class Feature:
    """One input column of a model signature."""

    name: str
    kind: str
    required: bool = True


_MSGSPEC_ERROR = re.compile(r"^(?P<msg>.*?)(?: - at `\$\[(?P<index>\d+)\](?P<rest>[^`]*)`)?$", re.S)
_MISSING_FIELD = re.compile(r"Object missing required field `(?P<name>[^`]+)`")


class InputSchema:
    """Validates JSON records against a signature and turns them into a model input matrix."""

    def __init__(self, features: Sequence[Feature]) -> None:
        if not features:
            raise ModelLoadFailed("the model signature has no named input columns")
        self.features = tuple(features)
        self.names = tuple(f.name for f in features)
        self.numeric = all(f.kind in _PYTHON_TYPES for f in features)
        self._row_list_type: Any = list[self._row_struct()]  # type: ignore[misc]
        # One record of plain numbers (the single-row request) skips msgspec's convert: see _one_numeric_row.
        self._accepted = tuple(_ACCEPTED.get(f.kind) for f in features)
        self._one_row = all(self._accepted) and bool(self._accepted)
        getter = operator.itemgetter(*self.names)
        self._values_of = getter if len(self.names) > 1 else (lambda record: (getter(record),))

    def _row_struct(self) -> type[msgspec.Struct]:
        fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        for feature in self.features:
            python_type = _PYTHON_TYPES.get(feature.kind, str)
            if feature.required:
                fields.append((feature.name, python_type))
            else:
                fields.append((feature.name, python_type | None, None))
        return msgspec.defstruct("Row", fields, gc=False)

    def describe(self) -> list[dict[str, Any]]:
        return [{"name": f.name, "type": f.kind, "required": f.required} for f in self.features]

    def to_matrix(self, records: list[Any]) -> np.ndarray:
        """Validate ``records`` (dicts) and return the model input matrix.

        Raises:
            BadInput: a record is not an object, misses a feature, has a value of the wrong
                type, or a value does not fit float32; ``field`` is e.g. ``records[3].hour_sin``.
        """
        import numpy as np

        if self._one_row and len(records) == 1:
            matrix = self._one_numeric_row(records[0])
            if matrix is not None:
                return matrix
        try:
            rows = msgspec.convert(records, self._row_list_type)
        except msgspec.ValidationError as exc:
            raise _bad_input(str(exc), records, self.features) from None
        values = [msgspec.structs.astuple(row) for row in rows]
        if not self.numeric:
            matrix = np.empty((len(values), len(self.names)), dtype=object)
            matrix[:] = values
            return matrix
        with np.errstate(over="ignore"):  # overflow is reported below, naming the field
            matrix = _float32(values)
            flat = matrix.reshape(-1)
            # One BLAS dot, finite only if every value is: the per-value check runs only when it is not
            # (NaN from a null, or large values whose squares overflow).
            finite = math.isfinite(flat.dot(flat))
        if not finite and np.isinf(matrix).any():
            row, col = (int(i) for i in np.argwhere(np.isinf(matrix))[0])
            name = self.names[col]
            raise BadInput(
                f"field '{name}' is {shown(records[row][name])}: out of the model's float range (|x| <= 3.4e38)",
                field=f"records[{row}].{name}",
            )
        return matrix

    def _one_numeric_row(self, record: Any) -> np.ndarray | None:
        """The ``[1, k]`` matrix of one record whose values are all plain numbers of their column's type.

        None for anything else (a missing or null field, a string, a bool, a value past float32, NaN),
        which ``to_matrix``'s msgspec path then converts or names: the same matrix, or the same
        error, as that path gives, at about half its cost on a one-row request.
        """
        import numpy as np

        try:
            values = self._values_of(record)
        except (KeyError, TypeError, IndexError):
            return None
        for value, accepted in zip(values, self._accepted, strict=True):
            if type(value) not in accepted or not -FLOAT32_MAX <= value <= FLOAT32_MAX:  # type: ignore[operator]
                return None  # NaN and infinity fail the bound too
        return np.array([values], dtype=np.float32)


def _float32(values: list[tuple[Any, ...]]) -> np.ndarray:
    import numpy as np

    try:
        return np.array(values, dtype=np.float32)
    except (TypeError, ValueError) as exc:  # None in an optional column
        matrix = np.array([[math.nan if v is None else v for v in row] for row in values], dtype=np.float32)
        if matrix.size == 0:
            raise BadInput(
                f"records could not be converted to numbers ({type(exc).__name__})", field="records"
            ) from None
        return matrix


_WANTED = {"double": "a JSON number", "float": "a JSON number", "long": "a whole number", "integer": "a whole number"}
MAX_NAMES_IN_ERROR = 30


def _bad_input(text: str, records: list[Any], features: tuple[Feature, ...]) -> BadInput:
    """msgspec's validation error in our words, naming the record, the field and what to send."""
    match = _MSGSPEC_ERROR.match(text)
    message, index, rest = (match["msg"], match["index"], match["rest"]) if match else (text, None, "")
    if index is None:
        return BadInput(message.replace("`", "'"), field="records")
    row = int(index)
    missing = _MISSING_FIELD.search(message)
    if missing:
        return _missing(row, missing["name"], features)
    if not rest:
        message = f"record {row} is {json_kind(records[row])}: each record must be a JSON object of field -> value"
        return BadInput(message, field=f"records[{row}]")
    name = rest.removeprefix(".")
    feature = next((f for f in features if f.name == name), None)
    if feature is None or not isinstance(records[row], dict) or name not in records[row]:
        return BadInput(message.replace("`", "'"), field=f"records[{row}]{rest}")
    return _wrong_type(row, feature, records[row][name])


def _missing(row: int, name: str, features: tuple[Feature, ...]) -> BadInput:
    names = [f.name for f in features if f.required]
    listed = ", ".join(names[:MAX_NAMES_IN_ERROR]) + (", ..." if len(names) > MAX_NAMES_IN_ERROR else "")
    return BadInput(f"field '{name}' is missing; this model takes {listed}", field=f"records[{row}].{name}")


def _wrong_type(row: int, feature: Feature, value: Any) -> BadInput:
    wanted = "true or false" if feature.kind == "boolean" else _WANTED.get(feature.kind, "text")
    nullable = "" if feature.required else " (or null)"
    message = f"field '{feature.name}' is {shown(value)}: send {wanted}{nullable}"
    return BadInput(message, field=f"records[{row}].{feature.name}")


def json_kind(value: Any) -> str:
    """How a JSON value reads in a message: 'a list', 'a string', 'null', ..."""
    if value is None:
        return "null"
    kinds = {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number", dict: "an object"}
    return kinds.get(type(value), type(value).__name__)


def shown(value: Any) -> str:
    """A client's value for a message: a scalar as JSON (cut to 40 characters), a list or object by its kind."""
    if isinstance(value, list | dict):
        return json_kind(value)
    text = json.dumps(value) if isinstance(value, str | int | float | bool) or value is None else type(value).__name__
    return text if len(text) <= 40 else text[:39] + "…"
