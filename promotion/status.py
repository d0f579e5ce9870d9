"""Where every (family, region) stands: champion, challenger and its gate outcome, previous champion.

Read only: everything comes from the registry's aliases and the version tags written by
training (metric summary) and promotion (``promotion.*``). The CLI renders it (promotion/render.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modelyard.core.contracts.registry import (
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    MONITORING_TAG,
    PREVIOUS_ALIAS,
    PROMOTION_TAG,
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
    rolled_back_at: str | None = None
    drift: str | None = None  # the last monitoring verdict (monitoring/measure.py)
    drift_summary: str | None = None
    drift_checked_at: str | None = None  # the end of the measured window
    drift_run_id: str | None = None  # the monitoring run that measured it
    run_id: str | None = None  # the training run that made the version

    @classmethod
    def from_version(cls, version: ModelVersion, metric_names: tuple[str, ...]) -> VersionInfo:
        tags = version.tags or {}
        return cls(
            version=str(version.version),
            metrics={name: float(tags[name]) for name in metric_names if _is_number(tags.get(name))},
            champion_since=tags.get(f"{TAG}champion_since"),
            outcome=tags.get(f"{TAG}outcome"),
            summary=tags.get(f"{TAG}summary"),
            rolled_back_at=tags.get(f"{TAG}rolled_back_at"),
            drift=tags.get(f"{MONITORING_TAG}verdict"),
            drift_summary=tags.get(f"{MONITORING_TAG}summary"),
            drift_checked_at=tags.get(f"{MONITORING_TAG}checked_at"),
            drift_run_id=tags.get(f"{MONITORING_TAG}run_id"),
            run_id=version.run_id or None,
        )


@dataclass(frozen=True)
class PairStatus:
    """The registry state of one (family, region)."""

    family: str
    region: str
    model_name: str
    champion: VersionInfo | None
    challenger: VersionInfo | None
    previous: VersionInfo | None


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
    current = aliases_of(client, names.values())
    wanted: dict[str, set[str]] = {name: set(current[name].values()) for name in names.values()}
    versions = versions_of(client, wanted)

    def status(family: str, region: str) -> PairStatus:
        name = names[(family, region)]
        metric_names = KEY_METRICS[config.family(family).task]

        def info(alias: str) -> VersionInfo | None:
            number = current[name].get(alias)
            found = versions.get((name, number)) if number else None
            return VersionInfo.from_version(found, metric_names) if found else None

        return PairStatus(
            family=family,
            region=region,
            model_name=name,
            champion=info(CHAMPION_ALIAS),
            challenger=info(CHALLENGER_ALIAS),
            previous=info(PREVIOUS_ALIAS),
        )

    return [status(family, region) for family, region in pairs]


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
