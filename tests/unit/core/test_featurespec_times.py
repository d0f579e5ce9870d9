"""Local wall-clock time of many rows: the same as pandas' tz_convert, DST and odd offsets included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelyard.core.featurespec import times

ZONES = ["America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "Asia/Jakarta", "Europe/London"]


def _instants() -> np.ndarray:
    rng = np.random.default_rng(7)
    start, end = (np.datetime64(d, "ns").astype(np.int64) for d in ("2019-01-01", "2027-01-01"))
    spread = rng.integers(start, end, size=5000)
    # Every 20 s through New York's and Lord Howe's 2026 transitions (07:00 UTC, 15:00 UTC the day before).
    around = [np.datetime64(t, "ns").astype(np.int64) for t in ("2026-03-08T06:00", "2026-04-04T14:00")]
    dense = np.concatenate([np.arange(t, t + 2 * 3600 * 10**9, 20 * 10**9) for t in around])
    return np.concatenate([spread, dense])


@pytest.mark.parametrize("zone", ZONES)
def test_many_rows_match_pandas(zone: str) -> None:
    instants = _instants()
    assert len(instants) > times.SMALL_BATCH_ROWS
    times._minute_offset.cache_clear()
    expected = pd.DatetimeIndex(instants, tz="UTC").tz_convert(zone).tz_localize(None).asi8 // 10**9
    np.testing.assert_array_equal(times.local_seconds(instants, zone), expected)


@pytest.mark.parametrize("zone", ZONES)
def test_a_few_rows_match_pandas(zone: str) -> None:
    instants = _instants()[-times.SMALL_BATCH_ROWS :]
    expected = pd.DatetimeIndex(instants, tz="UTC").tz_convert(zone).tz_localize(None).asi8 // 10**9
    np.testing.assert_array_equal(times.local_seconds(instants, zone), expected)
