from __future__ import annotations

import datetime as dt
from pathlib import Path

import great_expectations.expectations as gxe

from modelyard.core.config import load_config
from modelyard.pipeline import validation
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
