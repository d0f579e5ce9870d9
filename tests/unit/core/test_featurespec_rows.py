"""The row path: a few rows featurised with scalars give the batch path's values bit for bit, or decline."""

from __future__ import annotations

import datetime as dt
import math
import random
from typing import Any

import numpy as np
import pytest

from modelyard.core.featurespec import Calendar, FeatureDef, FeatureSpec, FittedSpec
from modelyard.core.featurespec.rows import RowPlan

pytestmark = pytest.mark.unit

COLUMNS = {
    "ts": "timestamp",
    "size": "float",
    "items": "int",
    "express": "bool",
    "shop": "category",
    "floor": "int",
    "driver": "string",
    "demand": "float",
}
FEATURES = (
    FeatureDef("size", "column"),
    FeatureDef("items", "column"),
    FeatureDef("express", "column"),
    FeatureDef("size_log", "log1p", column="size"),
    FeatureDef("items_log", "log1p", column="items"),
    FeatureDef("size_clip", "clip", column="size", lower=-5.0, upper=50.0),
    FeatureDef("items_low", "clip", column="items", lower=0.0),
    FeatureDef("size_band", "bucket", column="size", edges=(-1.0, 0.0, 2.5, 10.0)),
    FeatureDef("items_band", "bucket", column="items", buckets=4),
    *(FeatureDef(f"items_{i}", "compare", column="items", op=op, value=3) for i, op in enumerate(("<", "<=", "=="))),
    *(FeatureDef(f"size_{i}", "compare", column="size", op=op, value=2.5) for i, op in enumerate((">", ">=", "!="))),
    FeatureDef("shop", "category"),
    FeatureDef("floor", "category"),  # a category over an int column: read as numbers, then as text
    *(FeatureDef(kind, kind, column="ts") for kind in ("hour", "hour_sin", "hour_cos", "day_of_week")),
    *(FeatureDef(kind, kind, column="ts") for kind in ("is_weekend", "month", "is_holiday")),
    FeatureDef("demand_index", "window_count", key="driver"),
    FeatureDef("demand_mean", "window_mean", key="driver", column="demand", every="day"),
)
ZONES = ("Asia/Jakarta", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "UTC")
HOLIDAYS = ((dt.date(2026, 3, 28), dt.date(2026, 3, 29)), (dt.date(2026, 12, 24), dt.date(2027, 1, 1)))


def _fitted(zone: str = "Europe/Berlin") -> FittedSpec:
    spec = FeatureSpec("prep", "ts", COLUMNS, FEATURES)
    vocabularies = {"shop": ("7", "north", "south"), "floor": ("-1", "0", "3")}
    edges = {"size_band": (-1.0, 0.0, 2.5, 10.0), "items_band": (1.0, 3.0, 8.0)}  # as fitting writes them
    return FittedSpec(spec, Calendar("BER", zone, HOLIDAYS), vocabularies, edges)


def _time(rng: random.Random) -> str:
    """An instant in 2020-2031, or one minute around a DST change, written with some offset."""
    changes = ("2026-03-29T00:59:00Z", "2026-03-29T01:00:00Z", "2026-10-25T00:59:30Z", "2026-11-01T06:00:00Z")
    if rng.random() < 0.2:
        moment = dt.datetime.fromisoformat(rng.choice(changes)) + dt.timedelta(seconds=rng.randint(-90, 90))
    else:
        moment = dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=rng.randint(0, 11 * 365 * 86400))
    offset = dt.timezone(dt.timedelta(minutes=rng.choice((-600, -300, 0, 345, 420, 630))))
    text = moment.astimezone(offset).isoformat()
    return text.replace("+00:00", "Z") if rng.random() < 0.3 else text


def _record(rng: random.Random) -> dict[str, Any]:
    return {
        "ts": _time(rng),
        "size": rng.choice((0.0, -0.0, 2.5, -1.0, 1e15, -3.3e-12, rng.uniform(-10, 60), rng.gauss(0, 1e6))),
        "items": rng.choice((0, 1, 3, 8, -4, 2**52, rng.randint(-100, 100))),
        "express": rng.choice((True, False, 0, 1, 1.0)),
        "shop": rng.choice(("north", "south", "east", 7, 7.0, "7", None, float("nan"), 3.5, True, "")),
        "floor": rng.choice((-1, 0, 3, 3.0, 4, 12)),
        "driver": rng.choice(("d1", "d2")),
        "demand_index": rng.uniform(0, 3),
        "demand_mean": rng.choice((0.0, rng.uniform(0, 100), 1e300)),
    }


def _batch(fitted: FittedSpec, records: list[dict[str, Any]]) -> tuple[bytes, dict[str, int]]:
    done = fitted.transform_counted(fitted.columns_from_records(records))
    return done.matrix.tobytes(), done.unknown


@pytest.mark.parametrize("zone", ZONES)
def test_rows_alone_and_in_small_groups_equal_the_batch_bit_for_bit(zone: str) -> None:
    # 2,000 rows featurised as one batch (offsets by hour, np.unique) and by the row path, one row and
    # seven rows at a time: the same bytes (-0.0 and NaN included) and the same unknown-category counts.
    fitted, rng = _fitted(zone), random.Random(zone)
    records = [_record(rng) for _ in range(2000)]
    plan = RowPlan.of(fitted)
    assert plan is not None
    expected, unknown = _batch(fitted, records)
    for size in (1, 7):
        parts = [plan.transform_counted(records[i : i + size]) for i in range(0, len(records), size)]
        assert all(part is not None for part in parts)
        assert b"".join(part.matrix.tobytes() for part in parts if part) == expected, size
        counted: dict[str, int] = {}
        for part in parts:
            for name, count in part.unknown.items() if part else ():
                counted[name] = counted.get(name, 0) + count
        assert counted == unknown
        assert unknown["shop"] > 100
        assert unknown["floor"] > 100


def test_every_feature_kind_but_function_takes_part_and_the_values_vary() -> None:
    # The parity test above would pass on a spec whose values never vary: check that each feature does.
    fitted, rng = _fitted(), random.Random(3)
    plan = RowPlan.of(fitted)
    assert plan is not None
    matrix = np.concatenate([plan.transform_counted([_record(rng)]).matrix for _ in range(400)])  # type: ignore[union-attr]
    varying = {name for index, name in enumerate(fitted.names) if len(np.unique(matrix[:, index])) > 1}
    assert varying == set(fitted.names)


def test_a_hour_wave_row_equals_its_sine_to_the_last_bit() -> None:
    plan, fitted = RowPlan.of(_fitted("UTC")), _fitted("UTC")
    row = plan.transform_counted([{**_record(random.Random(1)), "ts": "2026-05-13T07:45:00Z"}])  # type: ignore[union-attr]
    assert row is not None
    values = dict(zip(fitted.names, row.matrix[0].tolist(), strict=True))
    assert values["hour"] == 7
    assert values["month"] == 5
    assert values["day_of_week"] == 2
    assert math.isclose(values["hour_sin"], math.sin(7.75 * 2 * math.pi / 24), rel_tol=1e-15)
    assert math.isclose(values["hour_cos"], math.cos(7.75 * 2 * math.pi / 24), rel_tol=1e-15)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size", "12"),  # text where a number goes: numpy reads it, the row path leaves it to numpy
        ("size", float("nan")),
        ("items", 2**53),  # its float64 and int64 casts round
        ("size", math.inf),
        ("demand_index", None),
        ("ts", "2026-05-13T07:45:00"),  # no offset: the batch path names the problem
        ("ts", 1_768_000_000),
        ("shop", ["north"]),
    ],
)
def test_a_row_the_batch_would_read_otherwise_is_declined(field: str, value: Any) -> None:
    plan = RowPlan.of(_fitted())
    assert plan is not None
    good = _record(random.Random(5))
    assert plan.transform_counted([good]) is not None
    assert plan.transform_counted([good, {**good, field: value}]) is None


def test_a_missing_field_is_declined_and_a_function_feature_has_no_plan() -> None:
    fitted = _fitted()
    plan = RowPlan.of(fitted)
    record = _record(random.Random(6))
    del record["demand_mean"]
    assert plan is not None
    assert plan.transform_counted([record]) is None
    function = FeatureDef("f", "function", function="m:f", inputs=("size",))
    spec = FeatureSpec("prep", "ts", COLUMNS, (*FEATURES, function))
    assert RowPlan.of(FittedSpec(spec, fitted.calendar, fitted.vocabularies, fitted.edges)) is None


def test_a_pooled_request_uses_the_calendar_it_is_given() -> None:
    # A pooled model serves another region: its time features follow that region's zone and holidays.
    fitted = _fitted("Europe/Berlin")
    plan = RowPlan.of(fitted)
    record = {**_record(random.Random(7)), "ts": "2026-12-31T23:30:00Z"}
    tokyo = Calendar("TYO", "Asia/Tokyo", ())
    own, other = plan.transform_counted([record]), plan.transform_counted([record], tokyo)  # type: ignore[union-attr]
    assert own is not None
    assert other is not None
    hour, holiday, month = (fitted.names.index(name) for name in ("hour", "is_holiday", "month"))
    assert (own.matrix[0, hour], own.matrix[0, holiday], own.matrix[0, month]) == (0, 1, 1)  # Berlin: 00:30 on 1 Jan
    assert (other.matrix[0, hour], other.matrix[0, holiday], other.matrix[0, month]) == (8, 0, 1)
    batch = fitted.transform_counted(fitted.columns_from_records([record]), tokyo)
    assert other.matrix.tobytes() == batch.matrix.tobytes()
