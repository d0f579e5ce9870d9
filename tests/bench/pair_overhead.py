"""Per-pair overhead benchmark: ``python tests/bench/pair_overhead.py --regions 10`` (not a test).

Writes a config of ``--regions`` regions (copies of the demo's, each with its own name) x the
demo's families, starts a real ``mlflow server`` (SQLite, local artifacts) on a free port, and
runs the stages in this process the way the CLI does (``build_all``, ``train_all``,
``promote_all``), then re-runs training on the same inputs (the idempotent path). Per stage it
prints the wall time, the time spent fitting models (``fit_pair``: split, fit, baseline, scoring),
and the rest: the per-pair overhead, as a mean over all pairs and as a median per pair (the median
leaves out the one-off imports the first pair pays). Beside the wall time it gives the CPU time the
stage cost in this process (and the children it waited for), less the fit's, and apart the MLflow
server's process tree (whose job workers poll even when idle): on a machine shared with other work,
wall time measures the queue for the cores as well, CPU time does not.

``--json PATH`` writes the figures for other benches (the scale bench reuses :func:`run_stages`).
Numbers on a shared 2-core machine are noisy: run it twice.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
# The issue-12 targets: overhead beyond the model fit, seconds per pair.
TARGETS = {"data": 0.3, "train": 0.5, "promote": 0.3, "train (re-run)": 0.3}


@dataclass
class StageFigures:
    """One stage's timings over its pairs."""

    stage: str
    pairs: int
    wall_s: float
    fit_s: float
    per_pair_s: list[float] = field(default_factory=list)
    per_pair_fit_s: list[float] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    fit_cpu_s: float = 0.0

    @property
    def cpu_overhead_per_pair_s(self) -> float:
        # The server's CPU is shown apart: its job workers poll even when idle, so it is not all ours.
        return (self.cpu_s - self.fit_cpu_s) / max(self.pairs, 1)

    @property
    def overhead_per_pair_s(self) -> float:
        return (self.wall_s - self.fit_s) / max(self.pairs, 1)

    @property
    def median_overhead_s(self) -> float:
        if not self.per_pair_s:
            return float("nan")
        fits = self.per_pair_fit_s or [0.0] * len(self.per_pair_s)
        return statistics.median(total - fit for total, fit in zip(self.per_pair_s, fits, strict=True))


def write_config(path: Path, storage_root: Path, regions: int, rows: int, tracking_uri: str) -> Path:
    """The demo config with ``regions`` regions (demo regions cloned as ``<name>_<i>``) and ``rows`` rows each."""
    raw = yaml.safe_load((REPO / "modelyard.yaml").read_text())
    demo = raw["regions"]
    raw["regions"] = [{**demo[i % len(demo)], "name": f"{demo[i % len(demo)]['name']}_{i:03d}"} for i in range(regions)]
    raw["deploy"]["kubernetes"]["releases"] = {"all": [r["name"] for r in raw["regions"]]}
    raw["data"] = {**raw["data"], "synthetic": {**raw["data"]["synthetic"], "rows": rows}, "min_rows": 200}
    raw["schedules"] = {**raw.get("schedules", {}), "data_processing": None}
    raw["storage"] = {"root": str(storage_root)}
    raw["mlflow"] = {**raw["mlflow"], "tracking_uri": tracking_uri}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@contextlib.contextmanager
def timed(module: Any, name: str, into: list[float], cpu: list[float] | None = None) -> Iterator[None]:
    """Wrap ``module.name`` so each call's wall (and CPU) duration is appended to ``into`` (restored on exit)."""
    original: Callable[..., Any] = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start, start_cpu = time.perf_counter(), time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            into.append(time.perf_counter() - start)
            if cpu is not None:
                cpu.append(time.process_time() - start_cpu)

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, original)


def own_cpu_s() -> float:
    """CPU seconds of this process and of the children it waited for."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def tree_cpu_s(pid: int | None) -> float:
    """CPU seconds of process ``pid`` and its live children (the MLflow server and its workers)."""
    import psutil

    if pid is None:
        return 0.0
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            cpu = process.cpu_times()
            total += cpu.user + cpu.system
    return total


def _count(values: list[str]) -> dict[str, int]:
    return {value: values.count(value) for value in sorted(set(values))}


def run_stages(
    config_path: Path, tracking_uri: str, stages: list[str], server_pid: int | None = None
) -> list[StageFigures]:
    """Run each stage of ``stages`` (data, train, promote, rerun) once over every pair of the config."""
    from modelyard.core.config import load_config
    from modelyard.pipeline import build
    from modelyard.promotion import decide as promotion
    from modelyard.training import train

    config = load_config(config_path, environ={})
    pairs = len(config.pairs())
    figures = []
    for stage in stages:
        per_pair: list[float] = []
        fits: list[float] = []
        fit_cpu: list[float] = []
        start, start_cpu, start_server = time.perf_counter(), own_cpu_s(), tree_cpu_s(server_pid)
        if stage == "data":
            stamps = [start]

            def stamp(_: object, into: list[float] = stamps) -> None:
                into.append(time.perf_counter())

            results = build.build_all(config, on_result=stamp)
            per_pair = [b - a for a, b in itertools.pairwise(stamps)]
            outcomes = [r.status for r in results]
        elif stage in ("train", "rerun"):
            with timed(train, "fit_pair", fits, fit_cpu), timed(train, "train_pair", per_pair):
                trained = train.train_all(config, tracking_uri=tracking_uri)
            outcomes = [r.status for r in trained]
        elif stage == "promote":
            with timed(promotion, "evaluate_pair", per_pair):
                decisions = promotion.promote_all(config, tracking_uri=tracking_uri)
            outcomes = [d.outcome for d in decisions]
        else:
            raise SystemExit(f"unknown stage '{stage}' (use data, train, promote, rerun)")
        wall = time.perf_counter() - start
        cpu, server_cpu = own_cpu_s() - start_cpu, tree_cpu_s(server_pid) - start_server
        name = "train (re-run)" if stage == "rerun" else stage
        # A pair that did not fit (skipped, unchanged) has no fit time: pad so the lists pair up.
        padded = fits if len(fits) == len(per_pair) else []
        figures.append(
            StageFigures(
                name, pairs, wall, sum(fits), per_pair, padded, _count(outcomes), cpu, server_cpu, sum(fit_cpu)
            )
        )
    return figures


def render(figures: list[StageFigures]) -> str:
    """A Markdown table of the figures."""
    lines = [
        "| stage | pairs | wall s | fit s | overhead s/pair (mean) | overhead s/pair (median) | target "
        "| CPU s: bench / server | bench CPU overhead s/pair | outcomes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        target = TARGETS.get(f.stage)
        outcomes = ", ".join(f"{k} {v}" for k, v in f.outcomes.items())
        lines.append(
            f"| {f.stage} | {f.pairs} | {f.wall_s:.1f} | {f.fit_s:.1f} | {f.overhead_per_pair_s:.2f} "
            f"| {f.median_overhead_s:.2f} | ≤ {target} | {f.cpu_s:.1f} / {f.server_cpu_s:.1f} "
            f"| {f.cpu_overhead_per_pair_s:.2f} | {outcomes} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", type=int, default=10, help="regions (pairs = regions x the demo's families)")
    parser.add_argument("--rows", type=int, default=2000, help="synthetic bookings per region")
    parser.add_argument("--stages", default="data,train,promote,rerun", help="comma-separated stages to run")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the data, config and server here")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.basicConfig(level=logging.WARNING)
    # A SIGTERM unwinds like Ctrl-C, so the MLflow server (its own session) is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    from modelyard.deploy.rollout.mlflow_server import start_mlflow_server

    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="modelyard-bench-")))
        workdir.mkdir(parents=True, exist_ok=True)
        # A busy machine can take minutes to start the server (its migrations, its job workers).
        server = stack.enter_context(start_mlflow_server(workdir / "mlflow", startup_timeout=600))
        os.environ["MLFLOW_TRACKING_URI"] = server.url
        config_path = write_config(workdir / "modelyard.yaml", workdir / "data", args.regions, args.rows, server.url)
        pid = server.process.pid if server.process else None
        figures = run_stages(config_path, server.url, args.stages.split(","), pid)
    print(render(figures))
    if args.json:
        rows = [{**asdict(f), "overhead_per_pair_s": f.overhead_per_pair_s} for f in figures]
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
