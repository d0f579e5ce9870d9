"""The synthetic booking generator: deterministic, realistic, learnable, directional."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelyard.core.config import Config, Festival, Region, load_config
from modelyard.pipeline.generator import RAW_COLUMNS, generate_bookings, generate_for, region_profile

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(REPO / "modelyard.yaml", environ={})


@pytest.fixture(scope="module")
def jakarta(config: Config) -> pd.DataFrame:
    return generate_for(config, "jakarta", rows=8000)


def test_same_arguments_give_the_same_frame(config: Config) -> None:
    pd.testing.assert_frame_equal(generate_for(config, "hanoi", rows=500), generate_for(config, "hanoi", rows=500))


def test_seed_and_region_change_the_data(config: Config) -> None:
    region = config.region("hanoi")
    base = generate_bookings(region, 500, start=dt.date(2026, 1, 5), days=30, seed=1)
    other_seed = generate_bookings(region, 500, start=dt.date(2026, 1, 5), days=30, seed=2)
    assert not base["pickup_distance_km"].equals(other_seed["pickup_distance_km"])
    assert region_profile("hanoi") != region_profile("bangkok")


def test_columns_types_and_order(jakarta: pd.DataFrame) -> None:
    assert tuple(jakarta.columns) == RAW_COLUMNS
    assert str(jakarta["event_time"].dtype).endswith("UTC]")
    assert jakarta["event_time"].is_monotonic_increasing
    assert jakarta["booking_id"].is_unique
    assert set(jakarta["region"]) == {"jakarta"}
    assert jakarta["accepted"].dtype == "int64"
    assert jakarta["driver_tenure_days"].dtype == "int64"
    assert jakarta.notna().all().all()


def test_values_are_plausible(jakarta: pd.DataFrame) -> None:
    assert jakarta["driver_rating"].between(1, 5).all()
    assert jakarta["driver_acceptance_rate"].between(0, 1).all()
    assert jakarta["surge_multiplier"].between(1, 5).all()
    assert jakarta["pickup_distance_km"].between(0, 40).all()
    assert 0.4 < jakarta["accepted"].mean() < 0.9
    assert 3 < jakarta["pickup_eta_min"].median() < 25


def test_rows_cover_the_configured_window(config: Config, jakarta: pd.DataFrame) -> None:
    local = jakarta["event_time"].dt.tz_convert("Asia/Jakarta")
    start = config.data.synthetic.start
    assert local.min().date() >= start
    assert local.max().date() < start + dt.timedelta(days=config.data.synthetic.days)
    # Peaks at rush hours, quiet at night.
    hours = local.dt.hour.value_counts()
    assert hours[18] > 4 * hours[3]


def test_regions_behave_differently(config: Config) -> None:
    frames = {r: generate_for(config, r, rows=3000) for r in ("jakarta", "bangkok", "singapore")}
    medians = {r: f["pickup_distance_km"].median() for r, f in frames.items()}
    speeds = {r: (f["pickup_distance_km"] / f["pickup_eta_min"]).median() for r, f in frames.items()}
    assert max(medians.values()) / min(medians.values()) > 1.2
    assert max(speeds.values()) / min(speeds.values()) > 1.1


def test_new_drivers_join_in_waves(jakarta: pd.DataFrame) -> None:
    new = jakarta["driver_tenure_days"] < 30
    assert 0.05 < new.mean() < 0.5
    # Waves: the share of new drivers varies strongly across the weeks of the window.
    weekly = new.groupby(jakarta["event_time"].dt.to_period("W")).mean()
    assert weekly.max() - weekly.min() > 0.15


def test_festival_shifts_behaviour() -> None:
    festival = Festival(name="test_fest", start=dt.date(2026, 2, 1), end=dt.date(2026, 2, 14))
    region = Region(name="testville", country="ID", timezone="Asia/Jakarta", festivals=[festival])
    frame = generate_bookings(region, 12000, start=dt.date(2026, 1, 5), days=60, seed=3)
    day = frame["event_time"].dt.tz_convert("Asia/Jakarta").dt.date
    during = (day >= festival.start) & (day <= festival.end)
    assert frame.loc[during, "surge_multiplier"].mean() > frame.loc[~during, "surge_multiplier"].mean() + 0.1
    assert frame.loc[during, "accepted"].mean() < frame.loc[~during, "accepted"].mean() - 0.03
    eta_per_km = frame["pickup_eta_min"] / frame["pickup_distance_km"]
    assert eta_per_km[during].median() > eta_per_km[~during].median()
    # Festival days are busier than ordinary days.
    assert during.sum() / 14 > (~during).sum() / 46


def _rate_by_quartile(frame: pd.DataFrame, column: str, target: str) -> pd.Series:
    return frame.groupby(pd.qcut(frame[column], 4, duplicates="drop"), observed=True)[target].mean()


@pytest.mark.parametrize(
    ("column", "target", "direction"),
    [
        ("driver_rating", "accepted", 1),
        ("driver_acceptance_rate", "accepted", 1),
        ("pickup_distance_km", "accepted", -1),
        ("pickup_distance_km", "pickup_eta_min", 1),
    ],
)
def test_directional_behaviour(jakarta: pd.DataFrame, column: str, target: str, direction: int) -> None:
    rates = _rate_by_quartile(jakarta, column, target).to_numpy()
    assert direction * (rates[-1] - rates[0]) > 0, f"{target} by {column} quartile: {rates}"
    assert all(direction * np.diff(rates) > -0.02), f"{target} should move monotonically with {column}: {rates}"


def test_labels_are_learnable(jakarta: pd.DataFrame) -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import mean_absolute_error, roc_auc_score

    columns = [
        "pickup_distance_km",
        "driver_rating",
        "driver_acceptance_rate",
        "driver_tenure_days",
        "surge_multiplier",
    ]
    X = jakarta[columns].assign(new=(jakarta["driver_tenure_days"] < 30).astype(int))
    cut = int(len(X) * 0.75)
    clf = LogisticRegression(max_iter=2000).fit(X[:cut], jakarta["accepted"][:cut])
    auc = roc_auc_score(jakarta["accepted"][cut:], clf.predict_proba(X[cut:])[:, 1])
    reg = HistGradientBoostingRegressor(random_state=0).fit(X[:cut], jakarta["pickup_eta_min"][:cut])
    mae = mean_absolute_error(jakarta["pickup_eta_min"][cut:], reg.predict(X[cut:]))
    assert auc > 0.75
    assert mae < 3.0


def test_invalid_sizes_are_rejected(config: Config) -> None:
    with pytest.raises(ValueError, match="region 'jakarta'"):
        generate_bookings(config.region("jakarta"), 0, start=dt.date(2026, 1, 5), days=10, seed=1)
