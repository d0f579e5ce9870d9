"""The training job: the snapshot (from the data event, else LATEST), the params, the input key."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from modelyard.core.config import Config
from modelyard.core.contracts.assets import FeaturesExtra, drift_uri, features_uri
from modelyard.pipeline import snapshots
from modelyard.training import models
from modelyard.training.job import TrainingError, event_digest, prepare_job, validate_override


def publish(config: Config, frame, family: str = "acceptance", region: str = "alpha") -> snapshots.SnapshotMeta:
    meta, _ = snapshots.publish(
        config.storage.features_dir,
        frame,
        family=family,
        region=region,
        target=config.family(family).target,
        time_column="event_time",
        source="unit-test",
        validation=snapshots.ValidationSummary(success=True, checks=3),
    )
    return meta


def event(uri: str, extra: dict[str, Any] | None) -> SimpleNamespace:
    """An asset event as Airflow hands it to a task: ``.asset.uri`` and ``.extra``."""
    return SimpleNamespace(asset=SimpleNamespace(uri=uri), extra=extra)


def features_event(family: str, region: str, digest: str) -> SimpleNamespace:
    extra = FeaturesExtra(family=family, region=region, digest=digest, rows=600)
    return event(features_uri(family, region), dict(extra))


def test_job_resolves_region_override_and_keys_the_inputs(small_config: Config, frame_factory) -> None:
    publish(small_config, frame_factory(task="regression"), family="eta", region="beta")
    job = prepare_job(small_config, "eta", "beta")
    assert job.algorithm == "sklearn_random_forest"
    assert job.params["n_estimators"] == 20
    assert job.model_name == "eta-beta"
    assert job.run_name == f"eta/beta/{job.meta.digest[:8]}"
    assert prepare_job(small_config, "eta", "beta").input_key == job.input_key
    assert prepare_job(small_config, "eta", "beta", {"max_depth": 2}).input_key != job.input_key


def test_the_digest_given_is_trained_on_not_latest(small_config: Config, frame_factory) -> None:
    older = publish(small_config, frame_factory(seed=1))
    newer = publish(small_config, frame_factory(seed=2))
    assert prepare_job(small_config, "acceptance", "alpha").meta.digest == newer.digest
    pinned = prepare_job(small_config, "acceptance", "alpha", digest=older.digest)
    assert pinned.meta.digest == older.digest
    assert pinned.input_key != prepare_job(small_config, "acceptance", "alpha").input_key
    with pytest.raises(snapshots.SnapshotNotFoundError, match="snapshot 0000 of family 'acceptance'") as missing:
        prepare_job(small_config, "acceptance", "alpha", digest="0000")
    assert "`modelyard data snapshots -f acceptance -r alpha` lists what there is" in str(missing.value)


def test_missing_snapshot_names_the_pair(small_config: Config) -> None:
    with pytest.raises(snapshots.SnapshotNotFoundError, match="family 'acceptance', region 'alpha'"):
        prepare_job(small_config, "acceptance", "alpha")


def test_unvalidated_snapshot_is_refused(small_config: Config, frame_factory) -> None:
    meta = publish(small_config, frame_factory())
    meta_file = meta.path(small_config.storage.features_dir).with_suffix(".json")
    failed = meta.model_copy(update={"validation": snapshots.ValidationSummary(success=False, failed=2)})
    meta_file.write_text(failed.model_dump_json())
    with pytest.raises(TrainingError, match="did not pass validation"):
        prepare_job(small_config, "acceptance", "alpha")
    with pytest.raises(TrainingError, match="did not pass validation"):
        prepare_job(small_config, "acceptance", "alpha", digest=meta.digest)


def test_override_is_checked_against_every_pairs_algorithm(small_config: Config) -> None:
    validate_override(small_config, small_config.pairs(regions=["alpha"]), {"max_depth": 2})
    # beta's eta model is a random forest, which has no learning_rate
    with pytest.raises(models.ParamError, match=r"eta/beta: algorithm 'sklearn_random_forest'.*'learning_rate'"):
        validate_override(small_config, small_config.pairs(), {"learning_rate": 0.05})


def test_event_digest_is_the_newest_features_event_of_the_pair() -> None:
    triggering = {
        "features/acceptance/alpha": [
            features_event("acceptance", "alpha", "aaaa"),
            features_event("acceptance", "alpha", "bbbb"),
        ],
        "features/eta/alpha": [features_event("eta", "alpha", "cccc")],
        "drift/acceptance/alpha": [event(drift_uri("acceptance", "alpha"), {"digest": "not-a-snapshot"})],
    }
    assert event_digest(triggering, "acceptance", "alpha") == "bbbb"
    assert event_digest(triggering, "eta", "alpha") == "cccc"
    assert event_digest(triggering, "eta", "beta") is None


def test_without_a_features_event_digest_training_falls_back_to_latest() -> None:
    assert event_digest({}, "acceptance", "alpha") is None  # triggered by hand
    no_digest = {"features/acceptance/alpha": [event(features_uri("acceptance", "alpha"), None)]}
    assert event_digest(no_digest, "acceptance", "alpha") is None
    empty = {"features/acceptance/alpha": [event(features_uri("acceptance", "alpha"), {"digest": ""})]}
    assert event_digest(empty, "acceptance", "alpha") is None
