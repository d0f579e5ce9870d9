"""The ``modelyard`` command: one entry point over every stage.

It sits above all three layers (like ``dags/``), so it lives in the top layer and
composes each layer's own commands. The developer stack's commands (``demo``, ``up``,
``down``, ``demo-festival``, ``demo-graduation``), ``init`` (the project for a team's own Airflow) and ``doctor``
(what a worker misses) are imported only when one of them runs (or ``--help`` lists them), so
``modelyard serve`` in a pod loads nothing of the stack.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from modelyard.core.cli import exits_on_expected_errors, hide_flag_types
from modelyard.deploy.rollout.cli import app as deploy_app
from modelyard.monitoring.cli import app as monitoring_app
from modelyard.pipeline.cli import app as data_app
from modelyard.pipeline.online_cli import app as features_app
from modelyard.promotion.cli import app as promotion_app
from modelyard.training.cli import app as training_app

if TYPE_CHECKING:
    # typer vendors click; its groups are typed with the vendored classes, not the click package's.
    from typer._click import Command, Context

# name -> "module:function", loaded on first use.
LAZY_COMMANDS = {
    "demo": "modelyard.deploy.devstack.commands:demo",
    "up": "modelyard.deploy.devstack.commands:up",
    "down": "modelyard.deploy.devstack.commands:down",
    "demo-festival": "modelyard.deploy.devstack.commands:demo_festival",
    "demo-graduation": "modelyard.deploy.devstack.commands:demo_graduation",
    "init": "modelyard.deploy.scaffold:init",
    "score": "modelyard.deploy.batch.cli:score",
    "doctor": "modelyard.deploy.doctor:doctor",
    "prune": "modelyard.deploy.rollout.prune_cli:prune",
}


class LazyGroup(TyperGroup):
    """A command group whose ``LAZY_COMMANDS`` are imported when they are looked up."""

    def list_commands(self, ctx: Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        command = self._command(ctx, cmd_name)
        if command is not None:
            hide_flag_types(command, ctx)
        return command

    def format_help(self, ctx: Context, formatter: Any) -> None:
        hide_flag_types(self, ctx)
        super().format_help(ctx, formatter)

    def _command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in LAZY_COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, function = LAZY_COMMANDS[cmd_name].split(":")
        single = typer.Typer(pretty_exceptions_enable=False, add_completion=False)  # the root app offers completion
        single.command(cmd_name)(getattr(importlib.import_module(module), function))
        return typer.main.get_command(single)


app = typer.Typer(
    name="modelyard",
    cls=LazyGroup,
    help="Per-region ML models from raw data to a live endpoint, in versioned stages.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        import importlib.metadata

        typer.echo(f"modelyard {importlib.metadata.version('modelyard')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the package version and exit."
    ),
) -> None:
    """Per-region ML models from raw data to a live endpoint, in versioned stages."""


app.add_typer(data_app, name="data", help="Generate, ingest, validate and publish feature snapshots.")
app.add_typer(features_app, name="features", help="Materialise and push online features (ADR 0019).")
app.registered_commands.extend(training_app.registered_commands)
app.registered_commands.extend(promotion_app.registered_commands)  # promote, rollback, status
app.registered_commands.extend(deploy_app.registered_commands)  # plan, deploy
app.registered_commands.extend(monitoring_app.registered_commands)  # monitor


def main() -> None:
    import os
    import sys

    if not sys.stdout.isatty():
        # Rich falls back to 80 columns off a terminal (CI logs, pipes): tables of digests and URLs need more.
        os.environ.setdefault("COLUMNS", "160")
    # MLflow draws a tqdm bar for every file a command reads from the registry (a spec, an MLmodel):
    # on stderr between the tables it is noise; `MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=true` brings it back.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        # The last net for an expected error a command did not handle: one line, exit 2 (3: a server is down).
        with exits_on_expected_errors():
            app()
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from exc


@app.command()
def serve(
    plan: Path = typer.Option(..., "--plan", help="Deployment plan file (YAML or JSON); watched for changes."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind (0.0.0.0 in a pod)."),
    port: int = typer.Option(8000, help="TCP port."),
    workers: int = typer.Option(1, min=1, help="Worker processes (each loads every model of the plan)."),
    poll_seconds: float = typer.Option(1.0, help="How often each worker checks the plan file for a new plan."),
    request_timeout: float = typer.Option(
        10.0,
        min=0.1,
        envvar="MODELYARD_SERVE_REQUEST_TIMEOUT",
        help="Seconds a client has to send a whole request (headers and body); slower ones get 408.",
    ),
    keep_alive: int = typer.Option(
        5, min=1, envvar="MODELYARD_SERVE_KEEP_ALIVE", help="Seconds an idle keep-alive connection stays open."
    ),
    limit_concurrency: int = typer.Option(
        1024,
        min=1,
        envvar="MODELYARD_SERVE_LIMIT_CONCURRENCY",
        help="Requests in flight per worker beyond which new ones get 503 (/healthz, /readyz, /metrics exempt).",
    ),
    max_header_bytes: int = typer.Option(
        64 * 1024,
        min=1024,
        envvar="MODELYARD_SERVE_MAX_HEADER_BYTES",
        help="Largest request line plus headers; larger ones get 431.",
    ),
) -> None:
    """Serve the plan's models over HTTP (MLFLOW_TRACKING_URI points at the registry).

    The admin API (GET/PUT /admin/plan) is on only when MODELYARD_SERVE_ADMIN_TOKEN is set;
    a plan's prediction log is written inside MODELYARD_SERVE_LOG_DIR.
    """
    import os
    import shutil
    import tempfile

    from modelyard.deploy.serving.faults import bound_registry_wait
    from modelyard.deploy.serving.plan import PlanError, last_good_path, load_plan
    from modelyard.deploy.serving.settings import (
        LIMIT_CONCURRENCY_ENV,
        MAX_HEADER_BYTES_ENV,
        REQUEST_TIMEOUT_ENV,
        SUPERVISOR_ENV,
    )

    try:
        load_plan(plan)
    except PlanError as exc:
        last_good = last_good_path(plan)
        if not last_good.exists():
            with exits_on_expected_errors():
                raise
        typer.echo(f"{exc}\nstarting on the last plan that served: {last_good}", err=True)
    os.environ["MODELYARD_SERVE_PLAN"] = str(plan.resolve())
    os.environ["MODELYARD_SERVE_POLL_SECONDS"] = str(poll_seconds)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    bound_registry_wait(os.environ)  # one registry call waits seconds, not minutes; the server retries the plan
    # The protocol class is imported by every worker: it reads its limits from the environment.
    os.environ[REQUEST_TIMEOUT_ENV] = str(request_timeout)
    os.environ[MAX_HEADER_BYTES_ENV] = str(max_header_bytes)
    os.environ[LIMIT_CONCURRENCY_ENV] = str(limit_concurrency)  # the app's limit, which spares the probes
    metrics_dir = None
    if workers > 1:
        os.environ[SUPERVISOR_ENV] = str(os.getpid())  # workers exit when this process dies, even by kill -9
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            metrics_dir = tempfile.mkdtemp(prefix="modelyard-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    else:
        os.environ.pop(SUPERVISOR_ENV, None)
    import uvicorn

    try:
        uvicorn.run(
            "modelyard.deploy.serving.server:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="modelyard.deploy.serving.protocol:GuardedHttpToolsProtocol",
            timeout_keep_alive=keep_alive,
            # uvicorn's limit answers 503 before the path is known (probes too): only a far bound on
            # connections here; the app refuses requests beyond limit_concurrency itself.
            limit_concurrency=limit_concurrency * 4 + 64,
            access_log=False,
            # No X-Forwarded-* rewriting of the client address: the server never reads it, and the
            # middleware is one more coroutine layer around every request.
            proxy_headers=False,
            log_config=None,
            timeout_graceful_shutdown=10,
        )
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
