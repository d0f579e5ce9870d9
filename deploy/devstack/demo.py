"""``modelyard demo | up | down | demo-festival``: the whole chain on a real Airflow and MLflow.

``demo`` starts the embedded stack (``deploy.stack``), unpauses the four DAGs, triggers
``data_processing`` through the Airflow REST API and follows the asset-driven chain
(features → training → promotion → deploy) with a live view until nothing is left to
run. A failed task stops it with that task's log excerpt (exit 1). At the end it prints
the champions, the URLs, the Airflow login and a curl example.

``demo-festival`` is the second act: it writes a config overlay (``MODELYARD_CONFIG_OVERLAY``,
read by every task) that adds a festival over the recent data of one region and switches
the rollout to canary, re-runs the chain for that region, and keeps a background load on
the live endpoint during the rollout, then prints how many requests were served and failed.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import typer
import yaml

from modelyard.core.config import Config
from modelyard.core.featurespec import WINDOW_KINDS
from modelyard.deploy.devstack.stack import (
    AIRFLOW_PASSWORD,
    AIRFLOW_USER,
    DAG_IDS,
    AirflowApi,
    StackError,
    StackSettings,
)

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

TERMINAL_RUN_STATES = frozenset({"success", "failed"})
FAILED_TASK_STATES = frozenset({"failed"})
POLL_SECONDS = 3.0
QUIET_POLLS = 3  # consecutive polls with nothing running or queued before the chain counts as done
STAGE_LABELS = {
    "data_processing": "data", "monitoring": "monitoring", "training": "training", "promotion": "promotion",
    "deploy": "deploy",
}  # fmt: skip
STATE_STYLES = {
    "success": "green",
    "failed": "bold red",
    "upstream_failed": "red",
    "running": "cyan",
    "queued": "yellow",
    "scheduled": "yellow",
    "up_for_retry": "magenta",
    "skipped": "dim",
    "deferred": "blue",
    # a pair's own outcome in a chunk (pipeline.chunks.PairOutcome.status)
    "published": "green",
    "registered": "green",
    "promoted": "green",
    "unchanged": "green",
    "rejected": "red",
    "awaiting-approval": "blue",
}


class ChainFailedError(StackError):
    """A task of the chain failed; the message carries its log excerpt."""


# ---------------------------------------------------------------- the chain, as the REST API shows it


@dataclass
class ChainState:
    """Runs of the four DAGs since the demo's trigger, their task instances and queued asset events."""

    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tasks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # run_id -> task instances
    queued: dict[str, int] = field(default_factory=dict)
    # (dag_id, run_id, task_id, map_index, try) of a finished chunk task -> its pairs' outcomes.
    outcomes: dict[tuple[str, str, str, int, int], list[dict[str, Any]]] = field(default_factory=dict)

    def all_runs(self) -> Iterable[dict[str, Any]]:
        for dag_id in DAG_IDS:
            yield from self.runs.get(dag_id, [])

    def busy(self) -> bool:
        """Something still runs, or an asset event waits to start a run."""
        pending = any(run["state"] not in TERMINAL_RUN_STATES for run in self.all_runs())
        return pending or any(self.queued.values())

    def failures(self) -> list[dict[str, Any]]:
        """Failed task instances, oldest run first."""
        return [ti for run in self.all_runs() for ti in self.tasks.get(run["dag_run_id"], []) if _failed(ti)]

    def failed_runs(self) -> list[dict[str, Any]]:
        return [run for run in self.all_runs() if run["state"] == "failed"]


def _failed(ti: dict[str, Any]) -> bool:
    return ti.get("state") in FAILED_TASK_STATES


# The chunk task of each stage (ADR 0008): its XCom ``pair_outcomes`` says what happened to each pair.
CHUNK_TASKS = frozenset({"build_snapshots", "measure", "train", "decide"})


def poll_chain(api: AirflowApi, since: str, known: ChainState | None = None) -> ChainState:
    """The chain's state: runs after ``since`` plus any run still queued or running.

    The pair outcomes of finished chunk tasks are read once (kept from ``known``, the previous poll).
    """
    state = ChainState(outcomes=dict(known.outcomes) if known else {})
    for dag_id in DAG_IDS:
        runs = {run["dag_run_id"]: run for run in api.dag_runs(dag_id, since)}
        for run in api.dag_runs(dag_id):
            if run["state"] not in TERMINAL_RUN_STATES:
                runs.setdefault(run["dag_run_id"], run)
        state.runs[dag_id] = sorted(runs.values(), key=lambda r: str(r.get("run_after")))
        for run in state.runs[dag_id]:
            state.tasks[run["dag_run_id"]] = api.task_instances(dag_id, run["dag_run_id"])
            _read_outcomes(api, state, state.tasks[run["dag_run_id"]])
        state.queued[dag_id] = api.queued_asset_events(dag_id)
    return state


def _read_outcomes(api: AirflowApi, state: ChainState, tis: list[dict[str, Any]]) -> None:
    for ti in tis:
        key = _outcome_key(ti)
        if key is not None and key not in state.outcomes and ti.get("state") in ("success", "failed"):
            state.outcomes[key] = api.pair_outcomes(key[0], key[1], key[2], key[3])


def _outcome_key(ti: dict[str, Any]) -> tuple[str, str, str, int, int] | None:
    if ti["task_id"] not in CHUNK_TASKS or int(ti["map_index"]) < 0:
        return None
    return (ti["dag_id"], ti["dag_run_id"], ti["task_id"], int(ti["map_index"]), int(ti.get("try_number") or 0))


def failure_report(api: AirflowApi, failures: list[dict[str, Any]], lines: int = 40) -> str:
    """The failing tasks and the tail of the first one's log (from its first error line on)."""
    first = failures[0]
    names = ", ".join(_ti_name(ti) for ti in failures)
    log = api.task_log(
        first["dag_id"], first["dag_run_id"], first["task_id"], int(first["map_index"]), int(first["try_number"])
    )
    excerpt = log_excerpt(log, lines)
    return f"failed: {names}\n--- log of {_ti_name(first)} (try {first['try_number']}) ---\n{excerpt}"


def log_excerpt(log: str, lines: int = 40) -> str:
    """The last ``lines`` lines of a log, starting at the first error when there is one in them."""
    all_lines = log.splitlines()
    tail = all_lines[-lines:]
    for index, line in enumerate(tail):
        if "[error]" in line.lower() or "Traceback" in line or "Error:" in line:
            return "\n".join(tail[index:])
    return "\n".join(tail) or "(empty log)"


def _ti_name(ti: dict[str, Any]) -> str:
    label = ti.get("rendered_map_index") or (str(ti["map_index"]) if int(ti["map_index"]) >= 0 else "")
    return f"{ti['dag_id']}.{ti['task_id']}" + (f"[{label}]" if label else "")


def follow_chain(
    api: AirflowApi,
    since: str,
    console: Console,
    *,
    timeout: float = 3600,
    on_poll: Callable[[ChainState], None] | None = None,
    extra_view: Callable[[], RenderableType] | None = None,
) -> ChainState:
    """Follow every run of the chain with a live view until nothing runs or waits to run.

    Raises:
        ChainFailedError: a task failed (with its log excerpt) or a run failed.
        StackError: the chain did not settle within ``timeout`` seconds.
    """
    from rich.live import Live

    deadline = time.monotonic() + timeout
    quiet = 0
    state = ChainState()
    with Live(render_progress(state), console=console, refresh_per_second=2, transient=False) as live:
        while time.monotonic() < deadline:
            state = poll_chain(api, since, state)
            live.update(_with_extra(render_progress(state), extra_view))
            if on_poll:
                on_poll(state)
            if state.failures():
                raise ChainFailedError(failure_report(api, state.failures()))
            if state.failed_runs():
                ids = ", ".join(f"{r['dag_id']}/{r['dag_run_id']}" for r in state.failed_runs())
                raise ChainFailedError(f"runs failed without a failed task (check the Airflow UI): {ids}")
            quiet = 0 if state.busy() else quiet + 1
            if quiet >= QUIET_POLLS:
                return state
            time.sleep(POLL_SECONDS)
    raise StackError(f"the chain did not finish within {timeout:.0f}s; see the Airflow UI at {api.url}")


def _with_extra(view: RenderableType, extra: Callable[[], RenderableType] | None) -> RenderableType:
    if extra is None:
        return view
    from rich.console import Group

    return Group(view, extra())


def render_progress(state: ChainState) -> RenderableType:
    """Two tables: one row per stage (latest run, its state, task counts), and one per (family, region)."""
    from rich.console import Group
    from rich.table import Table

    stages = Table(title="modelyard chain", title_justify="left")
    for column in ("stage", "runs", "latest run", "state", "tasks"):
        stages.add_column(column)
    grid: dict[str, dict[str, str]] = {}
    for dag_id in DAG_IDS:
        runs = state.runs.get(dag_id, [])
        latest = runs[-1] if runs else None
        counts: Counter[str] = Counter()
        for run in runs:
            for ti in state.tasks.get(run["dag_run_id"], []):
                for pair, pair_state in pair_states(state, ti):
                    grid.setdefault(pair, {})[dag_id] = pair_state
        if latest:
            counts.update(str(ti.get("state") or "none") for ti in state.tasks.get(latest["dag_run_id"], []))
        stages.add_row(
            STAGE_LABELS[dag_id],
            str(len(runs)),
            latest["dag_run_id"] if latest else "-",
            styled(latest["state"]) if latest else "[dim]waiting[/dim]",
            ", ".join(f"{n} {styled(s)}" for s, n in sorted(counts.items())) or "-",
        )
    pairs = Table(title="per family / region (latest task state)", title_justify="left")
    for column in ("family", "region", *(STAGE_LABELS[d] for d in DAG_IDS)):
        pairs.add_column(column)
    for label in sorted(grid):
        family, _, region = label.partition("/")
        pairs.add_row(family, region, *(styled(grid[label].get(d, "-")) for d in DAG_IDS))
    return Group(stages, pairs) if grid else stages


def pair_states(state: ChainState, ti: dict[str, Any]) -> list[tuple[str, str]]:
    """(``family/region``, state) of each pair a task handles: a finished chunk's reported outcomes,
    else the pairs its label names with the task's own state."""
    key = _outcome_key(ti)
    if key is not None and key in state.outcomes:
        return [
            (f"{o['family']}/{o['region']}", str(o["status"]) if o.get("ok") else "failed") for o in state.outcomes[key]
        ]
    return [
        (pair, str(ti.get("state") or "scheduled")) for pair in labelled_pairs(str(ti.get("rendered_map_index") or ""))
    ]


def labelled_pairs(label: str) -> list[str]:
    """The ``family/region`` pairs a task's label names: one (a deploy release aside) or a chunk's list.

    A long chunk label ends with ``… (+N)`` (ADR 0008): those N pairs are not named and not shown.
    """
    return [item for item in label.split(", ") if "/" in item and not item.startswith("…")]


def styled(state: str) -> str:
    style = STATE_STYLES.get(state)
    return f"[{style}]{state}[/{style}]" if style else state


# ---------------------------------------------------------------- the endpoint


def sample_record(config: Config, family: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """A plausible request record for ``family``: the raw fields a client sends (ADR 0007).

    The time column is ``now`` (UTC, ISO-8601 with its offset), window aggregates are 1.0 (the
    average), other fields a typical value, the middle of their declared range or an allowed value.
    """
    typical = {
        "pickup_distance_km": 2.5,
        "driver_rating": 4.8,
        "driver_acceptance_rate": 0.85,
        "driver_tenure_days": 400,
        "surge_multiplier": 1.2,
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
        if feature.kind in WINDOW_KINDS:
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
    with httpx.Client(base_url=serving_url, timeout=10) as client:
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


# ---------------------------------------------------------------- demo


def start_stack(config: Config, settings: StackSettings, console: Console) -> AirflowApi:
    """Start (or reuse) the stack, bring serving back on the last deployed plan, wait for the DAGs."""
    from modelyard.deploy.devstack.stack import resume_serving, serving_target, up

    with console.status("starting MLflow and Airflow (the first start migrates Airflow's database: ~1 min)"):
        urls = up(settings)
    console.print(f"[green]MLflow[/green] {urls.mlflow}   [green]Airflow[/green] {urls.airflow}")
    with console.status("restarting the serving process on the last deployed plan"):
        resumed = resume_serving(serving_target(config, settings))
    if resumed is not None:
        console.print(f"[green]Serving[/green] {urls.serving}   (plan {resumed.digest()[:19]}, as last deployed)")
    api = AirflowApi(urls.airflow)
    with console.status("waiting for the DAG processor to parse the DAGs"):
        api.wait_for_dags()
    return api


def trigger_chain(
    api: AirflowApi, conf: dict[str, Any] | None = None, note: str | None = None, first: str = "data_processing"
) -> str:
    """Unpause the chain's DAGs and trigger ``first``; the trigger's ``run_after``."""
    for dag_id in DAG_IDS:
        api.unpause(dag_id)
    run = api.trigger(first, conf, note)
    return str(run.get("run_after") or dt.datetime.now(dt.UTC).isoformat())


def print_summary(config: Config, settings: StackSettings, console: Console) -> dict[str, str]:
    """Champions, what the endpoint serves, the URLs, the login and a curl example."""
    from rich.panel import Panel

    from modelyard.promotion.status import collect_status, render_status

    statuses = collect_status(config, tracking_uri=settings.mlflow_url)
    console.print(render_status(statuses))
    served = serving_versions(config, settings.serving_url)
    champions = {f"{s.family}/{s.region}": s.champion.version for s in statuses if s.champion}
    lines = [
        f"{key}: serving v{version}" + ("" if champions.get(key) == version else " [red](not the champion)[/red]")
        for key, version in served.items()
    ]
    console.print(Panel("\n".join(lines), title="serving endpoint", expand=False))
    console.print(
        Panel(
            f"Airflow UI   {settings.airflow_url}   (login {AIRFLOW_USER} / {AIRFLOW_PASSWORD})\n"
            f"MLflow UI    {settings.mlflow_url}\n"
            f"Serving      {settings.serving_url}   (/readyz, /metrics)\n\n"
            f"{curl_example(config, settings.serving_url)}\n\n"
            "Stop everything with: make down",
            title="the stack is up",
            expand=False,
        )
    )
    return served


def run_demo(config: Config, settings: StackSettings, console: Console, timeout: float = 3600) -> None:
    """``modelyard demo``: up, trigger, follow, summarize.

    Raises:
        StackError: the stack did not start, a task failed (with its log), or the chain timed out.
    """
    api = start_stack(config, settings, console)
    since = trigger_chain(api, note="modelyard demo")
    console.print(f"triggered data_processing; following the chain (Airflow UI: {settings.airflow_url})")
    follow_chain(api, since, console, timeout=timeout)
    served = print_summary(config, settings, console)
    not_serving = sorted(key for key, version in served.items() if not version.isdigit())
    if not_serving:
        raise StackError(
            f"the chain finished but nothing serves {', '.join(not_serving)}: no champion passed the gates "
            "(see the status table above and the promotion task logs), or the deploy stage did not run"
        )


# ---------------------------------------------------------------- festival act


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
    from modelyard.core.storage import write_bytes_atomic

    config.region(region)
    api = start_stack(config, settings, console)
    before = serving_versions(config, settings.serving_url)
    if not any(v.isdigit() for v in before.values()):
        raise StackError(f"nothing serves at {settings.serving_url} yet; run `make demo` first")
    overlay = festival_overlay(config, region, days)
    write_bytes_atomic(settings.overlay_path, yaml.safe_dump(overlay, sort_keys=False).encode())
    console.print(
        f"festival over the last {days} days of [bold]{region}[/bold]'s data (overlay {settings.overlay_path}); "
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

    Then waits until the servers' prediction logs have published their files (``monitoring.rotate_seconds``).
    """
    from modelyard.core.featurespec import FittedSpec
    from modelyard.pipeline.snapshots import latest_snapshot, load_frame
    from modelyard.training.split import time_split
    from modelyard.training.train import raw_example

    with httpx.Client(base_url=serving_url, timeout=30) as client:
        for family, region in config.pairs():
            meta = latest_snapshot(config.storage.features_dir, family, region)
            frame = load_frame(config.storage.features_dir, meta)
            # the rows the served models learnt from: the rest of a snapshot may drift for real
            frame = time_split(frame, config.training.holdout_days, config.training.validation_days).train
            frame = frame.sample(rows, replace=True, random_state=7)
            records = raw_example(FittedSpec.from_dict(meta.feature_spec or {}), frame).to_dict("records")
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


# ---------------------------------------------------------------- commands (registered in deploy.cli)


def _load(config_file: Path | None) -> tuple[Config, StackSettings]:
    from modelyard.core.config import config_path, load_config
    from modelyard.deploy.devstack.stack import stack_settings

    path = config_path(config_file)
    config = load_config(path)
    return config, stack_settings(config, path)


def _run(action: Callable[[Config, StackSettings, Console], object], config_file: Path | None) -> None:
    """Run a stack action with typed errors turned into a red message and exit code 1."""
    from rich.console import Console

    from modelyard.core.cli import print_error
    from modelyard.core.config import ConfigError

    console = Console()
    try:
        config, settings = _load(config_file)
        action(config, settings, console)
    except (StackError, ConfigError) as exc:
        print_error(exc, console)
        raise typer.Exit(1) from exc


CONFIG_OPTION = typer.Option(None, "--config", help="Config file (default: $MODELYARD_CONFIG or ./modelyard.yaml).")
TIMEOUT_OPTION = typer.Option(3600.0, help="Give up following the chain after this many seconds.")


def demo(config_file: Path | None = CONFIG_OPTION, timeout: float = TIMEOUT_OPTION) -> None:
    """Start MLflow and Airflow, run the whole chain through Airflow, print champions and URLs."""
    _run(lambda config, settings, console: run_demo(config, settings, console, timeout), config_file)


def up(config_file: Path | None = CONFIG_OPTION) -> None:
    """Start MLflow, Airflow and (once a plan was deployed) serving, without triggering anything."""

    def action(config: Config, settings: StackSettings, console: Console) -> None:
        start_stack(config, settings, console)
        console.print(
            f"Airflow UI {settings.airflow_url} (login {AIRFLOW_USER} / {AIRFLOW_PASSWORD}), "
            f"MLflow UI {settings.mlflow_url}; nothing triggered. Stop with: make down"
        )

    _run(action, config_file)


def down(config_file: Path | None = CONFIG_OPTION) -> None:
    """Stop everything the demo started (Airflow, MLflow, the serving process)."""
    from modelyard.deploy.devstack.stack import down as stop_stack

    def action(config: Config, settings: StackSettings, console: Console) -> None:
        stopped = stop_stack(settings)
        console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")

    _run(action, config_file)


def demo_festival(
    config_file: Path | None = CONFIG_OPTION,
    region: str | None = typer.Option(None, help="Region whose behaviour the festival shifts (default: the first)."),
    days: int = typer.Option(40, min=7, help="Festival length, ending on the last day of the data."),
    timeout: float = TIMEOUT_OPTION,
) -> None:
    """Second act: a festival shifts one region; retrain, gate and canary-roll it out under live load."""

    def action(config: Config, settings: StackSettings, console: Console) -> None:
        stats = run_festival(config, settings, console, region or config.region_names[0], days, timeout)
        if stats.failed:
            raise StackError(f"{stats.failed} requests failed during the rollout")

    _run(action, config_file)
