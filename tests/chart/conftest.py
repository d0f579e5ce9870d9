"""Render the modelyard-serving chart with the real helm binary (Airflow helm-tests style).

``render(values)`` runs ``helm template`` and returns the objects; ``render_error(values)``
expects rendering to fail and returns helm's message. helm comes from ``deploy.helmbin``;
when it is not installed yet the session installs it into ``.tools/bin`` first.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.deploy.rollout import helmbin

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "modelyard-serving"
RELEASE = "sea-west"
NAMESPACE = "modelyard"

# A plan as deploy.plan writes it (the chart itself treats it as opaque).
ROLLING_PLAN: dict[str, Any] = {
    "version": 1,
    "services": [
        {
            "family": "driver_acceptance",
            "region": "jakarta",
            "timezone": "Asia/Jakarta",
            "variants": [{"name": "champion", "model_uri": "models:/driver_acceptance-jakarta/7", "weight": 100}],
        },
        {
            "family": "pickup_eta",
            "region": "jakarta",
            "timezone": "Asia/Jakarta",
            "variants": [{"name": "champion", "model_uri": "models:/pickup_eta-jakarta/3", "weight": 100}],
        },
    ],
}
# Required values: every rendering needs a plan and the MLflow Secret reference.
BASE_VALUES: dict[str, Any] = {"plan": ROLLING_PLAN, "mlflow": {"existingSecret": "modelyard-mlflow"}}

Render = Callable[..., list[dict[str, Any]]]
RenderError = Callable[..., str]


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base`` (non-empty dicts merge, anything else replaces)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and value and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@pytest.fixture(scope="session")
def helm() -> Path:
    try:
        return helmbin.find_helm()
    except helmbin.HelmNotFoundError:
        return helmbin.install(helmbin.DEFAULT_DEST)


def _template(helm: Path, values: dict[str, Any], release: str, namespace: str) -> subprocess.CompletedProcess[str]:
    command = [str(helm), "template", release, str(CHART), "--namespace", namespace, "--values", "-"]
    return subprocess.run(command, input=json.dumps(values), capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def render(helm: Path) -> Render:
    def _render(
        values: dict[str, Any] | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE, base: bool = True
    ) -> list[dict[str, Any]]:
        full = merge(BASE_VALUES, values or {}) if base else (values or {})
        result = _template(helm, full, release, namespace)
        assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return _render


@pytest.fixture(scope="session")
def render_error(helm: Path) -> RenderError:
    def _render_error(values: dict[str, Any], *, base: bool = True) -> str:
        full = merge(BASE_VALUES, values) if base else values
        result = _template(helm, full, RELEASE, NAMESPACE)
        assert result.returncode != 0, f"helm template unexpectedly succeeded with {values}"
        return result.stderr

    return _render_error
