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

``--profile DIR`` (issue 26) runs the stages the way a chunk worker does instead: the scale bench's
config (``--pairs``, ``tests/bench/scale.py``'s gates and rows; ``--limit`` runs the first pairs
only), every pair through ``plugins/stage_pairs.py`` (``build_one``, ``train_one``, ``decide_one``,
one worker's state kept across pairs), the pooled models of their groups trained after them (stage
``pooled``, figures per pair of the run) and decided with them, as the DAGs do, each stage under
cProfile. It writes ``DIR/<stage>.prof`` and ``DIR/profile.md``: per stage the CPU seconds per pair
and the functions with the most CPU per pair (cumulative and own). Beside them, per stage, the fit's CPU
(``fit_pair``: split, fit, baseline, scoring) and the rest per pair, as a mean and as a median of the
pairs (the median leaves out the imports the first pair of a worker pays). ``--no-cprofile`` runs the
same work without cProfile: the figures are then the process's own CPU time, uninstrumented (no
``.prof``, no top functions). Either way ``profile.md`` counts the stage's HTTP requests (MLflow's REST
and artifact calls) per pair by endpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import re
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


# An MLflow REST path's variable parts (artifact paths after the run, ids in the query) are dropped.
def _endpoint(method: str, url: str) -> str:
    from urllib.parse import urlsplit

    path = urlsplit(url).path
    head, artifacts, tail = path.partition("/mlflow-artifacts/")
    if artifacts:
        path = head + artifacts + tail.split("/")[0]
    path = re.sub(r"/m-[0-9a-f]{32}", "/<model id>", path)
    return f"{method.upper()} {path.removeprefix('/api/2.0/mlflow/').removeprefix('/ajax-api/2.0/mlflow/')}"


@contextlib.contextmanager
def counted_requests(into: dict[str, int]) -> Iterator[None]:
    """Count this process's HTTP requests (MLflow's REST and artifact calls) by method and endpoint into ``into``."""
    import requests

    original = requests.Session.request

    def request(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        key = _endpoint(method, str(url))
        into[key] = into.get(key, 0) + 1
        return original(self, method, url, *args, **kwargs)

    requests.Session.request = request  # type: ignore[method-assign]
    try:
        yield
    finally:
        requests.Session.request = original  # type: ignore[method-assign]


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
            outcomes: list[str] = [r.status for r in results]
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


# ---------------------------------------------------------------------------- --profile: as a chunk worker


@dataclass
class StageProfile:
    """One stage run through the chunk workers' per-pair functions under cProfile."""

    stage: str
    pairs: int
    wall_s: float
    cpu_s: float
    server_cpu_s: float
    outcomes: dict[str, int]
    top_cumulative: list[tuple[str, float, int]]  # (function, CPU s per pair, calls per pair x 1000)
    top_own: list[tuple[str, float, int]]
    fit_cpu_s: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)  # HTTP requests by endpoint, the whole stage
    beyond_fit_cpu_s: list[float] = field(default_factory=list)  # per pair: its CPU less its fit's

    @property
    def cpu_per_pair_s(self) -> float:
        return self.cpu_s / max(self.pairs, 1)

    @property
    def beyond_fit_per_pair_s(self) -> float:
        return (self.cpu_s - self.fit_cpu_s) / max(self.pairs, 1)

    @property
    def beyond_fit_median_s(self) -> float:
        return statistics.median(self.beyond_fit_cpu_s) if self.beyond_fit_cpu_s else float("nan")


def profile_stages(
    config_path: Path,
    tracking_uri: str,
    stages: list[str],
    out: Path,
    server_pid: int | None = None,
    limit: int | None = None,
    top: int = 25,
    cprofile: bool = True,
) -> list[StageProfile]:
    """Run ``stages`` (data, train, pooled, promote) as one chunk worker would, each under cProfile (CPU time).

    ``limit``: only the config's first ``limit`` pairs (and the pooled models of their groups).
    ``cprofile``: False runs them uninstrumented (CPU figures only, no top functions).
    """
    import cProfile

    from modelyard.core.config import load_config
    from modelyard.pipeline.build import BuildRequest
    from modelyard.plugins import stage_pairs
    from modelyard.promotion.decide import pooled_pairs
    from modelyard.training import train as train_module
    from modelyard.training.pooled import pooled_selection, train_pooled

    config = load_config(config_path, environ={})
    pairs = config.pairs()[:limit]
    families, groups = pooled_selection(config, pairs)
    pooled = [(f, g) for f, g in pooled_pairs(config) if f in families and g in groups]
    stage_pairs.start_worker(config)
    work: dict[str, Callable[[], list[str]]] = {
        "data": lambda: [str(stage_pairs.build_one(BuildRequest(), p).status) for p in pairs],
        "train": lambda: [str(stage_pairs.train_one(stage_pairs.TrainRequest(tracking_uri), p).status) for p in pairs],
        "pooled": lambda: [str(r.status) for r in train_pooled(config, families, groups, tracking_uri=tracking_uri)],
        "promote": lambda: [
            str(stage_pairs.decide_one(stage_pairs.DecideRequest(tracking_uri, "evaluate", "bench"), p).status)
            for p in [*pairs, *pooled]
        ],
    }
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for stage in stages:
        profiler = cProfile.Profile(time.process_time)
        run = profiler.runcall if cprofile else lambda work: work()
        fit_cpu: list[float] = []
        pair_cpu: list[float] = []
        requests: dict[str, int] = {}
        start, start_cpu, start_server = time.perf_counter(), own_cpu_s(), tree_cpu_s(server_pid)
        with (
            timed(train_module, "fit_pair", [], fit_cpu),
            timed(stage_pairs, "train_one", [], pair_cpu),
            counted_requests(requests),
        ):
            statuses = run(work[stage])
        wall, cpu = time.perf_counter() - start, own_cpu_s() - start_cpu
        server_cpu = tree_cpu_s(server_pid) - start_server
        cumulative: list[tuple[str, float, int]] = []
        own: list[tuple[str, float, int]] = []
        if cprofile:
            profiler.dump_stats(out / f"{stage}.prof")
            cumulative, own = top_functions(out / f"{stage}.prof", len(pairs), top)
        # Per trained pair: its CPU less its fit's (a pair that did not fit pads with no fit).
        fits = fit_cpu if len(fit_cpu) == len(pair_cpu) else [0.0] * len(pair_cpu)
        beyond = [total - fit for total, fit in zip(pair_cpu, fits, strict=True)]
        profile = StageProfile(stage, len(pairs), wall, cpu, server_cpu, _count(statuses), cumulative, own)
        profile.fit_cpu_s, profile.beyond_fit_cpu_s = sum(fit_cpu), beyond
        profile.requests = requests
        results.append(profile)
    return results


def top_functions(
    prof: Path, pairs: int, top: int
) -> tuple[list[tuple[str, float, int]], list[tuple[str, float, int]]]:
    """The ``top`` functions by cumulative and by own CPU time, per pair (with calls per 1,000 pairs)."""
    import pstats

    stats = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
    rows = []
    for (path, line, name), (_, calls, own, cumulative, _) in stats.items():
        where = f"{Path(path).parent.name}/{Path(path).name}:{line}" if line else path
        rows.append((f"{name} ({where})", cumulative / pairs, own / pairs, round(calls * 1000 / pairs)))
    by_cumulative = sorted(rows, key=lambda r: -r[1])[:top]
    by_own = sorted(rows, key=lambda r: -r[2])[:top]
    return [(n, c, k) for n, c, _, k in by_cumulative], [(n, o, k) for n, _, o, k in by_own]


def render_profiles(profiles: list[StageProfile], note: str) -> str:
    """``profile.md``: per stage the CPU per pair and its top functions (cumulative, then own)."""
    header = (
        "| stage | pairs | wall s | CPU s (bench process) | CPU s / pair | fit CPU s / pair "
        "| beyond the fit s / pair: mean, median | MLflow server CPU s / pair | outcomes |"
    )
    lines = [note, "", header, "|---|---|---|---|---|---|---|---|---|"]
    for p in profiles:
        outcomes = ", ".join(f"{k} {v}" for k, v in p.outcomes.items())
        lines.append(
            f"| {p.stage} | {p.pairs} | {p.wall_s:.1f} | {p.cpu_s:.1f} | {p.cpu_per_pair_s:.3f} "
            f"| {p.fit_cpu_s / max(p.pairs, 1):.3f} | {p.beyond_fit_per_pair_s:.3f}, {p.beyond_fit_median_s:.3f} "
            f"| {p.server_cpu_s / max(p.pairs, 1):.3f} | {outcomes} |"
        )
    for p in profiles:
        total = sum(p.requests.values())
        lines += ["", f"### {p.stage}: HTTP requests per pair ({total / max(p.pairs, 1):.1f} in all)", "",
                  "| request | per pair |", "|---|---|"]  # fmt: skip
        ranked = sorted(p.requests.items(), key=lambda item: -item[1])
        lines += [f"| `{name}` | {count / max(p.pairs, 1):.2f} |" for name, count in ranked]
    for p in profiles:
        for title, rows in (("cumulative", p.top_cumulative), ("own", p.top_own)):
            lines += ["", f"### {p.stage}: top functions by {title} CPU per pair", "",
                      "| function | CPU s / pair | calls / 1000 pairs |", "|---|---|---|"]  # fmt: skip
            lines += [f"| `{name}` | {seconds:.4f} | {calls} |" for name, seconds, calls in rows]
    return "\n".join(lines) + "\n"


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
    parser.add_argument("--profile", type=Path, default=None, help="profile as a chunk worker; write here")
    parser.add_argument("--pairs", type=int, default=100, help="with --profile: pairs of the scale bench's config")
    parser.add_argument("--limit", type=int, default=None, help="with --profile: run only the first LIMIT pairs")
    parser.add_argument(
        "--no-cprofile", action="store_true", help="with --profile: run uninstrumented (process CPU time only)"
    )
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
        pid = server.process.pid if server.process else None
        if args.profile:
            return _profile_main(args, workdir, server.url, pid)
        config_path = write_config(workdir / "modelyard.yaml", workdir / "data", args.regions, args.rows, server.url)
        figures = run_stages(config_path, server.url, args.stages.split(","), pid)
    print(render(figures))
    if args.json:
        rows = [{**asdict(f), "overhead_per_pair_s": f.overhead_per_pair_s} for f in figures]
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


def _profile_main(args: argparse.Namespace, workdir: Path, tracking_uri: str, server_pid: int | None) -> int:
    import datetime as dt

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.bench.scale import write_scale_config

    config_path = write_scale_config(workdir / "modelyard.yaml", workdir / "data", args.pairs)
    raw = yaml.safe_load(config_path.read_text())
    raw["mlflow"] = {**raw["mlflow"], "tracking_uri": tracking_uri}
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    stages = [s for s in args.stages.split(",") if s != "rerun"]
    start_load = os.getloadavg()
    cprofile = not args.no_cprofile
    profiles = profile_stages(
        config_path, tracking_uri, stages, args.profile, server_pid, args.limit, cprofile=cprofile
    )
    flag = "" if cprofile else " --no-cprofile"
    clock = "CPU time under cProfile (its own overhead included)" if cprofile else "process CPU time, uninstrumented"
    note = (
        f"`python tests/bench/pair_overhead.py --profile {args.profile} --pairs {args.pairs} --limit {args.limit}"
        f"{flag}`, {dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M}Z, one process as a chunk worker, MLflow server on "
        f"SQLite, {os.cpu_count()} CPUs shared with other work (load average {start_load[0]:.1f} at start, "
        f"{os.getloadavg()[0]:.1f} at end). {clock}."
    )
    text = render_profiles(profiles, note)
    (args.profile / "profile.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
