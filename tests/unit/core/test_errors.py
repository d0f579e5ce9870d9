"""Every stage's expected errors share one base, so a caller needs one ``except``."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from modelyard.core.errors import ModelyardError

REPO = Path(__file__).resolve().parents[3]
LAYERS = ("core", "pipeline", "training", "promotion", "monitoring", "deploy", "plugins")


def _error_classes() -> list[tuple[str, str]]:
    found = []
    for layer in LAYERS:
        for file in sorted((REPO / layer).rglob("*.py")):
            module = ".".join(("modelyard", *file.relative_to(REPO).with_suffix("").parts))
            for node in ast.parse(file.read_text()).body:
                if isinstance(node, ast.ClassDef) and node.name.endswith(("Error", "Exception")):
                    found.append((module, node.name))
    return found


def test_the_scan_finds_the_stages_errors() -> None:
    names = {name for _, name in _error_classes()}
    assert {"ConfigError", "IngestError", "PromotionError", "PlanError", "PlannerError", "DeployError"} <= names


@pytest.mark.parametrize(("module", "name"), _error_classes(), ids=lambda value: str(value).rsplit(".", 1)[-1])
def test_every_error_class_derives_from_modelyard_error(module: str, name: str) -> None:
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, ModelyardError), f"{module}.{name} does not derive from ModelyardError"


@pytest.mark.parametrize(
    ("module", "name", "builtin"),
    [
        ("modelyard.core.config", "ConfigError", ValueError),
        ("modelyard.pipeline.ingest", "IngestError", ValueError),
        ("modelyard.pipeline.snapshots", "SnapshotNotFoundError", LookupError),
        ("modelyard.promotion.decision", "PromotionError", RuntimeError),
        ("modelyard.core.tracking", "TrackingServerUnreachableError", ConnectionError),
        ("modelyard.deploy.serving.plan", "PlanError", ValueError),
        ("modelyard.deploy.rollout.strategies", "TargetError", RuntimeError),
    ],
)
def test_callers_catching_the_builtin_still_catch_it(module: str, name: str, builtin: type[Exception]) -> None:
    assert issubclass(getattr(importlib.import_module(module), name), builtin)


def test_a_skip_signal_is_not_an_error() -> None:
    # A pair with nothing to train on is skipped by the DAG, not failed with the expected errors.
    from modelyard.training.fit import TrainingSkipped

    assert not issubclass(TrainingSkipped, ModelyardError)
