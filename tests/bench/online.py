"""Online-feature benchmark: ``python tests/bench/online.py``. Not a test.

The demo's ``driver_acceptance`` spec (its ``area_demand_index`` declared online, keyed by
``pickup_area``) on an xgboost model (200 trees) registered on a temporary real MLflow server, served
by one ``modelyard serve`` worker per store. The same single raw row under the same ``wrk`` load
(c=8), in interleaved rounds (the median round of each): with the aggregate sent by the client (no
lookup), without it and looked up in the machine's real Redis (``MGET``, concurrent requests' keys coalesced), and
looked up in the embedded SQLite store. Reported: req/s, p50/p99 and the lookup's cost as a share
of the client-sends throughput (issue 27's goal: at most 30%). Every lookup row is checked to be a
hit (``/metrics``) before it is timed. Keys are written under a prefix of the run's own, then deleted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from modelyard.core.online import SERVE_PREFIX_ENV, SERVE_URL_ENV, OnlineValue, open_store
from modelyard.deploy.rollout.mlflow_server import start_mlflow_server
from tests.bench.serving import (
    WRK_SCRIPT,
    BenchOptions,
    LoadResult,
    ServerProcess,
    _rounds,
    ensure_wrk,
    register_raw_xgboost,
    single_plan,
    write_plan,
)

FAMILY, REGION, FEATURE, KEY = "bench", "online", "area_demand_index", "pickup_area"
AREAS = ("central", "business_district", "north", "south", "east", "west", "airport", "suburbs")
GOAL_COST = 0.30


def _write_values(url: str, prefix: str) -> None:
    store = open_store(url, 3600)
    values = [
        OnlineValue(FAMILY, REGION, FEATURE, area, 1.0 + i / 10, time.time(), "push") for i, area in enumerate(AREAS)
    ]
    store.write(values, prefix)
    store.close()


def _hits(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    lines = [line for line in text.splitlines() if line.startswith("modelyard_online_lookups_total{")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if 'outcome="hit"' in line)


def _checked_server(
    plan: Path, tracking: str, workdir: Path, name: str, env: dict[str, str], body: dict[str, Any]
) -> ServerProcess:
    server = ServerProcess.start(plan, tracking, log_path=workdir / f"{name}.log", env=env)
    server.wait_ready(timeout=240)
    before = _hits(server.url)
    response = httpx.post(f"{server.url}/v1/predict/{FAMILY}/{REGION}", json=body, timeout=10)
    response.raise_for_status()
    if _hits(server.url) != before + 1:
        server.stop()
        raise RuntimeError(f"{name}: the lookup was not a hit; see {server.log_path}")
    return server


def run(options: BenchOptions, workdir: Path, redis_url: str) -> dict[str, LoadResult]:
    """The three single-row rows, measured in interleaved rounds."""
    import mlflow

    wrk = ensure_wrk()
    prefix = f"bench-online-{uuid.uuid4().hex[:8]}"
    registry = start_mlflow_server(workdir / "mlflow")
    servers: list[ServerProcess] = []
    try:
        mlflow.set_tracking_uri(registry.url)
        uri, record, _ = register_raw_xgboost("bench-online", n_trees=options.trees)
        sent = {**record, KEY: "airport"}
        looked_up = {k: v for k, v in sent.items() if k != FEATURE}
        bodies = {"sent": workdir / "sent.json", "lookup": workdir / "lookup.json"}
        bodies["sent"].write_text(json.dumps(sent))
        bodies["lookup"].write_text(json.dumps(looked_up))
        script = workdir / "post.lua"
        script.write_text(WRK_SCRIPT)
        plan = workdir / "plan.json"
        write_plan(plan, single_plan(uri, family=FAMILY, region=REGION))
        sqlite = f"sqlite:///{workdir / 'online.sqlite'}"
        for url in (redis_url, sqlite):
            _write_values(url, prefix)
        redis_server = _checked_server(
            plan, registry.url, workdir, "redis", {SERVE_URL_ENV: redis_url, SERVE_PREFIX_ENV: prefix}, looked_up
        )
        servers.append(redis_server)
        embedded = _checked_server(
            plan, registry.url, workdir, "embedded", {SERVE_URL_ENV: sqlite, SERVE_PREFIX_ENV: prefix}, looked_up
        )
        servers.append(embedded)
        predict = f"/v1/predict/{FAMILY}/{REGION}"
        targets = {
            "client_sends": (f"{redis_server.url}{predict}", bodies["sent"]),
            "redis_lookup": (f"{redis_server.url}{predict}", bodies["lookup"]),
            "embedded_lookup": (f"{embedded.url}{predict}", bodies["lookup"]),
        }
        return _rounds(options, targets, wrk, script)
    finally:
        for server in servers:
            server.stop()
        open_store(redis_url, 60).delete(prefix)
        registry.stop()


def report(results: dict[str, LoadResult]) -> str:
    """The Markdown rows: req/s, latency and the lookup's cost against the client-sends row."""
    base = results["client_sends"].rps
    lines = [
        "| single-row predict (demo spec, 200 trees, c=8) | req/s | p50 ms | p99 ms | failed | lookup cost |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    names = {
        "client_sends": "client sends `area_demand_index` (no lookup)",
        "redis_lookup": "looked up in Redis (MGET, coalesced across concurrent requests)",
        "embedded_lookup": "looked up in the embedded SQLite store",
    }
    for key, label in names.items():
        result = results[key]
        cost = "-" if key == "client_sends" else f"{1 - result.rps / base:.0%}"
        lines.append(
            f"| {label} | {result.rps:,.0f} | {result.p50_ms:.2f} | {result.p99_ms:.2f} | {result.failed} | {cost} |"
        )
    cost = 1 - results["redis_lookup"].rps / base
    verdict = "met" if cost <= GOAL_COST else "not met"
    lines.append(
        f"\nGoal (issue 27): a Redis lookup costs <= {GOAL_COST:.0%} of single-row throughput: {verdict} ({cost:.0%})."
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/bench/online.py", description=__doc__.split("\n")[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="The Redis to look values up in.")
    parser.add_argument("--seconds", type=float, default=8.0, help="Seconds of load per round and target.")
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved rounds (the median is reported).")
    parser.add_argument("--out", type=Path, default=None, help="Also write the Markdown rows to this file.")
    args = parser.parse_args(argv)
    options = BenchOptions(seconds=args.seconds * 2, rounds=args.rounds)
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-online-") as folder:
        results = run(options, Path(folder), args.redis)
    text = report(results)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
