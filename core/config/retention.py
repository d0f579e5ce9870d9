"""What ``modelyard prune`` and the housekeeping DAG remove from storage (ADR 0035)."""

from __future__ import annotations

from pydantic import Field

from modelyard.core.config.base import Section


class RetentionSettings(Section):
    """How much history storage keeps: feature snapshots per pair and days of prediction logs.

    A snapshot that ``LATEST`` names or that a registered model version was trained on is always
    kept, whatever ``snapshots`` says. Model versions are removed only when ``versions`` is set:
    then every version an alias holds, the newest ``versions`` and every version a plan of the
    deploy target names stay (ADR 0036).
    """

    schedule: str | None = Field("@daily", description="when the housekeeping DAG prunes (null: only when triggered)")
    snapshots: int = Field(3, ge=1, description="newest snapshots kept per pair besides the ones still needed")
    sample_days: int = Field(30, ge=1, le=3650, description="prediction-log files older than this are removed")
    monitoring_days: int | None = Field(
        90, ge=1, le=3650, description="monitoring runs older than this are deleted in MLflow (null: keep all)"
    )
    monitoring_runs_per_prune: int = Field(
        50_000,
        ge=1,
        description="most monitoring runs one prune deletes, the oldest first (a backlog goes over several prunes)",
    )
    versions: int | None = Field(
        None, ge=1, description="newest model versions kept per model besides aliased and served ones (null: keep all)"
    )


def check_sample_days(retention: RetentionSettings, window_hours: int) -> None:
    """Refuse a retention shorter than the window the monitoring stage reads.

    Raises:
        ValueError: names both keys and the shortest retention that works.
    """
    if retention.sample_days * 24 < window_hours:
        raise ValueError(
            f"retention.sample_days={retention.sample_days} keeps {retention.sample_days * 24} hours of prediction "
            f"logs, less than monitoring.window_hours={window_hours} reads; set retention.sample_days to at least "
            f"{-(-window_hours // 24)}"
        )
