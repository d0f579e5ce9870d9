"""Row selection: which rows of a dataset a family learns from, the same way wherever rows are read.

A dataset's ``where:`` and its family's ``rows.where:`` are lists of conditions that must all
hold (:class:`~modelyard.core.config.datasets.Condition`); a family's ``rows.missing_target``
says whether rows without a label are dropped. :func:`where_mask` is the one evaluation of a
``where:`` list: the data stage calls it before building a snapshot (so training learns from
the selected rows), and batch scoring calls it to score the same rows.

Null semantics are SQL's: a null value satisfies only ``is null``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelyard.core import featurespec
from modelyard.core.config import Dataset, PairView
from modelyard.core.config.datasets import Condition

if TYPE_CHECKING:
    import pandas as pd

FILTER = "filter"
MISSING_TARGET = "missing target"


@dataclass(frozen=True)
class Selection:
    """The rows a pair keeps, and the rows it dropped by reason (masks over the input's index)."""

    frame: pd.DataFrame
    dropped: dict[str, pd.Series] = field(default_factory=dict)  # reason -> boolean mask over the input


def where_mask(frame: pd.DataFrame, conditions: Sequence[Condition], dataset: Dataset) -> pd.Series:
    """True for the rows of ``frame`` (typed by ingest) that satisfy every condition.

    Args:
        frame: Rows with the dataset's declared columns, typed (numbers, text, UTC times).
        conditions: A ``where:`` list, validated against ``dataset`` at config load.
        dataset: Gives each column's declared type.
    """
    import pandas as pd

    mask = pd.Series(True, index=frame.index)
    for condition in conditions:
        mask &= condition_mask(frame[condition.column], condition, dataset.columns[condition.column].type)
    return mask


def condition_mask(values: pd.Series, condition: Condition, column_type: str) -> pd.Series:
    """True where ``values`` (one typed column) satisfy ``condition``; nulls satisfy only ``is null``."""
    nulls = values.isna()
    if condition.op == "is null":
        return nulls
    if condition.op == "is not null":
        return ~nulls
    if condition.op == "in":
        wanted = [_operand(v, column_type) for v in condition.value]
        return values.isin(wanted) & ~nulls
    operand = _operand(condition.value, column_type)
    compared = featurespec.COMPARISONS[condition.op](values, operand)
    return compared.fillna(False).astype(bool) & ~nulls


def _operand(value: Any, column_type: str) -> Any:
    import pandas as pd

    if column_type == "timestamp":
        stamp = pd.Timestamp(value)
        return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    if column_type in ("float", "int", "bool"):
        return float(value)
    # A category read from a CSV is text; the YAML value 7 is the category "7".
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def select_rows(frame: pd.DataFrame, pair: PairView) -> Selection:
    """The rows of ``frame`` the pair's family learns from: the dataset's and the family's ``where``, then a label.

    Rows without a label are dropped only when ``rows.missing_target`` is ``drop`` and the label's
    column is declared nullable; a label declared not nullable is left for the raw suite to count.
    """
    dataset, family = pair.dataset, pair.family
    conditions = [*dataset.where, *family.rows.where]
    dropped: dict[str, pd.Series] = {}
    keep = where_mask(frame, conditions, dataset)
    dropped[FILTER] = ~keep
    label = family.target_from.column if family.target_from else family.target
    declared = dataset.columns[label]
    if family.rows.missing_target == "drop" and (declared.nullable or declared.max_null_fraction is not None):
        missing = keep & frame[label].isna()
        dropped[MISSING_TARGET] = missing
        keep &= ~missing
    return Selection(frame[keep].reset_index(drop=True), dropped)
