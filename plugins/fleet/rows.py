"""The rows of the fleet page: one per (family, region), filtered, sorted and paged.

Pure: the registry state comes in as ``promotion.status.PairStatus``, the deploy stage's records
as :class:`DeployRecord`, the live plan as ``deploy.serving.plan.Plan``; nothing here reads a
store. Sorting by family or region needs no registry data, so :func:`select_pairs` pages the
pairs first and only the page's pairs are read from the registry (see ``sources.fleet_page``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from modelyard.core.errors import ModelyardError

if TYPE_CHECKING:
    from modelyard.deploy.serving.plan import Plan, Service
    from modelyard.promotion.status import PairStatus

SortKey = Literal["family", "region", "champion", "drift", "deploy", "approval"]
SORT_KEYS: tuple[str, ...] = get_args(SortKey)
CONFIG_SORTS = ("family", "region")  # sortable without reading the registry
PER_PAGE = 50
MAX_PER_PAGE = 500
AWAITING_APPROVAL = "awaiting-approval"  # promotion.decision.Outcome


class FleetQueryError(ModelyardError, ValueError):
    """A query parameter of the fleet page is not valid; the message names it and what it takes."""


@dataclass(frozen=True)
class FleetQuery:
    """What the page shows: a family (exact), a region (substring, any case), a sort and a page."""

    family: str = ""
    region: str = ""
    sort: SortKey = "family"
    descending: bool = False
    page: int = 1
    per_page: int = PER_PAGE
    pairs: tuple[str, ...] = ()  # "family/region" names: only these (a task's pairs, from its extra link)

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> FleetQuery:
        """The query of ``?family=&region=&sort=&desc=&page=&per_page=&pairs=f/r,f/r``.

        Raises:
            FleetQueryError: an unknown sort key, or a page or page size that is not a positive integer.
        """
        sort = params.get("sort") or "family"
        if sort not in SORT_KEYS:
            raise FleetQueryError(f"sort: '{sort}' is not one of {', '.join(SORT_KEYS)}")
        return cls(
            family=(params.get("family") or "").strip(),
            region=(params.get("region") or "").strip(),
            sort=sort,  # type: ignore[arg-type]  # checked against SORT_KEYS above
            descending=(params.get("desc") or "") in ("1", "true", "on"),
            page=_positive(params, "page", 1, None),
            per_page=_positive(params, "per_page", PER_PAGE, MAX_PER_PAGE),
            pairs=tuple(dict.fromkeys(p.strip() for p in (params.get("pairs") or "").split(",") if p.strip())),
        )

    def with_(self, **changes: Any) -> dict[str, str]:
        """The query string parameters of this query with ``changes`` (for links)."""
        values = {**self.__dict__, **changes}
        params = {
            "family": values["family"],
            "region": values["region"],
            "sort": values["sort"],
            "desc": "1" if values["descending"] else "",
            "page": str(values["page"]),
            "per_page": str(values["per_page"]) if values["per_page"] != PER_PAGE else "",
            "pairs": ",".join(values["pairs"]),
        }
        return {key: value for key, value in params.items() if value}


def _positive(params: Mapping[str, str], name: str, default: int, maximum: int | None) -> int:
    text = params.get(name) or ""
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise FleetQueryError(f"{name}: '{text}' is not a positive integer")
    return min(int(text), maximum) if maximum else int(text)


@dataclass(frozen=True)
class DeployRecord:
    """The last deploy of one release, as the deploy stage recorded it (its Asset event)."""

    release: str
    at: dt.datetime
    outcome: str
    strategy: str
    target: str
    plan_digest: str
    versions: Mapping[str, Mapping[str, str]]  # "family/region" -> variant -> version
    dag_id: str | None = None
    run_id: str | None = None

    @classmethod
    def from_event(
        cls, extra: Mapping[str, Any], at: dt.datetime, dag_id: str | None, run_id: str | None
    ) -> DeployRecord:
        """A record from a ``modelyard://deployed/<release>`` event's ``extra`` (staged_deploy.DeployResult)."""
        return cls(
            release=str(extra.get("release") or ""),
            at=at,
            outcome=str(extra.get("outcome") or "deployed"),
            strategy=str(extra.get("strategy") or ""),
            target=str(extra.get("target") or ""),
            plan_digest=str(extra.get("plan_digest") or ""),
            versions=dict(extra.get("versions") or {}),
            dag_id=dag_id,
            run_id=run_id,
        )


@dataclass(frozen=True)
class Serving:
    """What serves a pair: a one-line summary and the share of requests not on the primary variant."""

    summary: str
    canary_weight: int | None
    source: Literal["live plan", "deploy record"]

    @classmethod
    def from_service(cls, service: Service) -> Serving:
        from modelyard.deploy.rollout.planner import describe_service, primary_variant

        primary = primary_variant(service)
        others = sum(v.weight for v in service.variants if v.name != primary.name)
        return cls(describe_service(service), others if len(service.variants) > 1 else None, "live plan")

    @classmethod
    def from_versions(cls, versions: Mapping[str, str]) -> Serving:
        parts = [f"{name} v{version}" for name, version in versions.items()]
        return cls(" · ".join(parts), None, "deploy record")


@dataclass(frozen=True)
class FleetRow:
    """One (family, region): its registry state, what serves it and its last deploy."""

    status: PairStatus
    serving: Serving | None = None
    deploy: DeployRecord | None = None

    @property
    def awaiting_approval(self) -> bool:
        challenger = self.status.challenger
        return challenger is not None and challenger.outcome == AWAITING_APPROVAL


@dataclass(frozen=True)
class FleetPage:
    """One page of rows and where it sits in the whole selection."""

    query: FleetQuery
    rows: list[FleetRow]
    total: int
    families: list[str] = field(default_factory=list)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.query.per_page))


def select_pairs(pairs: Sequence[tuple[str, str]], query: FleetQuery) -> list[tuple[str, str]]:
    """The pairs the query's family, region and pairs filters keep, in config order."""
    region, named = query.region.lower(), set(query.pairs)
    return [
        (f, r)
        for f, r in pairs
        if (not query.family or f == query.family) and region in r.lower() and (not named or f"{f}/{r}" in named)
    ]


def page_slice(items: Sequence[Any], query: FleetQuery) -> list[Any]:
    start = (query.page - 1) * query.per_page
    return list(items[start : start + query.per_page])


def sort_pairs(pairs: Sequence[tuple[str, str]], query: FleetQuery) -> list[tuple[str, str]]:
    """Pairs sorted by family then region, or region then family."""

    def key(pair: tuple[str, str]) -> tuple[str, str]:
        return pair if query.sort == "family" else (pair[1], pair[0])

    return sorted(pairs, key=key, reverse=query.descending)


def _drift_key(row: FleetRow) -> tuple[int, str]:
    serving = row.status.serving  # its champion, or the pooled one as this region measured it
    verdict = serving.drift if serving else None
    rank = {"drifted": 3, "no_reference": 2, "too_few_samples": 2, "stable": 1}.get(verdict or "", 0)
    return rank, (serving.drift_checked_at or "") if serving else ""


_ROW_KEYS: dict[str, Callable[[FleetRow], Any]] = {
    "champion": lambda row: int(row.status.champion.version) if row.status.champion else -1,
    "drift": _drift_key,
    "deploy": lambda row: row.deploy.at.timestamp() if row.deploy else 0.0,
    "approval": lambda row: row.awaiting_approval,
}


def sort_rows(rows: Sequence[FleetRow], query: FleetQuery) -> list[FleetRow]:
    """Rows sorted by the query's key; ties keep family/region order."""
    ordered = sorted(rows, key=lambda row: (row.status.family, row.status.region))
    return sorted(ordered, key=_ROW_KEYS[query.sort], reverse=query.descending)


def last_deploys(deploys: Sequence[DeployRecord]) -> dict[str, DeployRecord]:
    """``family/region`` -> the newest deploy record that serves it."""
    last: dict[str, DeployRecord] = {}
    for record in sorted(deploys, key=lambda r: r.at):
        last.update(dict.fromkeys(record.versions, record))
    return last


def build_rows(statuses: Sequence[PairStatus], deploys: Sequence[DeployRecord], live: Plan | None) -> list[FleetRow]:
    """Each status with what serves it (the live plan, else the last deploy's record) and its last deploy."""
    services = {service.key: service for service in live.services} if live is not None else {}
    last = last_deploys(deploys)

    def row(status: PairStatus) -> FleetRow:
        key = f"{status.family}/{status.region}"
        record = last.get(key)
        service = services.get((status.family, status.region))
        if service is not None:
            return FleetRow(status, Serving.from_service(service), record)
        return FleetRow(status, Serving.from_versions(record.versions[key]) if record else None, record)

    return [row(status) for status in statuses]
