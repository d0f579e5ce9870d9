"""Where the fleet page reads from: the config, the MLflow registry, the deploy stage's records, the live plan.

Nothing new is stored. The registry is read with ``promotion.status.pair_statuses`` (two paginated
searches for any number of pairs); the last deploy of each release is the newest
``modelyard://deployed/<release>`` Asset event in Airflow's metadata database (what the deploy
DAG emits); the live plan of the local target is the copy the serving process keeps of its
active plan (``plan.json.last-good`` beside the target's plan file). A Kubernetes target's live
plan lives in its Helm releases; there the deploy record says which versions serve.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.core.contracts.assets import SCHEME
from modelyard.plugins.fleet.rows import (
    CONFIG_SORTS,
    DeployRecord,
    FleetPage,
    FleetQuery,
    FleetRow,
    build_rows,
    page_slice,
    select_pairs,
    sort_pairs,
    sort_rows,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from modelyard.core.config import Config
    from modelyard.deploy.serving.plan import Plan
    from modelyard.promotion.status import PairStatus

log = logging.getLogger(__name__)
DEPLOYED_PREFIX = f"{SCHEME}://deployed/"
MAX_DEPLOY_EVENTS = 5000  # newest events read per page view: enough for every release's last deploy


@dataclass(frozen=True)
class FleetSources:
    """The stores one page view reads: the config and registry client, deploy records, the live plan.

    ``every_pair_seconds``: how long the registry state of a whole selection (read for a sort by
    a registry or deploy field) is reused, so paging through a sorted fleet reads it once.
    """

    config: Config
    client: MlflowClient
    deploy_records: Callable[[], Sequence[DeployRecord]]
    live_plan: Callable[[], Plan | None]
    every_pair_seconds: float = 30.0
    _read: dict[tuple[tuple[str, str], ...], tuple[float, list[PairStatus]]] = field(default_factory=dict, repr=False)

    def statuses(self, pairs: list[tuple[str, str]], *, reuse: bool = False) -> list[PairStatus]:
        """The registry state of ``pairs`` (two paginated searches); ``reuse``: a recent read of the same pairs."""
        from modelyard.promotion.status import pair_statuses

        key = tuple(pairs)
        cached = self._read.get(key) if reuse else None
        if cached is not None and time.monotonic() - cached[0] < self.every_pair_seconds:
            return cached[1]
        statuses = pair_statuses(self.client, self.config, pairs)
        if reuse:
            self._read.clear()  # one selection kept: the one being paged through
            self._read[key] = (time.monotonic(), statuses)
        return statuses


def fleet_page(sources: FleetSources, query: FleetQuery) -> FleetPage:
    """The rows of one page: filtered on the config's pairs, sorted, paged, then read from the stores.

    Sorted by family or region, only the page's pairs are read from the registry; sorted by a
    registry or deploy field, every selected pair is (still two searches, not one per pair), and
    that read is reused for ``sources.every_pair_seconds``.
    """
    config = sources.config
    pairs = select_pairs(config.pairs(), query)
    deploys, live = sources.deploy_records(), sources.live_plan()
    if query.sort in CONFIG_SORTS:
        chosen = page_slice(sort_pairs(pairs, query), query)
        rows = build_rows(sources.statuses(chosen), deploys, live)
    else:
        every: list[FleetRow] = build_rows(sources.statuses(pairs, reuse=True), deploys, live)
        rows = page_slice(sort_rows(every, query), query)
    return FleetPage(query=query, rows=rows, total=len(pairs), families=list(config.family_names))


def airflow_deploy_records() -> list[DeployRecord]:
    """The newest ``modelyard://deployed/<release>`` event of each release, from Airflow's metadata database."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    statement = (
        select(
            AssetEvent.extra, AssetEvent.timestamp, AssetEvent.source_dag_id, AssetEvent.source_run_id, AssetModel.uri
        )
        .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
        .where(AssetModel.uri.startswith(DEPLOYED_PREFIX))
        .order_by(AssetEvent.timestamp.desc())
        .limit(MAX_DEPLOY_EVENTS)
    )
    newest: dict[str, DeployRecord] = {}
    with create_session() as session:
        for extra, timestamp, dag_id, run_id, uri in session.execute(statement):
            release = uri[len(DEPLOYED_PREFIX) :]
            if release not in newest:
                newest[release] = DeployRecord.from_event(
                    {"release": release, **(extra or {})}, timestamp, dag_id, run_id
                )
    return list(newest.values())


def local_live_plan(config: Config) -> Plan | None:
    """The plan the local serving process made active last (None for a Kubernetes target or before any deploy).

    An unreadable copy is logged and shown as unknown: the page still lists the registry state.
    """
    if config.deploy.target != "local":
        return None
    from modelyard.deploy.serving.plan import PlanError, last_good_path, parse_plan_text

    path = last_good_path(local_plan_file(config))
    try:
        return parse_plan_text(path.read_bytes(), str(path))
    except FileNotFoundError:
        return None
    except (OSError, PlanError) as exc:
        log.warning("fleet page: the live plan %s cannot be read (%s); serving state from deploy records", path, exc)
        return None


def local_plan_file(config: Config) -> Path:
    """The local target's plan file, where its serving process keeps the copy of its active plan."""
    from modelyard.deploy.rollout.local_target import LocalTarget

    return LocalTarget.from_config(config, config.mlflow.tracking_uri, port=config.deploy.local.port).plan_file


def deployed_at(record: DeployRecord) -> str:
    """``2026-12-04 17:26 UTC``."""
    return record.at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
