"""The data stage's settings: its schedule, the built-in generator, minimum rows and freshness."""

from __future__ import annotations

import datetime as dt

from pydantic import Field

from modelyard.core.config.base import Section


class Schedules(Section):
    """When the stages run on their own (cron or an Airflow preset; null: only when triggered)."""

    data_processing: str | None = "@daily"


class SyntheticSettings(Section):
    """The built-in generator: how many rows over how many days from which first day."""

    rows: int = Field(6000, ge=10)
    start: dt.date = dt.date(2026, 1, 5)
    days: int = Field(120, ge=7)


class DataSettings(Section):
    """The data stage: the generator, the fewest rows a pair may publish, and how old its newest row may be."""

    synthetic: SyntheticSettings = SyntheticSettings()
    min_rows: int = Field(500, ge=1)
    freshness_days: int = Field(3650, ge=1)
