"""Feature building: the exact snapshot contract, deterministic, in the region's local time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelyard.pipeline.config import Config, ConfigError, Family, load_config
from modelyard.pipeline.features import (
    FeatureError,
    build_features,
    check_family,
    required_raw_columns,
    snapshot_columns,
)
from modelyard.pipeline.generator import generate_for
from modelyard.pipeline.snapshots import frame_digest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(REPO / "modelyard.yaml", environ={})


@pytest.fixture(scope="module")
def raw(config: Config) -> pd.DataFrame:
    return generate_for(config, "jakarta", rows=2000)


@pytest.mark.parametrize("family_name", ["driver_acceptance", "pickup_eta"])
def test_snapshot_contract(config: Config, raw: pd.DataFrame, family_name: str) -> None:
    family = config.family(family_name)
    frame = build_features(raw, family, config.region("jakarta"))
    assert list(frame.columns) == [
        "event_time",
        "hour",
        "is_new_driver",
        *[f for f in family.features if f != "is_new_driver"],
        family.target,
    ]
    assert str(frame["event_time"].dtype).endswith("UTC]")
    assert frame["event_time"].is_monotonic_increasing
    assert frame["hour"].between(0, 23).all()
    assert set(frame["is_new_driver"]) <= {0, 1}
    for column in frame.columns[1:]:
        assert frame[column].dtype in (np.dtype("int64"), np.dtype("float64")), column
    expected_target = "int64" if family.task == "classification" else "float64"
    assert frame[family.target].dtype == expected_target
    assert frame.notna().all().all()
    assert len(frame) == len(raw)


def test_deterministic_whatever_the_row_order(config: Config, raw: pd.DataFrame) -> None:
    family = config.family("driver_acceptance")
    region = config.region("jakarta")
    shuffled = raw.sample(frac=1.0, random_state=7)
    assert frame_digest(build_features(raw, family, region)) == frame_digest(build_features(shuffled, family, region))


def _one_booking(when: str, tenure: int = 100) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "booking_id": ["b1"],
            "event_time": pd.to_datetime([when], utc=True),
            "region": ["jakarta"],
            "pickup_area": ["central"],
            "pickup_distance_km": [2.0],
            "driver_rating": [4.5],
            "driver_acceptance_rate": [0.8],
            "driver_tenure_days": [tenure],
            "surge_multiplier": [1.2],
            "accepted": [1],
            "pickup_eta_min": [7.5],
        }
    )


def test_time_features_use_the_region_time_zone(config: Config) -> None:
    family = config.family("driver_acceptance")
    # 17:30 UTC on Sunday 15 March is 00:30 on Monday 16 March in Jakarta: Lebaran starts that day.
    row = build_features(_one_booking("2026-03-15T17:30:00Z"), family, config.region("jakarta")).iloc[0]
    assert row["hour"] == 0
    assert row["day_of_week"] == 0
    assert row["is_weekend"] == 0
    assert row["is_festival"] == 1
    assert row["hour_sin"] == pytest.approx(np.sin(0.5 * 2 * np.pi / 24))
    # The same instant is still Sunday 15 March, no festival, in a region without Lebaran.
    hcm = build_features(_one_booking("2026-03-15T17:30:00Z"), family, config.region("ho_chi_minh")).iloc[0]
    assert hcm["is_weekend"] == 0  # 00:30 Monday in UTC+7 as well
    assert hcm["is_festival"] == 0


def test_new_driver_flag(config: Config) -> None:
    family = config.family("driver_acceptance")
    region = config.region("jakarta")
    assert build_features(_one_booking("2026-02-01T08:00:00Z", tenure=3), family, region)["is_new_driver"].iloc[0] == 1
    assert (
        build_features(_one_booking("2026-02-01T08:00:00Z", tenure=300), family, region)["is_new_driver"].iloc[0] == 0
    )


def test_area_demand_index_is_relative_busyness(config: Config) -> None:
    frame = pd.concat([_one_booking("2026-02-01T08:00:00Z")] * 3 + [_one_booking("2026-02-01T12:00:00Z")])
    frame["booking_id"] = ["a", "b", "c", "d"]
    out = build_features(frame, config.family("driver_acceptance"), config.region("jakarta"))
    # Two (area, hour) cells with 3 and 1 bookings: mean 2, so 1.5 and 0.5.
    assert out["area_demand_index"].tolist() == [1.5, 1.5, 1.5, 0.5]


def test_unknown_feature_is_a_config_error_naming_family_and_feature(config: Config) -> None:
    family = config.family("pickup_eta").model_copy(update={"features": ["pickup_distance_km", "moon_phase"]})
    with pytest.raises(ConfigError, match=r"families 'pickup_eta': feature 'moon_phase' is not known"):
        check_family(family)
    with pytest.raises(ConfigError, match="moon_phase"):
        snapshot_columns(family)


def test_target_listed_as_feature_is_a_config_error() -> None:
    family = Family(name="leaky", task="classification", target="accepted", features=["driver_rating", "accepted"])
    with pytest.raises(ConfigError, match="target 'accepted' is also listed as a feature"):
        check_family(family)


def test_required_raw_columns_follow_the_family(config: Config) -> None:
    eta = required_raw_columns(config.family("pickup_eta"))
    assert "pickup_eta_min" in eta
    assert "accepted" not in eta
    assert "driver_acceptance_rate" not in eta
    assert {"event_time", "region", "pickup_area", "driver_tenure_days"} <= set(eta)


def test_missing_raw_column_is_a_feature_error(config: Config, raw: pd.DataFrame) -> None:
    with pytest.raises(FeatureError, match="pickup_area"):
        build_features(raw.drop(columns=["pickup_area"]), config.family("pickup_eta"), config.region("jakarta"))


def test_null_target_is_a_feature_error_not_a_traceback(config: Config) -> None:
    frame = _one_booking("2026-02-01T08:00:00Z")
    frame["accepted"] = [None]
    with pytest.raises(FeatureError, match="column 'accepted' has 1 missing values"):
        build_features(frame, config.family("driver_acceptance"), config.region("jakarta"))
