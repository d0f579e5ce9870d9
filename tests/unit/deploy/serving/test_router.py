"""Routing: rules in the region's time zone first, then a sticky weighted split."""

from __future__ import annotations

import collections
import datetime as dt

import pytest

from modelyard.deploy.serving.plan import Service
from modelyard.deploy.serving.router import ServiceRouter, bucket_of, fixed_clock


def _service(weights, rules=()):
    return Service.model_validate(
        {
            "family": "driver_acceptance",
            "region": "bangkok",
            "timezone": "Asia/Bangkok",
            "variants": [
                {"name": name, "model_uri": f"models:/m/{i + 1}", "weight": w} for i, (name, w) in enumerate(weights)
            ],
            "rules": list(rules),
        }
    )


@pytest.mark.parametrize("weights", [[("a", 90), ("b", 10)], [("a", 50), ("b", 30), ("c", 20)], [("a", 1), ("b", 99)]])
def test_split_over_10000_keys_is_within_2_percent(weights):
    router = ServiceRouter(_service(weights))
    counts = collections.Counter(router.route(f"customer-{i}").variant for i in range(10_000))
    for name, weight in weights:
        assert abs(counts[name] / 100 - weight) <= 2, counts


def test_split_without_key_is_random_but_weighted():
    router = ServiceRouter(_service([("a", 70), ("b", 30)]))
    decisions = [router.route(None) for _ in range(10_000)]
    share = sum(d.variant == "b" for d in decisions) / 100
    assert abs(share - 30) <= 2
    assert {d.reason for d in decisions} == {"random"}


def test_a_key_is_sticky_and_growing_the_canary_only_moves_customers_into_it():
    small = ServiceRouter(_service([("champion", 90), ("canary", 10)]))
    large = ServiceRouter(_service([("champion", 70), ("canary", 30)]))
    keys = [f"c{i}" for i in range(3000)]
    first = {k: small.route(k).variant for k in keys}
    assert all(small.route(k).variant == first[k] for k in keys)
    moved_out = [k for k in keys if first[k] == "canary" and large.route(k).variant != "canary"]
    assert moved_out == []


def test_bucket_is_stable_across_processes():
    # Python's hash() is salted per process; the router must not depend on it.
    assert bucket_of("customer-42", "driver_acceptance/bangkok") == bucket_of(
        "customer-42", "driver_acceptance/bangkok"
    )
    assert 0 <= bucket_of("x", "y") < 10_000
    assert bucket_of("customer-42", "driver_acceptance/bangkok") != bucket_of("customer-42", "pickup_eta/bangkok")


RULES = [
    {"name": "songkran", "variant": "festival", "dates": [{"start": "2026-04-12", "end": "2026-04-16"}]},
    {
        "name": "weekday_evening",
        "variant": "peak",
        "weekdays": ["mon", "tue", "wed", "thu", "fri"],
        "hours": {"start": 17, "end": 21},
    },
]


@pytest.mark.parametrize(
    ("utc", "expected"),
    [
        ("2026-04-14T03:00:00+00:00", "festival"),  # 10:00 in Bangkok, during Songkran
        ("2026-04-16T17:30:00+00:00", "champion"),  # 00:30 on 17 April in Bangkok: Songkran is over
        ("2026-05-06T11:30:00+00:00", "peak"),  # Wednesday 18:30 in Bangkok, 11:30 in UTC
        ("2026-05-06T18:30:00+00:00", "champion"),  # 01:30 Thursday in Bangkok
        ("2026-05-09T11:30:00+00:00", "champion"),  # Saturday evening
    ],
)
def test_rules_are_evaluated_in_the_region_time_zone(utc, expected):
    service = _service([("champion", 100), ("festival", 0), ("peak", 0)], RULES)
    router = ServiceRouter(service, fixed_clock(dt.datetime.fromisoformat(utc)))
    decision = router.route("customer-1")
    assert decision.variant == expected
    assert decision.reason == (
        "weight" if expected == "champion" else f"rule:{RULES[0 if expected == 'festival' else 1]['name']}"
    )
