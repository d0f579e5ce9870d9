"""Regions: where a pair's data comes from, with its time zone and festival calendar."""

from __future__ import annotations

import datetime as dt
import zoneinfo

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
