"""Scale benchmark: ``python tests/bench/scale.py --pairs N`` (``make bench-scale``). Not a test.

Writes a config of N/2 generated regions x the two demo families (default 500 regions ->
1,000 pairs, few rows per region), starts the dev stack's real Airflow (``airflow standalone``:
scheduler, dag-processor, triggerer, api-server) and real ``mlflow server`` with
``deploy.devstack.stack.up`` in the bench's own home and on free ports, triggers
``data_processing`` through the REST API as ``modelyard demo`` does and follows the asset-driven
chain data -> training -> promotion -> deploy until nothing runs, then checks that the serving
process answers every pair with its champion.

Recorded per stage, from Airflow's REST API only (so it works whatever the DAGs look like
inside: one task per pair or chunks): wall time (first run start to last run end), run and
task-instance counts, the sum of task durations, per-pair overhead beyond the fit (the
training runs' logged fit time when MLflow has one, else task time / pairs), and the peak
RSS of the stack's process trees (psutil, sampled every second) during the stage, and the machine's
busy CPU over the stage split by process (Airflow's parts, the MLflow server, the serving process,
PostgreSQL, this bench, the rest of the machine). Also the
sizes of the MLflow and Airflow databases, and a cold start of a second ``modelyard serve``
on the deployed plan (seconds to ready, RSS per model). Results go to docs/benchmarks.md
(between the ``scale`` markers) and to the ``scale`` key of docs/benchmarks.json.

The config writer and the stack context are used by ``tests/e2e/test_scale_chain.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: `modelyard` and `tests.bench` resolve from the repo
    sys.path.insert(0, str(REPO))

from modelyard.core.config import Config, load_config  # noqa: E402
from modelyard.deploy.devstack.chain import trigger_chain  # noqa: E402
from modelyard.deploy.devstack.endpoint import serving_versions  # noqa: E402
from modelyard.deploy.devstack.progress import follow_chain  # noqa: E402
from modelyard.deploy.devstack.stack import (  # noqa: E402
    CHAIN_DAG_IDS,
    AirflowApi,
    StackSettings,
    down,
    stack_settings,
    up,
)
from modelyard.deploy.rollout.processes import ManagedProcess  # noqa: E402

TIMEZONES = ("Asia/Jakarta", "Asia/Ho_Chi_Minh", "Asia/Bangkok", "Asia/Singapore", "Asia/Manila", "Asia/Kuala_Lumpur")
COUNTRIES = {
    "Asia/Jakarta": "ID", "Asia/Ho_Chi_Minh": "VN", "Asia/Bangkok": "TH", "Asia/Singapore": "SG",
    "Asia/Manila": "PH", "Asia/Kuala_Lumpur": "MY",
}  # fmt: skip
DEFAULT_PAIRS = 1000
DEFAULT_ROWS = 600
MARK_BEGIN = "<!-- scale:begin (tests/bench/scale.py rewrites this section) -->"
MARK_END = "<!-- scale:end -->"
SERVE_BEGIN = "<!-- serving-many:begin (tests/bench/scale.py --serve-models rewrites this section) -->"
SERVE_END = "<!-- serving-many:end -->"
GROWTH_BEGIN = "<!-- scale-growth:begin (tests/bench/scale.py adds this run's row) -->"
GROWTH_END = "<!-- scale-growth:end -->"
POOLED_TASK = ("training", "train_pooled_models")  # the task that trains every group's pooled model (ADR 0015)
FIT_METRIC_KEYS = ("fit_seconds", "fit_time_s", "train_fit_seconds")  # whichever training logs, if any
SAMPLE_SECONDS = 1.0


# ---------------------------------------------------------------------------- config


def region_names(count: int) -> list[str]:
    """``r0001`` ... : generated region names (the generator derives each region's behaviour from it)."""
    return [f"r{i:04d}" for i in range(1, count + 1)]


def write_scale_config(path: Path, storage_root: Path, pairs: int, rows: int = DEFAULT_ROWS) -> Path:
    """The demo config (modelyard.yaml) with ``pairs / families`` generated regions and ``rows`` rows each.

    Gates are loosened as in the e2e tier (few rows make weaker models, a loaded 2-core box slow
    predictions): the bench measures the chain, not the demo's quality bar.

    Raises:
        ValueError: ``pairs`` is not a positive multiple of the number of families.
    """
    raw = yaml.safe_load((REPO / "modelyard.yaml").read_text())
    families = len(raw["families"])
    if pairs < families or pairs % families:
        raise ValueError(f"--pairs {pairs}: must be a positive multiple of the {families} families in modelyard.yaml")
    zones = [TIMEZONES[i % len(TIMEZONES)] for i in range(pairs // families)]
    raw["regions"] = [
        {"name": name, "country": COUNTRIES[zone], "timezone": zone, "festivals": []}
        for name, zone in zip(region_names(pairs // families), zones, strict=True)
    ]
    raw.setdefault("deploy", {}).setdefault("kubernetes", {})["releases"] = {}
    raw["data"]["synthetic"] = {"rows": rows, "start": "2026-01-05", "days": 120}
    raw["data"]["min_rows"] = min(200, rows)
    raw["schedules"] = {"data_processing": None}  # only the bench's trigger starts the chain
    raw["monitoring"]["schedule"] = None  # an hourly measurement of every pair would land inside the run
    defaults = raw["gates"]["defaults"]
    defaults["latency_calls"] = 50
    defaults["max_p99_latency_ms"] = 1000
    defaults["classification"]["absolute"] = [{"metric": "holdout_auc", "op": ">=", "threshold": 0.5}]
    defaults["regression"]["absolute"] = [{"metric": "holdout_mae", "op": "<=", "threshold": 30.0}]
    # A few hundred rows a pair: small models need not beat their linear baseline here (the cost is measured).
    defaults["classification"]["baseline"] = defaults["regression"]["baseline"] = []
    raw["storage"] = {"root": str(storage_root)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# ---------------------------------------------------------------------------- the stack


@dataclasses.dataclass
class ScaleStack:
    """A running stack on a scale config."""

    config: Config
    settings: StackSettings
    api: AirflowApi


@contextlib.contextmanager
def scale_stack(
    home: Path, pairs: int, rows: int = DEFAULT_ROWS, logs_to: Path | None = None, airflow_db: str | None = None
) -> Iterator[ScaleStack]:
    """Write the config under ``home``, start MLflow + Airflow on free ports; stop them (keeping logs) at the end.

    ``airflow_db`` is Airflow's metadata database URL (default: SQLite in the Airflow home).
    """
    from modelyard.deploy.rollout.mlflow_server import free_port

    config_path = write_scale_config(home / "modelyard.yaml", home / "data", pairs, rows)
    config = load_config(config_path, environ={})
    ports = {name: str(free_port()) for name in ("AIRFLOW_PORT", "MLFLOW_PORT", "SERVING_PORT")}
    if airflow_db:
        ports["AIRFLOW_DATABASE_URL"] = airflow_db
    settings = stack_settings(config, config_path, ports)
    try:
        up(settings, timeout=600)
        api = AirflowApi(settings.airflow_url, timeout=120)
        api.wait_for_dags(timeout=600)
        yield ScaleStack(config, settings, api)
    finally:
        down(settings)
        if logs_to is not None:
            keep_logs(settings, logs_to)


def keep_logs(settings: StackSettings, target: Path) -> None:
    """Copy the services' logs and Airflow's task logs to ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for log in settings.run_dir.glob("*.log"):
        shutil.copy(log, target / log.name)
    task_logs = settings.airflow_home / "logs"
    if task_logs.is_dir():
        shutil.copytree(task_logs, target / "airflow-task-logs", dirs_exist_ok=True)


class MemorySampler:
    """Samples the summed RSS of every process tree the stack's pid files name, once a second."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.samples: list[tuple[float, int]] = []  # (unix time, bytes)
        self.busy: list[tuple[float, float]] = []  # (unix time, the machine's busy CPU seconds so far)
        self.cpu: list[tuple[float, dict[int, tuple[str, float]]]] = []  # (unix time, {pid: (kind, CPU s so far)})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            now = time.time()
            rss, cpu = self.tree_sample()
            self.samples.append((now, rss))
            self.busy.append((now, machine_busy_seconds()))
            self.cpu.append((now, cpu))

    def tree_sample(self) -> tuple[int, dict[int, tuple[str, float]]]:
        """The summed RSS of the stack's process trees, and each process's kind and CPU seconds so far.

        PostgreSQL's processes are not in the stack's trees (a machine service) but serve Airflow's
        metadata, so they are sampled too.
        """
        import psutil

        total, cpu = 0, {}
        for pid_file in self.run_dir.glob("*.pid"):
            pid = ManagedProcess(pid_file.stem, self.run_dir).pid()
            if pid is None:
                continue
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                for proc in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += proc.memory_info().rss
                        times = proc.cpu_times()
                        cpu[proc.pid] = (process_kind(pid_file.stem, proc), times.user + times.system)
        for proc in psutil.process_iter(["name", "cpu_times"]):
            if proc.info["name"] == "postgres" and proc.info["cpu_times"] is not None:
                cpu[proc.pid] = ("postgres", proc.info["cpu_times"].user + proc.info["cpu_times"].system)
        mine = psutil.Process().cpu_times()
        cpu[os.getpid()] = ("this bench (polling Airflow, sampling)", mine.user + mine.system)
        return total, cpu

    def cpu_by_kind(self, start: float | None, end: float | None) -> dict[str, float]:
        """CPU seconds each kind of process spent between ``start`` and ``end`` (``other``: the rest of the machine).

        A process's figure is the last sample inside the window less its last sample before it
        (0 when it started inside): a process that ended within a second of its last sample loses that second.
        """
        before: dict[int, float] = {}
        last: dict[int, tuple[str, float]] = {}
        for t, sample in self.cpu:
            if start is not None and t < start:
                before = {pid: seconds for pid, (_, seconds) in sample.items()}
            elif end is None or t <= end:
                last.update(sample)
        kinds: dict[str, float] = {}
        for pid, (kind, seconds) in last.items():
            kinds[kind] = kinds.get(kind, 0.0) + max(0.0, seconds - before.get(pid, 0.0))
        busy = self.cpu_seconds(start, end)
        if busy is not None:
            kinds["other"] = max(0.0, busy - sum(kinds.values()))
        return {kind: round(seconds, 1) for kind, seconds in sorted(kinds.items(), key=lambda kv: -kv[1])}

    def cpu_seconds(self, start: float | None, end: float | None) -> float | None:
        """Busy CPU seconds of the whole machine between ``start`` and ``end`` (every process, all cores)."""
        inside = [b for t, b in self.busy if (start is None or t >= start) and (end is None or t <= end)]
        return round(inside[-1] - inside[0], 1) if len(inside) >= 2 else None

    def peak(self, start: float | None = None, end: float | None = None) -> int | None:
        values = [rss for t, rss in self.samples if (start is None or t >= start) and (end is None or t <= end)]
        return max(values) if values else None


def process_kind(root: str, proc: Any) -> str:
    """What a process of the stack is, for the CPU breakdown: its pid file's name, Airflow's parts by command line."""
    command = " ".join(proc.cmdline())
    if "forkserver" in command or "multiprocessing" in command:
        return "chunk worker processes"
    if root == "mlflow":
        return "mlflow server"
    if root != "airflow":
        return root
    for part in ("scheduler", "dag-processor", "triggerer", "api-server"):
        if f"airflow {part}" in command or f"airflow {part.replace('-', '_')}" in command:
            return f"airflow {part}"
    if "standalone" in command:
        return "airflow standalone"
    if "LocalExecutor" in command:
        return "airflow executor (task supervisors)"
    return "airflow task processes (the chunks' pairs)"


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (``psutil.cpu_times``)."""
    import psutil

    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


# ---------------------------------------------------------------------------- the REST API, paginated


def all_pages(api: AirflowApi, path: str, key: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every item of a paginated ``/api/v2`` list (``limit``/``offset``)."""
    items: list[dict[str, Any]] = []
    while True:
        page = api.request("GET", path, params={**(params or {}), "limit": 100, "offset": len(items)})
        batch = list(page[key])
        items.extend(batch)
        if not batch or len(items) >= int(page.get("total_entries", len(items))):
            return items


def stage_runs(api: AirflowApi, dag_id: str, since: str) -> list[dict[str, Any]]:
    return all_pages(api, f"/dags/{dag_id}/dagRuns", "dag_runs", {"run_after_gte": since, "order_by": "run_after"})


def run_tasks(api: AirflowApi, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    return all_pages(api, f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", "task_instances")


def _stamp(value: str | None) -> float | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


# ---------------------------------------------------------------------------- measuring


def stage_figures(
    api: AirflowApi, dag_id: str, since: str, pairs: int, sampler: MemorySampler | None
) -> dict[str, Any]:
    """Runs, task instances, wall time, task time per pair and peak RSS of one stage."""
    runs = stage_runs(api, dag_id, since)
    tasks = [ti for run in runs for ti in run_tasks(api, dag_id, run["dag_run_id"])]
    starts = [s for s in (_stamp(r.get("start_date")) for r in runs) if s is not None]
    ends = [e for e in (_stamp(r.get("end_date")) for r in runs) if e is not None]
    task_seconds = sum(float(ti.get("duration") or 0) for ti in tasks)
    start, end = (min(starts), max(ends)) if starts and ends else (None, None)
    outcomes = [
        outcome
        for run in runs
        for ti in tasks_of_run(tasks, run)
        if int(ti.get("map_index", -1)) >= 0
        for outcome in api.pair_outcomes(dag_id, run["dag_run_id"], ti["task_id"], int(ti["map_index"]))
    ]
    pair_seconds = sum(float(o.get("seconds") or 0) for o in outcomes)
    return {
        "runs": len(runs),
        "run_states": sorted({str(r["state"]) for r in runs}),
        "task_instances": len(tasks),
        "mapped_task_instances": sum(1 for ti in tasks if int(ti.get("map_index", -1)) >= 0),
        "wall_seconds": round(end - start, 1) if start is not None and end is not None else None,
        "task_seconds": round(task_seconds, 1),
        "task_seconds_per_pair": round(task_seconds / pairs, 3),
        "tasks": _task_windows(tasks),
        "peak_rss_mb": _mb(sampler.peak(start, end)) if sampler is not None and start is not None else None,
        "cpu_seconds": sampler.cpu_seconds(start, end) if sampler is not None and start is not None else None,
        "cpu_by_process": sampler.cpu_by_kind(start, end) if sampler is not None and start is not None else None,
        "pair_outcomes": len(outcomes),
        "pair_statuses": dict(sorted(Counter(str(o.get("status")) for o in outcomes).items())),
        "pair_seconds": round(pair_seconds, 1),
        "start": start,
        "end": end,
    }


def _task_windows(tasks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per task id: instances, summed duration, and the window from the first start to the last end."""
    windows: dict[str, dict[str, Any]] = {}
    for ti in tasks:
        window = windows.setdefault(ti["task_id"], {"instances": 0, "seconds": 0.0, "start": None, "end": None})
        window["instances"] += 1
        window["seconds"] = round(window["seconds"] + float(ti.get("duration") or 0), 1)
        start, end = _stamp(ti.get("start_date")), _stamp(ti.get("end_date"))
        if start is not None and (window["start"] is None or start < window["start"]):
            window["start"] = start
        if end is not None and (window["end"] is None or end > window["end"]):
            window["end"] = end
    return windows


def tasks_of_run(tasks: list[dict[str, Any]], run: dict[str, Any]) -> list[dict[str, Any]]:
    return [ti for ti in tasks if ti.get("dag_run_id") == run["dag_run_id"]]


def fit_seconds(tracking_uri: str) -> float | None:
    """The sum of the fit times training logged to MLflow (None when no run logs one)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    total, found, token = 0.0, False, None
    while experiments:
        page = client.search_runs(experiments, max_results=1000, page_token=token)
        for run in page:
            for key in FIT_METRIC_KEYS:
                if key in run.data.metrics:
                    total, found = total + float(run.data.metrics[key]), True
                    break
        token = page.token
        if not token:
            break
    return total if found else None


def database_sizes(settings: StackSettings) -> dict[str, float]:
    """MB of the SQLite files under the MLflow and Airflow homes (what the embedded stack uses)."""
    airflow_db = _mb(sum(p.stat().st_size for p in settings.airflow_home.glob("*.db")))
    if settings.airflow_database_url:
        import psycopg

        url = settings.airflow_database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url) as connection:
            row = connection.execute("SELECT pg_database_size(current_database())").fetchone()
        airflow_db = _mb(int(row[0])) if row else None
    return {
        "mlflow_db_mb": _mb(sum(p.stat().st_size for p in settings.mlflow_dir.rglob("*.db"))) or 0.0,
        "airflow_db_mb": airflow_db or 0.0,
        "mlflow_artifacts_mb": _mb(_tree_size(settings.mlflow_dir)) or 0.0,
    }


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _mb(value: int | None) -> float | None:
    return round(value / 2**20, 1) if value is not None else None


def serving_check(stack: ScaleStack) -> dict[str, Any]:
    """Ask the serving endpoint for every pair; compare with the registry's champions (or pooled fallbacks)."""
    from modelyard.promotion.status import collect_status

    statuses = collect_status(stack.config, tracking_uri=stack.settings.mlflow_url)
    # A region whose first own model lost to its group's pooled champion is served by the pooled one (ADR 0015).
    champions = {f"{s.family}/{s.region}": s.champion.version for s in statuses if s.champion}
    champions |= {f"{s.family}/{s.region}": s.fallback.version for s in statuses if not s.champion and s.fallback}
    served = serving_versions(stack.config, stack.settings.serving_url)
    wrong = sorted(key for key, version in served.items() if champions.get(key) != version)
    return {"pairs": len(served), "champions": len(champions), "served": served, "not_serving_champion": wrong}


def cold_start(stack: ScaleStack, workdir: Path) -> dict[str, Any]:
    """Start a second ``modelyard serve`` on the deployed plan: seconds to ready, RSS, RSS per model."""
    import psutil

    from modelyard.deploy.devstack.stack import last_deployed_plan, serving_target
    from modelyard.deploy.serving.plan import dump_plan
    from tests.bench.serving import ServerProcess

    plan = last_deployed_plan(serving_target(stack.config, stack.settings))
    if plan is None:
        return {"error": "no deployed plan"}
    plan_path = workdir / "cold-plan.json"
    plan_path.write_bytes(dump_plan(plan, "json"))
    started = time.perf_counter()
    env = {"MODELYARD_SERVE_MODEL_CACHE": str(workdir / "cold-cache")}
    with ServerProcess.start(plan_path, stack.settings.mlflow_url, env=env, poll_seconds=5) as server:
        ready = server.wait_ready(timeout=1800)
        seconds = time.perf_counter() - started
        rss = psutil.Process(server.process.pid).memory_info().rss
    last = ready["plan"].get("last_load") or {}
    return {
        "models": len(ready["models"]),
        "seconds_to_ready": round(seconds, 1),
        "rss_mb": _mb(rss),
        "rss_before_load_mb": _mb(last.get("rss_before_bytes")),
        "rss_per_model_mb": _mb(last.get("rss_per_loaded_model_bytes")),
        "load_threads": last.get("threads"),
    }


def cli_timings(stack: ScaleStack) -> dict[str, Any]:
    """Wall seconds of ``modelyard status``, ``modelyard plan`` and ``modelyard prune --dry-run`` (what the daily
    housekeeping DAG plans: every pair's snapshots against every registered version), also with ``--versions``,
    over every model, as a user runs them."""
    import subprocess

    config_path = str(stack.settings.config_path)
    common = ["--config", config_path, "--tracking-uri", stack.settings.mlflow_url]
    out: dict[str, Any] = {}
    commands = {
        "status": ["status"],
        "plan": ["plan", "--target", "local"],
        "prune --dry-run": ["prune", "--dry-run"],
        # + every model's aliases and the local server's plans (ADR 0036)
        "prune --dry-run --versions 1": ["prune", "--dry-run", "--versions", "1"],
    }
    for name, args in commands.items():
        started = time.perf_counter()
        done = subprocess.run(
            [str(Path(sys.executable).with_name("modelyard")), *args, *common],
            capture_output=True, text=True, timeout=1800, env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
        out[name] = {
            "seconds": round(time.perf_counter() - started, 2),
            "exit_code": done.returncode,
            "lines": len(done.stdout.splitlines()),
            **({"stderr": done.stderr.strip().splitlines()[-1][:300]} if done.returncode and done.stderr else {}),
        }
    return out


@contextlib.contextmanager
def postgres_database(host: str = "127.0.0.1", user: str = "postgres") -> Iterator[str]:
    """A fresh database on the local PostgreSQL for Airflow's metadata; its SQLAlchemy URL; dropped afterwards."""
    import uuid

    import psycopg

    name = f"modelyard_scale_{uuid.uuid4().hex[:8]}"
    admin = f"postgresql://{user}@{host}/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{user}@{host}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---------------------------------------------------------------------------- the run


def run_bench(pairs: int, rows: int, home: Path, timeout: float, airflow_db: str | None = None) -> dict[str, Any]:
    """Run the chain on a fresh stack and measure it (a chain that fails or times out is measured as far as it got)."""
    from rich.console import Console

    from modelyard.deploy.devstack.stack import StackError

    results = _header(pairs, rows)
    results["commit"] = _commit()
    results["airflow_database"] = "PostgreSQL" if airflow_db else "SQLite"
    stack_context = scale_stack(home, pairs, rows, logs_to=home / "logs", airflow_db=airflow_db)
    with stack_context as stack, MemorySampler(stack.settings.run_dir) as mem:
        console = Console(file=sys.stdout, width=140, force_terminal=False)
        triggered = time.time()
        since = trigger_chain(stack.api, note=f"bench-scale {pairs} pairs")
        try:
            follow_chain(stack.api, since, console, timeout=timeout)
            results["complete"] = True
        except StackError as exc:  # a failed task or the timeout: report what ran
            results["complete"], results["stopped_because"] = False, str(exc).splitlines()[0][:300]
        results["chain_seconds"] = round(time.time() - triggered, 1)
        measure(stack, since, triggered, results, mem)
        if results["complete"]:
            results["cli"] = cli_timings(stack)
            results["cold_start"] = cold_start(stack, home)
    results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def _commit() -> str | None:
    """The repository's commit (with ``+`` when the tree has changes), so each recorded run names its code."""
    import subprocess

    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+" if dirty.stdout.strip() else "")


def _header(pairs: int, rows: int) -> dict[str, Any]:
    return {
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S%z"),
        "pairs": pairs,
        "regions": pairs // 2,
        "rows_per_region": rows,
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
            "probe_fit_cpu_s": cpu_probe(),
        },
    }


def cpu_probe(repeats: int = 3) -> float:
    """CPU seconds of one fixed single-threaded xgboost fit (the best of ``repeats``): the machine's speed.

    The same fit cost 40% more CPU in the afternoon of 2026-12-05 than at noon, on the same code:
    the VM's cores are not always alike, so each run says how fast they were (lower is faster).
    """
    import numpy as np
    import xgboost as xgb

    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, 20))
    y = (x[:, 0] + x[:, 1] * x[:, 2] + rng.normal(size=len(x)) > 0).astype(int)
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        xgb.XGBClassifier(n_estimators=100, max_depth=6, n_jobs=1, tree_method="hist").fit(x, y)
        best = min(best, time.process_time() - start)
    return round(best, 3)


def measure(
    stack: ScaleStack, since: str, triggered: float, results: dict[str, Any], mem: MemorySampler | None
) -> None:
    """Stage figures, the serving check, database sizes and overheads into ``results``."""
    pairs = results["pairs"]
    results["since"] = since
    results["stages"] = {dag_id: stage_figures(stack.api, dag_id, since, pairs, mem) for dag_id in CHAIN_DAG_IDS}
    check = serving_check(stack)
    results["serving"] = {k: v for k, v in check.items() if k != "served"}
    results["trigger_to_all_served_s"] = round(time.time() - triggered, 1)
    results["peak_rss_mb"] = _mb(mem.peak()) if mem is not None else None
    fit = fit_seconds(stack.settings.mlflow_url)
    results["fit_seconds_logged"] = round(fit, 1) if fit is not None else None
    results["databases"] = database_sizes(stack.settings)
    _overheads(results)
    results["pooled"] = pooled_cost(stack, results, mem)


def pooled_cost(stack: ScaleStack, results: dict[str, Any], mem: MemorySampler | None) -> dict[str, Any]:
    """What the pooled models cost (issue 25): their training task, and their promotion decisions' seconds.

    Promotion decides pooled challengers inside its chunks, beside the pairs; an outcome whose
    "region" is not a configured region is a group's pooled model.
    """
    stage, task_id = POOLED_TASK
    window = results["stages"].get(stage, {}).get("tasks", {}).get(task_id) or {}
    regions = {r.name for r in stack.config.regions}
    figures: dict[str, Any] = {
        "training_task_seconds": window.get("seconds"),
        "training_machine_cpu_s": mem.cpu_seconds(window.get("start"), window.get("end")) if mem else None,
    }
    promotion = stack.api
    decided = [
        o
        for run in stage_runs(promotion, "promotion", results["since"])
        for ti in run_tasks(promotion, "promotion", run["dag_run_id"])
        if int(ti.get("map_index", -1)) >= 0
        for o in promotion.pair_outcomes("promotion", run["dag_run_id"], ti["task_id"], int(ti["map_index"]))
        if o.get("region") not in regions
    ]
    figures["models"] = len(decided)
    figures["promotion_seconds"] = round(sum(float(o.get("seconds") or 0) for o in decided), 1)
    figures["promotion_statuses"] = dict(sorted(Counter(str(o.get("status")) for o in decided).items()))
    return figures


def _overheads(results: dict[str, Any]) -> None:
    """Per-pair overhead beyond the fit, from the chunks' own per-pair seconds (ADR 0008's outcomes).

    Each pair's seconds are measured inside the chunk's worker process around that pair's work;
    training subtracts the fit time it logged to MLflow. Task start-up, the chunk's pool and the
    publish task are not in it: they are the task time that is left (``task s``).
    """
    pairs, fit = results["pairs"], results.get("fit_seconds_logged")
    for dag_id, stage in results["stages"].items():
        pair_seconds = stage.get("pair_seconds") or 0.0
        if not stage.get("pair_outcomes"):
            stage["overhead_per_pair_s"] = stage["task_seconds_per_pair"]
            stage["overhead_basis"] = "task time per pair (the stage reported no per-pair outcomes)"
        elif dag_id == "training" and fit is not None:
            stage["overhead_per_pair_s"] = round((pair_seconds - fit) / pairs, 3)
            stage["overhead_basis"] = "per-pair seconds in the chunk workers minus the logged fit time, per pair"
        else:
            stage["overhead_per_pair_s"] = round(pair_seconds / pairs, 3)
            stage["overhead_basis"] = "per-pair seconds in the chunk workers, per pair (no fit)"
        cpu = stage.get("cpu_seconds")
        stage["cpu_seconds_per_pair"] = round(cpu / pairs, 3) if cpu is not None else None


# ---------------------------------------------------------------------------- one pod, many models


def serve_many(models: int, threads: Sequence[int], workdir: Path) -> dict[str, Any]:
    """``models`` registered models (the serving bench's 200-tree xgboost with its ONNX copy, logged once,
    registered under ``models`` names) served by one ``modelyard serve``: for each load-thread count the
    seconds to ready and RSS; then a plan that changes one model, and how many models that loaded.
    """
    import mlflow

    from modelyard.deploy.rollout.mlflow_server import start_mlflow_server

    server = start_mlflow_server(workdir / "mlflow", startup_timeout=900)  # a busy machine starts it slowly
    try:
        mlflow.set_tracking_uri(server.url)
        mlflow.set_registry_uri(server.url)
        started = time.perf_counter()
        uris = _register_copies(models)
        results: dict[str, Any] = {"models": models, "register_seconds": round(time.perf_counter() - started, 1)}
        results["runs"] = [_serve_once(server.url, uris, n, workdir / f"threads-{n}") for n in threads]
        results["swap_one"] = _swap_one(server.url, uris, max(threads), workdir / "swap")
        results["when"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S%z")
        results["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        return results
    finally:
        server.stop()


def _register_copies(models: int) -> list[str]:
    import mlflow

    from tests.bench.serving import register_xgboost

    first = register_xgboost("many-0000")
    source = mlflow.MlflowClient().get_model_version("many-0000", "1").source
    uris = [first]
    for i in range(1, models):
        version = mlflow.register_model(source, f"many-{i:04d}").version
        uris.append(f"models:/many-{i:04d}/{version}")
    return uris


def _many_plan(uris: Sequence[str]) -> dict[str, Any]:
    services = [
        {"family": "many", "region": f"r{i:04d}", "timezone": "UTC",
         "variants": [{"name": "champion", "model_uri": uri, "weight": 100}]}
        for i, uri in enumerate(uris)
    ]  # fmt: skip
    return {"version": 1, "services": services}


def _serve_once(tracking_uri: str, uris: Sequence[str], threads: int, workdir: Path) -> dict[str, Any]:
    import psutil

    from tests.bench.serving import ServerProcess, write_plan

    workdir.mkdir(parents=True, exist_ok=True)
    plan_path = workdir / "plan.json"
    write_plan(plan_path, _many_plan(uris))
    env = {"MODELYARD_SERVE_LOAD_THREADS": str(threads), "MODELYARD_SERVE_MODEL_CACHE": str(workdir / "cache")}
    started = time.perf_counter()
    with ServerProcess.start(plan_path, tracking_uri, env=env) as server:
        ready = server.wait_ready(timeout=3600)
        seconds = time.perf_counter() - started
        rss = psutil.Process(server.process.pid).memory_info().rss
    last = ready["plan"]["last_load"] or {}
    return {
        "load_threads": threads,
        "seconds_to_ready": round(seconds, 1),
        "rss_mb": _mb(rss),
        "rss_before_load_mb": _mb(last.get("rss_before_bytes")),
        "rss_per_model_mb": round(last["rss_per_loaded_model_bytes"] / 2**20, 2),
    }


def _swap_one(tracking_uri: str, uris: Sequence[str], threads: int, workdir: Path) -> dict[str, Any]:
    """Serve ``uris``, then move one model to a new version: seconds to the new plan, and the loads it cost."""
    import re

    import httpx
    import mlflow

    from tests.bench.serving import ServerProcess, write_plan

    workdir.mkdir(parents=True, exist_ok=True)
    plan_path = workdir / "plan.json"
    write_plan(plan_path, _many_plan(uris))
    env = {"MODELYARD_SERVE_LOAD_THREADS": str(threads), "MODELYARD_SERVE_MODEL_CACHE": str(workdir / "cache")}

    def loads(server: ServerProcess) -> int:
        text = httpx.get(f"{server.url}/metrics", timeout=30).text
        return int(float(re.search(r"^modelyard_model_loads_total ([0-9.e+]+)$", text, re.M)[1]))  # type: ignore[index]

    with ServerProcess.start(plan_path, tracking_uri, env=env) as server:
        server.wait_ready(timeout=3600)
        before = loads(server)
        name = uris[-1].split("/")[1]
        source = mlflow.MlflowClient().get_model_version(name, "1").source
        version = mlflow.register_model(source, name).version
        started = time.perf_counter()
        digest = write_plan(plan_path, _many_plan([*uris[:-1], f"models:/{name}/{version}"]))
        ready = server.wait_ready(timeout=600, digest=digest)
        seconds = time.perf_counter() - started
        after = loads(server)
    return {
        "models": len(uris),
        "seconds_to_new_plan": round(seconds, 2),
        "loads": after - before,
        "reused": ready["plan"]["last_load"]["reused"],
    }


def render_serving_many(results: dict[str, Any]) -> str:
    """The ``Serving many models`` section of docs/benchmarks.md."""
    lines = [
        "## Serving many models",
        "",
        f"`python tests/bench/scale.py --serve-models {results['models']}`, {results['when']} (load average at the "
        f"end {results['loadavg_at_end']}): one `modelyard serve` process, {results['models']} registered models "
        "(the serving bench's 200-tree, 20-feature xgboost with its ONNX copy, registered under as many names), "
        "a real MLflow server on SQLite on the same machine.",
        "",
        "| load threads | seconds to ready | RSS MB | RSS before loading MB | RSS per model MB |",
        "|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        lines.append(
            f"| {run['load_threads']} | {run['seconds_to_ready']} | {run['rss_mb']} | {run['rss_before_load_mb']} "
            f"| {run['rss_per_model_mb']} |"
        )
    swap = results["swap_one"]
    lines += [
        "",
        f"A plan that moves one model of {swap['models']} to a new version: {swap['loads']} model loaded "
        f"(`modelyard_model_loads_total`), {swap['reused']} reused, new plan active {swap['seconds_to_new_plan']} s "
        "after the plan file was written.",
        "",
    ]
    return "\n".join(lines)


def write_section(md_path: Path, begin: str, end: str, body: str) -> None:
    """Replace the text between ``begin`` and ``end`` in ``md_path`` (appended when the markers are missing)."""
    section = f"{begin}\n{body}{end}"
    text = md_path.read_text() if md_path.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    md_path.write_text(text)


def update_json(json_path: Path, key: str, value: Any) -> None:
    existing = json.loads(json_path.read_text()) if json_path.exists() else {}
    existing[key] = value
    json_path.write_text(json.dumps(existing, indent=2) + "\n")


# ---------------------------------------------------------------------------- report


def render_markdown(results: dict[str, Any]) -> str:
    """The ``Scale`` section of docs/benchmarks.md."""
    stages, serving, dbs = results["stages"], results["serving"], results["databases"]
    cold = results.get("cold_start") or {}
    lines = [
        "## Scale",
        "",
        f"`make bench-scale PAIRS={results['pairs']}` (`python tests/bench/scale.py --pairs {results['pairs']}`), "
        f"{results['when']}: **{results['pairs']} pairs** ({results['regions']} generated regions x 2 families, "
        f"{results['rows_per_region']} rows each), the dev stack's real Airflow scheduler (LocalExecutor, metadata "
        f"on {results.get('airflow_database', 'SQLite')}) and MLflow server on SQLite, "
        f"{results['machine']['cpus']} CPUs shared with other work (load average "
        f"{results['machine']['loadavg_at_start']} at start, {results['machine']['loadavg_at_end']} at end; "
        f"a fixed xgboost fit cost {results['machine'].get('probe_fit_cpu_s', '(not measured)')} CPU s).",
        "",
        (
            f"Trigger to every pair served: **{results['trigger_to_all_served_s']} s**; "
            if results.get("complete", True)
            else f"**Incomplete run**: stopped after {results['chain_seconds']} s ({results.get('stopped_because')}); "
            "the figures below cover what had run by then; "
        )
        + f"{serving['pairs'] - len(serving['not_serving_champion'])}/{serving['pairs']} pairs "
        "answered by their champion"
        + (f" (not: {', '.join(serving['not_serving_champion'][:10])})" if serving["not_serving_champion"] else "")
        + f"; peak RSS of the stack {results['peak_rss_mb']} MB.",
        "",
        "| stage | wall s | runs | task instances (mapped) | task s | pairs reported | pair s | overhead / pair s "
        "| machine CPU s / pair | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for dag_id, s in stages.items():
        lines.append(
            f"| {dag_id} | {s['wall_seconds']} | {s['runs']} | {s['task_instances']} ({s['mapped_task_instances']}) "
            f"| {s['task_seconds']} | {s.get('pair_outcomes')} {s.get('pair_statuses') or ''} "
            f"| {s.get('pair_seconds')} | {s['overhead_per_pair_s']} | {s.get('cpu_seconds_per_pair')} "
            f"| {s['peak_rss_mb']} |"
        )
    lines += _cpu_by_process_lines(stages, results["pairs"])
    fit = results.get("fit_seconds_logged")
    lines += [
        "",
        "Overhead per pair: the seconds each pair took inside its chunk's worker process (the chunk "
        "outcomes' own figure), divided by the pairs"
        + (f"; for training less the {fit} s of fit time logged in MLflow (`fit_seconds`)" if fit is not None else "")
        + ". Task s (every task instance's duration: the chunks, whose workers run pairs side by side, "
        "plus the select and publish tasks) and the machine's busy CPU over the stage's window "
        "(every process on both cores; stages that overlap count their common seconds twice) are beside it.",
        _cli_line(results.get("cli")),
        f"Databases after the run: MLflow {dbs['mlflow_db_mb']} MB "
        f"(artifacts and all: {dbs['mlflow_artifacts_mb']} MB), "
        f"Airflow {dbs['airflow_db_mb']} MB.",
        (
            f"Cold start of a second `modelyard serve` on the deployed plan: {cold.get('models')} models ready in "
            f"{cold.get('seconds_to_ready')} s ({cold.get('load_threads')} load threads), RSS {cold.get('rss_mb')} MB, "
            f"~{cold.get('rss_per_model_mb')} MB per model over {cold.get('rss_before_load_mb')} MB before loading."
            if cold
            else "Cold start of a second serving process: not measured (the chain did not complete)."
        ),
        "",
    ]
    return "\n".join(lines)


def _cpu_by_process_lines(stages: dict[str, Any], pairs: int) -> list[str]:
    """Where each stage's machine CPU went, by kind of process, in CPU s a pair (the stage's window, as above)."""
    kinds: list[str] = []
    for stage in stages.values():
        kinds += [k for k in stage.get("cpu_by_process") or {} if k not in kinds]
    if not kinds:
        return []
    lines = [
        "",
        "Machine CPU s a pair by process, over each stage's window (the pairs' work runs in the Airflow task "
        "processes, or in chunk worker processes when `scale.workers` > 1; other: the machine's processes "
        "outside the stack and PostgreSQL):",
        "",
        "| process | " + " | ".join(stages) + " |",
        "|---|" + "---|" * len(stages),
    ]
    for kind in kinds:
        cells = [(stage.get("cpu_by_process") or {}).get(kind) for stage in stages.values()]
        lines.append(f"| {kind} | " + " | ".join("" if c is None else f"{c / pairs:.3f}" for c in cells) + " |")
    return lines


def _cli_line(cli: dict[str, Any] | None) -> str:
    if not cli:
        return "`modelyard status`, `plan`, `prune --dry-run` over every model: not timed (the chain did not complete)"
    parts = [
        f"`modelyard {name}` {figures['seconds']} s"
        + ("" if figures["exit_code"] == 0 else f" (exit {figures['exit_code']}: {figures.get('stderr', '')})")
        for name, figures in cli.items()
    ]
    return "Over every model, as a user runs them (a fresh process each, imports included): " + ", ".join(parts) + "."


def growth_row(results: dict[str, Any]) -> dict[str, Any]:
    """One run's line of the growth table: wall, machine CPU per pair per stage, peak RSS, the pooled models' cost."""
    stages = results["stages"]
    pooled = results.get("pooled") or {}
    return {
        "when": results["when"],
        "pairs": results["pairs"],
        "commit": results.get("commit"),
        "complete": results.get("complete", True),
        "trigger_to_all_served_s": results["trigger_to_all_served_s"],
        "cpu_per_pair": {dag_id: s.get("cpu_seconds_per_pair") for dag_id, s in stages.items()},
        "wall": {dag_id: s.get("wall_seconds") for dag_id, s in stages.items()},
        "peak_rss_mb": results["peak_rss_mb"],
        "loadavg_at_start": results["machine"]["loadavg_at_start"],
        "probe_fit_cpu_s": results["machine"].get("probe_fit_cpu_s"),
        "pooled": pooled,
    }


def render_growth(rows: list[dict[str, Any]]) -> str:
    """The table of every recorded scale run, by pairs then time: does the cost grow with the pairs alone?"""
    lines = [
        "### Growth with the pairs",
        "",
        "Every `make bench-scale` run recorded (newest per pair count and commit; `docs/benchmarks.json`, key "
        "`scale_runs`). Machine CPU s per pair by stage: data / training / promotion / deploy. Pooled: the "
        "`train_pooled_models` task's seconds and machine CPU, and the seconds of the pooled models' promotion "
        "decisions, for that many pooled models. Probe: the CPU seconds of one fixed xgboost fit at the start "
        "(the machine's speed; lower is faster).",
        "",
        "| when | commit | pairs | trigger to all served s | stage walls s | machine CPU s / pair | peak RSS MB "
        "| pooled models: training s (machine CPU s), promotion s | load at start | probe s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: (r["pairs"], r["when"])):
        order = CHAIN_DAG_IDS
        cpu = " / ".join(str(row["cpu_per_pair"].get(k)) for k in order if k in row["cpu_per_pair"])
        wall = " / ".join(str(row["wall"].get(k)) for k in order if k in row["wall"])
        p = row.get("pooled") or {}
        pooled = (
            f"{p.get('models')}: {p.get('training_task_seconds')} ({p.get('training_machine_cpu_s')}), "
            f"{p.get('promotion_seconds')}"
            if p
            else "(not recorded)"
        )
        served = (
            row["trigger_to_all_served_s"]
            if row.get("complete", True)
            else f"incomplete ({row['trigger_to_all_served_s']})"
        )
        lines.append(
            f"| {row['when']} | {row.get('commit') or ''} | {row['pairs']} | {served} | {wall} | {cpu} "
            f"| {row['peak_rss_mb']} | {pooled} | {row['loadavg_at_start']} | {row.get('probe_fit_cpu_s') or ''} |"
        )
    return "\n".join([*lines, ""])


def write_results(results: dict[str, Any], out: Path) -> None:
    """Rewrite the marked sections of ``benchmarks.md`` and the ``scale``/``scale_runs`` keys of the JSON."""
    out.mkdir(parents=True, exist_ok=True)
    update_json(out / "benchmarks.json", "scale", results)
    json_path = out / "benchmarks.json"
    runs = json.loads(json_path.read_text()).get("scale_runs", []) if json_path.exists() else []
    row = growth_row(results)
    runs = [r for r in runs if (r["pairs"], r.get("commit")) != (row["pairs"], row["commit"])] + [row]
    update_json(json_path, "scale_runs", runs)
    write_section(out / "benchmarks.md", MARK_BEGIN, MARK_END, render_markdown(results))
    write_section(out / "benchmarks.md", GROWTH_BEGIN, GROWTH_END, render_growth(runs))


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python tests/bench/scale.py", description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=DEFAULT_PAIRS, help="(family, region) pairs; 2 per region")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="synthetic rows per region")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="give up following the chain after this")
    parser.add_argument("--home", type=Path, default=None, help="the stack's home (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="where benchmarks.md/.json go")
    parser.add_argument(
        "--airflow-db", choices=("sqlite", "postgres"), default="sqlite",
        help="Airflow's metadata database: the dev stack's SQLite, or a fresh database on the local PostgreSQL "
        "(127.0.0.1:5432, user postgres; removed afterwards). SQLite's single writer stops the scheduler "
        "('database is locked') at hundreds of pairs.",
    )  # fmt: skip
    parser.add_argument(
        "--serve-models", type=int, default=None, metavar="N",
        help="measure only one serving process with N models (no Airflow): load threads 1 and 4, a one-model swap",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, write docs/benchmarks.md (Scale section) and .json, print the section."""
    options = _parse_args(argv)
    if options.serve_models is not None:
        with tempfile.TemporaryDirectory(prefix="modelyard-serve-many-") as tmp:
            many = serve_many(options.serve_models, (1, 4), Path(tmp))
        options.out.mkdir(parents=True, exist_ok=True)
        update_json(options.out / "benchmarks.json", "serving_many", many)
        write_section(options.out / "benchmarks.md", SERVE_BEGIN, SERVE_END, render_serving_many(many))
        print(render_serving_many(many))
        return 0
    with contextlib.ExitStack() as cleanup:
        home = options.home or Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="modelyard-scale-")))
        airflow_db = cleanup.enter_context(postgres_database()) if options.airflow_db == "postgres" else None
        results = run_bench(options.pairs, options.rows, home.resolve(), options.timeout, airflow_db)
        logs = REPO / "test-results" / "bench-scale-logs"
        shutil.rmtree(logs, ignore_errors=True)
        shutil.copytree(home / "logs", logs, dirs_exist_ok=True)
    write_results(results, options.out)
    print(render_markdown(results))
    return 0 if not results["serving"]["not_serving_champion"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
