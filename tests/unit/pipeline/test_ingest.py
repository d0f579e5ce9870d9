"""Ingest: CSV and Parquet, paths and globs, typed by the declared dataset, one typed error per unusable file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from modelyard.core.config import Config, Dataset, load_config
from modelyard.pipeline.features import required_raw_columns
from modelyard.pipeline.generator import generate_for
from modelyard.pipeline.ingest import (
    ColumnTypeError,
    DuplicateColumnError,
    EmptyFileError,
    HeaderOnlyError,
    IngestError,
    MissingColumnError,
    NaiveTimestampError,
    NoInputError,
    TimestampError,
    UnsupportedFormatError,
    read_dataset,
)

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(REPO / "modelyard.yaml", environ={})


@pytest.fixture(scope="module")
def bookings(config: Config) -> pd.DataFrame:
    return generate_for(config, "bangkok", rows=300)


@pytest.fixture(scope="module")
def dataset(config: Config) -> Dataset:
    return config.dataset("bookings")


def read_bookings(source: str | Path, family: str | None = None, config: Config | None = None, **changes: object):
    config = config or load_config(REPO / "modelyard.yaml", environ={})
    dataset = config.dataset("bookings").model_copy(update=changes)
    required = required_raw_columns(config.pair_view(family, "bangkok")) if family else None
    return read_dataset(source, dataset, required).frame


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip_keeps_values_and_types(config: Config, bookings: pd.DataFrame, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"b{suffix}"
    bookings.to_csv(path, index=False) if suffix == ".csv" else bookings.to_parquet(path, index=False)
    frame = read_bookings(path, "driver_acceptance")
    assert list(frame.columns) == list(bookings.columns)
    assert str(frame["event_time"].dtype).endswith("UTC]")
    assert frame["accepted"].dtype == "int64"
    assert frame["driver_tenure_days"].dtype == "int64"
    assert frame["pickup_distance_km"].dtype == "float64"
    assert (frame["event_time"] == bookings["event_time"]).all()
    pd.testing.assert_series_equal(frame["pickup_eta_min"], bookings["pickup_eta_min"])


def test_glob_concatenates_files_in_name_order(bookings: pd.DataFrame, tmp_path: Path) -> None:
    bookings.iloc[:100].to_csv(tmp_path / "part-1.csv", index=False)
    bookings.iloc[100:].to_parquet(tmp_path / "part-2.parquet", index=False)
    frame = read_bookings(str(tmp_path / "part-*"))
    assert len(frame) == len(bookings)
    assert frame["booking_id"].tolist() == bookings["booking_id"].tolist()


def test_naive_timestamps_are_refused_or_taken_as_utc_by_the_dataset_setting(dataset: Dataset, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("event_time,region\n2026-01-05 08:00:00,jakarta\n2026-01-05T15:00:00+07:00,jakarta\n")
    with pytest.raises(
        NaiveTimestampError,
        match=r"column 'event_time' has 1 timestamp without a UTC offset \(e.g. '2026-01-05 08:00:00' on line 2\)",
    ) as caught:
        read_dataset(path, dataset)
    assert str(path) in str(caught.value)
    assert "naive_timestamps: utc" in str(caught.value)
    table = read_dataset(path, dataset.model_copy(update={"naive_timestamps": "utc"}))
    assert table.frame["event_time"].tolist() == [pd.Timestamp("2026-01-05T08:00Z")] * 2
    assert table.notes == [f"{path}: column 'event_time': 1 timestamps without a UTC offset were taken as UTC"]


def test_a_duplicated_csv_header_is_refused_naming_the_column(dataset: Dataset, tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("event_time,region,driver_rating,driver_rating\n2026-01-05T08:00Z,jakarta,4.5,3.0\n")
    with pytest.raises(DuplicateColumnError, match=r"column\(s\) 'driver_rating' \(2 times\) in the CSV header"):
        read_dataset(path, dataset)


def test_renames_map_source_names_and_regions_are_whatever_the_data_holds(dataset: Dataset, tmp_path: Path) -> None:
    path = tmp_path / "renamed.parquet"
    source = pd.DataFrame({"ts": pd.to_datetime(["2026-01-05T08:00Z"], utc=True), "city": [7], "rating": ["4.5"]})
    source.to_parquet(path, index=False)
    renamed = dataset.model_copy(update={"renames": {"ts": "event_time", "city": "region", "rating": "driver_rating"}})
    frame = read_dataset(path, renamed).frame
    assert frame["region"].tolist() == ["7"]
    assert frame["driver_rating"].tolist() == [4.5]


@pytest.mark.parametrize(
    ("name", "content", "error", "message"),
    [
        ("b.xlsx", "x", UnsupportedFormatError, "'.xlsx' is not a supported format"),
        ("b", "x", UnsupportedFormatError, "'no extension' is not a supported format"),
        ("b.parquet", "event_time,region\n", UnsupportedFormatError, "not a valid Parquet file"),
        ("b.csv", "", EmptyFileError, "the file is empty"),
        ("b.csv", "\n\n", EmptyFileError, "no header and no rows"),
        ("b.csv", "event_time,region\n", HeaderOnlyError, "header but no rows"),
        ("b.csv", "event_time,place\n2026-01-05,jakarta\n", MissingColumnError, "missing column(s) 'region'"),
        (
            "b.csv",
            "event_time,region\nsoon,jakarta\n",
            TimestampError,
            "column 'event_time' has 1 value that is not a timestamp (e.g. 'soon' on line 2)",
        ),
        ("b.csv", "event_time,region,region\n2026-01-05Z,a,b\n", DuplicateColumnError, "'region' (2 times)"),
        (
            "b.csv",
            "event_time,region,driver_rating\n2026-01-05T00:00Z,jakarta,five\n",
            ColumnTypeError,
            "column 'driver_rating' has 1 value that is not a number (e.g. 'five' on line 2)",
        ),
    ],
)
def test_unusable_files_get_one_line_typed_errors(
    tmp_path: Path, name: str, content: str, error: type[IngestError], message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(error) as caught:
        read_bookings(path)
    text = str(caught.value)
    assert message in text
    assert str(path) in text
    assert "\n" not in text


def test_missing_file_and_empty_glob(tmp_path: Path) -> None:
    with pytest.raises(NoInputError, match="no such file"):
        read_bookings(tmp_path / "nope.csv")
    with pytest.raises(NoInputError, match="the glob matches no file"):
        read_bookings(str(tmp_path / "*.parquet"))


def test_family_columns_are_required(config: Config, bookings: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "eta_only.csv"
    bookings.drop(columns=["accepted"]).to_csv(path, index=False)
    assert len(read_bookings(path, "pickup_eta")) == len(bookings)
    with pytest.raises(MissingColumnError, match=r"missing column\(s\) 'accepted' \(dataset 'bookings' needs"):
        read_bookings(path, "driver_acceptance")


def test_nulls_survive_ingest_for_validation_to_count(config: Config, bookings: pd.DataFrame, tmp_path: Path) -> None:
    frame = bookings.copy()
    frame["accepted"] = frame["accepted"].astype(object)
    frame.loc[:4, "accepted"] = None
    path = tmp_path / "nulls.csv"
    frame.to_csv(path, index=False)
    out = read_bookings(path)
    assert out["accepted"].isna().sum() == 5


def test_a_bad_value_in_a_parquet_file_is_named_by_its_row(dataset: Dataset, tmp_path: Path) -> None:
    path = tmp_path / "b.parquet"
    ratings = ["4.5", "4.1", "five", "4.9"]
    pd.DataFrame(
        {"event_time": ["2026-01-05T00:00Z"] * 4, "region": ["jakarta"] * 4, "driver_rating": ratings}
    ).to_parquet(path)
    with pytest.raises(ColumnTypeError) as caught:
        read_dataset(path, dataset)
    assert "column 'driver_rating' has 1 value that is not a number (e.g. 'five' in row 3)" in str(caught.value)
