"""Pushed values: what the push path (CLI and the admin endpoint) accepts, checked into :class:`OnlineValue` s.

A push is a list of objects ``{"feature", "key", "value", "window_end"?}`` for one (family, region):
``feature`` one of the family's online features, ``key`` the key value (text or a whole number),
``value`` a finite number, ``window_end`` ISO-8601 with an offset or epoch seconds (default: now).
Each value is tagged ``push``; it lands unless the store holds a newer window's value.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Collection, Sequence
from typing import Any

from modelyard.core.errors import ModelyardError
from modelyard.core.online.layout import OnlineValue, key_text

MAX_PUSHED_VALUES = 100_000


class PushError(ModelyardError, ValueError):
    """A pushed value that cannot be written; ``field`` names it (``values[3].value``), and so does the message."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def pushed_values(
    items: Any, family: str, region: str, online: Collection[str], now: float | None = None
) -> list[OnlineValue]:
    """Check ``items`` (parsed JSON) against the (family, region)'s online features ``online``.

    Raises:
        PushError: the first item that does not fit, naming it and what to send.
    """
    if not isinstance(items, list) or not items:
        given = "an empty list" if isinstance(items, list) else "not a list"
        raise PushError(f"values is {given}; send a non-empty JSON list of {{feature, key, value}} objects", "values")
    if len(items) > MAX_PUSHED_VALUES:
        raise PushError(f"values holds {len(items)} items; send at most {MAX_PUSHED_VALUES} a call", "values")
    if not online:
        raise PushError(f"family '{family}' declares no online feature (add online: true to a window aggregate)", "")
    moment = time.time() if now is None else now
    return [_value(item, f"values[{i}]", family, region, online, moment) for i, item in enumerate(items)]


def _value(item: Any, where: str, family: str, region: str, online: Collection[str], now: float) -> OnlineValue:
    if not isinstance(item, dict):
        raise PushError(f"{where} is {type(item).__name__}; send an object {{feature, key, value}}", where)
    unknown = sorted(set(item) - {"feature", "key", "value", "window_end"})
    if unknown:
        raise PushError(f"{where} has unknown fields {unknown}; send feature, key, value, window_end", where)
    feature = item.get("feature")
    if feature not in online:
        raise PushError(
            f"{where}.feature is {feature!r}: not an online feature of family '{family}' "
            f"(online: {', '.join(sorted(online))})",
            f"{where}.feature",
        )
    key = key_text(item.get("key"))
    if key is None or not key:
        raise PushError(
            f"{where}.key is {item.get('key')!r}; send the key value as text or a whole number", f"{where}.key"
        )
    value = item.get("value")
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise PushError(f"{where}.value is {value!r}; send a finite JSON number", f"{where}.value")
    ended = window_end_of(item.get("window_end"), now, f"{where}.window_end")
    return OnlineValue(family, region, str(feature), key, float(value), ended, "push")


def window_end_of(given: Any, now: float, where: str) -> float:
    """Epoch seconds of a pushed ``window_end`` (None: ``now``).

    Raises:
        PushError: neither epoch seconds nor ISO-8601 text with an offset.
    """
    if given is None:
        return now
    if type(given) in (int, float) and math.isfinite(given):
        return float(given)
    try:
        moment = dt.datetime.fromisoformat(given) if isinstance(given, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise PushError(
            f"{where} is {given!r}; send ISO-8601 with an offset (2026-06-01T08:00:00+07:00) or epoch seconds", where
        )
    return moment.timestamp()


def online_names(features: Sequence[Any]) -> list[str]:
    """The names of the online features among ``features`` (feature definitions or declarations)."""
    return [f.name for f in features if getattr(f, "online", False)]
