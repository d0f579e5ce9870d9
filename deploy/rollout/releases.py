"""Sharding: one Helm release per region group, so thousands of region models spread out.

``deploy.kubernetes.releases`` in the config maps a release name to its regions. A plan is
split by release (each shard keeps the services of its regions and every plan-wide
setting), and each shard becomes the values of one ``helm/modelyard-serving`` release.

A shard's plan replaces what that release serves, so callers pass a plan that covers
every region of each release they touch (the planner keeps the live services of regions
not being changed).
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelyard.core.config import Config
from modelyard.core.errors import ModelyardError
from modelyard.deploy.serving.plan import Plan

# Helm release names are DNS-1123 labels of at most 53 characters.
RELEASE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_RELEASE_NAME = 53
CHART_REGION = re.compile(r"^[a-z][a-z0-9_]*$")  # values.schema.json: shard.regions items
MAX_CHART_REGION = 63


class ShardingError(ModelyardError, ValueError):
    """The release map or the plan cannot be sharded; the message names the release or region."""


@dataclass(frozen=True)
class Shard:
    """The part of a plan one Helm release serves."""

    release: str
    regions: tuple[str, ...]
    plan: Plan

    @property
    def plan_digest(self) -> str:
        """The digest of this shard's plan (what the release's pods report on /admin/plan)."""
        return self.plan.digest()


def release_groups(config: Config) -> dict[str, list[str]]:
    """Release name → regions, from ``deploy.kubernetes.releases``.

    Without a release map every region goes to one release named after the project.

    Raises:
        ShardingError: a release name is not a valid Helm release name, a region is in two
            releases, or a configured region is in none.
    """
    groups = dict(config.deploy.kubernetes.releases) or {config.project: config.region_names}
    for name in groups:
        check_release_name(name)
    owner: dict[str, str] = {}
    for name, regions in groups.items():
        for region in regions:
            if region in owner:
                raise ShardingError(
                    f"deploy.kubernetes.releases: region '{region}' is in both '{owner[region]}' and '{name}'; "
                    "keep it in one release"
                )
            owner[region] = name
    missing = [r for r in config.region_names if r not in owner]
    if missing:
        raise ShardingError(
            f"deploy.kubernetes.releases: regions {missing} are in no release; add them to one "
            "(or remove the releases map to serve every region from one release)"
        )
    return groups


def check_release_name(name: str) -> str:
    """Return ``name`` if Helm accepts it as a release name.

    Raises:
        ShardingError: the name is too long or not a lowercase DNS label.
    """
    if len(name) > MAX_RELEASE_NAME or not RELEASE_NAME.match(name):
        raise ShardingError(
            f"deploy.kubernetes.releases: '{name}' is not a valid Helm release name "
            f"(lowercase letters, digits and '-', at most {MAX_RELEASE_NAME} characters)"
        )
    return name


def split_plan(plan: Plan, groups: Mapping[str, Sequence[str]]) -> list[Shard]:
    """Split ``plan`` into one shard per release that serves at least one of its services.

    Args:
        plan: The whole deployment plan.
        groups: Release name → regions (see :func:`release_groups`).

    Raises:
        ShardingError: the plan serves a region that no release lists.
    """
    owner = {region: release for release, regions in groups.items() for region in regions}
    orphans = sorted({s.region for s in plan.services if s.region not in owner})
    if orphans:
        raise ShardingError(
            f"the plan serves regions {orphans} that no release in deploy.kubernetes.releases lists; add them to one"
        )
    shards = []
    for release, regions in groups.items():
        services = [s for s in plan.services if owner[s.region] == release]
        if services:
            shards.append(Shard(release, tuple(regions), plan.model_copy(update={"services": services})))
    return shards


def release_values(shard: Shard, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The chart values of one release: ``base`` (``deploy.kubernetes.values``) plus the shard.

    The result is plain JSON data, so it compares equal to what ``helm get values`` returns
    for the same release (the idempotency check relies on that).
    """
    values = copy.deepcopy(dict(base or {}))
    shard_values: dict[str, Any] = {
        "plan": shard.plan.model_dump(mode="json"),
        "planDigest": shard.plan_digest,
        "shard": {"name": shard.release, "regions": [chart_region_name(r) for r in shard.regions]},
    }
    return _merge(values, shard_values)


def chart_region_name(region: str) -> str:
    """``region`` as the chart's values accept it (``^[a-z][a-z0-9_]*$``), one to one.

    A config region may be ``JKT`` or ``7``; a name the chart accepts stays as it is, any other
    is lower-cased, its other characters become ``_``, it gets an ``r`` in front if it does not
    start with a letter, and a short hash of the original at the end, so that ``JKT`` and ``jkt``
    (both valid, different regions) stay apart: ``JKT`` -> ``jkt_<6 hex>``, ``7`` -> ``r7_<6 hex>``.
    """
    if CHART_REGION.match(region):
        return region
    slug = re.sub(r"[^a-z0-9_]", "_", region.lower())
    if not slug[:1].isalpha():
        slug = f"r{slug}"
    suffix = hashlib.blake2b(region.encode(), digest_size=3).hexdigest()
    return f"{slug[: MAX_CHART_REGION - 7]}_{suffix}"


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict) and key != "plan":
            base[key] = _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base
