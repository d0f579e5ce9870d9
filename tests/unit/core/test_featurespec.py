"""The feature-spec module: numpy-only features that match pandas, JSON round trip, typed errors."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from modelyard.core.featurespec import (
    Calendar,
    FeatureDef,
    FeatureSpec,
    FeatureSpecError,
    FittedSpec,
    FunctionNotAllowedError,
    MissingInputError,
    TimeOffsetError,
    UndeclaredColumnError,
    UnknownTransformError,
    UserFunctionError,
)

COLUMNS = {"ts": "timestamp", "size": "float", "items": "int", "shop": "category", "city": "category"}
BERLIN = Calendar("BER", "Europe/Berlin", ((dt.date(2026, 3, 28), dt.date(2026, 3, 29)),))
TIME_FEATURES = ("hour", "hour_sin", "hour_cos", "day_of_week", "is_weekend", "month", "is_holiday")


def double_size(columns):  # a user function: columns in, one array out
    return columns["size"] * 2


def wrong_length(columns):
    return columns["size"][:1]


def text_out(columns):
    return np.array(["a"] * len(columns["size"]))


def _spec(*features: FeatureDef) -> FeatureSpec:
    return FeatureSpec("prep", "ts", COLUMNS, features)


def _times_across_dst() -> pd.Series:
    # Europe/Berlin springs forward at 2026-03-29 01:00 UTC; every 3 minutes over three days, plus a month later.
    times = pd.date_range("2026-03-27T20:03:00Z", "2026-03-30T04:00:00Z", freq="3min")
    return pd.Series(times.append(pd.date_range("2026-04-30T21:00:00Z", periods=200, freq="13min")))


def test_time_features_equal_pandas_in_local_time_across_a_dst_change() -> None:
    times = _times_across_dst()
    assert len(times) >= 1000
    fitted = _spec(*(FeatureDef(k, k) for k in TIME_FEATURES)).fit({"ts": times.to_numpy()}, BERLIN)
    got = fitted.compute({"ts": times.dt.tz_localize(None).to_numpy()})
    local = times.dt.tz_convert("Europe/Berlin")
    day = local.dt.tz_localize(None).dt.normalize()
    angle = (local.dt.hour + local.dt.minute / 60.0) * (2 * np.pi / 24)
    expected = {
        "hour": local.dt.hour,
        "hour_sin": np.sin(angle),
        "hour_cos": np.cos(angle),
        "day_of_week": local.dt.dayofweek,
        "is_weekend": (local.dt.dayofweek >= 5).astype(int),
        "month": local.dt.month,
        "is_holiday": ((day >= "2026-03-28") & (day <= "2026-03-29")).astype(int),
    }
    for name, values in expected.items():
        np.testing.assert_array_equal(got[name], values.to_numpy(), err_msg=name)
    assert set(got["hour"][:60]) >= {21, 22, 23}  # crosses local midnight too
    assert got["is_holiday"].sum() > 0
    assert (got["is_holiday"] == 0).sum() > 0


def test_rows_one_at_a_time_equal_the_batch_across_both_dst_changes() -> None:
    # The server featurises a request of one row (offsets looked up row by row) and the pipeline a
    # batch (offsets per distinct minute): bit-for-bit the same, spring forward and fall back.
    spring = pd.date_range("2026-03-29T00:31:00Z", "2026-03-29T01:29:00Z", freq="7min")
    autumn = pd.date_range("2026-10-25T00:01:00Z", "2026-10-25T01:59:00Z", freq="7min")
    times = pd.Series(spring.append(autumn).append(pd.DatetimeIndex(_times_across_dst().iloc[::40])))
    fitted = _spec(*(FeatureDef(k, k) for k in TIME_FEATURES)).fit({"ts": times.to_numpy()}, BERLIN)
    text = np.array([t.isoformat() for t in times], dtype=object)
    batch = fitted.transform({"ts": np.concatenate([text] * 20)})[: len(text)]  # > SMALL_BATCH_ROWS rows
    one_by_one = np.vstack([fitted.transform({"ts": text[i : i + 1]}) for i in range(len(text))])
    np.testing.assert_array_equal(one_by_one, batch)
    local = times.dt.tz_convert("Europe/Berlin")
    np.testing.assert_array_equal(one_by_one[:, 0], local.dt.hour.to_numpy())
    assert set(one_by_one[: len(spring), 0].tolist()) == {1, 3}  # 01:xx CET, then 03:xx CEST: no 02:xx
    assert one_by_one[len(spring) :, 0].tolist().count(2) > 8  # 02:xx happens twice in October


def test_offset_text_equals_datetime64_and_naive_text_is_refused() -> None:
    fitted = _spec(FeatureDef("hour", "hour")).fit({"ts": np.array([], "datetime64[ns]")}, BERLIN)
    text = np.array(["2026-03-29T03:30:00+02:00", "2026-03-29T00:30:00Z"], dtype=object)
    assert fitted.compute({"ts": text})["hour"].tolist() == [3, 1]
    with pytest.raises(TimeOffsetError, match=r"family 'prep', feature 'hour': column 'ts'.*no UTC offset") as naive:
        fitted.transform({"ts": np.array(["2026-03-29T03:30:00"], dtype=object)})
    assert "send it with its region's offset at that time ('2026-03-29T03:30:00+HH:MM')" in str(naive.value)
    assert "or as UTC ('2026-03-29T03:30:00Z')" in str(naive.value)
    with pytest.raises(TimeOffsetError, match="not a timestamp"):
        fitted.transform({"ts": np.array(["yesterday"], dtype=object)})


def test_categories_learn_a_vocabulary_and_count_the_unknown() -> None:
    spec = _spec(FeatureDef("shop", "category"), FeatureDef("city_code", "category", column="city"))
    fitted = spec.fit({"shop": np.array(["b", "a", "b"], dtype=object), "city": np.array([7, 3, 7])}, BERLIN)
    assert fitted.vocabularies == {"shop": ("a", "b"), "city_code": ("3", "7")}
    out = fitted.transform_counted(
        {"shop": np.array(["a", "zz", None], dtype=object), "city": np.array(["7", 7.0, 9], dtype=object)}
    )
    np.testing.assert_array_equal(out.matrix, [[0, 1], [2, 1], [2, 2]])
    assert out.unknown == {"shop": 2, "city_code": 1}


def test_numeric_transforms_and_learnt_bucket_edges() -> None:
    size = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    spec = _spec(
        FeatureDef("size", "column"),
        FeatureDef("log_size", "log1p", column="size"),
        FeatureDef("clipped", "clip", column="size", lower=1, upper=5),
        FeatureDef("band", "bucket", column="size", buckets=4),
        FeatureDef("fixed", "bucket", column="items", edges=(2, 10)),
        FeatureDef("big", "compare", column="items", op=">=", value=10),
    )
    fitted = spec.fit({"size": size, "items": np.arange(8)}, BERLIN)
    assert fitted.edges["band"] == (1.75, 3.5, 5.25)
    got = fitted.compute({"size": np.array([0.5, 4.0]), "items": np.array([2, 10])})
    np.testing.assert_allclose(got["log_size"], np.log1p([0.5, 4.0]))
    assert got["clipped"].tolist() == [1.0, 4.0]
    assert got["band"].tolist() == [0, 2]
    assert got["fixed"].tolist() == [1, 2]
    assert got["big"].tolist() == [0, 1]


def test_user_function_is_called_and_checked() -> None:
    feature = FeatureDef("double", "function", function=f"{__name__}:double_size", inputs=("size",))
    fitted = _spec(feature).fit({}, BERLIN)
    assert fitted.transform({"size": np.array([1.0, 2.5])})[:, 0].tolist() == [2.0, 5.0]
    for name, message in (("wrong_length", "returned shape"), ("text_out", "return numbers")):
        bad = _spec(FeatureDef("x", "function", function=f"{__name__}:{name}", inputs=("size",))).fit({}, BERLIN)
        with pytest.raises(UserFunctionError, match=f"family 'prep', feature 'x'.*{message}"):
            bad.transform({"size": np.array([1.0, 2.0])})
    missing = _spec(FeatureDef("x", "function", function="no_such_module.sub:f", inputs=("size",)))
    with pytest.raises(UserFunctionError, match=r"cannot import 'no_such_module\.sub:f'"):
        missing.check_functions()


def test_a_spec_read_with_an_allow_list_refuses_other_modules_before_importing_them() -> None:
    popen = FeatureDef("x", "function", function="subprocess:Popen", inputs=("size",))
    fitted = _spec(FeatureDef("size", "column")).fit({}, BERLIN).to_dict()
    fitted["features"] = [popen.to_dict()]
    # Never run, whatever the caller allows: not even the pipeline's "any" (None).
    for allowed in (None, [], ["subprocess"]):
        with pytest.raises(FunctionNotAllowedError, match="'subprocess:Popen' is never run") as refused:
            FittedSpec.from_dict(fitted, allowed_function_modules=allowed)
        assert refused.value.module == "subprocess"
    mine = FeatureDef("d", "function", function=f"{__name__}:double_size", inputs=("size",))
    fitted["features"] = [mine.to_dict()]
    with pytest.raises(FunctionNotAllowedError, match=f"module '{__name__}' is not on the allowed list"):
        FittedSpec.from_dict(fitted, allowed_function_modules=[])
    parent = __name__.rpartition(".")[0] or __name__
    for allowed in ([__name__], [parent]):  # a package allows its modules
        spec = FittedSpec.from_dict(fitted, allowed_function_modules=allowed)
        assert spec.transform({"size": np.array([2.0])}).tolist() == [[4.0]]


def test_private_names_and_process_modules_are_never_allowed() -> None:
    for function in ("os.path:join", "builtins:eval", f"{__name__}:_private", "importlib:import_module"):
        with pytest.raises(FunctionNotAllowedError, match="is never run"):
            _spec(FeatureDef("x", "function", function=function, inputs=("size",)))


def test_declaration_errors_name_family_feature_and_column() -> None:
    with pytest.raises(UnknownTransformError, match="family 'prep', feature 'x': unknown kind 'sqrt'"):
        _spec(FeatureDef("x", "sqrt", column="size"))
    with pytest.raises(UndeclaredColumnError, match="feature 'x' reads column 'weight', which the dataset"):
        _spec(FeatureDef("x", "log1p", column="weight"))
    with pytest.raises(UndeclaredColumnError, match="column 'shop' is of type category"):
        _spec(FeatureDef("shop", "column"))


def test_window_aggregates_come_from_the_request_by_name() -> None:
    spec = _spec(FeatureDef("shop_load", "window_count", key="shop"), FeatureDef("size", "column"))
    fitted = spec.fit({}, BERLIN)
    assert fitted.requested == ["shop_load"]
    assert fitted.raw_inputs == ["size"]
    with pytest.raises(MissingInputError, match=r"feature 'shop_load'.*window aggregate: send it in the request"):
        fitted.transform({"size": np.array([1.0])})
    assert fitted.transform({"size": np.array([1.0]), "shop_load": np.array([0.5])}).tolist() == [[0.5, 1.0]]


def test_json_round_trip_gives_the_same_matrix() -> None:
    spec = _spec(
        FeatureDef("shop", "category"),
        FeatureDef("hour_sin", "hour_sin"),
        FeatureDef("b", "bucket", column="size", buckets=3),
    )
    times = _times_across_dst().dt.tz_localize(None).to_numpy()
    columns = {
        "ts": times,
        "shop": np.array(["a", "b"] * (len(times) // 2) + ["a"] * (len(times) % 2), dtype=object),
        "size": np.linspace(0, 9, len(times)),
    }
    fitted = spec.fit(columns, BERLIN)
    again = FittedSpec.from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert again == fitted
    np.testing.assert_array_equal(again.transform(columns), fitted.transform(columns))
    rows = [{"ts": "2026-03-29T03:30:00+02:00", "shop": "b", "size": 4}]
    assert again.transform(again.columns_from_records(rows)).shape == (1, 3)


def test_declared_bounds_travel_with_the_spec_and_old_specs_have_none() -> None:
    bounded = FeatureSpec("prep", "ts", COLUMNS, (FeatureDef("size", "column"),), bounds={"size": (0.0, 9.0, "clip")})
    fitted = bounded.fit({"ts": _times_across_dst().to_numpy(), "size": np.arange(3.0)}, BERLIN)
    saved = json.loads(json.dumps(fitted.to_dict()))
    assert saved["bounds"] == {"size": [0.0, 9.0, "clip"]}
    assert FittedSpec.from_dict(saved).spec.bounds == {"size": (0.0, 9.0, "clip")}
    del saved["bounds"]  # a spec written before bounds existed
    assert FittedSpec.from_dict(saved).spec.bounds == {}
    with pytest.raises(FeatureSpecError, match="out_of_range 'ignore' is not refuse or clip"):
        FittedSpec.from_dict({**saved, "bounds": {"size": [0, 9, "ignore"]}})


def test_the_module_imports_without_pandas() -> None:
    code = "import sys; sys.modules['pandas'] = None; import modelyard.core.featurespec as m; print(m.KINDS[0])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "column"
