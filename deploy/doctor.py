"""``modelyard doctor``: what this host (an Airflow worker, a scheduler) is missing to run the stages.

One line per check, ``ok``, ``FAIL`` or ``skip``, and the exit code says whether all passed:

* ``airflow``: Airflow is installed, in the range this package supports (``AIRFLOW_RANGE``);
* ``connection``: the ``mlflow_default`` Airflow connection exists (the tasks' MLflow); beside a
  running embedded stack (``make demo``, ``modelyard up``) it is the stack's own, set in its tasks'
  environment, so a shell without it passes and says where it comes from;
* ``mlflow``: the tracking server resolved as the CLI and the tasks resolve it answers ``/health``;
* ``storage``: a probe file can be written to and deleted from ``storage.root``;
* ``helm``: a helm v4 binary is found (or unpacked from the ``[kubernetes]`` extra); needed only
  for the ``kubernetes`` deploy target, a ``skip`` otherwise.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import typer

from modelyard.core.cli import ConfigOption
from modelyard.core.config import Config, ConfigError, load_config
from modelyard.core.tracking import MLFLOW_CONN_ID, is_healthy, resolve_tracking_uri
from modelyard.deploy.rollout.processes import ManagedProcess

# The Airflow versions modelyard[airflow] installs with (setup.cfg; docs/adr/0014-airflow-range.md).
AIRFLOW_RANGE = ">=3.2,<4"


@dataclass(frozen=True)
class Check:
    """One check's outcome: passed (True), failed (False) or not applicable here (None)."""

    name: str
    ok: bool | None
    detail: str

    def line(self) -> str:
        """``ok   name: detail`` (``FAIL`` / ``skip``)."""
        status = {True: "ok", False: "FAIL", None: "skip"}[self.ok]
        return f"{status:<4} {self.name}: {self.detail}"


def check_airflow() -> Check:
    """Airflow is installed and its version is in :data:`AIRFLOW_RANGE`."""
    from packaging.specifiers import SpecifierSet

    try:
        version = metadata.version("apache-airflow")
    except metadata.PackageNotFoundError:
        return Check("airflow", False, f"not installed: pip install 'modelyard[airflow]' (Airflow {AIRFLOW_RANGE})")
    if version not in SpecifierSet(AIRFLOW_RANGE):
        return Check("airflow", False, f"{version} is outside the supported range {AIRFLOW_RANGE}")
    clash = _svcs_clash(version)
    if clash:
        return Check("airflow", False, clash)
    return Check("airflow", True, f"{version} (supported: {AIRFLOW_RANGE})")


def _svcs_clash(airflow_version: str) -> str:
    """Airflow 3.2's in-process Execution API loses svcs 26.2's registry: every task of `dags test` fails (ADR 0014)."""
    from packaging.version import Version

    try:
        svcs = metadata.version("svcs")
    except metadata.PackageNotFoundError:
        return ""
    if Version(airflow_version) >= Version("3.3") or Version(svcs) < Version("26.2"):
        return ""
    return (
        f"{airflow_version} with svcs {svcs}: Airflow before 3.3 fails every task of `airflow dags test` "
        "('State' object has no attribute 'svcs_registry'); pip install 'svcs<26.2'"
    )


def check_connection(conn_id: str = MLFLOW_CONN_ID, stack_mlflow: str | None = None) -> Check:
    """The Airflow connection the tasks take the MLflow server from exists.

    ``stack_mlflow``: the MLflow of an embedded stack running on this config's storage, whose
    Airflow gives its tasks the connection in their environment (``AIRFLOW_CONN_MLFLOW_DEFAULT``).
    """
    try:
        from airflow.sdk import BaseHook
    except ImportError:
        return Check("connection", False, f"'{conn_id}': Airflow is not installed here")
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:
        if stack_mlflow:
            return Check(
                "connection",
                True,
                f"'{conn_id}' -> {stack_mlflow}: set by the embedded stack running here for its own tasks "
                "(this shell's Airflow has none; a host that runs the stages needs it)",
            )
        return Check(
            "connection",
            False,
            f"'{conn_id}' not found ({exc}): `airflow connections add {conn_id} --conn-type mlflow --conn-host "
            f"<host> --conn-port <port>` or AIRFLOW_CONN_{conn_id.upper()}=http://<host>:<port>",
        )
    return Check("connection", True, f"'{conn_id}' -> {conn.host}{f':{conn.port}' if conn.port else ''}")


def check_mlflow(config: Config) -> Check:
    """The tracking server (``$MLFLOW_TRACKING_URI``, the connection, the config) answers its health check."""
    uri = resolve_tracking_uri(config)
    if not uri.startswith(("http://", "https://")):
        return Check("mlflow", True, f"{uri} (a local store, no server to reach)")
    if not is_healthy(uri.rstrip("/"), timeout=5):
        return Check("mlflow", False, f"{uri}: GET /health failed; start `mlflow server` or point the connection at it")
    return Check("mlflow", True, f"{uri} answers")


def check_storage(config: Config) -> Check:
    """A probe file can be written to and deleted from ``storage.root``."""
    root = config.storage.root
    probe = root / f".modelyard-doctor-{uuid.uuid4().hex}"
    try:
        if config.storage.is_local:
            root.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"modelyard doctor\n")
        probe.unlink()
    except Exception as exc:
        return Check("storage", False, f"cannot write and delete {probe}: {exc}")
    return Check("storage", True, f"{root} is writable")


def check_helm(config: Config) -> Check:
    """A helm v4 binary, needed by the ``kubernetes`` deploy target."""
    from modelyard.deploy.rollout.helmbin import REQUIRED_MAJOR, HelmNotFoundError, find_helm, helm_version

    needed = config.deploy.target == "kubernetes"
    try:
        helm = find_helm()
        version = helm_version(helm)
    except (HelmNotFoundError, OSError) as exc:
        detail = f"{exc}" if needed else f"not found, not needed for deploy.target {config.deploy.target} ({exc})"
        return Check("helm", False if needed else None, detail)
    if not version.lstrip("v").startswith(f"{REQUIRED_MAJOR}."):
        return Check("helm", False if needed else None, f"{helm} is {version}; helm v{REQUIRED_MAJOR} is required")
    return Check("helm", True, f"{helm} ({version})")


def run_checks(config_path: Path | None = None) -> list[Check]:
    """Every check, in order; a config that does not load fails the checks that need it."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        return [check_airflow(), check_connection(), Check("config", False, str(exc).splitlines()[0])]
    checks = [check_airflow(), check_connection(stack_mlflow=embedded_stack_mlflow(config))]
    needs_config: list[Callable[[Config], Check]] = [check_mlflow, check_storage, check_helm]
    return [*checks, *(check(config) for check in needs_config)]


def embedded_stack_mlflow(config: Config) -> str | None:
    """The MLflow URL of the embedded stack running on this config's storage, if its Airflow runs."""
    run_dir = config.storage.local_dir / "run"
    try:
        if ManagedProcess("airflow", run_dir).pid() is None:
            return None
        return ManagedProcess("mlflow", run_dir).url()
    except OSError:  # storage that is not a folder: the storage check names it
        return None


def doctor(config: ConfigOption = None) -> None:
    """Report what this host misses to run the stages (one line per check); exit 1 if anything fails."""
    checks = run_checks(config)
    for check in checks:
        typer.echo(check.line())
    if any(check.ok is False for check in checks):
        raise typer.Exit(1)
