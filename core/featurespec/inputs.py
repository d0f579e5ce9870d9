"""Reading raw inputs out of a batch: one column, as numbers or as category text, with errors naming it.

Inputs are columnar: ``dict[str, np.ndarray]``, one array per raw column (and per window
aggregate, by feature name).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from modelyard.core.featurespec.definitions import FeatureDef
from modelyard.core.featurespec.errors import FeatureSpecError, MissingInputError

if TYPE_CHECKING:
    import numpy as np

Columns = Mapping[str, "np.ndarray"]


def column(family: str, feature: FeatureDef, columns: Columns, name: str, *, requested: bool = False) -> np.ndarray:
    """The column ``name`` of the batch, as an array.

    Args:
        family: The family (for the message).
        feature: The feature that reads it (for the message).
        columns: The batch.
        name: The column to read.
        requested: It is a window aggregate a client sends by the feature's name.

    Raises:
        MissingInputError: the batch has no such column (says what to send).
    """
    import numpy as np

    try:
        return np.asarray(columns[name])
    except KeyError:
        what = "a window aggregate: send it in the request" if requested else "a raw column: send it"
        raise MissingInputError(
            f"family '{family}', feature '{feature.name}': column '{name}' is missing ({what} as '{name}')"
        ) from None


def numbers(family: str, feature: FeatureDef, values: np.ndarray, column_type: str) -> np.ndarray:
    """``values`` as int64 (int and bool columns) or float64.

    Raises:
        FeatureSpecError: a value is not a number (names family, feature and column).
    """
    import numpy as np

    try:
        if column_type in ("int", "bool"):
            return values.astype(np.int64)
        return values.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise FeatureSpecError(
            f"family '{family}', feature '{feature.name}': column '{feature.column or feature.name}' "
            f"has values that are not numbers ({exc}); send a number for every row"
        ) from exc


def text(values: np.ndarray) -> np.ndarray:
    """Category values as text (``7`` and ``"7"`` are the same category); missing ones as None."""
    import numpy as np

    out = np.empty(len(values), dtype=object)
    for index, value in enumerate(values.tolist()):
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        out[index] = None if missing else category_text(value)
    return out


def category_text(value: Any) -> str:
    """A category value as its text: a whole float as the integer (``7.0`` is ``"7"``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def length(family: str, columns: Columns) -> int:
    """The number of rows of the batch.

    Raises:
        FeatureSpecError: its columns have different lengths.
    """
    import numpy as np

    lengths = {len(np.asarray(v)) for v in columns.values()}
    if len(lengths) > 1:
        raise FeatureSpecError(f"family '{family}': columns of different lengths {sorted(lengths)}")
    return lengths.pop() if lengths else 0
