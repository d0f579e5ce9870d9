"""Promotion: whether a challenger that passed every gate is promoted at once or waits for a person."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from modelyard.core.config.base import Section

Approval = Literal["automatic", "required"]


class ApprovalOverride(Section):
    """The approval policy of one family, one region or one pair; unset keys keep the broader value."""

    approval: Approval | None = None
    approval_timeout: dt.timedelta | None = Field(None, gt=dt.timedelta(0))


class PromotionSettings(Section):
    """Whether a challenger that passed every gate is promoted at once or waits for a person.

    ``approval: required`` parks it in Airflow's Required Actions for at most
    ``approval_timeout`` (seconds or ISO 8601, e.g. ``PT24H``); no answer in time leaves it
    the challenger. ``overrides`` keys are ``<family>``, ``*/<region>`` or ``<family>/<region>``
    (the most specific wins). See docs/adr/0011-approval-in-airflow.md.
    """

    approval: Approval = "automatic"
    approval_timeout: dt.timedelta = Field(dt.timedelta(hours=24), gt=dt.timedelta(0))
    overrides: dict[str, ApprovalOverride] = {}


def check_approval_overrides(overrides: Mapping[str, Any], families: list[str], regions: set[str]) -> None:
    """Refuse an override keyed by anything but a configured family, ``*/<region>`` or pair.

    Raises:
        ValueError: names the override key and the configured families and regions.
    """
    for key in overrides:
        family, _, region = key.partition("/")
        known = family in families and (not region or region in regions)
        if not known and not (family == "*" and region in regions):
            raise ValueError(
                f"promotion.overrides '{key}': expected '<family>', '*/<region>' or '<family>/<region>' with a "
                f"configured family ({', '.join(families)}) and region ({', '.join(sorted(regions))})"
            )
