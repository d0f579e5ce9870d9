"""Monitoring: what servers sample and when a served pair counts as drifted (ADR 0010)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from modelyard.core.config.base import Section


class DriftBounds(Section):
    """When a served (family, region) counts as drifted (``monitoring.defaults`` / ``overrides``).

    PSI (population stability index, on the training window's quantile bins): < 0.1 stable,
    0.1-0.25 moderate, > 0.25 large. Jensen-Shannon distance (base 2, 0 = same, 1 = disjoint)
    for categorical features (category codes, hour, weekday, flags, buckets).
    """

    max_psi: float = Field(0.25, gt=0, description="numeric feature: PSI above this is drift")
    max_js: float = Field(0.2, gt=0, le=1, description="categorical feature: JS distance above this is drift")
    max_prediction_psi: float = Field(0.25, gt=0, description="served predictions vs the holdout's")
    min_samples: int = Field(200, ge=1, description="sampled rows below which no verdict is given")


class MonitoringSettings(Section):
    """The monitoring stage: what servers sample and when a pair counts as drifted (ADR 0010)."""

    schedule: str | None = "@hourly"
    window_hours: int = Field(24, ge=1, le=24 * 90, description="how far back the samples are read")
    sample_rate: float = Field(0.05, ge=0, le=1, description="share of requests a server deployed here samples")
    rotate_mb: float = Field(8.0, gt=0, le=1024, description="a sample file is published at this many MB of JSON")
    rotate_seconds: float = Field(300.0, ge=1, le=86400, description="... or at this age")
    bins: int = Field(10, ge=2, le=100, description="quantile bins of the training window for PSI")
    defaults: DriftBounds = DriftBounds()
    # "<family>" or "<family>/<region>" -> partial DriftBounds fields.
    overrides: dict[str, dict[str, Any]] = {}

    def bounds(self, family: str, region: str) -> DriftBounds:
        """The defaults with the family's, then the region's override on top."""
        merged = self.defaults.model_dump()
        for key in (family, f"{family}/{region}"):
            merged.update(self.overrides.get(key, {}))
        return DriftBounds(**merged)


def check_drift_overrides(overrides: dict[str, dict[str, Any]], families: list[str], regions: set[str]) -> None:
    """Refuse an override keyed by an unknown family or region, or that sets an invalid drift bound.

    Raises:
        ValueError: names the override key, and the valid families, regions or keys.
    """
    for key, override in overrides.items():
        family, _, region = key.partition("/")
        if family not in families or (region and region not in regions):
            raise ValueError(
                f"monitoring.overrides '{key}': expected '<family>' or '<family>/<region>' with a configured "
                f"family ({', '.join(families)}) and region ({', '.join(sorted(regions))})"
            )
        allowed = sorted(DriftBounds.model_fields)
        unknown = set(override) - set(allowed)
        if unknown:
            raise ValueError(f"monitoring.overrides '{key}': unknown keys {sorted(unknown)} (allowed: {allowed})")
        DriftBounds(**override)
