"""``modelyard monitor`` before it reaches MLflow: the selection, the window, nothing to measure."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard.core.config import Config
from modelyard.deploy.cli import app

pytestmark = pytest.mark.unit


def monitor(config: Config, *args: str) -> tuple[int, str]:
    path = Path(config.storage.root).parent / "modelyard.yaml"
    env = {"COLUMNS": "120", "TERM": "dumb", "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}  # nothing listens there
    result = CliRunner().invoke(app, ["monitor", "--config", str(path), *args], env=env)
    return result.exit_code, result.output


def test_without_samples_in_the_window_nothing_is_measured_and_no_server_is_needed(small_config: Config) -> None:
    code, output = monitor(small_config, "--window-hours", "6")
    assert code == 0, output
    assert "no served version published samples since" in output


def test_an_unknown_family_is_refused_naming_it(small_config: Config) -> None:
    code, output = monitor(small_config, "--family", "nope")
    assert code == 2, output
    assert "unknown family 'nope'" in output


def test_the_window_is_bounded(small_config: Config) -> None:
    code, output = monitor(small_config, "--window-hours", "0")
    assert code == 2, output
    assert "--window-hours" in output
