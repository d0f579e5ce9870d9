"""The developer stack's commands: ``modelyard demo | up | down | demo-festival | demo-graduation`` (loaded lazily)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from modelyard.core.config import Config
from modelyard.deploy.devstack.demo import run_demo, start_stack
from modelyard.deploy.devstack.festival import run_festival
from modelyard.deploy.devstack.stack import AIRFLOW_PASSWORD, AIRFLOW_USER, StackError, StackSettings

if TYPE_CHECKING:
    from rich.console import Console


def _load(config_file: Path | None) -> tuple[Config, StackSettings]:
    from modelyard.core.config import config_path, load_config
    from modelyard.deploy.devstack.stack import stack_settings

    path = config_path(config_file)
    config = load_config(path)
    return config, stack_settings(config, path, batch_input=True)


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
            f"MLflow UI {settings.mlflow_url}; nothing triggered. Stop with: modelyard down"
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


def demo_graduation(config_file: Path | None = CONFIG_OPTION, timeout: float = TIMEOUT_OPTION) -> None:
    """Third act: the new market's data grows; its own model must beat the pooled one, then takes over by canary."""
    from modelyard.deploy.devstack.graduation import run_graduation

    def action(config: Config, settings: StackSettings, console: Console) -> None:
        stats = run_graduation(config, settings, console, timeout)
        if stats.failed:
            raise StackError(f"{stats.failed} requests failed during the rollout")

    _run(action, config_file)
