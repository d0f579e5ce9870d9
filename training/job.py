"""The training job of a (family, region): what it trains on and how, resolved before any data is read.

:func:`prepare_job` picks the snapshot (the digest the data stage's event carried, see
:func:`event_digest`, else the pair's ``LATEST``), the algorithm and its validated
hyperparameters, and the idempotency key of them all (``input_key``): the same inputs make
the same model, so a version already trained on them is not trained again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelyard.core.contracts import assets
from modelyard.core.errors import ModelyardError
from modelyard.pipeline.snapshots import SnapshotMeta, latest_snapshot, read_snapshot
from modelyard.training import models, registry

if TYPE_CHECKING:
    from modelyard.core.config import Config, Family


class TrainingError(ModelyardError, RuntimeError):
    """Training of a (family, region) cannot run; the message names the pair and what to do."""


@dataclass(frozen=True)
class TrainingJob:
    """Everything decided before touching data: what trains on which snapshot, with which settings, under which key."""

    family: Family
    region: str
    algorithm: str
    params: dict[str, Any]
    baseline: str | None
    seed: int
    meta: SnapshotMeta
    settings_hash: str
    input_key: str
    model_name: str

    @property
    def run_name(self) -> str:
        """``<family>/<region>/<snapshot digest, 8 characters>``: the MLflow run's name."""
        return f"{self.family.name}/{self.region}/{self.meta.digest[:8]}"


def prepare_job(
    config: Config,
    family: str,
    region: str,
    params_override: Mapping[str, Any] | None = None,
    digest: str | None = None,
) -> TrainingJob:
    """The training job of (family, region): its snapshot, algorithm, validated params and idempotency key.

    Args:
        config: the modelyard config.
        family: a configured family.
        region: a configured region.
        params_override: hyperparameters on top of the family's and region's.
        digest: the snapshot to train on (the digest a features event carried, :func:`event_digest`);
            default: the pair's ``LATEST`` snapshot.

    Raises:
        ConfigError: unknown family or region.
        SnapshotNotFoundError: no valid snapshot (or none with ``digest``); the message names the pair.
        TrainingError: the snapshot did not pass validation.
        AlgorithmError, ParamError: the algorithm or a hyperparameter is invalid (names the key).
    """
    config.family(family)
    config.region(region)
    features_dir = config.storage.features_dir
    if digest:
        meta = read_snapshot(features_dir, family, region, digest)
    else:
        meta = latest_snapshot(features_dir, family, region)
    return job_on(config, family, region, meta, params_override)


def job_on(
    config: Config, family: str, region: str, meta: SnapshotMeta, params_override: Mapping[str, Any] | None = None
) -> TrainingJob:
    """The training job of ``family`` on the snapshot ``meta`` of ``region`` (a region, or a group's pooled snapshot).

    ``region`` names the registered model (``config.mlflow.model_name(family, region)``); a group's
    pooled model is named like a pair's with the group in the region's place (ADR 0015).

    Raises:
        TrainingError: the snapshot did not pass validation.
        AlgorithmError, ParamError: the algorithm or a hyperparameter is invalid (names the key).
    """
    spec = config.family(family)
    algorithm, params = resolve_params(config, family, region, params_override)
    if not meta.validation.success:
        raise TrainingError(
            f"{family}/{region}: snapshot {meta.digest} did not pass validation "
            f"({meta.validation.failed} failed checks); rebuild it with `modelyard data build`"
        )
    settings_hash = registry.training_settings_hash(config, family, region)
    return TrainingJob(
        family=spec,
        region=region,
        algorithm=algorithm,
        params=params,
        baseline=spec.baseline,
        seed=config.seed,
        meta=meta,
        settings_hash=settings_hash,
        input_key=registry.input_key(meta.digest, settings_hash, config.seed, algorithm, params),
        model_name=config.mlflow.model_name(family, region),
    )


def resolve_params(
    config: Config, family: str, region: str, params_override: Mapping[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """The algorithm of (family, region) and its validated hyperparameters (family, region, override).

    Raises:
        AlgorithmError: the algorithm or baseline is unknown or cannot do the family's task.
        ParamError: a hyperparameter is unknown or invalid; the message names the key and the pair.
    """
    spec = config.family(family)
    algorithm = spec.algorithm_for(region)
    models.get_algorithm(algorithm, spec.task)
    if spec.baseline:
        models.get_algorithm(spec.baseline, spec.task)
    try:
        params = models.validate_params(algorithm, {**spec.params_for(region), **(params_override or {})})
        models.check_feature_params(algorithm, params, spec.feature_names)
    except models.ParamError as exc:
        raise models.ParamError(f"{family}/{region}: {exc}", key=exc.key) from exc
    return algorithm, params


def validate_override(config: Config, pairs: Iterable[tuple[str, str]], params_override: Mapping[str, Any]) -> None:
    """Check a hyperparameter override against the algorithm of every pair, before anything trains.

    Raises:
        ParamError: the first invalid key, naming the pair and the key.
    """
    for family, region in pairs:
        resolve_params(config, family, region, params_override)


def event_digest(triggering: Mapping[Any, Iterable[Any]], family: str, region: str) -> str | None:
    """The snapshot digest of the newest features event of (family, region) among a run's triggering events.

    ``triggering`` maps each triggering asset to its events (``.asset.uri``, ``.extra``), as
    Airflow's ``triggering_asset_events`` does. None when no such event carries a digest (a
    run triggered by hand, or by another asset): training then takes the pair's ``LATEST``.
    """
    uri = assets.features_uri(family, region)
    digests = [
        digest
        for events in triggering.values()
        for event in events
        if event.asset.uri == uri and (digest := assets.snapshot_digest(event.extra or {})) is not None
    ]
    return digests[-1] if digests else None
