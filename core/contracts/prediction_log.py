"""The prediction-log record: what the server samples and the monitoring stage reads.

One gzip'd JSON line per sampled request (``kind: prediction``) or per interval of outcome
counts (``kind: counts``), in files named ``*<SUFFIX>``. Every line carries the schema version
``v``; a reader skips (and counts) a line of a version it does not know instead of misreading it.
Lines written before the field existed are version 1.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

SUFFIX = ".jsonl.gz"
SCHEMA_VERSION = 1
KNOWN_VERSIONS = frozenset({1})
PREDICTION = "prediction"
SHADOW = "shadow"
COUNTS = "counts"
# A request carrying this header (any value) is modelyard's own probe (a deploy's smoke test, the
# demo's check of what each pair answers): answered and counted in the server's metrics like any
# request, but never sampled or counted in the prediction log nor handed to shadows, so a row of
# zeros does not reach drift, live quality or the fields clients are seen sending.
PROBE_HEADER = "X-Modelyard-Probe"


def timestamp(at: float) -> str:
    """The ``ts`` of a line: UTC, milliseconds."""
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="milliseconds")


def prediction_entry(
    *,
    at: float,
    kind: str,
    request_id: str,
    labels: tuple[str, str, str, str],
    plan_digest: str,
    predictions: list[float],
    records: list[dict[str, Any]] | None = None,
    features: list[list[float]] | None = None,
    extra: dict[str, Any] | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """One sampled request; ``labels`` is (family, region, variant, version).

    ``model`` is the registered model that answered (the pair's own, or its group's pooled model when
    the pair falls back to it, ADR 0015); lines written before the field existed lack it.
    """
    family, region, variant, version = labels
    entry: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "ts": timestamp(at),
        "kind": kind,
        "request_id": request_id,
        "family": family,
        "region": region,
        "variant": variant,
        "version": version,
        **({"model": model} if model is not None else {}),
        "plan": plan_digest,
        "predictions": predictions,
    }
    if records is not None:
        entry["records"] = records
    if features is not None:
        entry["features"] = features
    if extra:
        entry.update(extra)
    return entry


def counts_entry(*, at: float, since: str, counts: dict[str, int]) -> dict[str, Any]:
    """The outcomes (ok, bad_input, ...) counted since ``since``."""
    return {"v": SCHEMA_VERSION, "ts": timestamp(at), "kind": COUNTS, "since": since, "counts": counts}


def parse_line(line: str | bytes) -> dict[str, Any] | None:
    """A line as a record, or None when it is not one this reader understands."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict) or "ts" not in entry or entry.get("v", 1) not in KNOWN_VERSIONS:
        return None
    return entry
