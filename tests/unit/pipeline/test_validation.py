from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
from typing import Any

import great_expectations.expectations as gxe
import pandas as pd
import pytest

from modelyard.core.config import load_config
from modelyard.pipeline import validation
from modelyard.pipeline.features import build_features
from modelyard.pipeline.generator import generate_for

REPO = Path(__file__).resolve().parents[3]


def test_suite_builder_drops_repeats_like_gx_does() -> None:
    builder = validation._SuiteBuilder("s")
    builder.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="a"))
    builder.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="a"))
    builder.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="a", mostly=0.9))
    builder.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="a", min_value=0, max_value=1))
    suite = builder.build()
    assert suite.name == "s"
    assert [(e.expectation_type, e.configuration.kwargs.get("mostly")) for e in suite.expectations] == [
        ("expect_column_values_to_not_be_null", None),
        ("expect_column_values_to_not_be_null", 0.9),
        ("expect_column_values_to_be_between", None),
    ]


def test_one_context_validates_frame_after_frame_each_on_its_own_rows() -> None:
    config = load_config(REPO / "modelyard.yaml", environ={"MODELYARD_DATA__MIN_ROWS": "300"})
    pair = config.pair_view("driver_acceptance", "jakarta")
    good = generate_for(config, "jakarta", rows=600)
    broken = good.copy()
    broken.loc[:9, "pickup_distance_km"] = -1.0
    as_of = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    first = validation.validate_raw(good, pair, config.data, as_of)
    second = validation.validate_raw(broken, pair, config.data, as_of)
    third = validation.validate_raw(good, pair, config.data, as_of)
    assert validation.gx_context() is validation.gx_context()
    assert first.success, first.failures
    assert third.success, third.failures
    assert second.failures == [
        "region 'jakarta': column 'pickup_distance_km' has 10 values outside [0, 200] "
        "(expect_column_values_to_be_between)"
    ]
    assert first.checks == third.checks


def test_configurations_are_kept_only_while_validating_and_change_no_outcome() -> None:
    expectation = gxe.ExpectColumnValuesToBeBetween(column="a", min_value=0, max_value=1)
    assert expectation.configuration is not expectation.configuration  # GX builds it on every read
    with validation.configurations_kept():
        kept = expectation.configuration
        assert expectation.configuration is kept
        assert kept.kwargs == {"column": "a", "min_value": 0, "max_value": 1}
    assert expectation.configuration is not kept

    config = load_config(REPO / "modelyard.yaml", environ={"MODELYARD_DATA__MIN_ROWS": "300"})
    pair = config.pair_view("driver_acceptance", "jakarta")
    broken = generate_for(config, "jakarta", rows=600)
    broken.loc[:9, "pickup_distance_km"] = -1.0
    as_of = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    suite = validation.raw_suite(pair, config.data, as_of, list(broken.columns))
    batch = validation.frame_batch(broken)
    plain = batch.validate(suite, result_format=validation.RESULT_FORMAT)  # as GX runs it
    ours = validation.run_suite(batch, broken, suite, "raw", "jakarta")
    assert [(c.expectation, c.column, c.success, c.unexpected_count) for c in ours.checks] == [
        (
            r.expectation_config.type,
            r.expectation_config.kwargs.get("column"),
            r.success,
            r.result.get("unexpected_count"),
        )
        for r in plain.results
    ]
    assert not ours.success
    assert len(ours.checks) == len(suite.expectations)


def test_metric_ids_and_domain_objects_are_kept_only_for_the_same_exact_content() -> None:
    import pandas as pd
    from great_expectations.core.id_dict import IDDict

    keys = [validation._key(v) for v in (1, 1.0, True, 0.0, -0.0, "1", None, [1], (1,), {"a": 1})]
    assert len(set(keys)) == len(keys)  # equal in Python, not in GX's JSON: never one key
    for value in ({1}, pd.Timestamp("2026-01-01"), {1: "a"}, [object()]):
        with pytest.raises(validation._Unkeyable):
            validation._key(value)

    expectation = gxe.ExpectColumnValuesToBeBetween(column="a", min_value=0, max_value=1)
    with validation.configurations_kept():
        config = expectation.configuration
        first = config.to_domain_obj()
        assert config.to_domain_obj() is first
        config.kwargs["max_value"] = 2  # a changed field is a new domain object, as GX would build it
        second = config.to_domain_obj()
        assert second is not first
        assert (first.max_value, second.max_value) == (1, 2)
        for kwargs in ({"column": "a", "batch_id": "b"}, {"column": "a", "min_value": 0.0}, {"x": -0.0}):
            assert IDDict(kwargs).to_id() == IDDict(kwargs).to_id()
        kept_ids = [IDDict(k).to_id() for k in ({"v": 1, "w": 2}, {"v": 1.0, "w": 2}, {"v": True, "w": 2})]
    plain_ids = [IDDict(k).to_id() for k in ({"v": 1, "w": 2}, {"v": 1.0, "w": 2}, {"v": True, "w": 2})]
    assert kept_ids == plain_ids
    assert len(set(plain_ids)) == 3
    assert config.to_domain_obj() is not config.to_domain_obj()  # outside a run GX builds one per call


def _gx_results(batch: Any, suite: Any, *, kept: bool) -> list[dict[str, Any]]:
    with validation.configurations_kept() if kept else contextlib.nullcontext():
        result = batch.validate(suite, result_format=validation.RESULT_FORMAT)
    out = [r.to_json_dict() for r in result.results]
    for r in out:  # the traceback names the frames it passed through; the message is the outcome
        (r.get("exception_info") or {}).pop("exception_traceback", None)
    return out


def _broken_raw(frame: pd.DataFrame, region: str) -> pd.DataFrame:
    broken = frame.copy()
    broken.loc[: 3 + len(region) % 5, "pickup_distance_km"] = -1.0  # a count of its own per region
    broken.loc[:1, "region"] = "atlantis"
    return broken.drop(columns=["driver_rating"], errors="ignore")


def test_kept_work_gives_gx_own_results_region_after_region() -> None:
    config = load_config(REPO / "modelyard.yaml", environ={"MODELYARD_DATA__MIN_ROWS": "300"})
    as_of = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    ran = {"passed": 0, "failed": 0}
    for region in ("jakarta", "bangkok", "surabaya"):
        good = generate_for(config, region, rows=400 + 50 * len(region))
        for family in config.family_names:
            pair = config.pair_view(family, region)
            features = build_features(good, pair, config.training).frame
            broken_features = features.copy()
            broken_features.loc[features.index[: len(region)], "hour_sin"] = 3.0
            cases = [
                ("raw", good, validation.raw_suite(pair, config.data, as_of, list(good.columns))),
                ("features", features, validation.features_suite(pair, config.data, as_of)),
                ("features", broken_features, validation.features_suite(pair, config.data, as_of)),
            ]
            broken = _broken_raw(good, region)
            cases.append(("raw", broken, validation.raw_suite(pair, config.data, as_of, list(broken.columns))))
            for stage, frame, suite in cases:
                batch = validation.frame_batch(frame)
                ours = validation.run_suite(batch, frame, suite, stage, region)
                kept = _gx_results(batch, suite, kept=True)
                plain_result = batch.validate(suite, result_format=validation.RESULT_FORMAT)  # as GX runs it
                plain = _gx_results(batch, suite, kept=False)
                assert kept == plain, (region, family, stage)
                assert ours.checks == [validation._check(r, f"region '{region}': ") for r in plain_result.results]
                ran["passed" if ours.success else "failed"] += 1
                if frame is broken:
                    assert f"region '{region}': column 'pickup_distance_km' has {4 + len(region) % 5} values" in (
                        " ".join(ours.failures)
                    )
    assert ran == {"passed": 12, "failed": 12}


def test_expectations_differing_only_in_values_keep_their_own_metrics() -> None:
    frame = pd.DataFrame({"flag": [0, 1, 1, 2, 0, 1], "x": [0.1, 0.4, 0.6, 0.8, -0.0, 1.0]})
    builder = validation._SuiteBuilder("values")
    for value_set in ([0, 1], [0, 2], [1, 2], [0.0, 1.0], [True, False]):
        builder.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="flag", value_set=value_set))
    for low, high in ((0, 0.5), (0.0, 0.7), (-0.0, 0.9), (0.1, 1)):
        builder.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="x", min_value=low, max_value=high))
    suite = builder.build()
    batch = validation.frame_batch(frame)
    plain = batch.validate(suite, result_format=validation.RESULT_FORMAT)  # as GX runs it
    ours = validation.run_suite(batch, frame, suite, "raw", None)
    assert ours.checks == [validation._check(r, "") for r in plain.results]
    assert _gx_results(batch, suite, kept=True) == _gx_results(batch, suite, kept=False)
    assert [c.unexpected_count for c in ours.checks[:3]] == [1, 3, 2]
