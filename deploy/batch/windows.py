"""Window aggregates a version takes, computed from the input itself when the input does not carry them.

The data stage computes a window aggregate over a region's whole table (``pipeline.features``):
the rows with the same key in the same local hour (or day) are counted, or a column averaged,
and a relative count is divided by the mean count over every window of the table. Batch scoring
reads its input in bounded chunks, so it computes the same numbers in two passes over the pair's
rows: the first adds up counts (and sums) per window, chunk by chunk; the second gives each row
its window's value. Memory is one count (and sum) per window, not per row. The windows are the
data stage's own (:func:`featurespec.window_keys`), so a table scored this way gets the values
the model was trained on for the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modelyard.core import featurespec

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from modelyard.core.featurespec import FeatureDef


@dataclass
class WindowTotals:
    """One window aggregate's counts (and sums) per window, added chunk by chunk."""

    family: str
    feature: FeatureDef
    time_column: str
    timezone: str
    counts: pd.Series | None = field(default=None, repr=False)  # rows per window
    sums: pd.Series | None = field(default=None, repr=False)  # window_mean: sum of the column's values
    present: pd.Series | None = field(default=None, repr=False)  # window_mean: values that are not empty

    def add(self, frame: pd.DataFrame) -> None:
        """Count the rows of a typed chunk (the pair's rows only) into their windows."""
        windows = self._windows(frame)
        self.counts = _added(self.counts, windows.value_counts())
        if self.feature.kind == "window_mean":
            values = frame[str(self.feature.column)].astype("float64").groupby(windows)
            self.sums = _added(self.sums, values.sum())
            self.present = _added(self.present, values.count())

    def values(self, frame: pd.DataFrame) -> np.ndarray:
        """Each row's value: its window's count (relative: over the mean count of all windows) or mean."""
        assert self.counts is not None, "add every chunk before asking for values"
        windows = self._windows(frame)
        if self.feature.kind == "window_mean":
            return (windows.map(self.sums) / windows.map(self.present)).to_numpy(dtype="float64")
        counts = windows.map(self.counts).astype("float64")
        return (counts / float(self.counts.mean()) if self.feature.relative else counts).to_numpy()

    def _windows(self, frame: pd.DataFrame) -> pd.Series:
        times = frame[self.time_column].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
        utc_ns = featurespec.epoch_ns(times, self.family, self.feature.name, self.time_column)
        return featurespec.window_keys(self.feature, frame[str(self.feature.key)], utc_ns, self.timezone)


def _added(total: pd.Series | None, part: pd.Series) -> pd.Series:
    return part if total is None else total.add(part, fill_value=0)
