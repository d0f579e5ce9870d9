"""The key and value layout of the online store, the same in Redis and in the embedded file (ADR 0019).

A key is ``<prefix>:<family>:<region>:<feature>:<key value>``; its value is the text
``<value>|<window end, epoch seconds>|<source>``, where the source is ``snapshot:<digest>``
(materialised by the data stage) or ``push`` (the push path). A write lands only when its
window end is not older than the stored one, so re-materialising an older snapshot never
hides a fresher pushed value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

SEPARATOR = "|"


@dataclass(frozen=True)
class OnlineValue:
    """One value to write: a feature's latest aggregate for one key of a (family, region)."""

    family: str
    region: str
    feature: str
    key: str
    value: float
    window_end: float  # epoch seconds (UTC) at which the aggregate's window ends
    source: str  # snapshot:<digest> | push

    def entry_key(self, prefix: str) -> str:
        """Where it is stored under ``prefix``."""
        return entry_key(prefix, self.family, self.region, self.feature, self.key)


@dataclass(frozen=True)
class Stored:
    """A value as read back: the aggregate, its window's end (epoch seconds) and where it came from."""

    value: float
    window_end: float
    source: str


def entry_key(prefix: str, family: str, region: str, feature: str, key: str) -> str:
    """The store key of one (family, region, feature, key value)."""
    return f"{prefix}:{family}:{region}:{feature}:{key}"


def key_text(value: Any) -> str | None:
    """A record's key field as the text keys are stored by (None: no usable key, a miss).

    Text stays as it is; a whole number is written without a fraction (``7``, ``7.0`` -> ``7``),
    so a key column read as int by the pipeline and sent as a JSON number matches.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def encode(value: OnlineValue) -> str:
    """The stored text of ``value``."""
    return f"{value.value!r}{SEPARATOR}{value.window_end!r}{SEPARATOR}{value.source}"


def decode(raw: bytes | str | None) -> Stored | None:
    """The inverse of :func:`encode`; None for no value or one this code did not write (a miss)."""
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    parts = text.split(SEPARATOR, 2)
    if len(parts) != 3:
        return None
    try:
        return Stored(float(parts[0]), float(parts[1]), parts[2])
    except ValueError:
        return None
