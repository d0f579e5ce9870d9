"""The embedded stack: a real MLflow server and Airflow 3 (``airflow standalone``) in the background.

``modelyard up`` starts both as detached managed processes (pid files and logs under
``<storage.root>/run/``, see ``deploy.rollout.processes``), with ``AIRFLOW_HOME`` under
``<storage.root>/airflow``, the repo's ``dags/`` and the modelyard Airflow plugin. The
serving process is started by the deploy DAG on ``SERVING_PORT``; once a plan was deployed,
``up`` restarts it on the last plan that served (``run/plan.json.last-good``, else
``run/plan.json``), so ``down`` then ``up`` or ``demo`` brings the endpoint back even when
no new deploy runs. ``modelyard down`` stops every managed process that has a pid file, and
nothing else.

Ports come from the environment (``AIRFLOW_PORT``, ``MLFLOW_PORT``, ``SERVING_PORT``; and
``AIRFLOW_DATABASE_URL`` puts Airflow's metadata in another database than SQLite)
and default to 8080, the port of ``mlflow.tracking_uri`` (5000) and ``deploy.local.port``
(8000). A port held by another program stops ``up`` with a message naming the variable
to change.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from modelyard.core.config import CONFIG_ENV, OVERLAY_ENV, Config
from modelyard.core.config.loading import STACK_OVERLAY
from modelyard.deploy.rollout.local_target import LocalTarget
from modelyard.deploy.rollout.mlflow_server import port_in_use
from modelyard.deploy.rollout.processes import (
    ManagedProcess,
    ManagedProcessError,
    ensure_mlflow,
    start_detached,
    stop_all,
)
from modelyard.deploy.rollout.strategies import TargetError
from modelyard.deploy.serving.plan import Plan, PlanError, last_good_path, load_plan

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

AIRFLOW_USER = "admin"
AIRFLOW_PASSWORD = "admin"
AIRFLOW_PARALLELISM = 4
DAG_IDS = ("data_processing", "monitoring", "training", "promotion", "deploy", "batch_scoring", "housekeeping")
# The stages a trigger of data_processing runs through; monitoring runs on its own (hourly, and
# only finds something once a server has sampled traffic) and housekeeping daily, so a chain is
# not judged by them.
CHAIN_DAG_IDS = ("data_processing", "training", "promotion", "deploy")
HEALTHY_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
BATCH_INPUT_ENV = "MODELYARD_BATCH_INPUT"
BATCH_INPUT_ROWS = 1000


class StackError(ManagedProcessError):
    """The embedded stack could not start; the message says which part and what to do."""


@dataclass(frozen=True)
class StackSettings:
    """Where the embedded stack lives and listens."""

    config_path: Path
    root: Path
    host: str
    airflow_port: int
    mlflow_port: int
    serving_port: int
    # Airflow's metadata database: SQLite in the Airflow home unless AIRFLOW_DATABASE_URL names
    # another (PostgreSQL for runs of hundreds of pairs: SQLite's one writer locks the scheduler out).
    airflow_database_url: str | None = None
    # How often Airflow re-parses an unchanged DAG file (:func:`dag_reparse_seconds`).
    dag_reparse_seconds: int = 30
    # batch_scoring's default input (``MODELYARD_BATCH_INPUT``) when the stack writes one (:func:`demo_batch_input`).
    batch_input: str | None = None

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def overlay_path(self) -> Path:
        """The config overlay every task reads (``MODELYARD_CONFIG_OVERLAY``); absent unless a demo act wrote it."""
        return self.root / STACK_OVERLAY  # load_config merges it for any command on this storage, too

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    @property
    def mlflow_dir(self) -> Path:
        return self.root / "mlflow"

    @property
    def airflow_url(self) -> str:
        return f"http://{self.host}:{self.airflow_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def serving_url(self) -> str:
        return f"http://{self.host}:{self.serving_port}"


def stack_settings(
    config: Config, config_path: Path, environ: Mapping[str, str] | None = None, *, batch_input: bool = False
) -> StackSettings:
    """The stack's settings from the config and ``AIRFLOW_PORT`` / ``MLFLOW_PORT`` / ``SERVING_PORT``.

    ``batch_input``: give batch_scoring the demo's table (:func:`demo_batch_input`) unless
    ``MODELYARD_BATCH_INPUT`` names one (``modelyard up`` and the demo do; a benchmark does not).

    Raises:
        StackError: a port variable is not a port number.
    """
    env = os.environ if environ is None else environ
    default_mlflow = urlparse(config.mlflow.tracking_uri).port or 5000
    return StackSettings(
        config_path=config_path.resolve(),
        root=config.storage.local_dir,  # the laptop's own folder, also when storage.root is a URL
        host=config.deploy.local.host,
        airflow_port=_port(env, "AIRFLOW_PORT", 8080),
        mlflow_port=_port(env, "MLFLOW_PORT", default_mlflow),
        serving_port=_port(env, "SERVING_PORT", config.deploy.local.port),
        airflow_database_url=env.get("AIRFLOW_DATABASE_URL", "").strip() or None,
        dag_reparse_seconds=dag_reparse_seconds(len(config.pairs())),
        batch_input=demo_batch_input(config) if batch_input and not env.get(BATCH_INPUT_ENV) else None,
    )


def demo_batch_input(config: Config) -> str | None:
    """Where the stack keeps a table for ``batch_scoring`` when every dataset is the built-in generator's.

    ``<storage>/batch-input/{region}.csv``: :data:`BATCH_INPUT_ROWS` generated bookings a region
    (raw columns only: the window aggregates are computed from the rows, as a team's own table's
    are), written by :func:`write_batch_input` when ``up`` starts. The stack's Airflow gets it as
    ``MODELYARD_BATCH_INPUT``, so the batch_scoring form's defaults score something and each
    champion move rescores its pairs. None for a team's own data (a ``file`` source): its batch
    input is the team's to name.
    """
    if any(dataset.source.kind != "synthetic" for dataset in config.datasets):
        return None
    return str(config.storage.local_dir / "batch-input" / "{region}.csv")


def write_batch_input(config: Config, template: str) -> None:
    """Write each region's generated table for :func:`demo_batch_input` (kept when already there)."""
    from modelyard.pipeline.generator import generate_for

    for region in config.regions:
        path = Path(template.replace("{region}", region.name))
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.tmp")
        generate_for(config, region, BATCH_INPUT_ROWS).to_csv(partial, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
        partial.replace(path)  # a table is there whole or not at all


def dag_reparse_seconds(pairs: int) -> int:
    """How often the stack's Airflow re-parses an unchanged DAG file, for a config of ``pairs`` pairs.

    Airflow's default is every 30 s (``[dag_processor] min_file_process_interval``). Each parse
    builds the stage DAGs and syncs them: ~22% of a core at 1,000 pairs even with the sync fixed
    (ADR 0020), measured when they were scheduled on two assets per pair (before ADR 0023; their
    forms still list every region). So the interval grows with the pairs: 30 s up
    to 100 pairs, 0.3 s a pair beyond (300 s at 1,000). A DAG file that changes is re-parsed at once
    whatever the interval; a change of the config reaches the DAGs' forms and schedules within it
    (``airflow dags reserialize`` applies it at once).
    """
    return max(30, round(0.3 * pairs))


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise StackError(f"{name}={raw!r} is not a TCP port (1-65535)")
    return int(raw)


def airflow_environment(settings: StackSettings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every Airflow component (and so of every task) of the embedded stack.

    The tasks find MLflow through the ``mlflow_default`` connection and ``MLFLOW_TRACKING_URI``,
    the modelyard config through ``MODELYARD_CONFIG``, and the serving port through the
    ``deploy.local.port`` override, so a port moved by an env variable moves everywhere.
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("AIRFLOW__")}
    home = settings.airflow_home
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")])),
            "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1"),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(AIRFLOW_PARALLELISM),
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(AIRFLOW_PARALLELISM),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{settings.airflow_url}/execution/",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{AIRFLOW_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
            "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "120",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(settings.dag_reparse_seconds),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": settings.airflow_database_url or f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__API__HOST": settings.host,
            "AIRFLOW__API__PORT": str(settings.airflow_port),
            "AIRFLOW__API__BASE_URL": settings.airflow_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": _secret(home),
            "AIRFLOW__API__SECRET_KEY": _secret(home),
            "AIRFLOW_CONN_MLFLOW_DEFAULT": settings.mlflow_url,
            "MLFLOW_TRACKING_URI": settings.mlflow_url,
            "MLFLOW_REGISTRY_URI": settings.mlflow_url,
            CONFIG_ENV: str(settings.config_path),
            OVERLAY_ENV: str(settings.overlay_path),
            "MODELYARD_MLFLOW__TRACKING_URI": settings.mlflow_url,
            "MODELYARD_DEPLOY__LOCAL__PORT": str(settings.serving_port),
            "MODELYARD_DEPLOY__LOCAL__HOST": settings.host,
            "NO_COLOR": "1",
        }
    )
    if settings.batch_input and not env.get(BATCH_INPUT_ENV):
        env[BATCH_INPUT_ENV] = settings.batch_input
    if settings.airflow_database_url:
        # Airflow's async engine would pick asyncpg for postgresql+psycopg; psycopg 3 does async itself.
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = settings.airflow_database_url
    return env


def _secret(home: Path) -> str:
    """One random secret per Airflow home, shared by every component (JWTs must verify everywhere)."""
    path = home / "stack.secret"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


# The stack's Airflow syncs DAGs without the row explosion of apache/airflow#72393 (ADR 0020).
LOCAL_SETTINGS = '''"""Written by modelyard's embedded stack (deploy/devstack/stack.py); Airflow imports it at start."""

from modelyard.plugins.airflow_fixes import install

install()
'''


def prepare_airflow_home(settings: StackSettings) -> None:
    """Write the known admin password and Airflow's local settings (:data:`LOCAL_SETTINGS`) into ``AIRFLOW_HOME``.

    The plugin needs no file in the plugins folder: Airflow loads it through the package's
    ``airflow.plugins`` entry point, as in any Airflow the package is installed into.
    """
    home = settings.airflow_home
    (home / "plugins").mkdir(parents=True, exist_ok=True)
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({AIRFLOW_USER: AIRFLOW_PASSWORD}) + "\n")
    passwords.chmod(0o600)
    # Airflow imports it in every component at start (AIRFLOW_HOME/config is on its path).
    (home / "config").mkdir(exist_ok=True)
    (home / "config" / "airflow_local_settings.py").write_text(LOCAL_SETTINGS)


def start_airflow(settings: StackSettings, timeout: float = 300) -> str:
    """The URL of the stack's Airflow, starting ``airflow standalone`` detached if it is not running.

    Raises:
        StackError: the port is taken by another program, or Airflow did not become healthy.
    """
    process = ManagedProcess("airflow", settings.run_dir)
    url = settings.airflow_url
    if process.pid() is not None:
        wait_for_airflow(url, process, timeout)
        return url
    check_airflow_port(settings)
    prepare_airflow_home(settings)
    command = [str(VENV_BIN / "airflow"), "standalone"]
    pid = start_detached(process, command, env=airflow_environment(settings))
    process.record(pid, url)
    wait_for_airflow(url, process, timeout)
    return url


def check_airflow_port(settings: StackSettings) -> None:
    """Fail early when another program holds the Airflow port (our own Airflow is fine).

    Raises:
        StackError: the port is taken by a process the stack did not start.
    """
    ours = ManagedProcess("airflow", settings.run_dir).pid() is not None
    if not ours and port_in_use(settings.host, settings.airflow_port):
        raise StackError(
            f"port {settings.airflow_port} on {settings.host} is taken by another program; "
            "set AIRFLOW_PORT to a free port (e.g. AIRFLOW_PORT=8081 modelyard demo)"
        )


def airflow_health(url: str) -> dict[str, str]:
    """Status of each Airflow component from ``/api/v2/monitor/health`` (empty when unreachable)."""
    try:
        response = httpx.get(f"{url}/api/v2/monitor/health", timeout=5)
        body = response.json() if response.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return {}
    return {name: str((body.get(name) or {}).get("status")) for name in HEALTHY_COMPONENTS}


def wait_for_airflow(url: str, process: ManagedProcess, timeout: float = 300) -> None:
    """Wait until the API server answers and every component reports healthy.

    Raises:
        StackError: the process died or did not become healthy in time; carries the log tail.
    """
    deadline = time.monotonic() + timeout
    health: dict[str, str] = {}
    while time.monotonic() < deadline:
        if process.pid() is None:
            raise StackError(f"airflow standalone exited; its log ({process.log_file}):\n{log_tail(process.log_file)}")
        health = airflow_health(url)
        if health and all(status == "healthy" for status in health.values()):
            return
        time.sleep(2)
    raise StackError(
        f"Airflow at {url} not healthy after {timeout:.0f}s ({health or 'no answer'}); "
        f"log {process.log_file}:\n{log_tail(process.log_file)}"
    )


def check_serving_port(settings: StackSettings) -> None:
    """Fail early when another program holds the serving port (our own serving process is fine).

    Raises:
        StackError: the port is taken by a process the stack did not start.
    """
    ours = any(ManagedProcess(name, settings.run_dir).pid() is not None for name in serving_process_names(settings))
    if not ours and port_in_use(settings.host, settings.serving_port):
        raise StackError(
            f"port {settings.serving_port} on {settings.host} is taken by another program; "
            "set SERVING_PORT to a free port (e.g. SERVING_PORT=8001 modelyard demo)"
        )


def serving_process_names(settings: StackSettings) -> list[str]:
    """Pid-file names of serving processes the stack (its deploy DAG) started."""
    return [p.stem for p in settings.run_dir.glob("*.pid") if p.stem not in ("airflow", "mlflow")]


@dataclass(frozen=True)
class StackUrls:
    """Where the running stack answers."""

    airflow: str
    mlflow: str
    serving: str


def up(settings: StackSettings, timeout: float = 300, config: Config | None = None) -> StackUrls:
    """Start MLflow and Airflow (each only if not running) and wait until both are healthy.

    ``config`` (the one ``settings`` came from) writes the demo's batch input when the settings
    name one (:func:`demo_batch_input`).

    Raises:
        StackError: a port is taken or a process did not start; the message says what to do.
    """
    check_serving_port(settings)
    check_airflow_port(settings)
    if settings.batch_input and config is not None:
        write_batch_input(config, settings.batch_input)
    try:
        mlflow_url = ensure_mlflow(settings.run_dir, settings.mlflow_dir, settings.host, settings.mlflow_port)
    except ManagedProcessError as exc:
        raise StackError(f"MLflow: {exc}") from exc
    except RuntimeError as exc:  # MlflowServerError carries the server's log tail
        raise StackError(f"MLflow server did not start: {exc}") from exc
    airflow_url = start_airflow(settings, timeout)
    return StackUrls(airflow=airflow_url, mlflow=mlflow_url, serving=settings.serving_url)


def serving_target(config: Config, settings: StackSettings) -> LocalTarget:
    """The local serving process of the stack (the one the deploy DAG drives)."""
    target = LocalTarget.from_config(config, settings.mlflow_url, port=settings.serving_port)
    target.run_dir = settings.run_dir
    return target


def last_deployed_plan(target: LocalTarget) -> Plan | None:
    """The last plan that served (its ``last-good`` copy), else the plan file; None if never deployed."""
    for path in (last_good_path(target.plan_file), target.plan_file):
        if path.exists():
            try:
                return load_plan(path)
            except PlanError:
                continue  # a damaged copy: try the other one
    return None


def resume_serving(target: LocalTarget) -> Plan | None:
    """Restart the serving process on the last deployed plan when nothing serves.

    ``down`` stops the serving process, and a deploy runs only when a champion changed, so
    without this the endpoint would stay down after ``down``/``up`` on unchanged data.

    Returns:
        The plan the restarted process serves, or None (never deployed, or already serving).

    Raises:
        StackError: the process did not come back; the message carries its reason and log.
    """
    plan = last_deployed_plan(target)
    if plan is None:
        return None
    try:
        serving = target.live()
    except TargetError as exc:
        raise StackError(f"cannot tell what the serving process serves: {exc}") from exc
    if serving is not None:
        return None
    try:
        target.apply(plan)
    except TargetError as exc:
        raise StackError(
            f"the serving process did not come back on the last deployed plan ({target.plan_file}): {exc}. "
            "To serve what the registry holds now (a version deleted in the MLflow UI, say), run "
            "`modelyard plan` to see the change, then `modelyard deploy`"
        ) from exc
    return plan


def down(settings: StackSettings) -> list[str]:
    """Stop every process of the stack (Airflow, MLflow, serving) and drop the config overlay.

    Returns:
        The names of the processes that were running.
    """
    stopped = stop_all(settings.run_dir)
    settings.overlay_path.unlink(missing_ok=True)
    return stopped


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ('' when it does not exist)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


class AirflowApiError(StackError):
    """The Airflow REST API answered with an error; the message has the call and the answer."""


@dataclass
class AirflowApi:
    """A small client of Airflow 3's REST API (``/api/v2``) with a JWT from ``/auth/token``.

    One HTTP client, kept for the object's life: its connections are reused between calls. A
    client a call (``httpx.request``) built a TLS context and a connection each time, most of the
    CPU of following a chain (a poll is ~15 calls) and of the API server's answers to it.
    """

    url: str
    username: str = AIRFLOW_USER
    password: str = AIRFLOW_PASSWORD
    timeout: float = 30
    _token: str | None = None
    _client: httpx.Client | None = field(default=None, repr=False, compare=False)

    @property
    def client(self) -> httpx.Client:
        if self._client is None or self._client.is_closed:
            self._client = httpx.Client(timeout=self.timeout)
        return self._client

    def close(self) -> None:
        """Close the kept connections (a later call opens new ones)."""
        if self._client is not None:
            self._client.close()

    def _fetch_token(self) -> str:
        response = self.client.post(
            f"{self.url}/auth/token", json={"username": self.username, "password": self.password}, timeout=self.timeout
        )
        if response.status_code >= 400:
            raise AirflowApiError(
                f"login to {self.url} as '{self.username}' failed ({response.status_code}): {response.text[:300]}"
            )
        return str(response.json()["access_token"])

    def request(self, method: str, path: str, *, missing_ok: bool = False, **kwargs: Any) -> Any:
        """Call ``/api/v2<path>``; the decoded JSON (None for a 404 when ``missing_ok``).

        Raises:
            AirflowApiError: the server is unreachable or answered an error.
        """
        for attempt in range(2):
            if self._token is None:
                self._token = self._fetch_token()
            headers = {"Authorization": f"Bearer {self._token}", **kwargs.pop("headers", {})}
            try:
                response = self.client.request(
                    method, f"{self.url}/api/v2{path}", headers=headers, timeout=self.timeout, **kwargs
                )
            except httpx.HTTPError as exc:
                raise AirflowApiError(f"{method} {self.url}/api/v2{path}: {type(exc).__name__}: {exc}") from exc
            if response.status_code == 401 and attempt == 0:
                self._token = None  # expired: log in again once
                continue
            if response.status_code == 404 and missing_ok:
                return None
            if response.status_code >= 400:
                raise AirflowApiError(
                    f"{method} {self.url}/api/v2{path} answered {response.status_code}: {response.text[:500]}"
                )
            return response.json() if response.content else None
        raise AirflowApiError(f"{method} {self.url}/api/v2{path}: still unauthorized after logging in again")

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG as the API server knows it, or None before the DAG processor has parsed it."""
        result = self.request("GET", f"/dags/{dag_id}", missing_ok=True)
        return dict(result) if result else None

    def import_errors(self) -> list[dict[str, Any]]:
        """DAG files that failed to import, with their tracebacks."""
        return list(self.request("GET", "/importErrors", params={"limit": 100})["import_errors"])

    def wait_for_dags(self, dag_ids: tuple[str, ...] = DAG_IDS, timeout: float = 240) -> None:
        """Wait until the DAG processor has parsed every DAG in ``dag_ids``.

        Raises:
            StackError: a DAG file has an import error (the message carries it), or a DAG is
                still missing after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        missing = list(dag_ids)
        while time.monotonic() < deadline:
            missing = [dag_id for dag_id in dag_ids if self.dag(dag_id) is None]
            if not missing:
                return
            errors = self.import_errors()
            if errors:
                details = "\n".join(f"{e['filename']}:\n{e['stack_trace'][-1500:]}" for e in errors)
                raise StackError(f"DAGs {missing} did not load; import errors:\n{details}")
            time.sleep(3)
        raise StackError(f"DAGs {missing} not parsed after {timeout:.0f}s; is the dags folder {REPO / 'dags'}?")

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None, note: str | None = None) -> dict[str, Any]:
        """Create a manual run of ``dag_id``; the new run."""
        body: dict[str, Any] = {"logical_date": None, "conf": dict(conf or {})}
        if note:
            body["note"] = note
        return dict(self.request("POST", f"/dags/{dag_id}/dagRuns", json=body))

    def dag_runs(self, dag_id: str, since: str | None = None) -> list[dict[str, Any]]:
        """Runs of ``dag_id`` (oldest first), only those whose ``run_after`` is at or after ``since``."""
        params: dict[str, Any] = {"order_by": "run_after", "limit": 100}
        if since:
            params["run_after_gte"] = since
        return list(self.request("GET", f"/dags/{dag_id}/dagRuns", params=params)["dag_runs"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of a run, mapped ones included."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return list(self.request("GET", path, params={"limit": 1000})["task_instances"])

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """A task instance's XCom value as JSON (None when it pushed none)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        entry = self.request("GET", path, missing_ok=True, params={"map_index": map_index})
        if entry is None:
            return None
        value = entry["value"]
        return json.loads(value) if isinstance(value, str) else value

    def pair_outcomes(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> list[dict[str, Any]]:
        """The per-pair outcomes a chunk task reported (``pipeline.chunks.PairOutcome`` as JSON; ADR 0008)."""
        return list(self.xcom(dag_id, run_id, task_id, "pair_outcomes", map_index) or [])

    def queued_asset_events(self, dag_id: str) -> int:
        """How many asset events wait to trigger a run of ``dag_id``."""
        result = self.request("GET", f"/dags/{dag_id}/assets/queuedEvents", missing_ok=True)
        return int(result["total_entries"]) if result else 0

    def asset_events(self, source_dag_id: str, source_run_id: str) -> list[dict[str, Any]]:
        """Asset events a run emitted."""
        params = {"source_dag_id": source_dag_id, "source_run_id": source_run_id, "limit": 1000}
        return list(self.request("GET", "/assets/events", params=params)["asset_events"])

    def task_log(self, dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int) -> str:
        """The log of one try of a task instance, as plain lines."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{max(try_number, 1)}"
        result = self.request("GET", path, params={"map_index": map_index, "full_content": True}, missing_ok=True)
        return log_text(result.get("content") if result else None)

    def extra_links(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, str | None]:
        """The extra links (name -> URL) of a task instance."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/links"
        return dict(self.request("GET", path, params={"map_index": map_index})["extra_links"])


def log_text(content: Any) -> str:
    """Plain text from a structured (Airflow 3) or plain task log."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    lines = []
    for entry in content:
        if not isinstance(entry, dict):
            lines.append(str(entry))
            continue
        level = f"[{entry['level']}] " if entry.get("level") else ""
        lines.append(f"{level}{entry.get('event', '')}")
        for error in entry.get("error_detail") or []:
            lines.append(f"  {error.get('exc_type', '')}: {error.get('exc_value', '')}")
    return "\n".join(lines)
