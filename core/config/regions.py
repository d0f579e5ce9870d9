"""Regions: where a pair's data comes from, with its time zone and festival calendar; and region groups.

A region group pools the rows of several regions for one model per (family, group) that serves
the members without a model of their own (docs/adr/0015-region-groups-and-pooled-models.md).
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Mapping
from typing import Literal

from pydantic import Field, field_validator, model_validator

from modelyard.core import featurespec
from modelyard.core.config.base import Section


class Festival(Section):
    """A named period of local dates (both ends included) when a region behaves differently."""

    name: str
    start: dt.date
    end: dt.date

    @model_validator(mode="after")
    def _ordered(self) -> Festival:
        if self.end < self.start:
            raise ValueError(f"festival '{self.name}' ends ({self.end}) before it starts ({self.start})")
        return self


class Region(Section):
    """A place with its own behaviour, IANA time zone and festival calendar."""

    # Whatever the data's region column holds: a city code (JKT), a name (jakarta) or a numeric id (7).
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
    country: str = Field(min_length=2, max_length=2)
    timezone: str
    festivals: list[Festival] = []

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone '{value}' (use an IANA name such as Asia/Jakarta)") from exc
        return value

    def calendar(self) -> featurespec.Calendar:
        """What the time features need: the zone and the festival dates."""
        holidays = tuple((f.start, f.end) for f in self.festivals)
        return featurespec.Calendar(self.name, self.timezone, holidays)


# --- region groups -------------------------------------------------------------------------

ALL_REGIONS = "all"
GROUP_NAME_PATTERN = r"^[a-z][a-z0-9_\-]*$"
COUNTRY_GROUP_PREFIX = "country-"

GroupDecl = list[str] | Literal["all"]


def country_group_name(country: str) -> str:
    """The default group of a country's regions: ``country-<code in lower case>`` (``country-id``)."""
    return f"{COUNTRY_GROUP_PREFIX}{country.lower()}"


def resolve_groups(declared: Mapping[str, GroupDecl], countries: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """Every region group, name -> member regions in config order (ADR 0015).

    The regions of one country form the group ``country-<code>`` when the country has two or more
    regions; ``groups`` in the config adds groups (a list of regions, or ``all``) and may redefine a
    country group under its name. A group pools at least two regions.

    Args:
        declared: The config's ``groups``.
        countries: Every region's country, by region name, in config order.

    Raises:
        ValueError: a group name is invalid or is a region's name, a member is unknown or repeated,
            or a group has fewer than two regions (the message names ``groups.<name>``).
    """
    names = list(countries)
    by_country: dict[str, list[str]] = {}
    for region, country in countries.items():
        by_country.setdefault(country, []).append(region)
    groups = {country_group_name(c): tuple(members) for c, members in by_country.items() if len(members) > 1}
    for name, declaration in declared.items():
        groups[name] = _declared_members(name, declaration, names)
    clash = sorted(set(groups) & set(names))
    if clash:
        raise ValueError(
            f"groups: {clash} are both a region group and a region; rename the region or declare the group "
            "under another name (a group's pooled model needs a name of its own)"
        )
    return groups


def _declared_members(name: str, members: GroupDecl, regions: list[str]) -> tuple[str, ...]:
    key = f"groups.{name}"
    if not re.match(GROUP_NAME_PATTERN, name):
        raise ValueError(f"{key}: a group name is lower case letters, digits, '_' or '-' (e.g. java or country-id)")
    if name in regions:
        raise ValueError(f"{key}: '{name}' is a region's name; a group's pooled model needs a name of its own")
    if members == ALL_REGIONS:
        chosen = tuple(regions)
    else:
        unknown = [m for m in members if m not in regions]
        if unknown:
            raise ValueError(f"{key}: unknown regions {unknown} (configured: {', '.join(regions)})")
        repeated = sorted({m for m in members if members.count(m) > 1})
        if repeated:
            raise ValueError(f"{key}: regions {repeated} are listed twice")
        chosen = tuple(r for r in regions if r in members)  # config order: the pooled rows do not depend on it
    if len(chosen) < 2:
        raise ValueError(f"{key}: a group pools at least two regions, got {list(chosen)}")
    return chosen


def groups_serving(groups: Mapping[str, tuple[str, ...]], region: str) -> list[str]:
    """The groups ``region`` belongs to, the most specific (fewest regions) first, ties in declaration order."""
    mine = [name for name, members in groups.items() if region in members]
    return sorted(mine, key=lambda name: len(groups[name]))
