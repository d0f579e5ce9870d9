"""The ``modelyard`` command: one entry point over every stage.

It sits above all three layers (like ``dags/``), so it lives in the top layer and
composes each layer's own commands.
"""

from __future__ import annotations

from pathlib import Path

import typer

from deploy import demo
from deploy.deploy_cli import app as deploy_app
from pipeline.cli import app as data_app
from training.cli import app as training_app
from training.mlflow_server import TrackingServerUnreachableError

app = typer.Typer(
    name="modelyard",
    help="Per-region ML models from raw bookings to a live endpoint, in versioned stages.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data", help="Generate, ingest, validate and publish feature snapshots.")
app.registered_commands.extend(training_app.registered_commands)
app.registered_commands.extend(deploy_app.registered_commands)  # plan, deploy
# The embedded stack: the whole chain on a real Airflow and MLflow.
app.command("demo")(demo.demo)
app.command("up")(demo.up)
app.command("down")(demo.down)
app.command("demo-festival")(demo.demo_festival)


def main() -> None:
    import os
    import sys

    if not sys.stdout.isatty():
        # Rich falls back to 80 columns off a terminal (CI logs, pipes): tables of digests and URLs need more.
        os.environ.setdefault("COLUMNS", "160")
    try:
        app()
    except TrackingServerUnreachableError as exc:
        typer.echo(f"modelyard: {exc}", err=True)
        raise SystemExit(3) from exc


@app.command()
def serve(
    plan: Path = typer.Option(..., "--plan", help="Deployment plan file (YAML or JSON); watched for changes."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind (0.0.0.0 in a pod)."),
    port: int = typer.Option(8000, help="TCP port."),
    workers: int = typer.Option(1, min=1, help="Worker processes (each loads every model of the plan)."),
    poll_seconds: float = typer.Option(1.0, help="How often each worker checks the plan file for a new plan."),
) -> None:
    """Serve the plan's models over HTTP (MLFLOW_TRACKING_URI points at the registry)."""
    import os
    import shutil
    import tempfile

    from deploy.plan import PlanError, load_plan

    try:
        load_plan(plan)
    except PlanError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    os.environ["MODELYARD_SERVE_PLAN"] = str(plan.resolve())
    os.environ["MODELYARD_SERVE_POLL_SECONDS"] = str(poll_seconds)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="modelyard-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    import uvicorn

    try:
        uvicorn.run(
            "deploy.server:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=10,
        )
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
