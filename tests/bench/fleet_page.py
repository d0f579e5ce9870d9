"""Fleet page benchmark: ``python tests/bench/fleet_page.py --pairs 1000``. Not a test.

Starts a real ``mlflow server`` (SQLite) in a temporary folder, seeds ``--pairs`` synthetic
pairs with ``tests/integration/fleet_seed.py`` (versions, aliases, promotion and monitoring
tags), then times ``GET /fleet`` of the plugin's FastAPI app (in process, over its ASGI
interface, reading the real server over HTTP) for the views a person opens: the first page,
a later page, a region filter, and the sorts that read every pair (champion, drift). Each view
is timed ``--repeat`` times; the median and the slowest go to stdout and, with ``--write``, to
docs/benchmarks.md between the ``fleet-page`` markers.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from fleet_seed import seed_fleet, write_fleet_config  # noqa: E402


def views(pairs: int) -> dict[str, dict[str, str]]:
    """The timed views: query parameters by name (the middle page of ``pairs`` at 50 a page)."""
    middle = max(1, pairs // 100)
    return {
        "first page (family order)": {},
        f"page {middle}": {"page": str(middle)},
        "region filter 'jakarta'": {"region": "jakarta"},
        "sorted by champion (reads every pair)": {"sort": "champion"},
        "sorted by drift, drifted first (reads every pair)": {"sort": "drift", "desc": "1"},
    }


START, END = (
    "<!-- fleet-page:begin (tests/bench/fleet_page.py --write rewrites this section) -->",
    "<!-- fleet-page:end -->",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000, help="pairs to seed (an even number: two families)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="write the result into docs/benchmarks.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        report = run(Path(tmp), args.pairs, args.repeat)
    print(report)
    if args.write:
        write(report)


def run(tmp: Path, pairs: int, repeat: int) -> str:
    from fastapi.testclient import TestClient
    from mlflow import MlflowClient

    from modelyard.core.config import load_config
    from modelyard.deploy.rollout.mlflow_server import start_mlflow_server
    from modelyard.plugins.fleet.app import create_app
    from modelyard.plugins.fleet.page import Links
    from modelyard.plugins.fleet.sources import FleetSources, local_live_plan
    from modelyard.plugins.fleet.urls import PAGE_PATH

    server = start_mlflow_server(tmp / "mlflow")
    try:
        config = load_config(write_fleet_config(tmp / "modelyard.yaml", tmp / "data", pairs // 2, "fleetbench"), {})
        started = time.perf_counter()
        seed_fleet(MlflowClient(server.url, server.url), config)
        seeded_s = time.perf_counter() - started
        client = MlflowClient(server.url, server.url)
        links = Links(mlflow=server.url, airflow="/")
        # Cold: nothing reused between views (every_pair_seconds=0): each view reads the registry.
        cold = FleetSources(config, client, list, lambda: local_live_plan(config), every_pair_seconds=0)
        warm = FleetSources(config, client, list, lambda: local_live_plan(config))
        lines = []
        with TestClient(create_app(lambda: (cold, links))) as http:
            http.get(PAGE_PATH)  # the first view imports jinja2 and compiles the template
            for view, params in views(pairs).items():
                lines.append(timed_row(http, view, params, repeat))
        with TestClient(create_app(lambda: (warm, links))) as http:
            http.get(PAGE_PATH, params={"sort": "drift", "desc": "1"})
            view = "sorted by drift, page 2 (reuses the read of page 1, 30 s)"
            lines.append(timed_row(http, view, {"sort": "drift", "desc": "1", "page": "2"}, repeat))
    finally:
        server.stop()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return "\n".join(
        [
            START,
            f"## Fleet page at {pairs:,} pairs (`tests/bench/fleet_page.py`)",
            "",
            f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}, {os.cpu_count()} CPUs, load average at the end: {load}. "
            f"A real `mlflow server` on SQLite seeded with {pairs:,} pairs, 9 in 10 registered "
            f"(seeding took {seeded_s:.0f} s); "
            f"`GET /fleet` of the plugin's app in process (the registry over HTTP), {repeat} times per view, "
            "50 rows a page; nothing reused between views except in the last row.",
            "",
            "| view | median s | slowest s |",
            "|---|---|---|",
            *lines,
            END,
        ]
    )


def timed_row(http: Any, view: str, params: dict[str, str], repeat: int) -> str:
    """``| view | median s | slowest s |`` of ``repeat`` views of ``params``."""
    from modelyard.plugins.fleet.urls import PAGE_PATH

    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = http.get(PAGE_PATH, params=params)
        times.append(time.perf_counter() - start)
        if response.status_code != 200 or not re.search(r"<tr data-pair=", response.text):
            raise SystemExit(f"{view}: {response.status_code} {response.text[:300]}")
    return f"| {view} | {statistics.median(times):.2f} | {max(times):.2f} |"


def write(report: str) -> None:
    path = REPO / "docs" / "benchmarks.md"
    text = path.read_text()
    if START in text and END in text:
        text = text[: text.index(START)] + report + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n" + report + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
