"""Reading a table to score: files, digest, bounded chunks typed as the data stage types them, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelyard.core.config import PairView, load_config
from modelyard.core.featurespec import FittedSpec
from modelyard.deploy.batch import inputs, scoring
from modelyard.deploy.batch.errors import BatchInputError
from modelyard.deploy.batch.scoring import layout_for

REPO = Path(__file__).resolve().parents[4]
FAMILY, REGION = "driver_acceptance", "jakarta"


@pytest.fixture(scope="module")
def pair() -> PairView:
    return load_config(REPO / "modelyard.yaml", environ={}).pair_view(FAMILY, REGION)


def raw_table(rows: int, seed: int = 0) -> pd.DataFrame:
    """Rows as a client writes them: ISO times with Jakarta's offset, every fifth row of another region."""
    rng = np.random.default_rng(seed)
    times = pd.Timestamp("2026-03-01", tz="Asia/Jakarta") + pd.to_timedelta(rng.uniform(0, 30 * 86400, rows), unit="s")
    return pd.DataFrame(
        {
            "booking_id": [f"b{i}" for i in range(rows)],
            "event_time": [t.isoformat() for t in times],
            "region": np.where(np.arange(rows) % 5 == 4, "surabaya", REGION),
            "pickup_distance_km": rng.gamma(2.0, 1.5, rows),
            "driver_rating": rng.uniform(3.8, 5.0, rows),
            "driver_acceptance_rate": rng.beta(5, 2, rows),
            "driver_tenure_days": rng.integers(1, 900, rows),
            "surge_multiplier": rng.choice([1.0, 1.5, 2.0], rows),
            "area_demand_index": rng.uniform(0, 2, rows),
            "pickup_area": rng.choice(["central", "airport"], rows),  # the online aggregate's key (ADR 0019)
        }
    )


@pytest.fixture(scope="module")
def fitted(pair: PairView) -> FittedSpec:
    table = raw_table(200)
    columns = {name: table[name].to_numpy() for name in pair.spec.raw_inputs if name != "event_time"}
    columns["event_time"] = pd.to_datetime(table["event_time"], utc=True).dt.tz_localize(None).to_numpy()
    return pair.spec.fit(columns, pair.calendar)


def chunks_of(path: Path, layout: inputs.Layout, chunk_rows: int) -> list[inputs.Chunk]:
    columns = inputs.source_columns(inputs.header(path), layout)
    out, offset = [], 0
    for batch in inputs.raw_batches(path, columns, chunk_rows):
        out.append(
            inputs.typed_chunk(path, batch, offset, layout, file_row=offset)
        )  # one file: its rows are the input's
        offset += batch.num_rows
    return out


def test_files_of_a_glob_are_sorted_and_other_formats_refused(tmp_path: Path) -> None:
    for name in ("b.csv", "a.parquet", "c.txt"):
        (tmp_path / name).write_text("x\n1\n")
    assert [p.name for p in inputs.input_files(str(tmp_path / "*.csv"))] == ["b.csv"]
    with pytest.raises(BatchInputError, match=r"c\.txt: '\.txt' is not \.csv or \.parquet"):
        inputs.input_files(str(tmp_path / "*"))
    with pytest.raises(BatchInputError, match="the glob matches no file"):
        inputs.input_files(str(tmp_path / "none-*.csv"))
    with pytest.raises(BatchInputError, match="no such file"):
        inputs.input_files(str(tmp_path / "missing.csv"))


def test_a_folder_or_file_named_with_brackets_is_read_as_named(tmp_path: Path) -> None:
    folder = tmp_path / "[2026] exports"
    folder.mkdir()
    for name in ("b.csv", "[a].csv"):
        (folder / name).write_text("x\n1\n")
    assert inputs.input_files(str(folder / "[a].csv")) == [folder / "[a].csv"]
    assert inputs.input_files(f"file://{folder}/*.csv") == [folder / "[a].csv", folder / "b.csv"]


def test_the_input_digest_follows_the_content_not_the_name(tmp_path: Path) -> None:
    (tmp_path / "one.csv").write_text("x\n1\n")
    (tmp_path / "two.csv").write_text("x\n1\n")
    (tmp_path / "three.csv").write_text("x\n2\n")
    digest = inputs.input_digest([tmp_path / "one.csv"])
    assert digest == inputs.input_digest([tmp_path / "two.csv"])
    assert digest != inputs.input_digest([tmp_path / "three.csv"])
    assert digest != inputs.input_digest([tmp_path / "one.csv", tmp_path / "two.csv"])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_chunks_are_bounded_of_the_region_and_featurise_as_the_server_does(
    pair: PairView, fitted: FittedSpec, tmp_path: Path, suffix: str
) -> None:
    table = raw_table(23)
    path = tmp_path / f"rows{suffix}"
    table.to_csv(path, index=False) if suffix == ".csv" else table.to_parquet(path)
    layout = layout_for(pair, fitted, fitted.names, [inputs.header(path)])

    chunks = chunks_of(path, layout, chunk_rows=5)

    assert len(chunks) == 5
    assert all(len(c.frame) <= 5 for c in chunks)
    mine = np.flatnonzero(table["region"] == REGION)
    assert np.concatenate([c.rows for c in chunks]).tolist() == mine.tolist()
    assert pd.concat([c.frame for c in chunks])["booking_id"].tolist() == table["booking_id"][mine].tolist()
    matrix = np.concatenate([fitted.transform(inputs.spec_columns(c, fitted, layout)) for c in chunks])
    records = table.iloc[mine][[*fitted.raw_inputs, *fitted.requested]].to_dict("records")
    np.testing.assert_array_equal(matrix, fitted.transform(fitted.columns_from_records(records)))


def test_a_missing_raw_column_names_the_file_the_column_and_what_to_do(pair: PairView, fitted: FittedSpec) -> None:
    layout = layout_for(pair, fitted, fitted.names, [])
    with pytest.raises(BatchInputError) as caught:
        inputs.check_columns("in.csv", ["event_time", "driver_rating"], layout, "model 'm' v3")
    message = str(caught.value)
    assert message.startswith("in.csv: missing column(s) 'pickup_distance_km'")
    assert "model 'm' v3's feature spec reads" in message
    assert "add them to the file" in message
    assert "renames on dataset 'bookings'" in message
    assert "window aggregate 'area_demand_index' is computed from event_time, pickup_area" in message


def test_a_window_aggregate_is_read_where_the_input_carries_it_else_computed(
    pair: PairView, fitted: FittedSpec
) -> None:
    carried = layout_for(pair, fitted, fitted.names, [["area_demand_index", "pickup_area"]])
    assert (carried.requested, carried.computed) == (("area_demand_index",), ())
    computed = layout_for(pair, fitted, fitted.names, [["pickup_area"], ["pickup_area"]])
    assert computed.requested == ()
    assert [f.name for f in computed.computed] == ["area_demand_index"]
    assert computed.computed_from == {"area_demand_index": ["event_time", "pickup_area"]}
    assert {"event_time", "pickup_area"} <= set(computed.declared)
    some = layout_for(pair, fitted, fitted.names, [["area_demand_index"], []])  # one file has it, one does not
    with pytest.raises(BatchInputError) as caught:
        inputs.check_columns("b.csv", [*fitted.raw_inputs], some, "model 'm' v3")
    assert str(caught.value).startswith("b.csv: missing column(s) 'area_demand_index'")
    assert "give them in every file, or in none and they are computed from the input's rows" in str(caught.value)


def test_a_value_that_does_not_parse_names_the_file_and_the_column(
    pair: PairView, fitted: FittedSpec, tmp_path: Path
) -> None:
    table = raw_table(10).astype({"driver_rating": object})
    table.loc[3, "driver_rating"] = "five stars"
    path = tmp_path / "bad.csv"
    table.to_csv(path, index=False)
    layout = layout_for(pair, fitted, fitted.names, [inputs.header(path)])
    with pytest.raises(
        BatchInputError,
        match=r"bad\.csv: column 'driver_rating' has 1 value that is not a number "
        r"\(e.g. 'five stars' in row 4 after the header\)",
    ):
        chunks_of(path, layout, chunk_rows=100)


def test_a_bad_value_is_named_by_its_row_in_its_own_file_whatever_the_chunk(
    pair: PairView, fitted: FittedSpec, tmp_path: Path
) -> None:
    # Two Parquet files read in chunks of 4 rows: the bad value is the second file's 7th row (its second chunk).
    first, second = raw_table(10), raw_table(10).astype({"driver_rating": str})  # a text column, as some exports
    second.loc[6, "driver_rating"] = "n/a?"
    first.to_parquet(tmp_path / "a.parquet")
    second.to_parquet(tmp_path / "b.parquet")
    files = inputs.input_files(str(tmp_path / "*.parquet"))
    tables = [(path, inputs.header(path)) for path in files]
    layout = layout_for(pair, fitted, fitted.names, [names for _, names in tables])
    with pytest.raises(BatchInputError) as caught:
        list(scoring._chunks(tables, layout, chunk_rows=4))
    assert str(caught.value).startswith(f"{tmp_path / 'b.parquet'}: column 'driver_rating' has 1 value that is not")
    assert "(e.g. 'n/a?' in row 7); write a number in every row" in str(caught.value)


def test_an_empty_value_where_the_dataset_forbids_it_is_refused(
    pair: PairView, fitted: FittedSpec, tmp_path: Path
) -> None:
    table = raw_table(10)
    table.loc[0, "surge_multiplier"] = np.nan
    path = tmp_path / "empty.csv"
    table.to_csv(path, index=False)
    layout = layout_for(pair, fitted, fitted.names, [inputs.header(path)])
    with pytest.raises(
        BatchInputError,
        match=r"column 'surge_multiplier' is empty in 1 row of region 'jakarta' "
        r"\(first in row 1 after the header\).*not nullable",
    ):
        chunks_of(path, layout, chunk_rows=100)


def test_a_file_without_a_region_column_is_all_the_pairs_rows(
    pair: PairView, fitted: FittedSpec, tmp_path: Path
) -> None:
    table = raw_table(12).drop(columns=["region"])
    path = tmp_path / "jakarta.csv"
    table.to_csv(path, index=False)
    layout = layout_for(pair, fitted, fitted.names, [inputs.header(path)])
    assert np.concatenate([c.rows for c in chunks_of(path, layout, 5)]).tolist() == list(range(12))


def test_the_key_is_the_datasets_key_column_only_when_every_file_has_it(pair: PairView, fitted: FittedSpec) -> None:
    assert layout_for(pair, fitted, fitted.names, [["booking_id", "x"], ["booking_id"]]).key == "booking_id"
    assert layout_for(pair, fitted, fitted.names, [["booking_id"], ["x"]]).key is None


def test_a_version_without_a_spec_reads_its_feature_columns(pair: PairView) -> None:
    layout = layout_for(pair, None, ["f1", "f2"], [["f1", "f2"]])
    assert layout.raw == ("f1", "f2")
    assert layout.requested == ()
    assert layout.dataset.columns["f1"].type == "float"


def test_an_object_store_input_is_read_in_chunks_like_a_local_one(
    pair: PairView, fitted: FittedSpec, tmp_path: Path
) -> None:
    from upath import UPath

    table = raw_table(12)
    folder = UPath("memory://batch-inputs/day")
    folder.mkdir(parents=True, exist_ok=True)
    for index, part in enumerate((table.iloc[:7], table.iloc[7:])):
        (folder / f"rows-{index}.csv").write_text(part.to_csv(index=False))
    table.to_csv(tmp_path / "all.csv", index=False)

    files = inputs.input_files("memory://batch-inputs/day/*.csv")

    assert [Path(str(f)).name for f in files] == ["rows-0.csv", "rows-1.csv"]
    layout = layout_for(pair, fitted, fitted.names, [inputs.header(f) for f in files])
    rows, offset = [], 0
    for path in files:
        for batch in inputs.raw_batches(path, inputs.source_columns(inputs.header(path), layout), 4):
            rows.extend(inputs.typed_chunk(path, batch, offset, layout).rows.tolist())
            offset += batch.num_rows
    assert rows == np.flatnonzero(table["region"] == REGION).tolist()
    assert inputs.input_digest(files) != inputs.input_digest([tmp_path / "all.csv"])  # two files are not one
