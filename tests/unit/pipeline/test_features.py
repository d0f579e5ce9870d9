"""Feature building: the exact snapshot contract, deterministic, in the region's local time, from the declaration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelyard.core.config import Config, ConfigError, load_config
from modelyard.core.featurespec import FittedSpec
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
    pair = config.pair_view(family_name, "jakarta")
    family = pair.family
    frame = build_features(raw, pair, config.training).frame
    raw_inputs = [c for c in ("pickup_distance_km", "driver_rating", "driver_acceptance_rate") if c in frame]
    assert list(frame.columns) == [
        "event_time",
        "hour",
        *family.feature_names,
        family.target,
        *[c for c in frame.columns if c.startswith("raw.")],
    ]
    assert raw_inputs  # the features' own columns are kept apart from their raw inputs
    assert {"raw.pickup_distance_km", "raw.driver_tenure_days", "raw.surge_multiplier"} <= set(frame.columns)
    assert list(frame.columns) == snapshot_columns(pair)
    assert str(frame["event_time"].dtype).endswith("UTC]")
    assert frame["event_time"].is_monotonic_increasing
    assert frame["hour"].between(0, 23).all()
    assert set(frame["is_new_driver"]) <= {0, 1}
    for column in [c for c in frame.columns[1:] if not c.startswith("raw.")]:
        assert frame[column].dtype in (np.dtype("int64"), np.dtype("float64")), column
    expected_target = "int64" if family.task == "classification" else "float64"
    assert frame[family.target].dtype == expected_target
    assert frame.notna().all().all()
    assert len(frame) == len(raw)


def test_deterministic_whatever_the_row_order(config: Config, raw: pd.DataFrame) -> None:
    pair = config.pair_view("driver_acceptance", "jakarta")
    shuffled = raw.sample(frac=1.0, random_state=7)
    first, second = build_features(raw, pair, config.training), build_features(shuffled, pair, config.training)
    assert frame_digest(first.frame) == frame_digest(second.frame)
    assert first.fitted == second.fitted


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


def _build(config: Config, frame: pd.DataFrame, region: str = "jakarta", family: str = "driver_acceptance"):
    return build_features(frame, config.pair_view(family, region), config.training).frame


def test_time_features_use_the_region_time_zone(config: Config) -> None:
    # 17:30 UTC on Sunday 15 March is 00:30 on Monday 16 March in Jakarta: Lebaran starts that day.
    row = _build(config, _one_booking("2026-03-15T17:30:00Z")).iloc[0]
    assert row["hour"] == 0
    assert row["day_of_week"] == 0
    assert row["is_weekend"] == 0
    assert row["is_festival"] == 1
    assert row["hour_sin"] == pytest.approx(np.sin(0.5 * 2 * np.pi / 24))
    # The same instant is still Sunday 15 March, no festival, in a region without Lebaran.
    hcm = _build(config, _one_booking("2026-03-15T17:30:00Z"), "ho_chi_minh").iloc[0]
    assert hcm["is_weekend"] == 0  # 00:30 Monday in UTC+7 as well
    assert hcm["is_festival"] == 0


def test_new_driver_flag(config: Config) -> None:
    assert _build(config, _one_booking("2026-02-01T08:00:00Z", tenure=3))["is_new_driver"].iloc[0] == 1
    assert _build(config, _one_booking("2026-02-01T08:00:00Z", tenure=300))["is_new_driver"].iloc[0] == 0


def test_area_demand_index_is_relative_busyness(config: Config) -> None:
    frame = pd.concat([_one_booking("2026-02-01T08:00:00Z")] * 3 + [_one_booking("2026-02-01T12:00:00Z")])
    frame["booking_id"] = ["a", "b", "c", "d"]
    out = _build(config, frame)
    # Two (area, hour) cells with 3 and 1 bookings: mean 2, so 1.5 and 0.5.
    assert out["area_demand_index"].tolist() == [1.5, 1.5, 1.5, 0.5]


def test_unknown_kind_or_undeclared_column_is_a_config_error_naming_family_and_feature(tmp_path: Path) -> None:
    text = (REPO / "modelyard.yaml").read_text()
    for broken, message in (
        (
            "{name: is_weekend, kind: is_weekend}",
            r"family 'driver_acceptance', feature 'is_weekend': unknown kind 'moon'",
        ),
        ("- surge_multiplier\n", r"feature 'surge' reads column 'surge', which the dataset does not declare"),
    ):
        bad = text.replace(broken, "{name: is_weekend, kind: moon}" if "kind" in broken else "- surge\n", 1)
        path = tmp_path / "modelyard.yaml"
        path.write_text(bad)
        with pytest.raises(ConfigError, match=message):
            load_config(path, environ={})


def test_a_user_function_that_does_not_import_fails_before_any_data(config: Config) -> None:
    pair = config.pair_view("pickup_eta", "jakarta")
    family = pair.family
    broken = family.model_copy(
        update={
            "feature_decls": [
                *family.feature_decls,
                family.feature_decls[0].model_copy(
                    update={
                        "name": "band",
                        "kind": "function",
                        "function": "nowhere.mod:f",
                        "inputs": ["driver_rating"],
                    }
                ),
            ]
        }
    )
    with pytest.raises(ConfigError, match=r"family 'pickup_eta', feature 'band': cannot import 'nowhere\.mod:f'"):
        check_family(dataclasses.replace(pair, snapshot_spec=config.feature_spec(broken, slices=True)))


def test_required_raw_columns_follow_the_family(config: Config) -> None:
    eta = required_raw_columns(config.pair_view("pickup_eta", "jakarta"))
    assert "pickup_eta_min" in eta
    assert "accepted" not in eta
    assert "driver_acceptance_rate" not in eta
    assert {"event_time", "region", "pickup_area", "driver_tenure_days", "booking_id"} <= set(eta)


def test_missing_raw_column_is_a_feature_error(config: Config, raw: pd.DataFrame) -> None:
    with pytest.raises(FeatureError, match="pickup_area"):
        _build(config, raw.drop(columns=["pickup_area"]), family="pickup_eta")


def test_null_target_is_a_feature_error_not_a_traceback(config: Config) -> None:
    frame = _one_booking("2026-02-01T08:00:00Z")
    frame["accepted"] = [None]
    with pytest.raises(FeatureError, match="target column 'accepted' has 1 missing values"):
        _build(config, frame)


@pytest.mark.parametrize("family_name", ["driver_acceptance", "pickup_eta"])
def test_the_served_transform_of_raw_fields_equals_the_snapshot(config: Config, family_name: str) -> None:
    """What a server computes from raw fields (ISO time with the local offset) is the snapshot, bit for bit."""
    raw = generate_for(config, "jakarta", rows=6000)
    built = build_features(raw, config.pair_view(family_name, "jakarta"), config.training)
    fitted = FittedSpec.from_dict(built.fitted.to_dict())
    rows = built.frame[built.frame["event_time"] >= "2026-03-10"]  # the last weeks, Lebaran included
    assert len(rows) >= 1000
    assert rows["is_festival"].sum() > 0
    local = rows["event_time"].dt.tz_convert("Asia/Jakarta")
    columns = {"event_time": np.array([t.isoformat() for t in local], dtype=object)}
    columns |= {name: rows[f"raw.{name}"].to_numpy() for name in fitted.raw_inputs if name != "event_time"}
    columns |= {name: rows[name].to_numpy() for name in fitted.requested}
    expected = rows[fitted.names].to_numpy(dtype=np.float64)
    np.testing.assert_array_equal(fitted.transform(columns), expected)
