"""The raw-field guard of a rollout (issue 21): which fields clients must send, and the refusal, without MLflow."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
from pathlib import Path

import pytest
from upath import UPath

from modelyard.core.config import Config, load_config
from modelyard.core.contracts import prediction_log
from modelyard.deploy.rollout.planner import PairState, PlannerError, PlanOptions, build_plan
from modelyard.deploy.rollout.raw_fields import (
    VersionGone,
    compare,
    guard,
    raw_field_changes,
    records_fields,
    sent_fields,
)
from modelyard.deploy.serving.plan import Plan

FAMILY, REGION = "driver_acceptance", "jakarta"
KEY = f"{FAMILY}/{REGION}"
V1 = ["event_time", "pickup_distance_km", "driver_rating"]
V2 = ["event_time", "pickup_distance_km", "surge_multiplier"]


@pytest.fixture
def config(demo_config_path: Path, clean_env: None) -> Config:
    return load_config(demo_config_path, environ={})


def plan_of(config: Config, strategy: str, **aliases: str) -> Plan:
    """The plan of the one pair with ``aliases`` (e.g. champion=2, previous_champion=1)."""
    names = {k.replace("_", "-"): v for k, v in aliases.items()}
    state = PairState(FAMILY, REGION, config.mlflow.model_name(FAMILY, REGION), names)
    options = PlanOptions(families=[FAMILY], regions=[REGION], strategy=strategy)  # type: ignore[arg-type]
    return build_plan(config, [state], options).plan


def fields(by_version: dict[str, list[str] | None]):  # type: ignore[no-untyped-def]
    return lambda name, version: by_version[version]


def test_compare_names_the_needed_added_dropped_and_unsent_fields() -> None:
    change = compare(KEY, ("v1", V1), ("v2", V2), seen=None)

    assert change is not None
    assert change.needed == tuple(V2)
    assert change.added == ("surge_multiplier",)
    assert change.dropped == ("driver_rating",)
    assert change.unsent == ("surge_multiplier",)
    assert change.note() == (
        "clients must send event_time, pickup_distance_km, surge_multiplier for v2 "
        "(new: surge_multiplier; no longer read: driver_rating)"
    )


def test_a_field_seen_in_sampled_requests_counts_as_sent() -> None:
    change = compare(KEY, ("v1", V1), ("v2", V2), seen={*V1, "surge_multiplier"})

    assert change is not None
    assert change.unsent == ()
    assert compare(KEY, ("v1", V1), ("v2", list(reversed(V1))), seen=None) is None  # same fields, other order


def test_a_canary_needing_an_unsent_field_is_refused_with_the_pair_the_field_and_what_to_do(config: Config) -> None:
    live = plan_of(config, "canary", champion="1")
    new = plan_of(config, "canary", champion="2", previous_champion="1")
    changes = raw_field_changes(live, new, fields({"1": V1, "2": V2}), lambda *_: None)

    with pytest.raises(PlannerError) as refused:
        guard(changes, force=False)

    message = str(refused.value)
    for expected in (KEY, "surge_multiplier", "v2", "v1", "send them", "default", "--force"):
        assert expected in message, message
    assert "driver_rating" not in message  # a dropped field is no reason to refuse


def test_forced_the_rollout_goes_ahead_and_the_plan_says_what_clients_must_send(config: Config) -> None:
    live = plan_of(config, "canary", champion="1")
    new = plan_of(config, "canary", champion="2", previous_champion="1")

    notes = guard(raw_field_changes(live, new, fields({"1": V1, "2": V2}), lambda *_: None), force=True)

    assert notes == {KEY: compare(KEY, ("v1", V1), ("v2", V2), None).note()}  # type: ignore[union-attr]


def test_the_shadow_strategy_compares_the_shadowed_version(config: Config) -> None:
    live = plan_of(config, "shadow", champion="1")
    new = plan_of(config, "shadow", champion="2", previous_champion="1")  # primary v1, shadow v2

    changes = raw_field_changes(live, new, fields({"1": V1, "2": V2}), lambda *_: None)

    assert [(c.served, c.new, c.unsent) for c in changes] == [("v1", "v2", ("surge_multiplier",))]


def test_no_change_when_the_version_is_the_same_or_a_version_has_no_spec(config: Config) -> None:
    live = plan_of(config, "canary", champion="1")
    again = plan_of(config, "canary", champion="1")
    new = plan_of(config, "canary", champion="2", previous_champion="1")

    assert raw_field_changes(live, again, fields({"1": V1}), lambda *_: None) == []
    assert raw_field_changes(live, new, fields({"1": V1, "2": None}), lambda *_: None) == []


def test_a_served_version_deleted_from_the_registry_is_compared_by_what_its_clients_sent(config: Config) -> None:
    # Someone deleted the serving v1 in the MLflow UI: its spec is gone, the plan must still be made.
    live = plan_of(config, "canary", champion="1")
    new = plan_of(config, "canary", champion="2", previous_champion="1")

    def fields_of(name: str, version: str) -> list[str]:
        if version == "1":
            raise VersionGone(f"model '{name}' v1 is no longer in the registry")
        return V2

    seen = raw_field_changes(live, new, fields_of, lambda *_: {"event_time", "pickup_distance_km", "driver_rating"})
    unseen = raw_field_changes(live, new, fields_of, lambda *_: None)

    assert [(c.served, c.unsent) for c in seen] == [
        ("v1 (no longer in the registry: the fields its sampled requests carried)", ("surge_multiplier",))
    ]
    assert unseen == []  # nothing left to compare with: the rollout is not refused for a version nobody can read


def test_a_region_moving_to_its_groups_pooled_model_names_both_models(config: Config) -> None:
    # Its champion alias was deleted: "v1" and "v1" would not say that the model changed.
    live = plan_of(config, "rolling", champion="1")
    service = live.services[0]
    pooled = service.variants[0].model_copy(update={"model_uri": "models:/driver_acceptance-country-id/1"})
    moved = live.model_copy(update={"services": [service.model_copy(update={"variants": [pooled]})]})

    changes = raw_field_changes(live, moved, lambda name, version: V1 if name.endswith(REGION) else V2, lambda *_: None)

    assert [(c.served, c.new) for c in changes] == [("driver_acceptance-jakarta v1", "driver_acceptance-country-id v1")]


def write_samples(folder: Path, version: str, records: list[dict[str, object]], name: str = "a") -> Path:
    """A prediction-log file in ``folder`` of requests answered by ``version`` carrying ``records``."""
    lines = [
        prediction_log.prediction_entry(
            at=1e9, kind=prediction_log.PREDICTION, request_id=str(i), labels=(FAMILY, REGION, "primary", version),
            plan_digest="sha256:x", predictions=[0.5], records=[record],
        )
        for i, record in enumerate(records)
    ]  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}{prediction_log.SUFFIX}"
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


def test_a_rollback_counts_what_clients_sent_the_version_before_within_the_window(
    demo_config_path: Path, clean_env: None, tmp_path: Path
) -> None:
    # v2 (a notebook model reading fewer fields) served for minutes: one sample. Rolled back to v1,
    # whose clients sent driver_rating an hour ago: the guard must not refuse it.
    config = load_config(demo_config_path, environ={"MODELYARD_STORAGE__ROOT": str(tmp_path)})
    pair = Path(str(config.storage.samples_dir)) / FAMILY / REGION
    write_samples(pair / "2", "2", [dict.fromkeys(V2, 1)])
    write_samples(pair / "1", "1", [dict.fromkeys(V1, 1)])
    old = write_samples(pair / "0", "0", [{"left_the_window": 1}])
    stale = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=config.monitoring.window_hours + 1)).timestamp()
    os.utime(old, (stale, stale))

    seen = sent_fields(config, FAMILY, REGION, "2")

    assert seen == {*V1, *V2}
    assert compare(KEY, ("v2", V2), ("v1", V1), seen) is not None
    assert compare(KEY, ("v2", V2), ("v1", V1), seen).unsent == ()  # type: ignore[union-attr]
    assert compare(KEY, ("v2", V2), ("v1", V1), sent_fields(config, FAMILY, "hanoi", "2")).unsent == ("driver_rating",)  # type: ignore[union-attr]


def test_sampled_records_give_the_fields_clients_send(tmp_path: Path) -> None:
    lines = [
        prediction_log.prediction_entry(
            at=1e9, kind=prediction_log.PREDICTION, request_id=str(i), labels=(FAMILY, REGION, "primary", "1"),
            plan_digest="sha256:x", predictions=[0.5], records=[{**dict.fromkeys(V1, 1), **extra}],
        )
        for i, extra in enumerate([{}, {"surge_multiplier": 1.2}])
    ]  # fmt: skip
    lines.append(prediction_log.counts_entry(at=1e9, since="x", counts={"ok": 2}))
    with gzip.open(tmp_path / f"a{prediction_log.SUFFIX}", "wt") as handle:
        handle.write("\n".join(json.dumps(line) for line in lines) + "\nnot json\n")

    since = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    assert records_fields(UPath(tmp_path), since) == {*V1, "surge_multiplier"}
    assert records_fields(UPath(tmp_path / "nothing"), since) is None
