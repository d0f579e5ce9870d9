"""Raw fields to the model matrix with a version's fitted spec; precomputed features keep working."""

from __future__ import annotations

import datetime as dt
import json
import re

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from modelyard.core.featurespec import Calendar, FeatureDef, FeatureSpec, FittedSpec
from modelyard.deploy.serving import features as features_mod
from modelyard.deploy.serving import runtime
from modelyard.deploy.serving.errors import BadInput
from modelyard.deploy.serving.features import COLUMNAR_ROWS, ROW_PATH_ROWS, BadRawInput, BadRawValue, RawFeatures
from modelyard.deploy.serving.runtime import ModelStatus
from modelyard.deploy.serving.schema import Feature, InputSchema

COLUMNS = {"placed_at": "timestamp", "size": "float", "cuisine": "category"}
BERLIN = Calendar("BER", "Europe/Berlin", ((dt.date(2026, 3, 28), dt.date(2026, 3, 29)),))
FEATURES = (
    FeatureDef("hour", "hour"),
    FeatureDef("is_festival", "is_holiday"),
    FeatureDef("size", "column"),
    FeatureDef("cuisine_code", "category", column="cuisine"),
    FeatureDef("kitchen_load", "window_count", key="cuisine"),
)


def _fitted() -> FittedSpec:
    training = {"cuisine": np.array(["pizza", "sushi", "thai"], dtype=object)}
    return FeatureSpec("prep", "placed_at", COLUMNS, FEATURES).fit(training, BERLIN)


def _raw() -> RawFeatures:
    fitted = _fitted()
    return RawFeatures(fitted, InputSchema([Feature(name, "double") for name in fitted.names]))


def _record(placed_at: str, cuisine: str = "sushi", size: float = 3.0, load: float = 1.5) -> dict[str, object]:
    return {"placed_at": placed_at, "size": size, "cuisine": cuisine, "kitchen_load": load}


def test_raw_records_are_featurised_in_the_regions_zone_with_its_calendar() -> None:
    # 23:30 UTC on 27 March is 00:30 local on the 28th, a festival day; 1 April is not one.
    prepared = _raw().prepare([_record("2026-03-27T23:30:00Z"), _record("2026-04-01T12:00:00+02:00", "pizza")])
    assert prepared.matrix.dtype == np.float32
    assert prepared.matrix.tolist() == [[0.0, 1.0, 3.0, 1.0, 1.5], [12.0, 0.0, 3.0, 0.0, 1.5]]
    assert dict(prepared.unknown) == {}


def test_an_unseen_category_gets_the_unknown_code_and_is_counted() -> None:
    prepared = _raw().prepare([_record("2026-04-01T12:00:00Z", "ramen"), _record("2026-04-01T12:00:00Z", "ramen")])
    assert prepared.matrix[:, 3].tolist() == [3.0, 3.0]  # len(vocabulary)
    assert dict(prepared.unknown) == {"cuisine_code": 2}


def test_a_small_request_gets_the_bits_its_rows_get_in_a_large_one() -> None:
    # Up to ROW_PATH_ROWS records go through the scalar row path (ADR 0031), past it the batch path.
    raw, rows = _raw(), [_record(f"2026-03-{d:02d}T{h:02d}:{m:02d}:00+01:00", c) for d, h, m, c in _spread()]
    large = raw.prepare(rows)
    assert len(rows) > ROW_PATH_ROWS
    assert raw._rows is not None
    alone = [raw.prepare([row]) for row in rows]
    assert b"".join(one.matrix.tobytes() for one in alone) == large.matrix.tobytes()
    assert sum(one.unknown.get("cuisine_code", 0) for one in alone) == large.unknown["cuisine_code"] > 0


def _spread() -> list[tuple[int, int, int, str]]:
    return [(1 + i % 28, i % 24, (7 * i) % 60, ("pizza", "ramen", "thai")[i % 3]) for i in range(200)]


def test_precomputed_feature_records_keep_working() -> None:
    features = {"hour": 12, "is_festival": 0, "size": 3.0, "cuisine_code": 1, "kitchen_load": 1.5}
    prepared = _raw().prepare([features])
    assert prepared.matrix.tolist() == [[12.0, 0.0, 3.0, 1.0, 1.5]]
    with pytest.raises(BadInput, match="field 'is_festival' is missing") as missing:
        _raw().prepare([{"hour": 12, "size": 3.0}])
    assert missing.value.status == 422
    assert missing.value.message.endswith(
        "or send the raw fields placed_at, size, cuisine, kitchen_load instead of the features"
    )


def test_a_record_without_its_time_nor_a_derived_feature_is_told_the_raw_field_it_lacks() -> None:
    """Issue 27: a raw record without its event time was answered with a derived feature the client never sends."""
    for record in ({"size": 3.0, "cuisine": "thai", "kitchen_load": 1.5}, {}, {"unrelated": 1}):
        with pytest.raises(BadRawInput) as caught:
            _raw().prepare([record])
        assert caught.value.field == "records[0].placed_at", record
        assert "no field 'placed_at'" in caught.value.message
        assert not any(name in caught.value.message for name in ("hour", "is_festival", "cuisine_code"))


@pytest.mark.parametrize("value", ["nope", "2026-13-40T00:00:00+02:00", "[2026]"])
def test_a_time_that_is_not_iso_8601_is_named_against_its_field(value: str) -> None:
    with pytest.raises(BadInput) as caught:
        _raw().prepare([_record(value)])
    assert caught.value.field == "records[0].placed_at"
    assert json.dumps(value) in caught.value.message  # shown as sent, brackets and all
    assert "not an ISO-8601 time; send it with an offset" in caught.value.message
    assert "feature '" not in caught.value.message  # no derived feature (hour) named


@pytest.mark.parametrize(
    ("record", "field", "message"),
    [
        (
            {"placed_at": "2026-04-01T12:00:00Z", "size": 3.0, "cuisine": "thai"},
            "records[0].kitchen_load",
            r"no field 'kitchen_load' \(send: placed_at, size, cuisine, kitchen_load\)",
        ),
        # A time without an offset: the fix, written with the region's own offset at that time (CEST, CET).
        (
            _record("2026-06-01T08:00:00"),
            "records[1].placed_at",
            re.escape(
                "field 'placed_at' is \"2026-06-01T08:00:00\": no UTC offset, so its local time is unknown; "
                "send 2026-06-01T08:00:00+02:00 (the offset of region 'BER', Europe/Berlin, at that time) "
                "or the UTC time with Z"
            ),
        ),
        (_record("2026-01-05 08:30"), "records[1].placed_at", re.escape("send 2026-01-05T08:30:00+01:00 (the offset")),
    ],
)
def test_raw_input_errors_are_400_naming_the_field(record: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(BadRawInput, match=message) as error:
        _raw().prepare([_record("2026-04-01T12:00:00Z"), record] if field.startswith("records[1]") else [record])
    assert error.value.status == 400
    assert error.value.field == field


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("size", "big", 'is "big": send a JSON number for this float field'),
        ("size", None, "is null: this float field is not nullable"),
        ("size", "Infinity", "send a JSON number"),
        ("size", "nan", "send a JSON number"),
        ("size", "12", "send a JSON number"),
        ("size", True, "send a JSON number"),
        ("size", 1e39, "out of the model's float range"),
        ("size", float("inf"), "send a finite number"),
        ("kitchen_load", [1, 2], "is a list: send a JSON number"),
        ("cuisine", {"a": 1}, "send text or a number"),
        ("placed_at", "0001-01-01T00:00+14:00", "send a time between the years 1678 and 2261"),
        ("placed_at", "9999-12-31T23:59:59+00:00", "between the years"),
        ("placed_at", 1_700_000_000, "ISO-8601 text with an offset, e.g. 2026-06-01T08:00:00+02:00"),
    ],
)
def test_a_raw_value_that_does_not_fit_its_column_is_422_naming_record_and_field(
    field: str, value: object, message: str
) -> None:
    record = {**_record("2026-04-01T12:00:00Z"), field: value}
    with pytest.raises(BadRawValue, match=re.escape(message)) as error:
        _raw().prepare([_record("2026-04-01T12:00:00Z"), record])
    assert error.value.status == 422
    assert error.value.field == f"records[1].{field}"


def test_int_columns_take_whole_numbers_within_int64_only() -> None:
    columns = {"ts": "timestamp", "tenure": "int", "new": "bool"}
    spec = FeatureSpec("d", "ts", columns, (FeatureDef("tenure", "column"),))
    raw = RawFeatures(spec.fit({}, BERLIN), InputSchema([Feature("tenure", "double")]))
    assert raw.prepare([{"tenure": 3}, {"tenure": 4.0}]).matrix.tolist() == [[3.0], [4.0]]
    for value, message in ((None, "not nullable"), (1e30, "whole number within int64"), (2.5, "whole number")):
        with pytest.raises(BadRawValue, match=message) as error:
            raw.prepare([{"tenure": value}])
        assert error.value.field == "records[0].tenure"


def test_a_batch_mixing_raw_and_precomputed_records_is_refused() -> None:
    features = {"hour": 12, "is_festival": 0, "size": 3.0, "cuisine_code": 1, "kitchen_load": 1.5}
    with pytest.raises(BadRawInput, match="every record of a request as raw fields") as error:
        _raw().prepare([_record("2026-04-01T12:00:00Z"), features])
    assert error.value.field == "records[1]"


def test_a_model_with_the_spec_in_its_extra_files_serves_raw_fields(tmp_path) -> None:
    import mlflow.sklearn
    import pandas as pd

    fitted = _fitted()
    spec_file = tmp_path / "feature_spec.json"
    spec_file.write_text(json.dumps(fitted.to_dict()))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, len(fitted.names)))
    model = LinearRegression().fit(x, x @ np.arange(1.0, 6.0))
    example = pd.DataFrame([_record("2026-03-27T23:30:00Z")])
    mlflow.sklearn.save_model(
        model,
        str(tmp_path / "model"),
        input_example=example,
        extra_files=[str(spec_file)],
        serialization_format="skops",
    )
    status = ModelStatus(uri="models:/prep/1", name="prep", version="1")
    served = runtime._load_from_dir(status, tmp_path / "model", tmp_path)
    served.warm_up((1, 8))
    assert status.state == "ready"
    assert status.inputs is not None
    assert status.inputs["raw_inputs"] == ["placed_at", "size", "cuisine"]
    assert status.inputs["requested"] == ["kitchen_load"]
    raw = served.predict(served.prepare([_record("2026-03-27T23:30:00Z")]))
    precomputed = served.predict(served.prepare([dict(zip(fitted.names, [0, 1, 3.0, 1, 1.5], strict=True))]))
    expected = model.predict(np.array([[0, 1, 3.0, 1, 1.5]], dtype=np.float32))
    np.testing.assert_allclose(raw, expected, atol=1e-6)
    np.testing.assert_allclose(precomputed, expected, atol=1e-6)


def test_a_model_without_a_spec_is_served_from_its_signature_as_before(tmp_path) -> None:
    import mlflow.sklearn
    import pandas as pd

    model = LinearRegression().fit(np.array([[1.0], [2.0]]), np.array([2.0, 4.0]))
    mlflow.sklearn.save_model(
        model, str(tmp_path / "model"), input_example=pd.DataFrame({"x": [1.0]}), serialization_format="skops"
    )
    status = ModelStatus(uri="models:/m/1", name="m", version="1")
    served = runtime._load_from_dir(status, tmp_path / "model", tmp_path)
    assert served.raw is None
    assert status.inputs is None
    assert served.predict(served.prepare([{"x": 3.0}])).tolist() == pytest.approx([6.0])


def _bounded(policy: str) -> RawFeatures:
    spec = FeatureSpec("prep", "placed_at", COLUMNS, FEATURES, bounds={"size": (0.0, 10.0, policy)})
    fitted = spec.fit({"cuisine": np.array(["pizza", "sushi", "thai"], dtype=object)}, BERLIN)
    return RawFeatures(fitted, InputSchema([Feature(name, "double") for name in fitted.names]))


def test_a_value_outside_its_declared_range_is_refused_naming_the_field_and_range() -> None:
    with pytest.raises(BadRawValue) as caught:
        _bounded("refuse").prepare([_record("2026-04-01T12:00:00Z"), _record("2026-04-01T12:00:00Z", size=12.5)])
    assert caught.value.status == 422
    assert caught.value.field == "records[1].size"
    assert "field 'size' is 12.5: outside its declared range [0, 10]; send a value within it" in caught.value.message


def test_a_clipped_value_is_served_at_its_bound_and_counted() -> None:
    records = [_record("2026-04-01T12:00:00Z", size=-3), _record("2026-04-01T12:00:00Z", size=99.0)]
    prepared = _bounded("clip").prepare([*records, _record("2026-04-01T12:00:00Z", size=4.0)])
    assert prepared.matrix[:, 2].tolist() == [0.0, 10.0, 4.0]
    assert dict(prepared.clipped) == {"size": 2}
    assert dict(_bounded("clip").prepare([_record("2026-04-01T12:00:00Z")]).clipped) == {}


@pytest.mark.parametrize("policy", ["refuse", "clip"])
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size", 12.5), ("size", -0.5), ("size", True), ("size", "3"), ("size", float("nan")), ("size", 10**400),
        ("size", None), ("size", 3), ("kitchen_load", float("inf")), ("kitchen_load", 1e39), ("cuisine", ["x"]),
        ("cuisine", 10**400), ("cuisine", float("nan")), ("cuisine", None), ("cuisine", 7), ("placed_at", 5),
    ],
)  # fmt: skip
def test_a_large_request_is_checked_a_column_at_a_time_with_the_row_loops_outcome(
    policy: str, field: str, value: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past COLUMNAR_ROWS a field that fits as a whole column skips the row loop: the answer must not change.
    fitted = _bounded(policy).fitted
    records = [_record("2026-04-01T12:00:00Z", size=float(i % 10)) for i in range(COLUMNAR_ROWS + 8)]
    records[COLUMNAR_ROWS + 3][field] = value

    def outcome(limit: int) -> object:
        monkeypatch.setattr(features_mod, "COLUMNAR_ROWS", limit)
        copies = [dict(record) for record in records]
        try:
            return features_mod.check_raw_values(fitted, copies), copies
        except BadInput as exc:
            return type(exc).__name__, exc.message, exc.field

    assert outcome(COLUMNAR_ROWS) == outcome(10**9)


def test_an_integer_too_large_for_a_float_is_a_422_naming_the_field_not_an_overflow() -> None:
    # JSON integers have no size limit: 10**400 used to raise OverflowError out of the check.
    with pytest.raises(BadRawValue) as caught:
        _raw().prepare([_record("2026-04-01T12:00:00Z", size=10**400)])  # type: ignore[arg-type]
    assert caught.value.field == "records[0].size"
    assert "out of the model's float range" in caught.value.message
    unknown = _raw().prepare([_record("2026-04-01T12:00:00Z", cuisine=10**400)])  # type: ignore[arg-type]
    assert dict(unknown.unknown) == {"cuisine_code": 1}


@pytest.mark.parametrize("rows", [1, ROW_PATH_ROWS + 1, COLUMNAR_ROWS + 8])
@pytest.mark.parametrize(
    "value",
    [5, None, ["x"], "yesterday", "2026-04-01T12:00:00", "1500-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00"],
)
def test_a_bad_time_is_named_as_the_check_names_it_though_the_featuriser_parses_it(rows: int, value: object) -> None:
    # The time column is parsed once, by the featuriser; a bad one still gets the check's own answer.
    raw = _raw()
    records = [_record("2026-04-01T12:00:00Z") for _ in range(rows)]
    records[rows // 2]["placed_at"] = value
    with pytest.raises(BadInput) as served:
        raw.prepare([dict(record) for record in records])
    with pytest.raises(BadInput) as checked:
        features_mod.check_raw_values(raw.fitted, records)
    assert (type(served.value), served.value.message, served.value.field) == (
        type(checked.value),
        checked.value.message,
        checked.value.field,
    )
    assert served.value.field == f"records[{rows // 2}].placed_at"


@pytest.mark.parametrize("rows", [1, ROW_PATH_ROWS + 1, COLUMNAR_ROWS + 8])
def test_a_good_request_parses_its_times_once(rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    def second_parse(value: object, calendar: Calendar) -> None:
        raise AssertionError(f"the check parsed {value!r} again")

    monkeypatch.setattr(features_mod, "_time_problem", second_parse)
    prepared = _raw().prepare([_record("2026-04-01T12:00:00Z") for _ in range(rows)])
    assert prepared.matrix[:, 0].tolist() == [14.0] * rows  # 12:00Z is 14:00 in Berlin's summer time


@pytest.mark.parametrize("rows", [1, COLUMNAR_ROWS + 8])
def test_a_time_without_an_offset_is_answered_with_the_requests_regions_offset(rows: int) -> None:
    # A pooled model fitted on Berlin's calendar serving Lisbon (ADR 0015): the hint is Lisbon's, not Berlin's.
    lisbon = Calendar("LIS", "Europe/Lisbon", ())
    records = [_record("2026-07-01T12:00:00Z") for _ in range(rows)]
    records[-1]["placed_at"] = "2026-07-01T12:00:00"
    with pytest.raises(BadRawInput) as caught:
        _raw().prepare(records, lisbon)
    assert "send 2026-07-01T12:00:00+01:00 (the offset of region 'LIS', Europe/Lisbon, at that time)" in (
        caught.value.message
    )
    with pytest.raises(BadRawInput) as own:
        _raw().prepare(records)
    assert (
        "send 2026-07-01T12:00:00+02:00 (the offset of region 'BER', Europe/Berlin, at that time)" in own.value.message
    )


def test_a_missing_field_lists_what_to_send_apart_from_the_aggregates_looked_up_online() -> None:
    online = FeatureDef("kitchen_load", "window_count", key="cuisine", online=True, default=1.0)
    spec = FeatureSpec("prep", "placed_at", COLUMNS, (*FEATURES[:4], online))
    fitted = spec.fit({"cuisine": np.array(["pizza", "sushi"], dtype=object)}, BERLIN)
    raw = RawFeatures(fitted, InputSchema([Feature(name, "double") for name in fitted.names]))
    with pytest.raises(BadRawInput) as caught:
        raw.prepare([{"placed_at": "2026-04-01T12:00:00Z", "cuisine": "thai"}])  # no size, no kitchen_load
    assert caught.value.field == "records[0].size"
    assert caught.value.message.endswith(
        "no field 'size' (send: placed_at, size, cuisine; looked up when not sent: kitchen_load (by cuisine))"
    )
