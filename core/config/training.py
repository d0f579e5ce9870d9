"""The training stage's settings: the time windows it holds out and how it stops early."""

from __future__ import annotations

from pydantic import Field

from modelyard.core.config.base import Section


class TrainingSettings(Section):
    """The training stage: holdout and validation windows (days, newest last), early stopping, the threshold."""

    holdout_days: int = Field(14, ge=1)
    validation_days: int = Field(14, ge=1)
    early_stopping_rounds: int = Field(20, ge=1)
    operating_threshold: float = Field(0.5, gt=0, lt=1)
