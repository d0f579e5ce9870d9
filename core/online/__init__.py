"""Online features: the latest window aggregates per key, kept where a server can look them up (ADR 0019).

The data stage materialises a family's ``online`` window aggregates after each build, the push
path writes fresher ones, and the server reads them by a record's key. One layout
(:mod:`~modelyard.core.online.layout`) and two stores behind one interface
(:mod:`~modelyard.core.online.stores`): Redis in production, a SQLite file for the demo.
"""

from __future__ import annotations

from modelyard.core.online.layout import OnlineValue, Stored, decode, encode, entry_key, key_text
from modelyard.core.online.push import PushError, online_names, pushed_values
from modelyard.core.online.stores import (
    REDIS_SCHEMES,
    SERVE_PREFIX_ENV,
    SERVE_TIMEOUT_ENV,
    SERVE_TTL_ENV,
    SERVE_URL_ENV,
    EmbeddedStore,
    OnlineStore,
    OnlineStoreError,
    RedisStore,
    open_store,
    shown_url,
)

__all__ = [
    "REDIS_SCHEMES",
    "SERVE_PREFIX_ENV",
    "SERVE_TIMEOUT_ENV",
    "SERVE_TTL_ENV",
    "SERVE_URL_ENV",
    "EmbeddedStore",
    "OnlineStore",
    "OnlineStoreError",
    "OnlineValue",
    "PushError",
    "RedisStore",
    "Stored",
    "decode",
    "encode",
    "entry_key",
    "key_text",
    "online_names",
    "open_store",
    "pushed_values",
    "shown_url",
]
