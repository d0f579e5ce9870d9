"""The serving endpoint as a client sees it: plausible request records, what each pair answers, a curl line."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx

from modelyard.core.config import Config
from modelyard.core.contracts.prediction_log import PROBE_HEADER
from modelyard.core.featurespec import WINDOW_KINDS


def sample_record(config: Config, family: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """A plausible request record for ``family``: the raw fields a client sends (ADR 0007).

    The time column is ``now`` (UTC, ISO-8601 with its offset), window aggregates are 1.0 (the
    average) unless declared online (the server looks those up by their key, ADR 0019), other
    fields a typical value, the middle of their declared range or an allowed value.
    """
    typical = {
        "pickup_distance_km": 2.5,
        "driver_rating": 4.8,
        "driver_acceptance_rate": 0.85,
        "driver_tenure_days": 400,
        "surge_multiplier": 1.2,
        "pickup_area": "central",  # the key of the online area_demand_index
    }
    spec = config.feature_spec(config.family(family))
    columns = config.dataset_of(config.family(family)).columns
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    record: dict[str, Any] = {}
    for name in spec.raw_inputs:
        column = columns[name]
        if column.type == "timestamp":
            record[name] = moment.isoformat()
        elif name in typical:
            record[name] = typical[name]
        else:
            record[name] = _typical_value(column)
    for feature in spec.features:
        if feature.kind in WINDOW_KINDS and not feature.online:
            record[feature.name] = 1.0
    return record


def _typical_value(column: Any) -> Any:
    if column.allowed:
        return column.allowed[0]
    if column.type in ("category", "string"):
        return "unknown"  # served with the unknown category code
    if column.min is not None and column.max is not None:
        middle = (column.min + column.max) / 2
        return int(middle) if column.type == "int" else middle
    return False if column.type == "bool" else 0


def serving_versions(config: Config, serving_url: str) -> dict[str, str]:
    """``family/region`` -> the version the endpoint answers with (or the error it gives)."""
    answered = {}
    with httpx.Client(base_url=serving_url, timeout=10, headers={PROBE_HEADER: "demo"}) as client:
        for family, region in config.pairs():
            key = f"{family}/{region}"
            try:
                response = client.post(f"/v1/predict/{family}/{region}", json=sample_record(config, family))
                body = response.json()
                answered[key] = str(body["version"]) if response.status_code == 200 else f"HTTP {response.status_code}"
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                answered[key] = f"error: {type(exc).__name__}"
    return answered


def curl_example(config: Config, serving_url: str) -> str:
    """A copy-paste curl call of the first (family, region)."""
    import json

    family, region = config.pairs()[0]
    body = json.dumps(sample_record(config, family), separators=(",", ":"))
    return f"curl -s -X POST {serving_url}/v1/predict/{family}/{region} -H 'Content-Type: application/json' -d '{body}'"
