from __future__ import annotations

import pandas as pd
import pytest

from modelyard.training.split import SplitError, split_at, time_split


def test_holdout_is_the_most_recent_window_and_windows_do_not_overlap(frame_factory) -> None:
    frame = frame_factory(rows=600, days=60)
    split = time_split(frame, holdout_days=10, validation_days=10)
    b = split.boundaries
    assert len(split.train) + len(split.valid) + len(split.holdout) == len(frame)
    assert split.train["event_time"].max() < b.valid_start <= split.valid["event_time"].min()
    assert split.valid["event_time"].max() < b.holdout_start <= split.holdout["event_time"].min()
    assert split.holdout["event_time"].max() == frame["event_time"].max()
    assert b.end - b.holdout_start == pd.Timedelta(days=10)
    assert b.holdout_start - b.valid_start == pd.Timedelta(days=10)


def test_split_is_deterministic_and_ignores_row_order(frame_factory) -> None:
    frame = frame_factory()
    shuffled = frame.sample(frac=1.0, random_state=3)
    first, second = time_split(frame, 10, 10), time_split(shuffled, 10, 10)
    pd.testing.assert_frame_equal(first.holdout, second.holdout)
    assert first.boundaries == second.boundaries


def test_params_name_every_boundary_and_row_count(frame_factory) -> None:
    split = time_split(frame_factory(), 10, 10)
    params = split.params()
    assert params["split_holdout_start"] == split.boundaries.holdout_start.isoformat()
    assert params["split_train_rows"] == len(split.train)
    assert set(params) == {
        "split_train_start", "split_valid_start", "split_holdout_start", "split_end",
        "split_train_rows", "split_valid_rows", "split_holdout_rows",
    }  # fmt: skip


def test_too_short_history_names_the_empty_window(frame_factory) -> None:
    with pytest.raises(SplitError, match="train window is empty"):
        time_split(frame_factory(days=15), holdout_days=10, validation_days=10)


def test_missing_time_column_is_named(frame_factory) -> None:
    with pytest.raises(SplitError, match="'event_time' is missing"):
        time_split(frame_factory().drop(columns="event_time"), 10, 10)


def test_split_at_reuses_another_frames_boundaries(frame_factory) -> None:
    frame = frame_factory(rows=600, days=60)
    boundaries = time_split(frame, 10, 10).boundaries
    other = frame_factory(rows=600, days=60, seed=5)
    reused = split_at(other, boundaries)
    assert reused.holdout["event_time"].min() >= boundaries.holdout_start
    assert reused.boundaries == boundaries
