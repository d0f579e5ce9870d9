"""Where every (family, region) stands: champion, challenger and its gate outcome, previous champion.

Read only: everything comes from the registry's aliases and the version tags written by
training (metric summary) and promotion (``promotion.*``). The CLI renders it (promotion/render.py).
A region without a champion of its own is served by the pooled champion of its most specific
group that has one (ADR 0015, the planner's rule): :attr:`PairStatus.fallback` names it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelyard.core.contracts.registry import (
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    PREVIOUS_ALIAS,
    PROMOTION_TAG,
    monitoring_tag,
)
from modelyard.promotion.aliases import open_client

TAG = PROMOTION_TAG  # what promotion/record.py writes under

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from modelyard.core.config import Config


@dataclass(frozen=True)
class VersionInfo:
    """One registered version as status shows it."""

    version: str
    metrics: dict[str, float] = field(default_factory=dict)
    champion_since: str | None = None
    outcome: str | None = None
    summary: str | None = None
    failed_gates: tuple[str, ...] = ()  # the gates its decision failed, as the ``promotion.gates`` tag names them
    rolled_back_at: str | None = None
    drift: str | None = None  # the last monitoring verdict (monitoring/measure.py)
    drift_summary: str | None = None
    drift_checked_at: str | None = None  # the end of the measured window
    drift_run_id: str | None = None  # the monitoring run that measured it
    run_id: str | None = None  # the training run that made the version

    @classmethod
    def from_version(
        cls, version: ModelVersion, metric_names: tuple[str, ...], region: str | None = None
    ) -> VersionInfo:
        """The version as status shows it; with ``region``, a pooled version's drift as that region measured it."""
        tags = version.tags or {}
        return cls(
            version=str(version.version),
            metrics={name: float(tags[name]) for name in metric_names if _is_number(tags.get(name))},
            champion_since=tags.get(f"{TAG}champion_since"),
            outcome=tags.get(f"{TAG}outcome"),
            summary=tags.get(f"{TAG}summary"),
            failed_gates=failed_gates(tags.get(f"{TAG}gates")),
            rolled_back_at=tags.get(f"{TAG}rolled_back_at"),
            drift=tags.get(monitoring_tag("verdict", region)),
            drift_summary=tags.get(monitoring_tag("summary", region)),
            drift_checked_at=tags.get(monitoring_tag("checked_at", region)),
            drift_run_id=tags.get(monitoring_tag("run_id", region)),
            run_id=version.run_id or None,
        )


@dataclass(frozen=True)
class Fallback:
    """The pooled champion serving a region that has no champion of its own (ADR 0015)."""

    group: str
    model_name: str
    version: str
    # the pooled version, its drift as this region's traffic measured it (not part of which fallback it is)
    info: VersionInfo | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"pooled: {self.group} v{self.version}"


@dataclass(frozen=True)
class PairStatus:
    """The registry state of one (family, region); ``fallback`` when a pooled champion serves it instead."""

    family: str
    region: str
    model_name: str
    champion: VersionInfo | None
    challenger: VersionInfo | None
    previous: VersionInfo | None
    fallback: Fallback | None = None

    @property
    def serving(self) -> VersionInfo | None:
        """The version that answers this region: its champion, else the pooled champion serving it."""
        return self.champion or (self.fallback.info if self.fallback else None)


def status_record(status: PairStatus) -> dict[str, Any]:
    """One pair's status as JSON-ready data (``modelyard status --json``).

    The dataclass's fields, plus ``serving``: the registered model and version that answers the region
    (its champion, else the pooled champion serving it; None when nothing does). A metric that is not a
    finite number is null.
    """
    record = dataclasses.asdict(status)
    for key in ("champion", "challenger", "previous"):
        if record[key] is not None:
            record[key]["metrics"] = _finite(record[key]["metrics"])
    if record["fallback"] is not None and record["fallback"]["info"] is not None:
        record["fallback"]["info"]["metrics"] = _finite(record["fallback"]["info"]["metrics"])
    serving = None
    if status.champion is not None:
        serving = {"model_name": status.model_name, "version": status.champion.version}
    elif status.fallback is not None:
        serving = {"model_name": status.fallback.model_name, "version": status.fallback.version}
    return {**record, "serving": serving}


def _finite(metrics: Mapping[str, float]) -> dict[str, float | None]:
    return {name: value if math.isfinite(value) else None for name, value in metrics.items()}


def failed_gates(counts: str | None) -> tuple[str, ...]:
    """The gate names of a ``promotion.gates`` tag (``12 passed, 2 failed: latency, prediction_psi``)."""
    _, found, names = (counts or "").partition(" failed: ")
    return tuple(name.strip() for name in names.split(",") if name.strip()) if found else ()


def _is_number(text: str | None) -> bool:
    try:
        float(text or "")
    except ValueError:
        return False
    return True


def pair_status(client: MlflowClient, config: Config, family: str, region: str) -> PairStatus:
    """Champion, challenger and previous champion of (family, region) with their key metrics."""
    return pair_statuses(client, config, [(family, region)])[0]


def pair_statuses(client: MlflowClient, config: Config, pairs: list[tuple[str, str]]) -> list[PairStatus]:
    """The status of every pair in two paginated searches (aliases, then the aliased versions)."""
    from modelyard.core.catalog import aliases_of, versions_of
    from modelyard.training.registry import KEY_METRICS

    names = {pair: config.mlflow.model_name(*pair) for pair in pairs}
    pooled = _pooled_names(config, pairs)
    current = aliases_of(client, [*names.values(), *pooled.values()])
    fallbacks = {pair: fallback_of(config, pair, current) for pair in pairs}
    wanted: dict[str, set[str]] = {name: set(current[name].values()) for name in names.values()}
    for found in fallbacks.values():
        if found is not None:
            wanted.setdefault(found.model_name, set()).add(found.version)
    versions = versions_of(client, wanted)

    def status(family: str, region: str) -> PairStatus:
        name = names[(family, region)]
        metric_names = KEY_METRICS[config.family(family).task]

        def info(alias: str) -> VersionInfo | None:
            number = current[name].get(alias)
            found = versions.get((name, number)) if number else None
            return VersionInfo.from_version(found, metric_names) if found else None

        fallback = fallbacks[(family, region)]
        if fallback is not None and (pooled_version := versions.get((fallback.model_name, fallback.version))):
            as_measured_here = VersionInfo.from_version(pooled_version, metric_names, region)
            fallback = dataclasses.replace(fallback, info=as_measured_here)
        return PairStatus(
            family=family,
            region=region,
            model_name=name,
            champion=info(CHAMPION_ALIAS),
            challenger=info(CHALLENGER_ALIAS),
            previous=info(PREVIOUS_ALIAS),
            fallback=fallback,
        )

    return [status(family, region) for family, region in pairs]


def _pooled_names(config: Config, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(family, group) -> pooled model name, for every group of the pairs' regions (a group as region: none)."""
    regions = set(config.region_names)
    return {
        (family, group): config.pooled_model_name(family, group)
        for family, region in pairs
        if region in regions
        for group in config.groups_of(region)
    }


def fallback_of(config: Config, pair: tuple[str, str], current: Mapping[str, Mapping[str, str]]) -> Fallback | None:
    """The pooled champion serving ``pair``, from the models' aliases (``current``: name -> alias -> version).

    None when the pair has a champion of its own, its region is in no group (or is a group), or no
    group of it has a pooled champion. The most specific group with a champion serves, as in the planner.
    """
    family, region = pair
    if current.get(config.mlflow.model_name(family, region), {}).get(CHAMPION_ALIAS):
        return None
    if region not in config.region_names:
        return None
    for group in config.groups_of(region):
        name = config.pooled_model_name(family, group)
        version = current.get(name, {}).get(CHAMPION_ALIAS)
        if version:
            return Fallback(group, name, version)
    return None


def regions_served_by(client: MlflowClient, config: Config, family: str, group: str) -> list[str]:
    """The member regions of ``group`` that its pooled champion of ``family`` serves now, in config order.

    Raises:
        ConfigError: an unknown family or group.
    """
    from modelyard.core.catalog import aliases_of

    pairs = [(config.family(family).name, region) for region in config.group_members(group)]
    names = [config.mlflow.model_name(*pair) for pair in pairs]
    current = aliases_of(client, [*names, *_pooled_names(config, pairs).values()])
    return [
        region
        for _, region in pairs
        if (found := fallback_of(config, (family, region), current)) and found.group == group
    ]


def collect_status(
    config: Config,
    families: list[str] | None = None,
    regions: list[str] | None = None,
    *,
    tracking_uri: str | None = None,
) -> list[PairStatus]:
    """The status of every selected (family, region), in config order.

    Raises:
        ConfigError: an unknown family or region was named.
    """
    client = open_client(config, tracking_uri)
    return pair_statuses(client, config, list(config.pairs(families, regions)))
