"""What a declaration is made of: one feature's definition and a region's calendar, JSON both ways."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelyard.core.featurespec.errors import FeatureSpecError


@dataclass(frozen=True)
class Calendar:
    """What the time features need of a region: its name, IANA time zone and holiday periods."""

    region: str
    timezone: str
    holidays: tuple[tuple[dt.date, dt.date], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the holidays as pairs of ISO dates."""
        holidays = [[start.isoformat(), end.isoformat()] for start, end in self.holidays]
        return {"region": self.region, "timezone": self.timezone, "holidays": holidays}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calendar:
        """The inverse of :meth:`to_dict`."""
        holidays = tuple((dt.date.fromisoformat(s), dt.date.fromisoformat(e)) for s, e in data.get("holidays", []))
        return cls(str(data["region"]), str(data["timezone"]), holidays)


@dataclass(frozen=True)
class FeatureDef:
    """One declared feature. Only the fields of its ``kind`` are used (see the package docstring)."""

    name: str
    kind: str = "column"
    column: str | None = None  # the input column; default: the name (column) or the time column (time kinds)
    inputs: tuple[str, ...] = ()  # function
    function: str | None = None  # function: "package.module:name"
    lower: float | None = None  # clip
    upper: float | None = None  # clip
    edges: tuple[float, ...] | None = None  # bucket, declared
    buckets: int | None = None  # bucket, learnt quantile edges
    op: str | None = None  # compare
    value: float | None = None  # compare
    key: str | None = None  # window: the column grouped by
    every: str = "hour"  # window: hour | day
    relative: bool = True  # window_count: divided by the mean count over keys and buckets
    dtype: str = "float"  # function: float | int
    online: bool = False  # window: looked up in the online store by ``key`` at request time (ADR 0019)
    default: float | None = None  # online: the value served when the store has none (or does not answer)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the fields that are set."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, ())}
        if not self.online:  # a spec without online features reads as before (same JSON, same digests)
            out.pop("online")
        if self.edges is not None:
            out["edges"] = list(self.edges)
        if self.inputs:
            out["inputs"] = list(self.inputs)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureDef:
        """The inverse of :meth:`to_dict`.

        Raises:
            FeatureSpecError: a key that is no field (names the feature and the allowed keys).
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FeatureSpecError(f"feature '{data.get('name')}': unknown keys {unknown} (allowed: {sorted(known)})")
        values = dict(data)
        if values.get("inputs") is not None:
            values["inputs"] = tuple(values["inputs"])
        if values.get("edges") is not None:
            values["edges"] = tuple(float(e) for e in values["edges"])
        return cls(**values)
