"""The data stage's settings: its schedule, the built-in generator, minimum rows and freshness."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import Field, model_validator

from modelyard.core.config.base import Section


class Schedules(Section):
    """When the stages run on their own (cron or an Airflow preset; null: only when triggered)."""

    data_processing: str | None = "@daily"


class SyntheticSettings(Section):
    """The built-in generator: how many rows (per region, ``rows_by_region`` over ``rows``) over how many days."""

    rows: int = Field(6000, ge=10)
    start: dt.date = dt.date(2026, 1, 5)
    days: int = Field(120, ge=7)
    # A region named here gets this many rows instead of ``rows``: a new market with little data (ADR 0015).
    rows_by_region: dict[str, Annotated[int, Field(ge=10)]] = {}

    def rows_of(self, region: str) -> int:
        """The rows the generator makes for ``region``."""
        return self.rows_by_region.get(region, self.rows)


POOLED_ROWS_DEFAULT = 50


class DataSettings(Section):
    """The data stage: the generator, the rows a region needs, and how old its newest row may be.

    A region with ``min_rows`` rows or more gets a model of its own. One with fewer, but at least
    ``min_pooled_rows`` (default: 50, or ``min_rows`` when smaller), is still published, *pooled
    only*: its rows train its group's pooled model, which serves it (ADR 0015). Fewer still: skipped.
    """

    synthetic: SyntheticSettings = SyntheticSettings()
    min_rows: int = Field(500, ge=1)
    freshness_days: int = Field(3650, ge=1)
    min_pooled_rows: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _pooled_below_own(self) -> DataSettings:
        if self.min_pooled_rows is not None and self.min_pooled_rows > self.min_rows:
            raise ValueError(
                f"min_pooled_rows ({self.min_pooled_rows}) is more than min_rows ({self.min_rows}): a region with "
                "enough rows for a model of its own always has enough to be pooled"
            )
        return self

    @property
    def pooled_floor(self) -> int:
        """The fewest rows a region's snapshot is published with (for its group's pooled model)."""
        return self.min_pooled_rows if self.min_pooled_rows is not None else min(POOLED_ROWS_DEFAULT, self.min_rows)

    def own_model(self, rows: int) -> bool:
        """Whether ``rows`` rows are enough for a model of the region's own (``min_rows``)."""
        return rows >= self.min_rows
