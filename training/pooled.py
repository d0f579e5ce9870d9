"""Pooled models: one per (family, region group), trained on the rows of the group's regions (ADR 0015).

A region with too few rows for a model of its own (``data.min_rows``) is still published by the
data stage, *pooled only*; the pooled model of its group serves it. Per (family, group):

1. :func:`pool_snapshots` reads each member region's newest snapshot (its time features already
   computed in that region's own calendar by the data stage) and stacks them in time order. What a
   spec learns (category vocabularies, learnt bucket edges) is learnt again on the pooled training
   window, so a category code means the same in every region; a family that declares a category
   feature over the region column thus gets the region as a feature, and one that does not is
   trained on the pooled rows alone.
2. :func:`publish_pooled` publishes that table as the content-addressed snapshot of (family, group),
   under ``<root>/features/<family>/<group>/``, its ``source`` naming every member snapshot: the
   gates read its holdout and the MLflow run logs it exactly as for a pair.
3. :func:`train_group` trains it with the pair's own code path (:func:`training.train.train_job`)
   under the registered model ``config.pooled_model_name(family, group)`` (the pair template with
   the group in the region's place, ``driver_acceptance-country-id`` by default) and tags the run and
   the version with the lineage (:data:`POOLED_GROUP_TAG`, :data:`POOLED_REGIONS_TAG`,
   :data:`POOLED_SNAPSHOTS_TAG`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelyard.core.contracts.assets import challenger_uri
from modelyard.core.contracts.columns import RAW_PREFIX, TIME_COLUMN
from modelyard.core.contracts.registry import POOLED_GROUP_TAG, POOLED_REGIONS_TAG, POOLED_SNAPSHOTS_TAG
from modelyard.core.featurespec import WINDOW_KINDS, FeatureSpec, FeatureSpecError, FittedSpec
from modelyard.core.tracking import TrackingServerUnreachableError, require_reachable, resolve_tracking_uri
from modelyard.pipeline import snapshots
from modelyard.pipeline.features import training_window
from modelyard.training import mlflow_log, registry
from modelyard.training.job import TrainingError, job_on
from modelyard.training.train import EXPECTED_ERRORS, TrainResult, train_job

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from modelyard.core.config import Config, Family

log = logging.getLogger(__name__)

POOLED_SOURCE = "pooled:"


@dataclass(frozen=True)
class PooledRows:
    """The pooled table of (family, group): the member snapshots it stacks, the rows, and its fitted spec."""

    family: str
    group: str
    members: tuple[snapshots.SnapshotMeta, ...]
    missing: tuple[str, ...]  # member regions without a valid snapshot (left out of the pool)
    frame: pd.DataFrame
    feature_spec: dict[str, Any] | None

    @property
    def lineage(self) -> dict[str, str]:
        """The run and version tags naming what was pooled."""
        return {
            POOLED_GROUP_TAG: self.group,
            POOLED_REGIONS_TAG: ",".join(m.region for m in self.members),
            POOLED_SNAPSHOTS_TAG: ",".join(f"{m.region}={m.digest}" for m in self.members),
        }

    @property
    def source(self) -> str:
        """The pooled snapshot's ``source``: ``pooled:<group>:jakarta@<digest>,surabaya@<digest>``."""
        return f"{POOLED_SOURCE}{self.group}:" + ",".join(f"{m.region}@{m.digest}" for m in self.members)


def pool_snapshots(config: Config, family: str, group: str) -> PooledRows:
    """Stack the newest snapshot of every member region of ``group`` (regions without one are left out).

    Raises:
        ConfigError: an unknown family or group.
        TrainingError: no member has a snapshot, or the members' snapshots have different columns
            (one was built before the family changed: rebuild it).
    """
    import pandas as pd

    declared = config.family(family)
    metas, missing = _member_snapshots(config, family, config.group_members(group))
    if not metas:
        raise TrainingError(
            f"{family}/{group}: no region of the group has a snapshot ({', '.join(missing)}); "
            "run `modelyard data build` first"
        )
    frames = [snapshots.load_frame(config.storage.features_dir, meta) for meta in metas]
    _same_columns(family, group, metas, frames)
    specs = [m.feature_spec for m in metas]
    fitted = None
    if all(spec is not None for spec in specs):
        frames, fitted = _relearn(config, declared, metas, frames)
    elif any(spec is not None for spec in specs):
        raise TrainingError(f"{family}/{group}: some member snapshots have no feature spec; rebuild them")
    frame = pd.concat(frames, ignore_index=True).sort_values(TIME_COLUMN, kind="stable").reset_index(drop=True)
    spec_dict = fitted.to_dict() if fitted is not None else None
    return PooledRows(family, group, tuple(metas), tuple(missing), frame, spec_dict)


def _member_snapshots(
    config: Config, family: str, regions: list[str]
) -> tuple[list[snapshots.SnapshotMeta], list[str]]:
    metas, missing = [], []
    for region in regions:
        try:
            meta = snapshots.latest_snapshot(config.storage.features_dir, family, region)
        except snapshots.SnapshotNotFoundError:
            missing.append(region)
            continue
        if meta.validation.success:
            metas.append(meta)
        else:
            missing.append(region)
    return metas, missing


def _same_columns(family: str, group: str, metas: list[snapshots.SnapshotMeta], frames: list[pd.DataFrame]) -> None:
    first = list(frames[0].columns)
    for meta, frame in zip(metas[1:], frames[1:], strict=True):
        if list(frame.columns) != first:
            raise TrainingError(
                f"{family}/{group}: the snapshot of region '{meta.region}' has columns {list(frame.columns)}, "
                f"region '{metas[0].region}' {first}; rebuild both with `modelyard data build --family {family}`"
            )


def _relearn(
    config: Config, family: Family, metas: list[snapshots.SnapshotMeta], frames: list[pd.DataFrame]
) -> tuple[list[pd.DataFrame], FittedSpec]:
    """Learn vocabularies and bucket edges again on the pooled training window; recompute those features.

    Each member's other features stay as its snapshot has them (time features in its own calendar).
    The pooled spec carries the calendar of the member with the most rows (ADR 0015: what the server
    uses for time features when the pooled model serves a region).
    """
    import pandas as pd

    spec = config.feature_spec(family)
    largest = max(range(len(metas)), key=lambda i: metas[i].rows)
    calendars = [FittedSpec.from_dict(meta.feature_spec or {}).calendar for meta in metas]
    columns = [_raw_columns(spec, frame) for frame in frames]
    stacked = pd.concat(frames, ignore_index=True)
    learn_mask = training_window(stacked[TIME_COLUMN], config.training)
    pooled_columns = {name: _stack([c[name] for c in columns])[learn_mask] for name in columns[0]}
    try:
        fitted = spec.fit(pooled_columns, calendars[largest])
        relearnt = [*fitted.vocabularies, *(f.name for f in spec.features if f.kind == "bucket" and not f.edges)]
        out = []
        for frame, raw, calendar in zip(frames, columns, calendars, strict=True):
            computed = fitted.compute(raw, calendar) if relearnt else {}
            out.append(frame.assign(**{name: computed[name] for name in relearnt}))
    except FeatureSpecError as exc:
        raise TrainingError(f"{family.name}: cannot learn the pooled features: {exc}") from exc
    return out, fitted


def _raw_columns(spec: FeatureSpec, rows: pd.DataFrame) -> dict[str, Any]:
    """What ``spec`` computes from, out of snapshot rows: the time (naive UTC), ``raw.*`` columns, window aggregates."""
    import pandas as pd

    out: dict[str, Any] = {}
    for name in spec.raw_inputs:
        if name == spec.time_column:
            out[name] = pd.to_datetime(rows[TIME_COLUMN], utc=True).dt.tz_localize(None).to_numpy()
        elif f"{RAW_PREFIX}{name}" in rows.columns:
            out[name] = rows[f"{RAW_PREFIX}{name}"].to_numpy()
        else:
            raise TrainingError(f"the snapshot rows do not carry raw field '{name}'; rebuild the snapshots")
    for feature in spec.features:
        if feature.kind in WINDOW_KINDS:
            out[feature.name] = rows[feature.name].to_numpy()
    return out


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    import numpy as np

    return np.concatenate(arrays)


def publish_pooled(config: Config, pooled: PooledRows) -> snapshots.SnapshotMeta:
    """Publish the pooled table as the snapshot of (family, group); the same members publish nothing new."""
    family = config.family(pooled.family)
    summary = snapshots.ValidationSummary(success=True, checks=sum(m.validation.checks for m in pooled.members))
    meta, _ = snapshots.publish(
        config.storage.features_dir,
        pooled.frame,
        family=family.name,
        region=pooled.group,
        target=family.target,
        time_column=TIME_COLUMN,
        source=pooled.source,
        validation=summary,
        feature_spec=pooled.feature_spec,
    )
    return meta


def train_group(
    config: Config,
    family: str,
    group: str,
    *,
    tracking_uri: str | None = None,
    force: bool = False,
    params_override: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Pool the group's snapshots, publish them, train and register the pooled model as its challenger.

    Returns:
        The :class:`TrainResult` with ``region`` the group; ``skipped`` when even the pooled rows are
        fewer than ``data.min_rows`` (or one class), ``unchanged`` when these inputs were trained.

    Raises:
        ConfigError, TrainingError, ParamError, AlgorithmError, TrackingServerUnreachableError.
    """
    pooled = pool_snapshots(config, family, group)
    meta = publish_pooled(config, pooled)
    job = job_on(config, family, group, meta, params_override)
    uri = tracking_uri or resolve_tracking_uri(config)
    result = train_job(config, job, tracking_uri=uri, force=force, tags=pooled.lineage)
    if result.version is not None:
        _tag_version(uri, result.model_name, result.version, pooled.lineage)
    if pooled.missing:
        note = f"left out regions without a valid snapshot: {', '.join(pooled.missing)}"
        result = _with_note(result, note)
    return result


def _tag_version(uri: str, model_name: str, version: str, tags: Mapping[str, str]) -> None:
    """The version's lineage tags (set after registration: ``register_challenger`` writes the pair's tags)."""
    writer = registry.registry_writer(mlflow_log.tracking_client(uri))  # a registered model: no prompt check per tag
    for key, value in tags.items():
        writer.set_model_version_tag(model_name, version, key, value)


def _with_note(result: TrainResult, note: str) -> TrainResult:
    from dataclasses import replace

    return replace(result, reason=f"{result.reason}; {note}" if result.reason else note)


def pooled_selection(config: Config, pairs: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """The families of ``pairs`` and the groups holding their regions: the pooled models a run of them retrains."""
    families = list(dict.fromkeys(f for f, _ in pairs))
    groups = list(dict.fromkeys(g for _, r in pairs for g in config.groups_of(r)))
    return families, groups


def train_pooled(
    config: Config,
    families: list[str] | None = None,
    groups: list[str] | None = None,
    *,
    tracking_uri: str | None = None,
    force: bool = False,
    params_override: Mapping[str, Any] | None = None,
) -> list[TrainResult]:
    """Train the pooled model of every selected (family, group); one failing is recorded, the rest still run.

    Raises:
        ConfigError: an unknown family or group was named.
        TrackingServerUnreachableError: the MLflow server does not answer.
    """
    chosen_families = [config.family(f).name for f in families] if families else config.family_names
    for group in groups or []:
        config.group_members(group)  # an unknown group fails before anything trains
    chosen_groups = groups or list(config.region_groups)
    uri = require_reachable(tracking_uri or resolve_tracking_uri(config))
    results = []
    for family in chosen_families:
        for group in chosen_groups:
            try:
                results.append(
                    train_group(config, family, group, tracking_uri=uri, force=force, params_override=params_override)
                )
            except TrackingServerUnreachableError:
                raise
            except Exception as exc:
                if isinstance(exc, EXPECTED_ERRORS):
                    log.error("%s/%s: pooled training failed: %s", family, group, exc)
                else:
                    log.exception("%s/%s: pooled training failed", family, group)
                name = config.pooled_model_name(family, group)
                results.append(TrainResult(family, group, "failed", name, reason=f"{type(exc).__name__}: {exc}"))
    return results


ANNOUNCED = ("registered", "unchanged")


def challenger_events(results: list[TrainResult]) -> list[dict[str, Any]]:
    """The challenger Asset events of the pooled models trained or re-announced, as ``{uri, extra}``.

    ``modelyard://challenger/<family>/<group>`` with the pair's extra (``region`` is the group), like a
    pair's challenger: the promotion DAG gates and promotes it (ADR 0015).
    """
    return [
        {"uri": challenger_uri(r.family, r.region), "extra": r.asset_extra()}
        for r in results
        if r.status in ANNOUNCED and r.version
    ]
