"""Great Expectations suites on good data and on a collection of deliberately broken files.

Every broken file goes through ``modelyard data validate`` the way a data scientist
would run it, and each must be rejected for ITS reason: the test asserts the exit code
and the message (column, expectation, count of offending rows).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from modelyard.core.config import Config, load_config
from modelyard.deploy.cli import app
from modelyard.pipeline.features import build_features
from modelyard.pipeline.generator import generate_for
from modelyard.pipeline.validation import validate_features, validate_raw

REPO = Path(__file__).resolve().parents[2]
ROWS = 800
FAMILY = "driver_acceptance"


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(REPO / "modelyard.yaml", environ={"MODELYARD_DATA__MIN_ROWS": "300"})


@pytest.fixture(scope="module")
def good(config: Config) -> pd.DataFrame:
    return generate_for(config, "jakarta", rows=ROWS)


def _validate(config_path: Path, path: Path, *extra: str) -> tuple[int, str]:
    env = {"MODELYARD_DATA__MIN_ROWS": "300", "COLUMNS": "400"}
    args = ["data", "validate", "--input", str(path), "--family", FAMILY, "--config", str(config_path), *extra]
    result = CliRunner().invoke(app, args, env=env)
    return result.exit_code, " ".join(result.output.split())


def test_good_data_passes_both_suites(config: Config, good: pd.DataFrame) -> None:
    for family in config.family_names:
        pair = config.pair_view(family, "jakarta")
        raw = validate_raw(good, pair, config.data)
        assert raw.success, raw.failures
        built = build_features(good, pair, config.training)
        features = validate_features(built.frame, pair, config.data)
        assert features.success, features.failures
        assert len(raw.checks) > 20
        assert len(features.checks) > 30


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_good_file_exits_zero_and_writes_report(good: pd.DataFrame, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"good{suffix}"
    good.to_csv(path, index=False) if suffix == ".csv" else good.to_parquet(path, index=False)
    report = tmp_path / "report.html"
    code, out = _validate(REPO / "modelyard.yaml", path, "--report", str(report))
    assert code == 0, out
    assert "passed" in out
    html = report.read_text()
    assert "expect_column_values_to_be_between" in html
    assert "FAIL" not in html


def _csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def _text(text: str) -> Callable[[pd.DataFrame, Path], Path]:
    def write(frame: pd.DataFrame, path: Path) -> Path:
        path.write_text(text)
        return path

    return write


def _mutated(
    change: Callable[[pd.DataFrame], pd.DataFrame], suffix: str = ".csv"
) -> Callable[[pd.DataFrame, Path], Path]:
    def write(frame: pd.DataFrame, path: Path) -> Path:
        out = path.with_suffix(suffix)
        changed = change(frame.copy())
        changed.to_csv(out, index=False) if suffix == ".csv" else changed.to_parquet(out, index=False)
        return out

    return write


def _set(column: str, rows: slice, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame[column] = frame[column].astype(object if value is None else type(value))
        frame.loc[frame.index[rows], column] = value
        return frame

    return change


def _stale(frame: pd.DataFrame) -> pd.DataFrame:
    frame["event_time"] = frame["event_time"] - pd.Timedelta(days=365 * 11)
    return frame


def _all_accepted(frame: pd.DataFrame) -> pd.DataFrame:
    frame["accepted"] = 1
    return frame


def _duplicate_ids(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[frame.index[:7], "booking_id"] = "dup-1"
    return frame


HEADER = "booking_id,event_time,region,pickup_area,pickup_distance_km,driver_id,driver_rating,"
HEADER += "driver_acceptance_rate,driver_tenure_days,surge_multiplier,accepted,pickup_eta_min\n"

BROKEN = {
    # name: (writer, file name, exit code, every substring the message must contain)
    "wrong_extension": (_text("{}"), "bookings.json", 2, ["'.json' is not a supported format", "csv or .parquet"]),
    "parquet_extension_csv_body": (_text(HEADER), "bookings.parquet", 2, ["not a valid Parquet file"]),
    "empty_file": (_text(""), "bookings.csv", 2, ["the file is empty"]),
    "header_only": (_text(HEADER), "bookings.csv", 2, ["header but no rows"]),
    "missing_column": (
        _mutated(lambda f: f.drop(columns=["driver_rating"])),
        "bookings.csv",
        2,
        ["missing column(s) 'driver_rating'", "dataset 'bookings' needs"],
    ),
    "wrong_type": (
        _mutated(_set("surge_multiplier", slice(0, 9), "high")),
        "bookings.csv",
        2,
        ["column 'surge_multiplier' has 9 values that are not numbers", "'high'"],
    ),
    "wrong_type_parquet": (
        _mutated(_set("driver_tenure_days", slice(0, 3), "new"), ".parquet"),
        "bookings.parquet",
        2,
        ["column 'driver_tenure_days' has 3 values that are not numbers"],
    ),
    "unparseable_timestamps": (
        _mutated(_set("event_time", slice(0, 5), "yesterday at noon")),
        "bookings.csv",
        2,
        ["column 'event_time' has 5 values that are not timestamps", "ISO 8601"],
    ),
    "nulls": (
        _mutated(_set("driver_rating", slice(10, 27), None)),
        "bookings.csv",
        1,
        ["column 'driver_rating' has 17 missing values (expect_column_values_to_not_be_null)"],
    ),
    "out_of_range": (
        _mutated(_set("pickup_distance_km", slice(0, 312), 250.0)),
        "bookings.csv",
        1,
        ["column 'pickup_distance_km' has 312 values outside [0, 200] (expect_column_values_to_be_between)"],
    ),
    "negative_rating": (
        _mutated(_set("driver_rating", slice(0, 4), -3.0)),
        "bookings.csv",
        1,
        ["column 'driver_rating' has 4 values outside [1, 5]"],
    ),
    "bad_category": (
        _mutated(_set("accepted", slice(0, 12), 3)),
        "bookings.csv",
        1,
        ["column 'accepted' has 12 values not in [0, 1]", "(expect_column_values_to_be_in_set)"],
    ),
    "stale_timestamps": (
        _mutated(_stale),
        "bookings.csv",
        1,
        ["column 'event_time': the newest row", "stale data", "(expect_column_max_to_be_between)"],
    ),
    "unbalanced_label": (
        _mutated(_all_accepted),
        "bookings.csv",
        1,
        ["column 'accepted': mean (label balance) 1 is outside [0.05, 0.95]", "(expect_column_mean_to_be_between)"],
    ),
    "label_not_binary": (
        _mutated(_set("accepted", slice(0, 6), 2)),
        "bookings.csv",
        1,
        ["column 'accepted' has 6 values not in [0, 1]"],
    ),
    "duplicate_booking_ids": (
        _mutated(_duplicate_ids),
        "bookings.csv",
        1,
        ["column 'booking_id' has 7 duplicated values", "(expect_column_values_to_be_unique)"],
    ),
    "duplicated_header": (
        _text(HEADER.replace("driver_rating,", "driver_rating,driver_rating,", 1)),
        "bookings.csv",
        2,
        ["the header names column(s) 'driver_rating' (2 times) in the CSV header"],
    ),
    "naive_timestamps": (
        _mutated(_set("event_time", slice(0, 8), "2026-02-01 08:00:00")),
        "bookings.csv",
        2,
        ["column 'event_time' has 8 timestamps without a UTC offset", "naive_timestamps: utc"],
    ),
    "too_few_rows": (
        _mutated(lambda f: f.head(50)),
        "bookings.csv",
        1,
        ["the table has 50 rows, fewer than the minimum 300", "(expect_table_row_count_to_be_between)"],
    ),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_file_is_rejected_for_its_reason(good: pd.DataFrame, tmp_path: Path, name: str) -> None:
    writer, file_name, expected_code, expected = BROKEN[name]
    path = writer(good, tmp_path / file_name)
    code, out = _validate(REPO / "modelyard.yaml", path)
    assert code == expected_code, out
    for text in expected:
        assert text in out, f"{name}: expected {text!r} in:\n{out}"
    assert "Traceback" not in out


def test_rows_of_an_undeclared_region_are_reported_with_counts_not_validated(
    good: pd.DataFrame, tmp_path: Path
) -> None:
    path = _mutated(_set("region", slice(0, 12), "atlantis"))(good, tmp_path / "bookings.csv")
    code, out = _validate(REPO / "modelyard.yaml", path)
    assert code == 0, out
    assert "12 rows of regions the config does not declare were dropped: 'atlantis' (12)" in out
    assert "Rows by source file and region" in out


@pytest.mark.parametrize("name", ["nulls", "out_of_range", "bad_category", "unbalanced_label"])
def test_broken_data_fails_only_its_own_expectation(good: pd.DataFrame, tmp_path: Path, name: str) -> None:
    writer, file_name, _, expected = BROKEN[name]
    path = writer(good, tmp_path / file_name)
    code, out = _validate(REPO / "modelyard.yaml", path)
    assert code == 1
    assert out.count("✗") == 1, f"{name} should fail exactly one expectation:\n{out}"
    assert expected[-1] in out


def test_features_suite_catches_a_broken_snapshot(config: Config, good: pd.DataFrame) -> None:
    pair = config.pair_view("pickup_eta", "jakarta")
    features = build_features(good, pair, config.training).frame
    features.loc[features.index[:5], "hour_sin"] = 3.0
    features = features.iloc[::-1].reset_index(drop=True)
    outcome = validate_features(features, pair, config.data)
    assert not outcome.success
    text = "\n".join(outcome.failures)
    assert "region 'jakarta': column 'hour_sin' has 5 values outside [-1, 1]" in text
    assert "column 'event_time' has" in text
    assert "out of time order (expect_column_values_to_be_increasing)" in text


def test_features_suite_requires_the_exact_contract(config: Config, good: pd.DataFrame) -> None:
    pair = config.pair_view(FAMILY, "jakarta")
    features = build_features(good, pair, config.training).frame.drop(columns=["is_festival"])
    outcome = validate_features(features, pair, config.data)
    assert any("expect_table_columns_to_match_ordered_list" in f for f in outcome.failures)


DECLARED = """
      pickup_area: {type: category, allowed: [central, business_district, north, south, east, west, airport, suburbs]}
"""


def test_every_declared_constraint_is_reported_naming_column_and_count(good: pd.DataFrame, tmp_path: Path) -> None:
    text = (REPO / "modelyard.yaml").read_text()
    text = text.replace("      pickup_area: {type: category}\n", DECLARED.lstrip("\n"))
    text = text.replace(
        "driver_id: {type: string, nullable: true}", "driver_id: {type: string, max_null_fraction: 0.01}"
    )
    text = text.replace(
        "    naive_timestamps: refuse",
        "    naive_timestamps: refuse\n    expectations:\n"
        "      - {expectation: ExpectColumnValuesToMatchRegex, kwargs: {column: driver_id, regex: '^[A-Za-z0-9_-]+$'}}",
    )
    config_path = tmp_path / "modelyard.yaml"
    config_path.write_text(text.replace("root: .modelyard", f"root: {tmp_path / 'store'}"))
    broken = good.copy()
    broken["pickup_area"] = broken["pickup_area"].astype(object)
    broken.loc[broken.index[:6], "pickup_area"] = "moon"
    broken["driver_id"] = broken["driver_id"].astype(object)
    broken.loc[broken.index[10:30], "driver_id"] = None
    broken.loc[broken.index[40:43], "driver_id"] = "bad id!"
    broken.loc[broken.index[50:52], "driver_tenure_days"] = -1
    path = _csv(broken, tmp_path / "bookings.csv")
    code, out = _validate(config_path, path)
    assert code == 1, out
    assert "column 'pickup_area' has 6 values not in" in out
    assert "column 'driver_id' has 20 missing values (at most 0.01 of the rows may be)" in out
    assert "column 'driver_id' failed with 3 (expect_column_values_to_match_regex)" in out
    assert "column 'driver_tenure_days' has 2 values outside [0, 2e+04]" in out


def test_a_declared_expectation_is_checked_when_the_config_loads(tmp_path: Path) -> None:
    from modelyard.core.config import ConfigError

    text = (REPO / "modelyard.yaml").read_text()
    for extra, message in (
        ("{expectation: ExpectColumnValuesToBeShiny, kwargs: {column: region}}", "is not a class of"),
        ("{expectation: ExpectColumnValuesToMatchRegex, kwargs: {column: region, rgx: x}}", "invalid kwargs"),
    ):
        path = tmp_path / "modelyard.yaml"
        path.write_text(
            text.replace("    naive_timestamps: refuse", f"    naive_timestamps: refuse\n    expectations: [{extra}]")
        )
        with pytest.raises(ConfigError, match=message):
            load_config(path, environ={})
