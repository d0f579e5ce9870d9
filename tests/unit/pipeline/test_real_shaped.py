"""Real data as it arrives (issue 24): row selection, local clocks, every dropped row counted, quarantine.

Each test writes a small real-shaped export (naive local times, missing labels, a region the
config does not declare, a truncated last line) and checks what a user would: the counts per
file and region, the line numbers, and which regions publish.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest

from modelyard.core.config import Config, ConfigError, load_config
from modelyard.core.config.datasets import Condition
from modelyard.pipeline.build import build_pair
from modelyard.pipeline.ingest import MalformedLineError, NaiveTimestampError, TimestampError, read_dataset
from modelyard.pipeline.selection import where_mask

CONFIG = """
storage: {{root: {root}}}
data: {{min_rows: 20, freshness_days: 36500}}
datasets:
  - name: flights
    source: {{kind: file, path: {path}}}
    time_column: dep_time
    region_column: origin
    key_column: flight_id
    naive_timestamps: {naive}
    {extra}
    columns:
      flight_id: {{type: string, unique: true}}
      dep_time: {{type: timestamp}}
      origin: {{type: category}}
      carrier: {{type: category}}
      distance: {{type: float, min: 0}}
      dep_delay: {{type: float, nullable: true}}
regions:
  - {{name: EWR, country: US, timezone: America/New_York}}
  - {{name: LHR, country: GB, timezone: Europe/London}}
families:
  - name: delay
    task: regression
    target: dep_delay
    features: [distance]
    {family_extra}
"""


def _config(tmp_path: Path, path: Path, naive: str = "region_local", extra: str = "", family_extra: str = "") -> Config:
    text = CONFIG.format(
        root=tmp_path / "store", path=path, naive=naive, extra=extra or "renames: {}", family_extra=family_extra
    )
    file = tmp_path / "modelyard.yaml"
    file.write_text(textwrap.dedent(text))
    return load_config(file, environ={})


def _rows(regions: dict[str, int], *, start: str = "2026-03-01 06:00") -> list[str]:
    lines, n = [], 0
    for region, count in regions.items():
        for i in range(count):
            stamp = pd.Timestamp(start) + pd.Timedelta(hours=5 * i)
            delay = "" if i % 10 == 9 else f"{(i * 7) % 31 - 5}"
            lines.append(f"F{n},{stamp:%Y-%m-%d %H:%M},{region},{'AA' if i % 2 else 'DL'},{100 + i * 13},{delay}")
            n += 1
    return lines


def _write(tmp_path: Path, lines: list[str], name: str = "flights.csv") -> Path:
    path = tmp_path / name
    path.write_text("flight_id,dep_time,origin,carrier,distance,dep_delay\n" + "\n".join(lines) + "\n")
    return path


# --- config: the where language -------------------------------------------------------------


def test_where_shorthand_and_structured_conditions_parse_the_same() -> None:
    assert Condition.model_validate("carrier in [AA, DL]") == Condition(column="carrier", op="in", value=["AA", "DL"])
    assert Condition.model_validate("dep_delay is not null").op == "is not null"
    assert Condition.model_validate("distance >= 100").value == 100


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ('["cancelled == 1"]', "families 'delay' rows.where[0] (cancelled == 1): column 'cancelled' is not declared"),
        ('["distance ~ 3"]', "is not a condition"),
        ('["carrier > AA"]', "'>' does not apply to category column 'carrier'"),
        ('["distance == far"]', "float column 'distance' takes numbers"),
        ('["carrier in AA"]', "'in' takes a list"),
    ],
)
def test_a_bad_where_fails_at_load_naming_the_key(tmp_path: Path, where: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _config(tmp_path, tmp_path / "x.csv", family_extra=f"rows: {{where: {where}}}")
    assert message in str(caught.value)
    assert "rows" in str(caught.value)


def test_where_mask_is_sql_like_on_nulls(tmp_path: Path) -> None:
    config = _config(tmp_path, tmp_path / "x.csv")
    dataset = config.dataset("flights")
    frame = pd.DataFrame({"carrier": ["AA", None, "DL"], "distance": [50.0, 150.0, float("nan")]})
    conditions = [Condition.model_validate(c) for c in ("carrier != DL", "distance < 100")]
    assert where_mask(frame, conditions, dataset).tolist() == [True, False, False]
    nulls = [Condition.model_validate("distance is null")]
    assert where_mask(frame, nulls, dataset).tolist() == [False, False, True]


# --- naive local times ----------------------------------------------------------------------


def test_naive_times_are_read_in_each_regions_own_zone_across_a_dst_change(tmp_path: Path) -> None:
    lines = [
        "F1,2026-03-08 01:30,EWR,AA,100,1",  # EST: 06:30Z
        "F2,2026-03-08 02:30,EWR,AA,100,1",  # spring-forward gap: shifted to 03:00 EDT = 07:00Z
        "F3,2026-03-08 03:30,EWR,AA,100,1",  # EDT: 07:30Z
        "F4,2026-11-01 01:30,EWR,AA,100,1",  # fall-back overlap: the earliest, EDT = 05:30Z
        "F5,2026-03-08 02:30,LHR,AA,100,1",  # London has no change that day: GMT = 02:30Z
        "F6,2026-03-08T02:30:00+01:00,LHR,AA,100,1",  # an explicit offset wins
    ]
    path = _write(tmp_path, lines)
    config = _config(tmp_path, path)
    zones = {r.name: r.timezone for r in config.regions}
    table = read_dataset(path, config.dataset("flights"), regions=zones)
    utc = [t.strftime("%m-%d %H:%M") for t in table.frame["dep_time"]]
    assert utc == ["03-08 06:30", "03-08 07:00", "03-08 07:30", "11-01 05:30", "03-08 02:30", "03-08 01:30"]
    notes = " ".join(table.notes)
    assert "region 'EWR': 1 local times in a daylight-saving gap" in notes
    assert "region 'EWR': 1 local times in a daylight-saving overlap" in notes

    latest = config.dataset("flights").model_copy(update={"dst_overlaps": "latest"})
    assert read_dataset(path, latest, regions=zones).frame["dep_time"][3].strftime("%H:%M") == "06:30"
    refuse = config.dataset("flights").model_copy(update={"dst_gaps": "refuse"})
    with pytest.raises(TimestampError, match=r"1 local times of region 'EWR' \(America/New_York\) fall in a day"):
        read_dataset(path, refuse, regions=zones)


def test_refused_naive_times_hint_the_regions_own_offset(tmp_path: Path) -> None:
    path = _write(tmp_path, ["F1,2026-01-05 08:30,EWR,AA,100,1"])
    config = _config(tmp_path, path, naive="refuse")
    zones = {r.name: r.timezone for r in config.regions}
    with pytest.raises(NaiveTimestampError) as caught:
        read_dataset(path, config.dataset("flights"), regions=zones)
    assert "2026-01-05T08:30:00-05:00 for region 'EWR' (America/New_York)" in str(caught.value)
    assert "+07:00" not in str(caught.value)


# --- every row accounted for ----------------------------------------------------------------


def test_missing_labels_a_filter_and_undeclared_regions_are_counted_per_file_and_region(tmp_path: Path) -> None:
    path = _write(tmp_path, _rows({"EWR": 60, "LHR": 40, "SFO": 7, "JFK": 3}))
    config = _config(tmp_path, path, family_extra="rows: {where: ['carrier == DL']}")
    result = build_pair(config, "delay", "EWR")
    assert result.status == "published", result.reason
    (account,) = result.rows_by_file
    # 60 EWR rows: the 30 AA ones fail the filter; the unlabelled rows (i % 10 == 9) are all AA.
    assert account.read == 60
    assert account.dropped == {"filter": 30}
    assert account.kept == 30 == result.rows
    undeclared = {a.region: a.read for a in result.undeclared}
    assert undeclared == {"SFO": 7, "JFK": 3}
    assert "10 rows of regions the config does not declare were dropped: 'SFO' (7), 'JFK' (3)" in result.reason


def test_rows_without_a_label_are_dropped_and_counted(tmp_path: Path) -> None:
    path = _write(tmp_path, _rows({"EWR": 60, "LHR": 40}))
    config = _config(tmp_path, path)
    result = build_pair(config, "delay", "EWR")
    assert result.status == "published", result.reason
    (account,) = result.rows_by_file
    assert account.dropped == {"missing target": 6}
    assert (account.read, account.kept, result.rows) == (60, 54, 54)

    failing = _config(tmp_path, path, family_extra="rows: {missing_target: fail}")
    result = build_pair(failing, "delay", "EWR")
    assert result.status == "failed"
    assert "region 'EWR'" in result.reason
    assert "6 missing values" in result.reason


def test_undeclared_regions_can_be_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, _rows({"EWR": 30, "SFO": 2}))
    config = _config(tmp_path, path, extra="undeclared_regions: fail")
    result = build_pair(config, "delay", "EWR")
    assert result.status == "failed"
    assert "2 rows of regions the config does not declare: 'SFO' (2)" in result.reason


def test_a_declared_region_without_rows_names_the_closest_values_seen(tmp_path: Path) -> None:
    path = _write(tmp_path, [line.replace(",EWR,", ",ewr,") for line in _rows({"EWR": 30, "LHR": 30})])
    config = _config(tmp_path, path)
    result = build_pair(config, "delay", "EWR")
    assert result.status == "skipped"
    assert "closest region values: 'ewr' (30 rows)" in result.reason


def test_a_declared_non_nullable_column_absent_from_the_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "flights.csv"
    pd.DataFrame([r.split(",") for r in _rows({"EWR": 30})]).drop(columns=[3]).to_csv(
        path, index=False, header=["flight_id", "dep_time", "origin", "distance", "dep_delay"]
    )
    result = build_pair(_config(tmp_path, path), "delay", "EWR")  # no feature reads carrier
    assert result.status == "failed"
    assert "missing column(s) 'carrier'" in result.reason


# --- malformed lines and quarantine ---------------------------------------------------------


def test_a_truncated_last_line_fails_naming_its_line(tmp_path: Path) -> None:
    rows = _rows({"EWR": 30, "LHR": 30})
    path = tmp_path / "flights.csv"
    path.write_text("flight_id,dep_time,origin,carrier,distance,dep_delay\n" + "\n".join(rows) + "\nF99,2026-03-0")
    config = _config(tmp_path, path)
    with pytest.raises(MalformedLineError, match=r"line 62 has 2 fields, expected 6"):
        read_dataset(path, config.dataset("flights"), regions={"EWR": "America/New_York", "LHR": "Europe/London"})
    result = build_pair(config, "delay", "LHR")
    assert result.status == "failed"
    assert "line 62" in result.reason
    assert "bad_rows: quarantine" in result.reason


def test_bad_rows_under_the_fraction_are_quarantined_and_over_it_fail_the_region(tmp_path: Path) -> None:
    rows = _rows({"EWR": 40, "LHR": 40})
    rows[5] = rows[5].rsplit(",", 2)[0]  # EWR: a line cut short (line 7)
    rows[45] = rows[45].replace(",AA,", ",AA,far,", 1).rsplit(",", 1)[0]  # LHR: text in distance (line 47)
    rows[46] = rows[46] + ",extra"  # LHR: one field too many (line 48)
    rows[47] = rows[47].replace(",DL,", ",DL,nowhere,", 1).rsplit(",", 1)[0]  # LHR: line 49
    path = _write(tmp_path, rows)
    config = _config(tmp_path, path, extra="bad_rows: quarantine\n    max_bad_fraction: 0.05")

    ewr = build_pair(config, "delay", "EWR")
    assert ewr.status == "published", ewr.reason
    (account,) = ewr.rows_by_file
    assert account.read == 40
    assert account.dropped["malformed line"] == 1
    assert ewr.quarantine is not None
    assert ewr.quarantine.parent == ewr.report.parent
    quarantined = pd.read_csv(ewr.quarantine)
    assert quarantined[quarantined["region"] == "EWR"]["line"].tolist() == [7]

    lhr = build_pair(config, "delay", "LHR")
    assert lhr.status == "failed"
    assert "region 'LHR': 3 of 40 rows are bad (7.50%, more than max_bad_fraction 0.05)" in lhr.reason
    lines = pd.read_csv(lhr.quarantine)
    assert sorted(lines[lines["region"] == "LHR"]["line"]) == [47, 48, 49]
    assert set(lines["reason"]) >= {"column 'distance': not a number", "malformed line (7 fields, expected 6)"}


def test_quarantine_needs_its_fraction(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bad_rows: quarantine and max_bad_fraction go together"):
        _config(tmp_path, tmp_path / "x.csv", extra="bad_rows: quarantine")
