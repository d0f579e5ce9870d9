"""The serving image (Dockerfile) and the chart agree, and the image holds code only.

No Docker engine runs here, so the Dockerfile is checked statically.
"""

from __future__ import annotations

import json
import re

import yaml

from .conftest import CHART

REPO = CHART.parents[1]
# What the wheel is built from: the namespace package, the folders its links point at, the
# config it ships (modelyard/modelyard.yaml links it) and the build metadata.
CODE_DIRS = {"modelyard", "core", "pipeline", "training", "promotion", "monitoring", "deploy", "plugins", "dags"}
CODE_DIRS |= {"helm"}
BUILD_FILES = {"constraints.txt", "setup.cfg", "pyproject.toml", "README.md", "modelyard.yaml"}
BUILD_FILES |= {"constraints-runtime.txt"}  # modelyard/constraints-runtime.txt links it (shipped in the wheel)


def final_stage() -> list[str]:
    lines = (REPO / "Dockerfile").read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    return lines[starts[-1] :]


def instruction(stage: list[str], name: str) -> list[str]:
    return [line.split(" ", 1)[1] for line in stage if line.startswith(f"{name} ")]


def test_runs_as_the_chart_non_root_user() -> None:
    (user,) = instruction(final_stage(), "USER")
    uid, gid = (int(part) for part in user.split(":"))
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert uid != 0
    assert uid == values["podSecurityContext"]["runAsUser"]
    assert gid == values["podSecurityContext"]["runAsGroup"]


def test_serves_the_chart_plan_path_and_port() -> None:
    stage = final_stage()
    assert json.loads(instruction(stage, "ENTRYPOINT")[0]) == ["modelyard"]
    command = json.loads(instruction(stage, "CMD")[0])
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert command[0] == "serve"
    assert command[command.index("--plan") + 1] == "/etc/modelyard/plan.yaml"
    assert int(command[command.index("--port") + 1]) == values["serving"]["port"]
    assert instruction(stage, "EXPOSE") == [str(values["serving"]["port"])]
    env = "\n".join(stage)  # ENV spans continuation lines
    assert f"MODELYARD_SERVE_MODEL_CACHE={values['modelCache']['mountPath']}" in env


def copied_sources() -> set[str]:
    """What the Dockerfile copies from the build context."""
    sources = set()
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            sources.update(line.split()[1:-1])
    return sources


def test_copies_code_only() -> None:
    text = (REPO / "Dockerfile").read_text()
    sources = copied_sources()
    assert sources <= CODE_DIRS | BUILD_FILES, sources
    body = text.split("\nFROM", 1)[1]  # after the header comment
    assert not re.search(r"mlruns|\.modelyard|\.ubj|\.pkl|models:/", body)


def test_copies_every_target_of_the_namespace_links() -> None:
    """COPY keeps links as links: each target under modelyard/ must be copied beside it."""
    targets = {
        link.resolve().relative_to(REPO).parts[0] for link in (REPO / "modelyard").iterdir() if link.is_symlink()
    }
    assert targets
    assert "modelyard" in copied_sources()
    assert targets <= copied_sources(), targets - copied_sources()


def test_installs_the_serving_extra_only() -> None:
    text = (REPO / "Dockerfile").read_text()
    installs = [line for line in text.splitlines() if "pip install" in line]
    assert any('".[${EXTRAS}]"' in line for line in installs), installs
    assert re.search(r"^ARG EXTRAS=serving$", text, re.M), "the default build installs [serving] only"
    assert not any(re.search(r"\[(airflow|dev|cluster)", line) for line in installs), installs


def test_dockerignore_denies_everything_but_code() -> None:
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "**"
    allowed = {line[1:].removesuffix("/**") for line in lines if line.startswith("!")}
    assert allowed == CODE_DIRS | BUILD_FILES
    for pattern in ("**/mlruns", "**/*.ubj", "**/*.pkl", "**/__pycache__"):
        assert pattern in lines
