"""Time features in the region's own time zone: UTC instants to local wall-clock parts and holidays.

Timestamps are ``datetime64`` (naive means UTC) or ISO-8601 text with an offset
(``2026-03-29T01:30:00+01:00`` or ``...Z``); text without an offset is refused.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import zoneinfo
from typing import TYPE_CHECKING, Any

from modelyard.core.featurespec.definitions import Calendar, FeatureDef
from modelyard.core.featurespec.errors import TimeOffsetError
from modelyard.core.featurespec.inputs import Columns, column

if TYPE_CHECKING:
    import numpy as np

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_FIRST_YEAR, _LAST_YEAR = 1678, 2261  # what int64 nanoseconds since the epoch hold
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_NS = 1_000_000_000
SMALL_BATCH_ROWS = 16  # up to this many rows, time offsets are looked up row by row (cached)


class LocalTimes:
    """Local wall-clock seconds of the time column in the calendar's zone, computed once per batch.

    The hour, the minute and the day number every time feature derives from are computed once
    per batch too, whatever the number of time features.
    """

    def __init__(self, family: str, time_column: str, columns: Columns, calendar: Calendar) -> None:
        self._family, self._time_column = family, time_column
        self._columns, self._calendar = columns, calendar
        self._local: np.ndarray | None = None
        self._parts: dict[str, np.ndarray] = {}

    def seconds(self, feature: FeatureDef) -> np.ndarray:
        """Local wall-clock seconds since the epoch of every row (``feature`` names a missing column)."""
        if self._local is None:
            name = self._time_column
            utc_ns = epoch_ns(column(self._family, feature, self._columns, name), self._family, feature.name, name)
            self._local = local_seconds(utc_ns, self._calendar.timezone)
        return self._local

    def _part(self, feature: FeatureDef, name: str) -> np.ndarray:
        part = self._parts.get(name)
        if part is None:
            local = self.seconds(feature)
            if name == "hour":
                part = (local // 3600) % 24
            elif name == "minute":
                part = (local // 60) % 60
            elif name == "day":
                part = local // 86400
            else:  # weekday: 1970-01-01 was a Thursday; Monday is 0
                part = (self._part(feature, "day") + 3) % 7
            self._parts[name] = part
        return part

    def feature(self, feature: FeatureDef) -> np.ndarray:
        """The values of the time feature ``feature`` (a time kind)."""
        import numpy as np

        kind = feature.kind
        if kind == "hour":
            return self._part(feature, "hour")
        if kind in ("hour_sin", "hour_cos"):
            return hour_wave(kind)[self._part(feature, "hour") * 60 + self._part(feature, "minute")]
        if kind == "day_of_week":
            return self._part(feature, "weekday")
        if kind == "is_weekend":
            return (self._part(feature, "weekday") >= 5).astype(np.int64)
        days = self._part(feature, "day")
        if kind == "month":
            return days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12 + 1
        return _in_holidays(days, self._calendar)


@functools.cache
def hour_wave(kind: str) -> np.ndarray:
    """``hour_sin`` or ``hour_cos`` of each minute of the local day (1,440 values, by ``hour * 60 + minute``).

    One table that a batch and a single row both read, so a row featurised alone gets the very
    bits it gets inside a batch (numpy's vector sine need not equal its one-element sine).
    """
    import numpy as np

    hours = np.repeat(np.arange(24, dtype=np.int64), 60) + np.tile(np.arange(60, dtype=np.int64), 24) / 60.0
    angle = hours * (2 * math.pi / 24)
    table = np.sin(angle) if kind == "hour_sin" else np.cos(angle)
    table.flags.writeable = False
    return table


def _in_holidays(days: np.ndarray, calendar: Calendar) -> np.ndarray:
    import numpy as np

    starts, ends = _holiday_days(calendar.holidays)
    if not len(starts):
        return np.zeros(days.shape, dtype=np.int64)
    inside: np.ndarray = (days[:, None] >= starts) & (days[:, None] <= ends)
    return np.asarray(inside.any(axis=1), dtype=np.int64)


@functools.lru_cache(maxsize=256)
def _holiday_days(holidays: tuple[tuple[dt.date, dt.date], ...]) -> tuple[np.ndarray, np.ndarray]:
    """First and last day numbers (days since the epoch) of each holiday period, per calendar."""
    import numpy as np

    starts = np.array([start.toordinal() - _EPOCH_ORDINAL for start, _ in holidays], dtype=np.int64)
    ends = np.array([end.toordinal() - _EPOCH_ORDINAL for _, end in holidays], dtype=np.int64)
    return starts, ends


def epoch_ns(values: np.ndarray, family: str, feature: str, column: str) -> np.ndarray:
    """UTC nanoseconds since the epoch of ``datetime64`` values (naive: UTC) or offset ISO-8601 text.

    Raises:
        TimeOffsetError: a value is not a timestamp, or is text without an offset.
    """
    import numpy as np

    array = np.asarray(values)
    if array.dtype.kind == "M":
        return array.astype("datetime64[ns]").astype(np.int64)
    out = np.empty(len(array), dtype=np.int64)
    for index, value in enumerate(array.tolist()):
        out[index] = _one_epoch_ns(value, family, feature, column)
    return out


def _one_epoch_ns(value: Any, family: str, feature: str, column: str) -> int:
    where = f"family '{family}', feature '{feature}': column '{column}'"
    if isinstance(value, dt.datetime):
        moment = value
    else:
        try:
            moment = dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise TimeOffsetError(
                f"{where}: {value!r} is not a timestamp; send ISO-8601 with an offset, e.g. 2026-01-05T08:30:00+07:00"
            ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise TimeOffsetError(
            f"{where}: {value!r} has no UTC offset, so its local time is unknown; send it with its region's "
            f"offset at that time ('{moment.isoformat()}+HH:MM') or as UTC ('{moment.isoformat()}Z')"
        )
    try:
        utc = moment.astimezone(dt.UTC)
    except OverflowError:
        utc = None  # 0001-01-01T00:00+14:00 has no UTC time
    if utc is None or not _FIRST_YEAR <= utc.year <= _LAST_YEAR:
        raise TimeOffsetError(f"{where}: {str(value)[:40]!r} is not between the years {_FIRST_YEAR} and {_LAST_YEAR}")
    return ((utc - _EPOCH) // dt.timedelta(microseconds=1)) * 1000


def one_local_seconds(value: Any, family: str, feature: str, column: str, timezone: str) -> int:
    """:func:`local_seconds` of one time value (datetime or offset ISO-8601 text), without arrays.

    Raises:
        TimeOffsetError: as :func:`epoch_ns`.
    """
    seconds = _one_epoch_ns(value, family, feature, column) // _NS
    return seconds + _minute_offset(timezone, seconds // 60)


def one_month(day: int) -> int:
    """The month (1-12) of the local day number ``day`` (days since the epoch)."""
    return dt.date.fromordinal(day + _EPOCH_ORDINAL).month


def one_in_holidays(day: int, calendar: Calendar) -> int:
    """1 when the local day number ``day`` is in one of ``calendar``'s holiday periods (ends included), else 0."""
    return int(any(start <= day <= end for start, end in _holiday_periods(calendar.holidays)))


@functools.lru_cache(maxsize=256)
def _holiday_periods(holidays: tuple[tuple[dt.date, dt.date], ...]) -> tuple[tuple[int, int], ...]:
    return tuple((start.toordinal() - _EPOCH_ORDINAL, end.toordinal() - _EPOCH_ORDINAL) for start, end in holidays)


def window_keys(feature: FeatureDef, keys: Any, utc_ns: np.ndarray, timezone: str) -> Any:
    """Each row's window of a window aggregate: ``<key>|<local hour (or day) number>``, as text.

    The one definition of a window, shared by the data stage (over a region's table) and batch
    scoring (over its input, chunk by chunk): rows with the same text are counted (and averaged)
    together.

    Args:
        feature: the ``window_count`` / ``window_mean`` feature (its ``every``).
        keys: the ``key`` column's values (a pandas Series).
        utc_ns: the rows' times, UTC nanoseconds since the epoch (:func:`epoch_ns`).
        timezone: the region's IANA zone: windows are local hours and days.
    """
    from modelyard.core.featurespec.kinds import WINDOW_EVERY

    bucket = local_seconds(utc_ns, timezone) // WINDOW_EVERY[feature.every]
    return keys.astype(str) + "|" + bucket.astype(str)


def local_seconds(utc_ns: np.ndarray, timezone: str) -> np.ndarray:
    """Local wall-clock seconds since the epoch in ``timezone`` (one zone lookup per distinct minute).

    Offsets are the zone's at each whole UTC minute (every tzdb transition since 1970 is on one),
    remembered per (zone, minute), so a server asks the zone once per minute of traffic.
    """
    import numpy as np

    seconds = utc_ns // _NS
    minutes = seconds // 60
    if len(minutes) <= SMALL_BATCH_ROWS:
        # np.unique costs more than it saves on a few rows.
        offsets = [_minute_offset(timezone, minute) for minute in minutes.tolist()]
        return seconds + np.array(offsets, dtype=np.int64)
    unique, inverse = np.unique(minutes, return_inverse=True)
    return seconds + _offsets_of_minutes(unique, timezone)[inverse.reshape(-1)]


def _offsets_of_minutes(minutes: np.ndarray, timezone: str) -> np.ndarray:
    """The offsets of sorted distinct ``minutes``: two zone lookups per hour, one per minute only in an hour
    whose first and last minute differ (a transition in it; a zone never changes twice in one hour).

    A day of traffic spread over the hours asks the zone ~50 times instead of once per minute.
    """
    import numpy as np

    hours, of_hour = np.unique(minutes // 60, return_inverse=True)
    first = np.fromiter((_minute_offset(timezone, h * 60) for h in hours.tolist()), np.int64, len(hours))
    last = np.fromiter((_minute_offset(timezone, h * 60 + 59) for h in hours.tolist()), np.int64, len(hours))
    offsets = first[of_hour.reshape(-1)]
    changing = (first != last)[of_hour.reshape(-1)]
    if changing.any():
        offsets[changing] = [_minute_offset(timezone, m) for m in minutes[changing].tolist()]
    return offsets


@functools.lru_cache(maxsize=1 << 16)
def _minute_offset(timezone: str, minute: int) -> int:
    """The UTC offset in seconds of ``timezone`` at ``minute`` (minutes since the epoch)."""
    return _offset_seconds(minute * 60, _zone(timezone))


@functools.cache
def _zone(timezone: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(timezone)


def _offset_seconds(epoch_seconds: int, zone: zoneinfo.ZoneInfo) -> int:
    offset = dt.datetime.fromtimestamp(epoch_seconds, tz=zone).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0
