"""A seeded, deterministic generator of realistic ride-hailing bookings for one region.

Each region gets its own behaviour (demand, distances, road speed, how choosy drivers
are), derived from its name, so a region added to the config behaves like a real,
different city without any code change. Festival windows from the config shift the
behaviour (more demand, surge up, acceptance down, slower pickups): the reason models
go stale. New drivers join in waves and behave differently while they are new.

The raw columns are those of :data:`RAW_COLUMNS`; both labels (``accepted`` and
``pickup_eta_min``) are present, so every model family can be built from the same
bookings.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelyard.core.config import Config, Region

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

RAW_COLUMNS = (
    "booking_id",
    "event_time",
    "region",
    "pickup_area",
    "pickup_distance_km",
    "driver_id",
    "driver_rating",
    "driver_acceptance_rate",
    "driver_tenure_days",
    "surge_multiplier",
    "accepted",
    "pickup_eta_min",
)
PICKUP_AREAS = ("central", "business_district", "north", "south", "east", "west", "airport", "suburbs")
# Relative booking volume per local hour: a morning and an evening peak, quiet nights.
HOURLY_DEMAND = (
    0.35, 0.2, 0.12, 0.1, 0.12, 0.3, 0.7, 1.3, 1.6, 1.2, 0.9, 0.9,
    1.0, 0.95, 0.85, 0.9, 1.1, 1.5, 1.7, 1.4, 1.1, 0.9, 0.7, 0.5,
)  # fmt: skip
NEW_DRIVER_DAYS = 30


@dataclass(frozen=True)
class RegionProfile:
    """How one region behaves; derived from the region's name, so it is stable."""

    demand: float  # relative booking volume
    distance_km: float  # median distance from the offered driver to the pickup
    speed_kmh: float  # typical pickup speed through traffic
    acceptance_bias: float  # log-odds shift: how willing drivers are in this city
    surge_level: float  # typical surge above 1.0
    area_weights: tuple[float, ...]  # booking share of each pickup area


def region_profile(region: str) -> RegionProfile:
    """The behaviour of ``region``: a pure function of its name."""
    import numpy as np

    rng = np.random.default_rng(_stable_seed("profile", region))
    weights = rng.dirichlet(np.full(len(PICKUP_AREAS), 2.0))
    return RegionProfile(
        demand=float(rng.uniform(0.6, 1.6)),
        distance_km=float(rng.uniform(1.2, 3.5)),
        speed_kmh=float(rng.uniform(14.0, 30.0)),
        acceptance_bias=float(rng.uniform(-0.5, 0.7)),
        surge_level=float(rng.uniform(0.05, 0.35)),
        area_weights=tuple(float(w) for w in weights),
    )


def _stable_seed(*parts: object) -> int:
    """A seed from strings that does not change between processes (unlike ``hash``)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def generate_bookings(
    region: Region,
    rows: int,
    *,
    start: dt.date,
    days: int,
    seed: int,
) -> pd.DataFrame:
    """Raw bookings of ``region``: ``rows`` rows over ``days`` days from ``start``.

    The same arguments always give the same frame, row for row.

    Args:
        region: The region, with its time zone and festival windows.
        rows: Number of bookings.
        start: First local day of bookings.
        days: Number of days covered.
        seed: The project seed; combined with the region name.

    Returns:
        A frame with the columns of :data:`RAW_COLUMNS`, sorted by ``event_time`` (UTC).
    """
    import numpy as np

    if rows < 1 or days < 1:
        raise ValueError(f"region '{region.name}': rows ({rows}) and days ({days}) must be positive")
    rng = np.random.default_rng(_stable_seed(seed, "bookings", region.name))
    profile = region_profile(region.name)
    local_time = _local_times(rng, region, rows, start, days)
    festival = _festival_flags(local_time, region)
    drivers = _driver_pool(rng, rows, start, days, region.name)
    frame = _bookings(rng, profile, local_time, festival, drivers).sort_values("event_time", kind="stable")
    frame.insert(0, "booking_id", [f"{region.name}-{i:07d}" for i in range(rows)])
    frame.insert(2, "region", region.name)
    return frame.reset_index(drop=True)


def generate_for(config: Config, region: str | Region, rows: int | None = None) -> pd.DataFrame:
    """Raw bookings of a configured region (by name, or already resolved) with the config's synthetic settings.

    ``rows`` defaults to the region's (``data.synthetic.rows_by_region``, else ``rows``).

    Raises:
        ConfigError: ``region`` names no configured region.
    """
    synthetic = config.data.synthetic
    resolved = region if isinstance(region, Region) else config.region(region)
    return generate_bookings(
        resolved,
        rows if rows is not None else synthetic.rows_of(resolved.name),
        start=synthetic.start,
        days=synthetic.days,
        seed=config.seed,
    )


def _local_times(rng: np.random.Generator, region: Region, rows: int, start: dt.date, days: int) -> pd.Series:
    import numpy as np
    import pandas as pd

    day_index = pd.date_range(start, periods=days, freq="D")
    weights = np.where(day_index.dayofweek >= 5, 1.15, 1.0)
    weights = weights * np.where(_on_festival(day_index.date, region), 1.6, 1.0)
    chosen_days = rng.choice(days, size=rows, p=weights / weights.sum())
    hourly = np.asarray(HOURLY_DEMAND)
    hours = rng.choice(24, size=rows, p=hourly / hourly.sum())
    seconds = rng.integers(0, 3600, size=rows)
    offsets = pd.to_timedelta(chosen_days * 86400 + hours * 3600 + seconds, unit="s")
    naive = pd.Timestamp(start) + offsets
    # Daylight-saving folds resolve to standard time, gaps shift forward: never a missing time.
    return pd.Series(naive).dt.tz_localize(
        region.timezone, ambiguous=np.zeros(rows, dtype=bool), nonexistent="shift_forward"
    )


def _on_festival(dates: object, region: Region) -> np.ndarray:
    import numpy as np

    values = np.asarray(dates, dtype="datetime64[D]")
    flags = np.zeros(values.shape, dtype=bool)
    for fest in region.festivals:
        flags |= (values >= np.datetime64(fest.start)) & (values <= np.datetime64(fest.end))
    return flags


def _festival_flags(local_time: pd.Series, region: Region) -> np.ndarray:
    return _on_festival(local_time.dt.tz_localize(None).to_numpy().astype("datetime64[D]"), region)


@dataclass(frozen=True)
class _Drivers:
    ids: np.ndarray
    rating: np.ndarray
    acceptance_rate: np.ndarray
    joined: np.ndarray  # datetime64[D], sorted ascending


def _driver_pool(rng: np.random.Generator, rows: int, start: dt.date, days: int, region: str) -> _Drivers:
    """Veteran drivers plus two or three waves of new ones joining during the window."""
    import numpy as np

    veterans = max(40, rows // 25)
    veteran_joined = np.datetime64(start) - rng.integers(NEW_DRIVER_DAYS + 1, 2500, size=veterans).astype(
        "timedelta64[D]"
    )
    waves = []
    for _ in range(int(rng.integers(2, 4))):
        wave_day = np.datetime64(start) + np.timedelta64(int(rng.integers(5, max(6, days - 5))), "D")
        size = int(veterans * rng.uniform(0.2, 0.45))
        waves.append(wave_day + rng.integers(0, 7, size=size).astype("timedelta64[D]"))
    joined = np.sort(np.concatenate([veteran_joined, *waves]))
    n = len(joined)
    rating = np.clip(rng.normal(4.6, 0.25, size=n), 3.0, 5.0)
    acceptance = np.clip(rng.beta(7, 2.5, size=n), 0.05, 1.0)
    ids = np.array([f"{region[:3]}-d{i:05d}" for i in rng.permutation(n)])
    return _Drivers(ids=ids, rating=rating, acceptance_rate=acceptance, joined=joined)


def _pick_drivers(rng: np.random.Generator, drivers: _Drivers, day: np.ndarray) -> np.ndarray:
    """A driver who had already joined on ``day``; newcomers are over-offered (they are idle)."""
    import numpy as np

    eligible = np.searchsorted(drivers.joined, day, side="right")
    eligible = np.maximum(eligible, 1)
    # Squaring a uniform skews picks towards the end of the join-sorted pool: the newest drivers.
    return np.minimum((np.sqrt(rng.uniform(size=len(day))) * eligible).astype(int), eligible - 1)


def _bookings(
    rng: np.random.Generator,
    profile: RegionProfile,
    local_time: pd.Series,
    festival: np.ndarray,
    drivers: _Drivers,
) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    rows = len(local_time)
    day = local_time.dt.tz_localize(None).to_numpy().astype("datetime64[D]")
    hour = local_time.dt.hour.to_numpy()
    pick = _pick_drivers(rng, drivers, day)
    tenure = (day - drivers.joined[pick]).astype(int)
    is_new = tenure < NEW_DRIVER_DAYS
    area = rng.choice(len(PICKUP_AREAS), size=rows, p=np.asarray(profile.area_weights))
    area_far = np.where(np.isin(np.asarray(PICKUP_AREAS)[area], ["airport", "suburbs"]), 1.6, 1.0)
    distance = np.clip(rng.lognormal(np.log(profile.distance_km), 0.55, size=rows) * area_far, 0.05, 40.0)
    peak = np.isin(hour, [7, 8, 9, 17, 18, 19]).astype(float)
    raw_surge = 1.0 + profile.surge_level * (0.5 + peak + 1.5 * festival) * rng.gamma(2.0, 0.5, size=rows)
    surge = np.round(np.clip(raw_surge, 1.0, 5.0), 2)
    rating = np.round(np.clip(drivers.rating[pick] + rng.normal(0, 0.03, size=rows), 1.0, 5.0), 2)
    acc_rate = np.round(np.clip(drivers.acceptance_rate[pick] + rng.normal(0, 0.02, size=rows), 0.0, 1.0), 3)
    accepted = _acceptance(rng, profile, distance, rating, acc_rate, surge, is_new, festival, hour)
    eta = _pickup_eta(rng, profile, distance, rating, is_new, festival, peak, surge)
    return pd.DataFrame(
        {
            "event_time": local_time.dt.tz_convert("UTC").to_numpy(),
            "pickup_area": np.asarray(PICKUP_AREAS)[area],
            "pickup_distance_km": np.round(distance, 3),
            "driver_id": drivers.ids[pick],
            "driver_rating": rating,
            "driver_acceptance_rate": acc_rate,
            "driver_tenure_days": tenure.astype("int64"),
            "surge_multiplier": surge,
            "accepted": accepted.astype("int64"),
            "pickup_eta_min": np.round(eta, 2),
        }
    ).assign(event_time=lambda f: pd.to_datetime(f["event_time"], utc=True))


def _acceptance(
    rng: np.random.Generator,
    profile: RegionProfile,
    distance: np.ndarray,
    rating: np.ndarray,
    acc_rate: np.ndarray,
    surge: np.ndarray,
    is_new: np.ndarray,
    festival: np.ndarray,
    hour: np.ndarray,
) -> np.ndarray:
    """Accept-and-complete: better and more willing drivers accept, far pickups are declined."""
    import numpy as np

    night = np.isin(hour, [0, 1, 2, 3, 4]).astype(float)
    high_surge = (surge >= 1.5).astype(float)
    # Real drivers are not linear: far pickups are declined sharply past a region's tolerance
    # (less so when surge pays for the detour, more so at night), and new drivers chase surge.
    too_far = (distance > 1.6 * profile.distance_km).astype(float)
    commute = np.isin(hour, [7, 8, 17, 18, 19]).astype(float)  # two daily dips: not one sine wave
    logit = (
        1.5
        + profile.acceptance_bias
        + 2.2 * (rating - 4.6)
        + 5.0 * (acc_rate - 0.74)
        - 0.35 * (distance - profile.distance_km)
        - 2.2 * too_far * (1.0 - 0.7 * high_surge) * (1.0 + 0.8 * night)
        - 0.9 * commute
        + 0.5 * (surge - 1.0)
        - 0.6 * is_new
        + 1.2 * is_new * high_surge
        - 1.4 * festival
        - 0.4 * night
        + rng.normal(0, 0.6, size=len(distance))
    )
    return (rng.uniform(size=len(distance)) < 1.0 / (1.0 + np.exp(-logit))).astype(int)


def _pickup_eta(
    rng: np.random.Generator,
    profile: RegionProfile,
    distance: np.ndarray,
    rating: np.ndarray,
    is_new: np.ndarray,
    festival: np.ndarray,
    peak: np.ndarray,
    surge: np.ndarray,
) -> np.ndarray:
    """Minutes to pickup: distance over a traffic-dependent speed, plus a fixed overhead."""
    import numpy as np

    speed = profile.speed_kmh / (1.0 + 0.35 * peak + 0.3 * festival + 0.1 * (surge - 1.0))
    travel = distance / speed * 60.0
    overhead = 1.5 + 1.2 * is_new - 0.6 * (rating - 4.6)
    noise = rng.normal(0, 0.12, size=len(distance))
    return np.clip(travel * np.exp(noise) + overhead + rng.normal(0, 0.6, size=len(distance)), 0.5, 180.0)
