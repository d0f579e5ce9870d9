"""The deploy operator's Airflow-level deferral timeout."""

from __future__ import annotations

import datetime as dt

from modelyard.plugins.operators.deploy import DEFER_GRACE_SECONDS, defer_timeout


def test_a_deferral_times_out_a_grace_after_the_waits_own_deadline() -> None:
    assert defer_timeout({"deadline": 1_000.0 + 300}, now=1_000.0) == dt.timedelta(seconds=300 + DEFER_GRACE_SECONDS)


def test_a_deadline_already_past_still_gives_the_trigger_its_grace() -> None:
    assert defer_timeout({"deadline": 900.0}, now=1_000.0) == dt.timedelta(seconds=DEFER_GRACE_SECONDS)
