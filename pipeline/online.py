"""Materialise a pair's online features: the latest window aggregate per key of a snapshot, into the online store.

After a build, each ``online`` window aggregate of the family is taken from the snapshot it
published: per key value (the snapshot's ``raw.<key>`` column) the newest row's aggregate, with
the end of that row's window (its local hour or day, in UTC seconds). Those are exactly the values
the snapshot's newest rows carry, so a server that looks them up featurises those rows as the
data stage did (the parity test). Values are written a chunk at a time (one round trip each) and
tagged ``snapshot:<digest>``; a store that fails does not unpublish the snapshot, it is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.core import featurespec
from modelyard.core.config import Config, OnlineSettings, PairView
from modelyard.core.contracts.columns import RAW_PREFIX, TIME_COLUMN
from modelyard.core.online import (
    REDIS_SCHEMES,
    SERVE_PREFIX_ENV,
    SERVE_TIMEOUT_ENV,
    SERVE_TTL_ENV,
    SERVE_URL_ENV,
    EmbeddedStore,
    OnlineStoreError,
    OnlineValue,
    RedisStore,
    key_text,
    open_store,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


@dataclass(frozen=True)
class Materialised:
    """What one pair's materialisation wrote: values offered, values that landed, and where."""

    family: str
    region: str
    offered: int
    landed: int
    store: str


def latest_values(
    frame: pd.DataFrame, pair: PairView, digest: str, online: tuple[featurespec.FeatureDef, ...] | None = None
) -> list[OnlineValue]:
    """The newest aggregate per key of each online feature in the snapshot ``frame`` (sorted by time).

    ``online``: the snapshot's own online features (default: those of today's config, as a build has).

    Raises:
        KeyError: the frame has no ``raw.<key>`` column (a snapshot built before the feature was online).
    """
    out: list[OnlineValue] = []
    family, region = pair.family.name, pair.region.name
    for feature in pair.spec.online if online is None else online:
        key_column = f"{RAW_PREFIX}{feature.key}"
        newest = frame.drop_duplicates(key_column, keep="last")
        ends = window_ends(newest[TIME_COLUMN], pair.timezone, feature)
        values = newest[feature.name].astype("float64").tolist()
        for key, value, end in zip(newest[key_column].tolist(), values, ends.tolist(), strict=True):
            text = key_text(key)
            if text is not None:
                out.append(OnlineValue(family, region, feature.name, text, value, end, f"snapshot:{digest}"))
    return out


def window_ends(times: pd.Series, timezone: str, feature: featurespec.FeatureDef) -> np.ndarray:
    """The end (UTC epoch seconds) of the local hour or day window each time falls in."""
    import numpy as np

    naive = times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    utc_ns = featurespec.epoch_ns(naive, "", feature.name, TIME_COLUMN)
    every = featurespec.WINDOW_EVERY[feature.every]
    local = featurespec.local_seconds(utc_ns, timezone)
    return (utc_ns // 1_000_000_000 - local % every + every).astype(np.float64)


def materialise(
    config: Config,
    pair: PairView,
    frame: pd.DataFrame,
    digest: str,
    online: tuple[featurespec.FeatureDef, ...] | None = None,
) -> Materialised | None:
    """Write the snapshot's latest online values of ``pair`` (None: it has no online feature).

    Raises:
        OnlineStoreError: the store cannot be reached or written.
        KeyError: the frame lacks a key column (rebuild the snapshot).
    """
    online = pair.spec.online if online is None else online
    if not online:
        return None
    values = latest_values(frame, pair, digest, online)
    store = store_from_config(config.online, config.storage.local_dir)
    try:
        landed = store.write(values, config.online.prefix, config.online.chunk_rows)
    finally:
        store.close()
    return Materialised(pair.family.name, pair.region.name, len(values), landed, store.url)


def materialise_notes(config: Config, pair: PairView, frame: pd.DataFrame, digest: str) -> tuple[str, ...]:
    """The build's hook: materialise; a store that fails is a build note (it does not fail the build)."""
    try:
        materialise(config, pair, frame, digest)
    except (OnlineStoreError, KeyError) as exc:
        return (
            f"online features not materialised ({exc}); the server serves their declared defaults until "
            f"`modelyard features materialise --family {pair.family.name} --region {pair.region.name}` succeeds",
        )
    return ()


def store_from_config(settings: OnlineSettings, local_dir: Path) -> RedisStore | EmbeddedStore:
    """The configured store: ``online.url`` when set, else the embedded file ``<local_dir>/online/online.sqlite``.

    Raises:
        OnlineStoreError: ``store: redis`` without a Redis ``url``.
    """
    ttl = settings.ttl_hours * 3600
    if settings.store == "redis":
        if not settings.url or not settings.url.startswith(REDIS_SCHEMES):
            raise OnlineStoreError(
                "online.store is redis but online.url is not a redis:// URL; set online.url "
                "(or MODELYARD_ONLINE__URL), e.g. redis://127.0.0.1:6379/0"
            )
        return RedisStore(settings.url, ttl)
    return open_store(settings.url or str(local_dir / "online" / "online.sqlite"), ttl)


def serving_env(config: Config) -> dict[str, str]:
    """The environment a serving process needs to look the config's online features up (empty: none declared)."""
    if not any(f.online for family in config.families for f in family.feature_decls):
        return {}
    store = store_from_config(config.online, config.storage.local_dir)
    url = store.url if isinstance(store, RedisStore) else f"sqlite:///{store.path.resolve()}"
    return {
        SERVE_URL_ENV: url,
        SERVE_PREFIX_ENV: config.online.prefix,
        SERVE_TIMEOUT_ENV: str(config.online.timeout_ms),
        SERVE_TTL_ENV: str(config.online.ttl_hours),
    }
