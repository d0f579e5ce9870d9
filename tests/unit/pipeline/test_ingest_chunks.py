"""Ingest reads files chunk by chunk: the same rows, counts, notes and messages as one pass, in bounded memory.

Each test reads a file with blocks small enough to cut it into many chunks and checks what a user
sees against the same file read in one block: a count or a line number that depended on the
chunking would show here.
"""

from __future__ import annotations

import dataclasses
import textwrap
import tracemalloc
from pathlib import Path

import pandas as pd
import pytest

from modelyard.core.config import Config, load_config
from modelyard.pipeline import ingest, readers
from modelyard.pipeline.ingest import (
    ColumnTypeError,
    MalformedLineError,
    NaiveTimestampError,
    RawTable,
    UndeclaredRegionError,
    read_dataset,
)
from modelyard.pipeline.spill import RegionSpill

CONFIG = """
storage: {{root: {root}}}
datasets:
  - name: flights
    source: {{kind: file, path: flights.csv}}
    time_column: dep_time
    region_column: origin
    naive_timestamps: {naive}
    {extra}
    columns:
      flight_id: {{type: string}}
      dep_time: {{type: timestamp}}
      origin: {{type: category}}
      carrier: {{type: category}}
      distance: {{type: float, min: 0}}
      seats: {{type: int, nullable: true}}
regions:
  - {{name: EWR, country: US, timezone: America/New_York}}
  - {{name: LHR, country: GB, timezone: Europe/London}}
families:
  - {{name: delay, task: regression, target: distance, features: [seats]}}
"""
HEADER = "flight_id,dep_time,origin,carrier,distance,seats"
ZONES = {"EWR": "America/New_York", "LHR": "Europe/London"}
SMALL_BLOCK = 1 << 10  # about 25 lines a chunk


def _config(tmp_path: Path, naive: str = "region_local", extra: str = "") -> Config:
    file = tmp_path / "modelyard.yaml"
    file.write_text(textwrap.dedent(CONFIG.format(root=tmp_path / "store", naive=naive, extra=extra or "renames: {}")))
    return load_config(file, environ={})


def _lines(count: int, regions: tuple[str, ...] = ("EWR", "LHR", "SFO")) -> list[str]:
    """Naive local times every 3 hours from New York's spring-forward gap (the first line), regions in turn."""
    start = pd.Timestamp("2026-03-08 02:30")
    return [
        f"F{i},{start + pd.Timedelta(hours=3 * i):%Y-%m-%d %H:%M},{regions[i % len(regions)]},"
        f"{'AA' if i % 2 else 'DL'},{100 + i}.5,{'' if i % 7 == 0 else 150 + i}"
        for i in range(count)
    ]


def _write(tmp_path: Path, lines: list[str], name: str = "flights.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "\n" + "\n".join(lines) + "\n")
    return path


def _read(path: Path, config: Config, monkeypatch: pytest.MonkeyPatch, block: int) -> RawTable:
    monkeypatch.setattr(readers, "BLOCK_BYTES", block)
    return read_dataset(path, config.dataset("flights"), regions=ZONES)


def _error(path: Path, config: Config, monkeypatch: pytest.MonkeyPatch, block: int) -> str:
    with pytest.raises(ingest.IngestError) as caught:
        _read(path, config, monkeypatch, block)
    return f"{type(caught.value).__name__}: {caught.value}"


def test_many_chunks_give_the_rows_counts_and_notes_of_one_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = _lines(600)
    lines[40] = lines[40].rsplit(",", 2)[0]  # malformed: line 42
    lines[333] = lines[333].replace(".5,", ".5,x,", 1)  # malformed: line 335
    lines[501] = lines[501].replace("601.5", "far")  # a bad value: line 503
    path = _write(tmp_path, lines)
    config = _config(tmp_path, extra="bad_rows: quarantine\n    max_bad_fraction: 0.1")

    whole = _read(path, config, monkeypatch, 64 << 20)
    chunked = _read(path, config, monkeypatch, SMALL_BLOCK)

    pd.testing.assert_frame_equal(chunked.frame, whole.frame)
    pd.testing.assert_frame_equal(chunked.origin, whole.origin)
    assert chunked.read == whole.read
    assert chunked.undeclared == whole.undeclared == {(str(path), "SFO"): 200}
    assert chunked.notes == whole.notes
    assert any("398 timestamps without a UTC offset were read in their region's zone" in n for n in chunked.notes)
    assert any("region 'EWR': 1 local times in a daylight-saving gap" in n for n in chunked.notes)
    bad = sorted((row.line, row.reason) for row in chunked.bad)
    assert bad == sorted((row.line, row.reason) for row in whole.bad)
    assert [line for line, _ in bad] == [42, 335, 503]
    assert chunked.frame["dep_time"].dt.tz is not None
    assert chunked.frame["seats"].dtype == "float64"  # nulls in some chunks only: float, as in one pass
    assert chunked.origin[ingest.LINE_COLUMN].is_monotonic_increasing


@pytest.mark.parametrize(
    ("change", "extra", "naive", "expected"),
    [
        (
            lambda lines: [lines[i].rsplit(",", 1)[0] if i in (30, 310, 590) else line for i, line in enumerate(lines)],
            "",
            "region_local",
            "line 32 has 5 fields, expected 6",
        ),
        (
            lambda lines: [line.replace(".5,", "x,", 1) if i % 100 == 99 else line for i, line in enumerate(lines)],
            "",
            "region_local",
            "column 'distance' has 4 values that are not numbers (e.g. '199x' on line 101)",
        ),
        (lambda lines: lines, "undeclared_regions: fail", "region_local", "200 rows of regions the config does not"),
        (lambda lines: lines, "", "refuse", "column 'dep_time' has 400 timestamps without a UTC offset"),
        (lambda lines: lines, "dst_gaps: refuse", "region_local", "1 local times of region 'EWR'"),
    ],
)
def test_a_failing_file_reports_the_whole_files_count_and_first_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: object, extra: str, naive: str, expected: str
) -> None:
    path = _write(tmp_path, change(_lines(600)))  # type: ignore[operator]
    config = _config(tmp_path, naive=naive, extra=extra)
    chunked = _error(path, config, monkeypatch, SMALL_BLOCK)
    assert chunked == _error(path, config, monkeypatch, 64 << 20)
    assert expected in chunked


def test_the_first_problem_of_the_file_wins_over_a_later_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = _lines(600, regions=("EWR", "LHR"))
    lines[10] = lines[10].replace(".5,", "x,", 1)  # a bad number early
    lines[550] = lines[550].rsplit(",", 2)[0]  # a malformed line late: one pass reports it first
    path = _write(tmp_path, lines)
    config = _config(tmp_path)
    message = _error(path, config, monkeypatch, SMALL_BLOCK)
    assert message.startswith(MalformedLineError.__name__)
    assert "line 552" in message
    assert message == _error(path, config, monkeypatch, 64 << 20)
    assert not issubclass(MalformedLineError, (ColumnTypeError, NaiveTimestampError, UndeclaredRegionError))


def test_parquet_is_read_in_batches_with_the_rows_of_one_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    csv_path = _write(tmp_path, _lines(250, regions=("EWR", "LHR")))
    config = _config(tmp_path, naive="utc")
    frame = pd.read_csv(csv_path, dtype=str)
    frame["dep_time"] = pd.to_datetime(frame["dep_time"])  # naive datetimes: taken as UTC by the policy
    path = tmp_path / "flights.parquet"
    frame.to_parquet(path, index=True)  # an index column pandas restores as the index, not a column
    monkeypatch.setattr(readers, "PARQUET_BATCH_ROWS", 40)
    table = read_dataset(path, config.dataset("flights"), regions=ZONES)
    assert list(table.frame.columns) == HEADER.split(",")
    assert table.origin[ingest.LINE_COLUMN].tolist() == list(range(1, 251))
    assert table.notes == [f"{path}: column 'dep_time': 250 timestamps without a UTC offset were taken as UTC"]
    assert table.read == {(str(path), "EWR"): 125, (str(path), "LHR"): 125}


def test_memory_follows_the_rows_kept_not_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows of an undeclared region are counted and dropped: four times the file, about the same peak."""
    config = _config(tmp_path)
    monkeypatch.setattr(readers, "BLOCK_BYTES", 64 << 10)

    def peak(lines: int) -> int:
        path = _write(tmp_path, _lines(lines, regions=("SFO",)), name=f"sfo-{lines}.csv")
        tracemalloc.start()
        table = read_dataset(path, config.dataset("flights"), regions=ZONES)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert table.undeclared == {(str(path), "SFO"): lines}
        assert table.frame.empty
        return top

    small, large = peak(10_000), peak(40_000)
    assert large < 1.5 * small, (small, large)


def test_a_bad_row_keeps_its_file_and_line_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _lines(300, regions=("EWR",))
    for index in (24, 25, 26, 180):  # around a chunk boundary, and later
        lines[index] = lines[index].rsplit(",", 1)[0]
    path = _write(tmp_path, lines)
    config = _config(tmp_path, extra="bad_rows: quarantine\n    max_bad_fraction: 0.5")
    table = _read(path, config, monkeypatch, SMALL_BLOCK)
    assert [dataclasses.astuple(row)[1:3] for row in table.bad] == [(26, "EWR"), (27, "EWR"), (28, "EWR"), (182, "EWR")]
    kept = table.origin[ingest.LINE_COLUMN].tolist()
    assert kept == [n for n in range(2, 302) if n not in (26, 27, 28, 182)]


def test_a_spill_gives_each_region_the_rows_of_one_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _lines(600)
    lines[40] = lines[40].rsplit(",", 2)[0]  # malformed: set aside, not spilled
    path = _write(tmp_path, lines)
    config = _config(tmp_path, extra="bad_rows: quarantine\n    max_bad_fraction: 0.1")
    whole = _read(path, config, monkeypatch, SMALL_BLOCK)
    spill = RegionSpill(tmp_path / "spill", "origin")
    spilled = read_dataset(path, config.dataset("flights"), regions=ZONES, spill=spill)
    assert spilled.frame.empty
    assert list(spilled.frame.columns) == list(whole.frame.columns)
    assert (spilled.read, spilled.undeclared, spilled.notes) == (whole.read, whole.undeclared, whole.notes)
    assert [row.line for row in spilled.bad] == [row.line for row in whole.bad] == [42]
    for region in (*ZONES, "SFO"):  # SFO is undeclared: no rows, the typed columns
        frame, origin = ingest.region_rows(spilled, "origin", region)
        expected, expected_origin = ingest.region_rows(whole, "origin", region)
        pd.testing.assert_frame_equal(frame, expected, check_categorical=False)
        pd.testing.assert_frame_equal(origin, expected_origin)
    spill.close()
    assert not (tmp_path / "spill").exists()


def test_with_a_spill_memory_follows_the_largest_region(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four regions' rows of a file: read with a spill, then one region loaded, peaks near that region's size."""
    config = _config(tmp_path)
    zones = {**ZONES, "CDG": "Europe/Paris", "NRT": "Asia/Tokyo"}
    monkeypatch.setattr(readers, "BLOCK_BYTES", 256 << 10)
    path = _write(tmp_path, _lines(80_000, regions=tuple(zones)))

    def peak(spill: RegionSpill | None) -> int:
        tracemalloc.start()
        table = read_dataset(path, config.dataset("flights"), regions=zones, spill=spill)
        frame, _ = ingest.region_rows(table, "origin", "EWR")
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert len(frame) == 20_000
        return top

    held, spilled = peak(None), peak(RegionSpill(tmp_path / "spill", "origin"))
    print(f"peak with a spill {spilled >> 10} KiB, holding every region {held >> 10} KiB")
    assert spilled < 0.7 * held, (spilled, held)
