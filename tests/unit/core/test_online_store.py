"""The online store's layout, the embedded store, pushed values and the spec's online declarations (ADR 0019)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from modelyard.core.featurespec import FeatureDef, FeatureSpec, FeatureSpecError, FittedSpec
from modelyard.core.online import (
    EmbeddedStore,
    OnlineStoreError,
    OnlineValue,
    PushError,
    RedisStore,
    Stored,
    decode,
    encode,
    entry_key,
    key_text,
    open_store,
    pushed_values,
)

COLUMNS = {"event_time": "timestamp", "area": "category", "km": "float"}


def _spec(*features: FeatureDef) -> FeatureSpec:
    return FeatureSpec("rides", "event_time", COLUMNS, (FeatureDef("km"), *features))


def _value(key: str, value: float, end: float, source: str = "snapshot:abc") -> OnlineValue:
    return OnlineValue("rides", "jakarta", "demand", key, value, end, source)


def test_a_value_round_trips_through_its_text() -> None:
    value = _value("airport", 1.25, 1_777_914_000.0)
    assert decode(encode(value)) == Stored(1.25, 1_777_914_000.0, "snapshot:abc")
    assert value.entry_key("p") == entry_key("p", "rides", "jakarta", "demand", "airport")
    assert entry_key("p", "rides", "jakarta", "demand", "a:b") == "p:rides:jakarta:demand:a:b"
    assert decode(None) is None
    assert decode(b"not ours") is None
    assert decode("x|y|z") is None


@pytest.mark.parametrize(
    ("sent", "text"), [("airport", "airport"), (7, "7"), (7.0, "7"), (7.5, "7.5"), (None, None), (True, None)]
)
def test_a_key_field_is_text_and_whole_numbers_match_ints(sent: object, text: str | None) -> None:
    assert key_text(sent) == text


def test_the_embedded_store_keeps_the_newest_window_and_reads_in_order(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "online" / "o.sqlite", ttl_seconds=3600)
    assert store.write([_value(str(i), float(i), 1000.0 + i) for i in range(7)], "t", chunk_rows=3) == 7
    assert store.write([_value("1", 9.0, 900.0, "snapshot:old")], "t") == 0  # an older window never lands
    assert store.write([_value("2", 9.0, 2000.0, "push")], "t") == 1
    keys = [entry_key("t", "rides", "jakarta", "demand", k) for k in ("2", "1", "nope")]
    assert store.read(keys) == [Stored(9.0, 2000.0, "push"), Stored(1.0, 1001.0, "snapshot:abc"), None]
    assert asyncio.run(store.aread(keys)) == store.read(keys)
    assert store.delete("t") == 7
    assert store.read(keys) == [None, None, None]


def test_an_expired_value_is_a_miss_and_may_be_overwritten_by_an_older_window(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "o.sqlite", ttl_seconds=-1)  # written already expired
    store.write([_value("a", 1.0, 5000.0)], "t")
    key = entry_key("t", "rides", "jakarta", "demand", "a")
    assert store.read([key]) == [None]
    assert store.write([_value("a", 2.0, 10.0)], "t") == 1


def test_open_store_by_url(tmp_path: Path) -> None:
    assert isinstance(open_store("redis://127.0.0.1:6379/0", 60), RedisStore)
    assert isinstance(open_store(f"sqlite:///{tmp_path}/o.sqlite", 60), EmbeddedStore)
    assert isinstance(open_store(str(tmp_path / "o.sqlite"), 60), EmbeddedStore)
    with pytest.raises(OnlineStoreError, match="redis://host:port/db"):
        open_store("memcached://x", 60)


def test_a_redis_store_that_does_not_answer_names_the_store_without_its_password() -> None:
    store = RedisStore("redis://:secret@127.0.0.1:1/0", ttl_seconds=60, timeout_seconds=0.5)
    with pytest.raises(OnlineStoreError, match=r"redis://\*\*\*@127.0.0.1:1/0: cannot write") as caught:
        store.write([_value("a", 1.0, 1.0)], "t")
    assert "secret" not in str(caught.value)


def test_pushed_values_are_checked_and_named() -> None:
    now = time.time()
    values = pushed_values(
        [{"feature": "demand", "key": "airport", "value": 2, "window_end": "2026-05-04T18:00:00+07:00"}],
        "rides",
        "jakarta",
        ["demand"],
        now=now,
    )
    assert values == [OnlineValue("rides", "jakarta", "demand", "airport", 2.0, 1777892400.0, "push")]
    assert pushed_values([{"feature": "demand", "key": 3, "value": 1.5}], "rides", "jakarta", ["demand"], now)[
        0
    ].window_end == pytest.approx(now)
    bad = [
        ([], "values"),
        ([{"feature": "other", "key": "a", "value": 1}], "values[0].feature"),
        ([{"feature": "demand", "key": None, "value": 1}], "values[0].key"),
        ([{"feature": "demand", "key": "a", "value": "1"}], "values[0].value"),
        ([{"feature": "demand", "key": "a", "value": True}], "values[0].value"),
        ([{"feature": "demand", "key": "a", "value": 1, "window_end": "2026-05-04T18:00"}], "values[0].window_end"),
        ([{"feature": "demand", "key": "a", "value": 1, "extra": 1}], "values[0]"),
    ]
    for items, field in bad:
        with pytest.raises(PushError) as caught:
            pushed_values(items, "rides", "jakarta", ["demand"], now)
        assert caught.value.field == field, caught.value.message


def test_an_online_window_aggregate_needs_its_key_from_the_client() -> None:
    online = FeatureDef("demand", kind="window_count", key="area", online=True, default=1.0)
    spec = _spec(online)
    assert spec.raw_inputs == ["km", "area"]
    assert spec.online == (online,)
    assert _spec(FeatureDef("demand", kind="window_count", key="area")).raw_inputs == ["km"]


def test_a_spec_without_online_features_writes_the_json_it_wrote_before() -> None:
    plain = FeatureDef("demand", kind="window_count", key="area")
    assert "online" not in plain.to_dict()
    assert "default" not in plain.to_dict()
    online = FeatureDef("demand", kind="window_count", key="area", online=True, default=1.0)
    assert FeatureDef.from_dict(online.to_dict()) == online


@pytest.mark.parametrize(
    ("feature", "message"),
    [
        (FeatureDef("km2", kind="log1p", column="km", online=True, default=0.0), "online is for window aggregates"),
        (FeatureDef("demand", kind="window_count", key="area", online=True), "needs a 'default'"),
        (FeatureDef("demand", kind="window_count", key="area", default=1.0), "'default' is only for online"),
    ],
)
def test_online_declarations_that_cannot_be_served_are_refused(feature: FeatureDef, message: str) -> None:
    with pytest.raises(FeatureSpecError, match=message):
        _spec(feature)


def test_a_fitted_spec_lists_its_online_features() -> None:
    online = FeatureDef("demand", kind="window_mean", key="area", column="km", online=True, default=0.5)
    fitted = FittedSpec.from_dict({**_spec(online).fit({}, _calendar()).to_dict()})
    assert [f.name for f in fitted.online] == ["demand"]
    assert fitted.requested == ["demand"]


def _calendar():  # type: ignore[no-untyped-def]
    from modelyard.core.featurespec import Calendar

    return Calendar("jakarta", "Asia/Jakarta")
