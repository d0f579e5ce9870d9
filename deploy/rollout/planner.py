"""Registry state -> deployment plan: which versions serve each (family, region), and how.

The planner is split in two so the rules stay pure and testable without MLflow:

* ``read_registry`` reads the aliases (``champion``, ``previous-champion``, ``challenger``,
  window aliases) of every selected pair's registered model;
* ``build_plan`` turns those ``PairState``s, the config and the run's ``PlanOptions`` into a
  ``deploy.plan.Plan``.

Plans pin versions (``models:/<name>/<version>``, never ``@alias``), contain no timestamps
and list services in config order, so the same registry state and options always give the
same plan digest: that is what makes a deploy idempotent (see docs/adr/0005-rollouts.md).

A region without a champion of its own is served by the champion of its group's pooled model
(``PairState.pooled``: the groups of ``Config.groups_of``, the most specific first; ADR 0015),
under the region's own service name, time zone and holidays (the calendar a pooled model computes the
region's time features in at serving). The plan's ``metadata`` then holds
``fallback.<family>/<region>: <pooled model> v<version> (group <group>)`` and
``PlanProposal.fallbacks`` says the same to the CLI.

Variant names are fixed: ``primary`` (the version being deployed), ``standby`` (blue-green:
the version it replaces, kept warm at weight 0), ``challenger`` (an optional weighted
split), one per config window (``deploy.windows``); shadows are ``shadow`` (the shadow
strategy) and ``challenger``.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelyard.core.errors import ModelyardError
from modelyard.deploy.serving.plan import DateWindow, HourWindow, Plan, Rule, Service, Shadow, Variant

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from modelyard.core.config import Config, DeployWindow

Strategy = Literal["rolling", "canary", "blue-green", "shadow"]
STRATEGIES: tuple[Strategy, ...] = ("rolling", "canary", "blue-green", "shadow")
PRIMARY = "primary"
STANDBY = "standby"
CHALLENGER = "challenger"
SHADOW = "shadow"
CHAMPION_ALIAS = "champion"
PREVIOUS_ALIAS = "previous-champion"
CHALLENGER_ALIAS = "challenger"
_PINNED = re.compile(r"^models:/(?P<name>[^/@\s]+)/(?P<version>[0-9]+)$")


class PlannerError(ModelyardError, ValueError):
    """The plan cannot be built; the message names the model, pair or option and what to do."""


FALLBACK_PREFIX = "fallback."


@dataclass(frozen=True)
class PooledState:
    """The registry state of a group's pooled model of a family: its name and aliases (alias -> version)."""

    group: str
    model_name: str
    aliases: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PairState:
    """The registry state of one (family, region): its model name and aliases (alias -> version).

    ``pooled``: the pooled models of the region's groups, the most specific first; the first with a
    champion serves the region while it has no champion of its own (and no version override).
    """

    family: str
    region: str
    model_name: str
    aliases: Mapping[str, str] = field(default_factory=dict)
    override: str | None = None
    pooled: tuple[PooledState, ...] = ()

    def fallback(self) -> tuple[PairState, PooledState] | None:
        """The state that serves the region from a pooled champion, and that pooled model; None when not needed."""
        if self.new_version is not None:
            return None
        for pooled in self.pooled:
            if pooled.aliases.get(CHAMPION_ALIAS):
                served = PairState(self.family, self.region, pooled.model_name, pooled.aliases)
                return served, pooled
        return None

    @property
    def key(self) -> str:
        return f"{self.family}/{self.region}"

    @property
    def champion(self) -> str | None:
        return self.aliases.get(CHAMPION_ALIAS)

    @property
    def new_version(self) -> str | None:
        """The version to deploy: the hand-picked override, else the champion."""
        return self.override or self.champion

    @property
    def current_version(self) -> str | None:
        """The version the new one replaces: the champion under an override, else previous-champion."""
        current = self.champion if self.override else self.aliases.get(PREVIOUS_ALIAS)
        return current if current != self.new_version else None

    def uri(self, version: str) -> str:
        return f"models:/{self.model_name}/{version}"


class PlanOptions(BaseModel):
    """What the planner needs of a resolved ``DeployRequest`` (``DeployRequest.plan_options``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    families: list[str] = []
    regions: list[str] = []
    version: str | None = Field(default=None, pattern=r"^[0-9]+$")
    strategy: Strategy = "rolling"
    challenger_weight: int = Field(default=0, ge=0, le=99)
    shadow_challenger: bool = False
    force: bool = False  # roll out a version needing raw fields live clients are not sending (raw_fields)


@dataclass(frozen=True)
class PlanProposal:
    """A built plan, the pairs planned from the registry and the pairs left out (key -> reason)."""

    plan: Plan
    planned: list[str]
    skipped: dict[str, str]
    kept: list[str]
    fallbacks: dict[str, str] = field(default_factory=dict)  # key -> "<pooled model> v<N> (group <g>)"
    raw_fields: dict[str, str] = field(default_factory=dict)  # key -> what clients must send (raw_fields.py)
    windows_over: dict[str, str] = field(default_factory=dict)  # key -> the festival windows it no longer plans


def selected_pairs(config: Config, options: PlanOptions) -> list[tuple[str, str]]:
    """The (family, region) pairs the options select; a version override needs exactly one.

    Raises:
        PlannerError: unknown family/region, or ``version`` with several pairs.
    """
    from modelyard.core.config import ConfigError

    try:
        pairs = config.pairs(options.families or None, options.regions or None)
    except ConfigError as exc:
        raise PlannerError(str(exc)) from exc
    if options.version and len(pairs) != 1:
        raise PlannerError(
            f"version {options.version} names one model: select exactly one family and one region "
            f"(selected {len(pairs)} pairs)"
        )
    return pairs


def read_registry(client: MlflowClient, config: Config, options: PlanOptions) -> list[PairState]:
    """The aliases of every selected pair's registered model (empty for unregistered models).

    Raises:
        PlannerError: the selection is invalid or the override version does not exist.
    """
    from modelyard.core.catalog import aliases_of

    pairs = selected_pairs(config, options)
    names = {pair: config.mlflow.model_name(*pair) for pair in pairs}
    if options.version:
        for name in names.values():
            _check_version(client, name, options.version)
    groups = {region: config.groups_of(region) for region in {r for _, r in pairs}}
    pooled = {(f, g): config.pooled_model_name(f, g) for f, r in pairs for g in groups[r]}
    # paginated: a few requests for thousands of models (and one pooled model per family and group)
    current = aliases_of(client, [*names.values(), *pooled.values()])
    return [
        PairState(
            family, region, names[(family, region)], current[names[(family, region)]], options.version,
            tuple(PooledState(g, pooled[(family, g)], current[pooled[(family, g)]]) for g in groups[region]),
        )
        for family, region in pairs
    ]  # fmt: skip


def _check_version(client: MlflowClient, name: str, version: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(name, version)
    except MlflowException as exc:
        raise PlannerError(
            f"registered model '{name}' has no version {version}; list its versions in the MLflow UI "
            "or with `modelyard status`"
        ) from exc


def build_plan(
    config: Config,
    states: list[PairState],
    options: PlanOptions,
    live: Plan | None = None,
    *,
    now: dt.datetime | None = None,
) -> PlanProposal:
    """The plan for ``states``; services of ``live`` outside a narrowed selection are kept as they are.

    Without a family/region filter the plan covers exactly the configured pairs, so a
    region removed from the config is removed from serving. ``now`` (default: the current
    time) decides which festival dates are over (:func:`plan_service`).

    Raises:
        PlannerError: no service could be planned (no champion anywhere, nothing live).
    """
    services: dict[str, Service] = {}
    planned, skipped, kept, fallbacks, windows_over = [], {}, [], {}, {}
    at = now or dt.datetime.now(dt.UTC)
    for state in states:
        fallback = state.fallback()
        served = fallback[0] if fallback else state
        service = plan_service(config, served, options, at)
        if service is None:
            skipped[state.key] = _no_champion(state)
            continue
        services[state.key] = service
        planned.append(state.key)
        if over := _windows_over(config, served, _local_date(config, served, at)):
            windows_over[state.key] = over
        if fallback:
            fallbacks[state.key] = _fallback_note(fallback[1])
    narrowed = bool(options.families or options.regions)
    for service in live.services if live else []:
        key = f"{service.family}/{service.region}"
        if key not in services and (narrowed or key in skipped):
            services[key] = service
            kept.append(key)
            if live and (note := live.metadata.get(f"{FALLBACK_PREFIX}{key}")):
                fallbacks[key] = note
    if not services:
        reasons = "; ".join(f"{k}: {why}" for k, why in skipped.items()) or "no pair selected"
        raise PlannerError(f"nothing to deploy: {reasons}")
    order = {f"{f}/{r}": i for i, (f, r) in enumerate(config.pairs())}
    ordered = sorted(services.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))
    metadata = {f"{FALLBACK_PREFIX}{key}": note for key, note in sorted(fallbacks.items())}
    plan = Plan(services=[s for _, s in ordered], metadata=metadata)
    return PlanProposal(plan, planned, skipped, kept, fallbacks, windows_over=windows_over)


def _no_champion(state: PairState) -> str:
    reason = (
        f"model '{state.model_name}' has no champion alias: promote a version first "
        "(`modelyard promote`) or pass a version"
    )
    if state.pooled:
        names = ", ".join(f"'{p.model_name}'" for p in state.pooled)
        reason += f"; nor has the pooled model of its group ({names}: `modelyard train --pooled`, then promote it)"
    return reason


def _fallback_note(pooled: PooledState) -> str:
    return f"{pooled.model_name} v{pooled.aliases[CHAMPION_ALIAS]} (group {pooled.group})"


def fallbacks_of(plan: Plan) -> dict[str, str]:
    """``family/region`` -> the pooled model serving it, for the services a plan serves by a fallback."""
    return {key.removeprefix(FALLBACK_PREFIX): note for key, note in plan.metadata.items()
            if key.startswith(FALLBACK_PREFIX)}  # fmt: skip


def plan_service(
    config: Config, state: PairState, options: PlanOptions, now: dt.datetime | None = None
) -> Service | None:
    """The service of one pair under ``options``; None when there is no version to serve.

    A festival window keeps only the region's festivals not over at ``now`` (the region's local
    date): once all are over its rule and the version it loads leave the plan, so the next deploy
    unloads a festival model instead of keeping it for a date that never comes back.
    """
    new = state.new_version
    if new is None:
        return None
    variants = [Variant(name=PRIMARY, model_uri=state.uri(new), weight=100)]
    shadows: list[Shadow] = []
    current = state.current_version
    if options.strategy == "shadow" and current is not None:
        variants = [Variant(name=PRIMARY, model_uri=state.uri(current), weight=100)]
        shadows.append(Shadow(name=SHADOW, model_uri=state.uri(new)))
    elif options.strategy == "blue-green" and current is not None:
        variants.append(Variant(name=STANDBY, model_uri=state.uri(current), weight=0))
    variants, shadows = _challenger(state, options, variants, shadows)
    region = config.region(state.region)
    variants, rules = _windows(config, state, variants, _local_date(config, state, now or dt.datetime.now(dt.UTC)))
    return Service(
        family=state.family,
        region=state.region,
        timezone=region.timezone,
        variants=variants,
        rules=rules,
        shadows=shadows,
        holidays=[DateWindow(start=start, end=end) for start, end in region.calendar().holidays],
    )


def _challenger(
    state: PairState, options: PlanOptions, variants: list[Variant], shadows: list[Shadow]
) -> tuple[list[Variant], list[Shadow]]:
    version = state.aliases.get(CHALLENGER_ALIAS)
    used = {v.model_uri for v in variants} | {s.model_uri for s in shadows}
    if version is None or state.uri(version) in used:
        return variants, shadows
    if options.challenger_weight:
        primary = variants[0]
        split = primary.model_copy(update={"weight": primary.weight - options.challenger_weight})
        challenger = Variant(name=CHALLENGER, model_uri=state.uri(version), weight=options.challenger_weight)
        return [split, *variants[1:], challenger], shadows
    if options.shadow_challenger:
        return variants, [*shadows, Shadow(name=CHALLENGER, model_uri=state.uri(version))]
    return variants, shadows


def _local_date(config: Config, state: PairState, now: dt.datetime) -> dt.date:
    return now.astimezone(zoneinfo.ZoneInfo(config.region(state.region).timezone)).date()


def _applies(window: DeployWindow, state: PairState) -> bool:
    return (not window.families or state.family in window.families) and (
        not window.regions or state.region in window.regions
    )


def _windows_over(config: Config, state: PairState, today: dt.date) -> str | None:
    """Why festival windows with a version to serve are left out of the pair's plan: every festival is over."""
    festivals = config.region(state.region).festivals
    if not festivals or any(f.end >= today for f in festivals):
        return None
    notes = [
        f"window {window.name}: every festival of {state.region} is over (the last ended "
        f"{max(f.end for f in festivals).isoformat()}), so its '{window.alias}' version v{version} is no longer "
        "loaded; add the next festival's dates to regions[].festivals to route to it again"
        for window in config.deploy.windows
        if window.festivals and _applies(window, state) and (version := state.aliases.get(window.alias))
    ]
    return "; ".join(notes) or None


def _windows(
    config: Config, state: PairState, variants: list[Variant], today: dt.date
) -> tuple[list[Variant], list[Rule]]:
    rules = []
    for window in config.deploy.windows:
        if not _applies(window, state):
            continue
        version = state.aliases.get(window.alias)
        rule = _window_rule(config, state, window, today)
        if version is None or rule is None:
            continue
        uri = state.uri(version)
        target = next((v.name for v in variants if v.model_uri == uri), None)
        if target is None:
            variants = [*variants, Variant(name=window.name, model_uri=uri, weight=0)]
            target = window.name
        rules.append(rule.model_copy(update={"variant": target}))
    return variants, rules


def _window_rule(config: Config, state: PairState, window: DeployWindow, today: dt.date) -> Rule | None:
    dates: list[DateWindow] = []
    if window.festivals:
        festivals = config.region(state.region).festivals
        dates = [DateWindow(start=f.start, end=f.end) for f in festivals if f.end >= today]
        if not dates:
            return None  # no festival in the region, or all of them over: the window never holds again
    hours = HourWindow(start=window.hours[0], end=window.hours[1]) if window.hours else None
    return Rule(name=window.name, variant=PRIMARY, dates=dates, weekdays=list(window.weekdays), hours=hours)


# ---------------------------------------------------------------------------- reading plans


def pinned_ref(model_uri: str) -> tuple[str, str] | None:
    """``(name, version)`` of a pinned ``models:/<name>/<version>`` URI; None for an alias URI."""
    match = _PINNED.match(model_uri)
    return (match["name"], match["version"]) if match else None


def version_of(model_uri: str) -> str:
    """The version of a pinned ``models:/<name>/<version>`` URI (the alias for ``@alias`` URIs)."""
    match = _PINNED.match(model_uri)
    return match["version"] if match else model_uri.rpartition("@")[2]


def primary_variant(service: Service) -> Variant:
    """The variant named ``primary``, else the heaviest one (first on a tie)."""
    named = next((v for v in service.variants if v.name == PRIMARY), None)
    return named or max(service.variants, key=lambda v: v.weight)


def service_versions(service: Service) -> dict[str, str]:
    """Variant/shadow name -> version, e.g. ``{"primary": "4", "standby": "3"}``; shadows as ``shadow:<name>``."""
    versions = {v.name: version_of(v.model_uri) for v in service.variants}
    versions.update({f"shadow:{s.name}": version_of(s.model_uri) for s in service.shadows})
    return versions


def plan_versions(plan: Plan) -> dict[str, dict[str, str]]:
    """``family/region`` -> ``service_versions``, for results, asset events and the diff."""
    return {f"{s.family}/{s.region}": service_versions(s) for s in plan.services}


def describe_service(service: Service | None) -> str:
    """A one-line summary, e.g. ``primary v4 90% · challenger v5 10% · shadow v6 · rule festival→festival``.

    A variant serving another registered model than the pair's own (a region group's pooled model) names it:
    ``primary driver_acceptance-country-id v1 100%``.
    """
    if service is None:
        return "-"

    def model(uri: str) -> str:  # named only when it is not the pair's own (a group's pooled model)
        name = (pinned_ref(uri) or ("", ""))[0]
        return "" if not name or (service.family in name and service.region in name) else f"{name} "

    parts = [f"{v.name} {model(v.model_uri)}v{version_of(v.model_uri)} {v.weight}%" for v in service.variants]
    parts += [f"shadow {s.name} {model(s.model_uri)}v{version_of(s.model_uri)}" for s in service.shadows]
    parts += [f"rule {r.name}→{r.variant}" for r in service.rules]
    return " · ".join(parts)


def _sources(service: Service) -> list[str | None]:
    return [m.source for m in [*service.variants, *service.shadows]]


def _with_sources(service: Service) -> str:
    """``describe_service`` and each model's pinned source: what tells a recreated version from the old one."""
    sources = [f"{m.name} from {m.source or 'an unpinned source'}" for m in [*service.variants, *service.shadows]]
    return f"{describe_service(service)} ({'; '.join(sources)})"


def _changed_fields(old: Service, new: Service) -> list[str]:
    """The service's fields that differ (``timezone``, ``holidays``, ...), for a change the summary does not show."""
    before, after = old.model_dump(mode="json"), new.model_dump(mode="json")
    return [name for name in after if before.get(name) != after[name]]


@dataclass(frozen=True)
class ServiceChange:
    """How one service differs between the live plan and a new one."""

    key: str
    change: Literal["added", "removed", "changed", "unchanged"]
    before: str
    after: str


def diff_plans(live: Plan | None, new: Plan) -> list[ServiceChange]:
    """Per service (new plan order, then removed ones): added, removed, changed or unchanged."""
    before = {f"{s.family}/{s.region}": s for s in (live.services if live else [])}
    changes = []
    for service in new.services:
        key = f"{service.family}/{service.region}"
        old = before.pop(key, None)
        kind: Literal["added", "changed", "unchanged"] = (
            "added" if old is None else ("unchanged" if old == service else "changed")
        )
        before_text, after_text = describe_service(old), describe_service(service)
        if kind == "changed" and old is not None and before_text == after_text:
            if _sources(old) != _sources(service):  # the same versions, made from other models
                before_text, after_text = _with_sources(old), _with_sources(service)
            else:  # a time zone, the holidays
                after_text = f"{after_text} (changed: {', '.join(_changed_fields(old, service))})"
        changes.append(ServiceChange(key, kind, before_text, after_text))
    changes += [ServiceChange(key, "removed", describe_service(s), "-") for key, s in before.items()]
    return changes
