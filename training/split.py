"""Time-based train / validation / holdout split of a snapshot frame.

The holdout is the most recent ``holdout_days`` of data, the validation window the
``validation_days`` before it (xgboost's early stopping watches it), and training gets
everything older. Rows are assigned by ``event_time`` only, so the same frame always
splits the same way; the boundaries are logged as run params (:meth:`TimeSplit.params`).

The promotion stage reuses :func:`time_split` to score a champion on exactly the
challenger's holdout.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelyard.core.contracts.columns import TIME_COLUMN
from modelyard.core.errors import ModelyardError

if TYPE_CHECKING:
    import pandas as pd


class SplitError(ModelyardError, ValueError):
    """The frame cannot be split as configured (a window would be empty); the message says which."""


@dataclass(frozen=True)
class SplitBoundaries:
    """Where the windows start; each window is ``[start, next start)``, holdout ``[holdout_start, end]``."""

    train_start: dt.datetime
    valid_start: dt.datetime
    holdout_start: dt.datetime
    end: dt.datetime


@dataclass(frozen=True)
class TimeSplit:
    """The three windows of one frame and their boundaries."""

    train: pd.DataFrame
    valid: pd.DataFrame
    holdout: pd.DataFrame
    boundaries: SplitBoundaries

    def params(self) -> dict[str, str | int]:
        """The boundaries and row counts as MLflow params (``split_*``)."""
        b = self.boundaries
        return {
            "split_train_start": b.train_start.isoformat(),
            "split_valid_start": b.valid_start.isoformat(),
            "split_holdout_start": b.holdout_start.isoformat(),
            "split_end": b.end.isoformat(),
            "split_train_rows": len(self.train),
            "split_valid_rows": len(self.valid),
            "split_holdout_rows": len(self.holdout),
        }


def boundaries_for(frame: pd.DataFrame, holdout_days: int, validation_days: int) -> SplitBoundaries:
    """The window boundaries of ``frame``, counted back from its newest ``event_time``."""
    import pandas as pd

    times = _times(frame)
    end = times.max()
    holdout_start = end - pd.Timedelta(days=holdout_days)
    valid_start = holdout_start - pd.Timedelta(days=validation_days)
    return SplitBoundaries(
        train_start=times.min().to_pydatetime(),
        valid_start=valid_start.to_pydatetime(),
        holdout_start=holdout_start.to_pydatetime(),
        end=end.to_pydatetime(),
    )


def time_split(frame: pd.DataFrame, holdout_days: int, validation_days: int) -> TimeSplit:
    """Split ``frame`` into train, validation and holdout windows by ``event_time``.

    Args:
        frame: a snapshot frame (see the column contract in ``pipeline.snapshots``).
        holdout_days: length of the most recent window, the holdout.
        validation_days: length of the window before the holdout.

    Returns:
        The three windows (each sorted by event time, index reset) and their boundaries.

    Raises:
        SplitError: the time column is missing or a window would have no rows.
    """
    boundaries = boundaries_for(frame, holdout_days, validation_days)
    return split_at(frame, boundaries)


def split_at(frame: pd.DataFrame, boundaries: SplitBoundaries) -> TimeSplit:
    """Split ``frame`` at given boundaries (e.g. a challenger's, to score a champion on the same holdout).

    Raises:
        SplitError: the time column is missing or a window would have no rows.
    """
    import pandas as pd

    times = _times(frame)
    valid_start = pd.Timestamp(boundaries.valid_start)
    holdout_start = pd.Timestamp(boundaries.holdout_start)
    ordered = frame.assign(**{TIME_COLUMN: times}).sort_values(TIME_COLUMN, kind="stable")
    ordered_times = ordered[TIME_COLUMN]
    parts = {
        "train": ordered[ordered_times < valid_start],
        "validation": ordered[(ordered_times >= valid_start) & (ordered_times < holdout_start)],
        "holdout": ordered[ordered_times >= holdout_start],
    }
    for name, part in parts.items():
        if part.empty:
            raise SplitError(
                f"the {name} window is empty: data spans {times.min()} .. {times.max()}, "
                f"validation starts {valid_start}, holdout starts {holdout_start} "
                "(shorten training.holdout_days / training.validation_days or provide more days of data)"
            )
    return TimeSplit(
        train=parts["train"].reset_index(drop=True),
        valid=parts["validation"].reset_index(drop=True),
        holdout=parts["holdout"].reset_index(drop=True),
        boundaries=boundaries,
    )


def _times(frame: pd.DataFrame) -> pd.Series:
    import pandas as pd

    if TIME_COLUMN not in frame.columns:
        raise SplitError(f"column '{TIME_COLUMN}' is missing (columns: {', '.join(map(str, frame.columns))})")
    if frame.empty:
        raise SplitError("the frame has no rows")
    return pd.to_datetime(frame[TIME_COLUMN], utc=True)
