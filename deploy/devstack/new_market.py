"""The demo's new market (ADR 0015): a region with too little data, served by its country's pooled model.

``modelyard demo`` (act one) gives :data:`NEW_REGION` only :data:`NEW_REGION_ROWS` bookings through
the config overlay every task reads (``data.synthetic.rows_by_region``): fewer than
``data.min_rows``, so the data stage publishes it *pooled only*, it gets no model of its own and
the endpoint serves it from the pooled champion of its country's group. ``modelyard
demo-graduation`` (act three) drops that entry, so the region's data grows to
``data.synthetic.rows``; the chain trains its own model, the graduation gate compares it with the
pooled model on the region's holdout, and a winner takes over through a canary under live load
(a loser leaves the pooled model serving, the decision saying why).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml
from rich.markup import escape

from modelyard.core.config import Config
from modelyard.core.contracts.prediction_log import PROBE_HEADER
from modelyard.deploy.devstack.endpoint import sample_record
from modelyard.deploy.devstack.stack import StackError, StackSettings

if TYPE_CHECKING:
    from rich.console import Console

    from modelyard.promotion.decision import Decision

NEW_REGION = "surabaya"
NEW_REGION_ROWS = 300


def new_region(config: Config) -> str | None:
    """The demo's new region, when the config has it in a region group (None: the demo shows no new market)."""
    if NEW_REGION in config.region_names and config.groups_of(NEW_REGION):
        return NEW_REGION
    return None


def set_region_rows(overlay: Path, region: str, rows: int | None) -> dict[str, Any]:
    """Set ``data.synthetic.rows_by_region[region]`` in the overlay file, keeping what else it holds.

    ``rows=None`` removes the entry: the region gets ``data.synthetic.rows``. Returns the new overlay.
    """
    current = _read_overlay(overlay)
    synthetic = current.setdefault("data", {}).setdefault("synthetic", {})
    by_region = synthetic.setdefault("rows_by_region", {})
    if rows is None:
        by_region.pop(region, None)
    else:
        by_region[region] = rows
    return _write_overlay(overlay, current)


def merge_overlay(overlay: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """Merge ``extra`` into the overlay file, keeping what the other acts wrote there. Returns the new overlay.

    Act one's entry (the new market's row count) must survive the festival, or the festival's rebuild
    gives the new market all its rows and act three finds nothing to graduate.
    """
    from modelyard.core.config.loading import deep_merge

    current = _read_overlay(overlay)
    deep_merge(current, extra)
    return _write_overlay(overlay, current)


def _read_overlay(overlay: Path) -> dict[str, Any]:
    raw = yaml.safe_load(overlay.read_text()) if overlay.exists() else None
    return raw if isinstance(raw, dict) else {}


def _write_overlay(overlay: Path, content: dict[str, Any]) -> dict[str, Any]:
    from modelyard.core.storage import write_bytes_atomic

    write_bytes_atomic(overlay, yaml.safe_dump(content, sort_keys=False).encode())
    return content


def start_small(config: Config, settings: StackSettings, console: Console) -> str | None:
    """Act one: the new region starts with :data:`NEW_REGION_ROWS` bookings (overlay); its name, or None."""
    region = new_region(config)
    if region is None:
        return None
    set_region_rows(settings.overlay_path, region, NEW_REGION_ROWS)
    overlay_path = escape(str(settings.overlay_path))
    console.print(
        f"new market: [bold]{region}[/bold] starts with {NEW_REGION_ROWS} bookings (fewer than "
        f"data.min_rows={config.data.min_rows}; data.synthetic.rows_by_region in {overlay_path}): "
        f"no model of its own, served by the pooled model of {config.groups_of(region)[0]}"
    )
    return region


def served_models(config: Config, serving_url: str, region: str) -> dict[str, tuple[str, str]]:
    """``family/region`` -> (model, version) the endpoint answers ``region``'s requests with."""
    answered = {}
    # A probe: answered like a client's request, never sampled into the region's drift or live quality.
    with httpx.Client(base_url=serving_url, timeout=10, headers={PROBE_HEADER: "demo"}) as client:
        for family in config.family_names:
            response = client.post(f"/v1/predict/{family}/{region}", json=sample_record(config, family))
            body = response.json() if response.status_code == 200 else {}
            answered[f"{family}/{region}"] = (
                str(body.get("model", f"HTTP {response.status_code}")),
                str(body.get("version", "-")),
            )
    return answered


def readyz_fallbacks(serving_url: str) -> dict[str, str]:
    """What the endpoint's ``/readyz`` says about fallbacks: ``family/region`` -> ``family/group``."""
    response = httpx.get(f"{serving_url}/readyz", timeout=10)
    fallbacks = response.json().get("fallbacks") or {}
    return {str(k): str(v) for k, v in fallbacks.items()}


def market_lines(config: Config, serving_url: str, region: str) -> list[str]:
    """What serves the new region now, and what ``/readyz`` says about it: the demo's summary lines."""
    fallbacks = readyz_fallbacks(serving_url)
    lines = []
    for key, (model, version) in served_models(config, serving_url, region).items():
        how = f"pooled model of {fallbacks[key].partition('/')[2]}" if key in fallbacks else "its own model"
        lines.append(f"{key}: served by {model} v{version} ({how})")
    named = sorted(key for key in fallbacks if key.endswith(f"/{region}"))
    lines.append(f"/readyz fallbacks: {', '.join(f'{k} -> {fallbacks[k]}' for k in named) or 'none'}")
    return lines


def requests_by_variant(serving_url: str, region: str) -> dict[str, int]:
    """``family/region variant vN`` -> requests answered ok, from the endpoint's ``/metrics`` (since it started)."""
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[str, int] = {}
    for metric in text_string_to_metric_families(httpx.get(f"{serving_url}/metrics", timeout=10).text):
        for sample in metric.samples:
            labels = sample.labels
            if sample.name == "modelyard_requests_total" and (labels["region"], labels["status"]) == (region, "ok"):
                key = f"{labels['family']}/{region} {labels['variant']} v{labels['version']}"
                counts[key] = counts.get(key, 0) + int(sample.value)
    return counts


def graduation_decisions(config: Config, tracking_uri: str, region: str) -> list[Decision]:
    """The recorded decision on the newest version of each family's own model of ``region`` (none: not trained)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from modelyard.promotion.record import recorded_decision

    client = MlflowClient(tracking_uri=tracking_uri)
    decisions = []
    for family in config.family_names:
        name = config.mlflow.model_name(family, region)
        try:
            versions = client.search_model_versions(f"name = '{name}'", max_results=50)
        except MlflowException:
            continue
        newest = max(versions, key=lambda v: int(v.version), default=None)
        decision = recorded_decision(newest) if newest is not None else None
        if decision is not None:
            decisions.append(decision)
    return decisions


def decision_lines(decisions: list[Decision]) -> list[str]:
    """One line per family: outcome and the graduation gate(s) with their values."""
    lines = []
    for decision in decisions:
        gates = [g for g in decision.gates if g.kind == "graduation"]
        shown = "; ".join(f"{g.name} {'passed' if g.passed else 'FAILED'}: {g.summary}" for g in gates)
        lines.append(f"{decision.model_name} v{decision.version}: {decision.outcome}. {shown or decision.summary}")
    return lines


def require_fallback(config: Config, serving_url: str, region: str) -> None:
    """Act three starts from a region served by its pooled model.

    Raises:
        StackError: the endpoint serves the region from a model of its own already, or not at all.
    """
    fallbacks = readyz_fallbacks(serving_url)
    if not any(key.endswith(f"/{region}") for key in fallbacks):
        raise StackError(
            f"{region} is not served by a pooled model at {serving_url} (/readyz fallbacks: {fallbacks or 'none'}): "
            "run `modelyard down` and `modelyard demo` first, which start it with too little data of its own"
        )
