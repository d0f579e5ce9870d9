"""``modelyard demo-festival``, the second act: a festival shifts one region, and the chain adapts under load.

It writes a config overlay (``MODELYARD_CONFIG_OVERLAY``, read by every task) that adds a
festival over the recent data of one region and switches the rollout to canary, sends
drifting traffic so monitoring flags the region, re-runs the chain for it, and keeps a
background load on the live endpoint during the rollout; then prints how many requests were
served and failed.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import orjson
from rich.markup import escape

from modelyard.core.config import Config
from modelyard.deploy.devstack.chain import trigger_chain
from modelyard.deploy.devstack.demo import start_stack
from modelyard.deploy.devstack.endpoint import sample_record, serving_versions
from modelyard.deploy.devstack.new_market import merge_overlay
from modelyard.deploy.devstack.progress import follow_chain
from modelyard.deploy.devstack.stack import StackError, StackSettings

if TYPE_CHECKING:
    from rich.console import Console, RenderableType


def festival_overlay(config: Config, region: str, days: int, name: str = "demo_festival") -> dict[str, Any]:
    """An overlay adding a festival over the last ``days`` days of the data of ``region``, with canary rollout."""
    synthetic = config.data.synthetic
    end = synthetic.start + dt.timedelta(days=synthetic.days - 1)
    start = end - dt.timedelta(days=days - 1)
    regions = []
    for item in config.regions:
        raw = item.model_dump(mode="json")
        if item.name == region:
            raw["festivals"] = [*raw["festivals"], {"name": name, "start": start.isoformat(), "end": end.isoformat()}]
        regions.append(raw)
    return {"regions": regions, "deploy": {"rollout": {"strategy": "canary"}}}


@dataclass
class LoadStats:
    """Requests sent by the background load, by outcome and by answering version."""

    ok: int = 0
    failed: int = 0
    versions: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


class BackgroundLoad:
    """Steady prediction requests against some (family, region) pairs from a thread."""

    def __init__(self, config: Config, serving_url: str, pairs: list[tuple[str, str]], pause: float = 0.02) -> None:
        self.config = config
        self.serving_url = serving_url
        self.pairs = pairs
        self.pause = pause
        self.stats = LoadStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="background-load", daemon=True)

    def __enter__(self) -> BackgroundLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        records = {family: sample_record(self.config, family) for family, _ in self.pairs}
        with httpx.Client(base_url=self.serving_url, timeout=10) as client:
            while not self._stop.is_set():
                for family, region in self.pairs:
                    self._one(client, family, region, records[family])
                time.sleep(self.pause)

    def _one(self, client: httpx.Client, family: str, region: str, record: dict[str, Any]) -> None:
        try:
            response = client.post(f"/v1/predict/{family}/{region}", json=record)
        except httpx.HTTPError as exc:
            self.stats.failed += 1
            self.stats.errors[type(exc).__name__] += 1
            return
        if response.status_code == 200:
            self.stats.ok += 1
            self.stats.versions[f"{family}/{region} v{response.json().get('version')}"] += 1
        else:
            self.stats.failed += 1
            self.stats.errors[f"HTTP {response.status_code}"] += 1

    def view(self) -> RenderableType:
        versions = ", ".join(f"{k}: {n}" for k, n in sorted(self.stats.versions.items()))
        return (
            f"background load: [green]{self.stats.ok} served[/green], [red]{self.stats.failed} failed[/red]  {versions}"
        )


def run_festival(
    config: Config, settings: StackSettings, console: Console, region: str, days: int = 40, timeout: float = 3600
) -> LoadStats:
    """``modelyard demo-festival``: festival in ``region`` → data → training → gates → canary under load.

    Raises:
        StackError: the stack is not serving yet (run ``demo`` first), a task failed, or it timed out.
    """
    config.region(region)
    api = start_stack(config, settings, console)
    before = serving_versions(config, settings.serving_url)
    if not any(v.isdigit() for v in before.values()):
        raise StackError(f"nothing serves at {settings.serving_url} yet; run `modelyard demo` first")
    merge_overlay(settings.overlay_path, festival_overlay(config, region, days))
    overlay_path = escape(str(settings.overlay_path))
    console.print(
        f"festival over the last {days} days of [bold]{region}[/bold]'s data (overlay {overlay_path}); "
        "rollout strategy: canary"
    )
    pairs = [(family, region) for family in config.family_names]
    with console.status(f"serving every region its usual traffic, and {region} a festival crowd of new drivers"):
        send_drifting_traffic(config, settings.serving_url, region)
    with BackgroundLoad(config, settings.serving_url, pairs) as load:
        # monitoring flags the region → drift event → training rebuilds its data and retrains it → gates → canary
        since = trigger_chain(api, note=f"festival in {region}", first="monitoring")
        follow_chain(api, since, console, timeout=timeout, extra_view=load.view)
    after = serving_versions(config, settings.serving_url)
    print_festival_result(console, load.stats, before, after, region)
    return load.stats


def send_drifting_traffic(config: Config, serving_url: str, shifted: str, rows: int = 400) -> None:
    """Every served pair gets ``rows`` raw records from its training window; ``shifted`` gets new drivers on long trips.

    ``shifted`` is sent as live clients send it (online aggregates looked up by key); the others are replays.

    Then waits until the servers' prediction logs have published their files (``monitoring.rotate_seconds``).
    """
    from modelyard.core.featurespec import FittedSpec
    from modelyard.pipeline.snapshots import latest_snapshot, load_frame
    from modelyard.training.mlflow_log import raw_example
    from modelyard.training.split import time_split

    with httpx.Client(base_url=serving_url, timeout=30) as client:
        for family, region in config.pairs():
            meta = latest_snapshot(config.storage.features_dir, family, region)
            frame = load_frame(config.storage.features_dir, meta)
            # the rows the served models learnt from: the rest of a snapshot may drift for real
            frame = time_split(frame, config.training.holdout_days, config.training.validation_days).train
            frame = frame.sample(rows, replace=True, random_state=7)
            fitted = FittedSpec.from_dict(meta.feature_spec or {})
            sent = raw_example(fitted, frame)
            if region == shifted:
                # the festival crowd, live clients: the online aggregates (area_demand_index) are looked up by key
                sent = sent.drop(columns=[f.name for f in fitted.online])
            # Every other region replays rows its model learnt from, each with the aggregate it had then (a
            # value the client sends wins: the replay path). Looked up instead, every row would get the store's
            # one latest value per key, and monitoring would rightly call that usual traffic drifted.
            records = sent.to_dict("records")
            for index, record in enumerate(records if region == shifted else []):
                record.update(driver_tenure_days=1 + index % 20, pickup_distance_km=record["pickup_distance_km"] * 2.5)
            for start in range(0, rows, 20):
                client.post(
                    f"/v1/predict/{family}/{region}",
                    content=orjson.dumps(records[start : start + 20], option=orjson.OPT_SERIALIZE_NUMPY),
                )
    time.sleep(config.monitoring.rotate_seconds + 3)


def print_festival_result(
    console: Console, stats: LoadStats, before: dict[str, str], after: dict[str, str], region: str
) -> None:
    from rich.table import Table

    table = Table(title=f"festival in {region}: what serves now")
    for column in ("family/region", "before", "after"):
        table.add_column(column)
    for key in sorted(k for k in after if k.endswith(f"/{region}")):
        changed = before.get(key) != after[key]
        table.add_row(key, f"v{before.get(key)}", f"[green]v{after[key]}[/green]" if changed else f"v{after[key]}")
    console.print(table)
    colour = "green" if stats.failed == 0 else "red"
    console.print(
        f"requests during the rollout: [green]{stats.ok} served[/green], [{colour}]{stats.failed} failed[/{colour}]"
        + (f" ({dict(stats.errors)})" if stats.errors else "")
    )
