"""The wheel, installed into clean environments, outside the repository.

Three fresh venvs from one wheel built from a copy of the repository's build inputs:

* ``[airflow]`` at both ends of the declared Airflow range (setup.cfg): the ceiling with
  ``constraints.txt`` (the newest Airflow), the floor with ``constraints.txt`` under the pins of
  ``.ci/constraints-airflow-floor.txt`` (the newest release of the lowest supported minor).
  At each end ``modelyard init`` writes a project; a temporary AIRFLOW_HOME (SQLite,
  ``airflow db migrate``) with that project's ``dags/`` as its DAG folder lists the six
  stages with no import error, the provider and the plugin come from entry points, a whole
  stage (``airflow dags test data_processing``) runs from the project's DAG file, and
  ``modelyard doctor`` reports the pinned Airflow and finds nothing missing once
  ``mlflow_default`` points at a live MLflow server (and says what is missing before).
  ``modelyard init`` itself and ``airflow tasks test`` are checked at the ceiling only.
  At the ceiling the README's steps also go all the way: the scaffold's config loads with the
  installed schema and every key its header names exists; then an ``airflow standalone`` on the
  project (the ``mlflow_default`` connection to a live MLflow), the chain unpaused, one trigger
  of ``data_processing``, and the local endpoint the deploy stage starts answers a prediction.
* ``[serving]``: ``modelyard serve --help`` works and Airflow, Great Expectations and
  matplotlib are not installed.

Slow (three venvs; pip resolves against the constraints and its cache): each venv is
built once per module.
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
# What the wheel is built from (the same files the Dockerfile's build stage copies).
BUILD_INPUTS = (
    "setup.cfg", "pyproject.toml", "README.md", "modelyard.yaml", "constraints-runtime.txt",
    "modelyard", "core", "pipeline", "training", "promotion", "monitoring", "deploy", "plugins", "dags", "helm",
)  # fmt: skip
STAGES = ("data_processing", "training", "promotion", "deploy", "monitoring", "batch_scoring", "housekeeping")
SERVING_SIZE_GOAL_MB = 500  # issue 10's goal: 478 MB without onnxruntime
# onnxruntime (78 MB, the small-batch fast path of ADR 0002) puts the venv at ~556 MB: the
# test holds that budget so the image cannot grow unnoticed, and prints the figure against the goal.
SERVING_SIZE_BUDGET_MB = 600
INSTALL_TIMEOUT = 1500
CONSTRAINTS = REPO / "constraints.txt"
FLOOR_PINS = REPO / ".ci" / "constraints-airflow-floor.txt"
AIRFLOW_ENDS = ("ceiling", "floor")


@dataclass(frozen=True)
class Venv:
    """A fresh virtual environment and the clean environment its commands run with."""

    root: Path
    env: dict[str, str]

    def run(
        self, *args: str, cwd: Path, timeout: float = 600, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``args[0]`` from this venv's ``bin`` (stdout and stderr merged), ``env`` added to its environment."""
        return subprocess.run(
            [str(self.root / "bin" / args[0]), *args[1:]], env={**self.env, **(env or {})}, cwd=cwd,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False,
        )  # fmt: skip


def clean_environ(venv: Path, **extra: str) -> dict[str, str]:
    """The parent's environment without anything that would import the checkout or the shared venv."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "MODELYARD_", "AIRFLOW_", "AIRFLOW__", "MLFLOW_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *(p for p in env.get("PATH", "").split(os.pathsep) if p)])
    env["OMP_NUM_THREADS"] = "1"
    return {**env, **extra}


def make_venv(root: Path, requirement: str, constraints: Path) -> Venv:
    """``python -m venv`` plus ``pip install -c constraints requirement``; fails the test on error."""
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=300)
    venv = Venv(root, clean_environ(root))
    installed = venv.run(
        "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", str(constraints), requirement,
        cwd=root, timeout=INSTALL_TIMEOUT,
    )  # fmt: skip
    assert installed.returncode == 0, f"pip install {requirement} failed:\n{installed.stdout[-4000:]}"
    return venv


def pinned_name(line: str) -> str | None:
    """The canonical package name a constraints line pins, or None for a comment or a blank line."""
    line = line.split("#", 1)[0].strip()
    return canonicalize_name(Requirement(line).name) if line else None


def floor_constraints(into: Path) -> Path:
    """``constraints.txt`` with every package ``.ci/constraints-airflow-floor.txt`` pins pinned as it says."""
    floor = FLOOR_PINS.read_text().splitlines()
    replaced = {pinned_name(line) for line in floor} - {None}
    kept = [line for line in CONSTRAINTS.read_text().splitlines() if pinned_name(line) not in replaced]
    into.write_text("\n".join([*kept, *floor]) + "\n")
    return into


def pinned_version(constraints: Path, name: str) -> Version:
    """The version ``constraints`` pins ``name`` to."""
    for line in constraints.read_text().splitlines():
        if pinned_name(line) == name:
            return Version(line.split("#", 1)[0].split("==", 1)[1].strip())
    raise AssertionError(f"{constraints} does not pin {name}")


def declared_airflow_range() -> SpecifierSet:
    """The ``apache-airflow`` specifier of setup.cfg's ``[airflow]`` extra."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    lines = (line.split("#", 1)[0].strip() for line in cfg["options.extras_require"]["airflow"].splitlines())
    (airflow,) = [Requirement(line) for line in lines if line and Requirement(line).name == "apache-airflow"]
    return airflow.specifier


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The modelyard wheel, built from a copy of the build inputs (no stale ``build/`` in the checkout)."""
    source = tmp_path_factory.mktemp("source")
    for name in BUILD_INPUTS:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name, follow_symlinks=False)
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check", "-w", str(out),
         str(source)], capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-4000:]
    (found,) = out.glob("modelyard-*.whl")
    return found


@dataclass(frozen=True)
class Project:
    """An ``[airflow]`` venv, the project ``modelyard init`` wrote, and an AIRFLOW_HOME on it."""

    venv: Venv
    directory: Path
    init_output: str
    airflow_version: Version  # what its constraints pin

    def airflow(
        self, *args: str, timeout: float = 600, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.venv.run("airflow", *args, cwd=self.directory, timeout=timeout, env=env)

    @property
    def metadata_db(self) -> Path:
        return Path(self.venv.env["AIRFLOW_HOME"]) / "airflow.db"


def install_project(wheel: Path, constraints: Path, root: Path) -> Project:
    """``[airflow]`` installed with ``constraints``, ``modelyard init``, and a migrated AIRFLOW_HOME on the project."""
    venv = make_venv(root / "venv", f"{wheel}[airflow]", constraints)
    directory = root / "team-project"
    init = venv.run("modelyard", "init", str(directory), cwd=root)
    assert init.returncode == 0, init.stdout
    home = root / "airflow-home"
    home.mkdir()
    # No MODELYARD_CONFIG: the DAG files must find the config next to them on their own.
    env = clean_environ(
        venv.root,
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(directory / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT="120",
    )
    installed = Project(Venv(venv.root, env), directory, init.stdout, pinned_version(constraints, "apache-airflow"))
    migrated = installed.airflow("db", "migrate")
    assert migrated.returncode == 0, migrated.stdout[-4000:]
    # What the DAG processor does: parse the bundle, store the DAGs and the import errors.
    parsed = installed.airflow("dags", "reserialize")
    assert parsed.returncode == 0, parsed.stdout[-4000:]
    return installed


@pytest.fixture(scope="module")
def ceiling_project(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The project on the newest supported Airflow (``constraints.txt``)."""
    return install_project(wheel, CONSTRAINTS, tmp_path_factory.mktemp("airflow-ceiling"))


@pytest.fixture(scope="module")
def floor_project(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The project on the lowest supported Airflow (``.ci/constraints-airflow-floor.txt`` over ``constraints.txt``)."""
    root = tmp_path_factory.mktemp("airflow-floor")
    return install_project(wheel, floor_constraints(root / "constraints-floor.txt"), root)


@pytest.fixture(scope="module", params=AIRFLOW_ENDS)
def project(request: pytest.FixtureRequest) -> Project:
    """The project at each end of the declared Airflow range; each venv is built once."""
    found: Project = request.getfixturevalue(f"{request.param}_project")
    return found


@pytest.fixture(scope="module")
def serving(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A ``[serving]`` venv as the Dockerfile leaves it: without pip and setuptools."""
    venv = make_venv(tmp_path_factory.mktemp("serving-install") / "venv", f"{wheel}[serving]", CONSTRAINTS)
    trimmed = venv.run("python", "-m", "pip", "uninstall", "-y", "-q", "pip", "setuptools", cwd=venv.root)
    assert trimmed.returncode == 0, trimmed.stdout
    return venv


def json_rows(output: str) -> list[dict[str, Any]]:
    """The JSON array an ``airflow ... --output json`` command prints after its log lines."""
    for line in reversed(output.splitlines()):
        if line.startswith("["):
            with contextlib.suppress(json.JSONDecodeError):
                return list(json.loads(line))
    raise AssertionError(f"no JSON array in the output:\n{output[-4000:]}")


def test_init_writes_a_project_of_thin_dag_files(ceiling_project: Project) -> None:
    project = ceiling_project
    dag_files = sorted(p.name for p in (project.directory / "dags").glob("*.py"))
    assert dag_files == sorted(f"modelyard_{stage}.py" for stage in STAGES)
    for name in dag_files:
        source = (project.directory / "dags" / name).read_text()
        assert "from modelyard.dags." in source
        assert "@dag" not in source  # the DAG itself stays in the package
    config = (project.directory / "modelyard.yaml").read_text()
    assert config.startswith("# modelyard config for this Airflow deployment")
    readme = (project.directory / "README.md").read_text()
    for topic in ("mlflow_default", "kubernetes_default", "MODELYARD_CONFIG", "Scheduling"):
        assert topic in readme


SCAFFOLD_KEYS = r"""
import json, re, sys, typing
from pathlib import Path
from modelyard.core.config import Config, load_config

text = Path("modelyard.yaml").read_text()
load_config(Path("modelyard.yaml"), environ={})  # the schema refuses an unknown or invalid key
named = []
for line in text.splitlines():
    found = re.match(r"^#   ([a-z][a-z_.\[\], ]*?)\s{2,}\S", line)
    if found:
        named += [key.strip() for key in found.group(1).split(",")]
unknown = []
for key in named:
    model = Config
    for part in key.replace("[]", "").split("."):
        if part not in model.model_fields:
            unknown.append(key)
            break
        annotation = model.model_fields[part].annotation
        model = typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else annotation
print(json.dumps({"named": named, "unknown": unknown}))
"""


def test_the_scaffold_validates_against_the_wheels_config_schema(ceiling_project: Project) -> None:
    """The config ``init`` wrote loads with the installed schema, and every key its header names exists."""
    project = ceiling_project
    ran = project.venv.run("python", "-c", SCAFFOLD_KEYS, cwd=project.directory)
    assert ran.returncode == 0, ran.stdout[-4000:]
    found = json.loads(ran.stdout.strip().splitlines()[-1])
    assert {"storage.root", "datasets[].source", "deploy"} <= set(found["named"]), found
    assert found["unknown"] == [], f"the init header names keys the config does not have: {found['unknown']}"


def test_init_refuses_to_overwrite_without_force(ceiling_project: Project) -> None:
    project = ceiling_project
    config = project.directory / "modelyard.yaml"
    config.write_text(config.read_text() + "# the team's edit\n")
    again = project.venv.run("modelyard", "init", str(project.directory), cwd=project.directory)
    assert again.returncode == 1
    assert "--force" in again.stdout
    assert "modelyard.yaml" in again.stdout
    assert config.read_text().endswith("# the team's edit\n")


def test_the_ci_floor_is_the_lowest_declared_minor() -> None:
    """CI's two ends lie in setup.cfg's range and the floor is its lowest minor: raising the floor moves CI too."""
    declared = declared_airflow_range()
    floor = pinned_version(FLOOR_PINS, "apache-airflow")
    ceiling = pinned_version(CONSTRAINTS, "apache-airflow")
    assert floor in declared, f"{FLOOR_PINS.name} pins Airflow {floor}, outside setup.cfg's {declared}"
    assert ceiling in declared, f"constraints.txt pins Airflow {ceiling}, outside setup.cfg's {declared}"
    (lowest,) = [Version(spec.version) for spec in declared if spec.operator == ">="]
    assert floor.release[:2] == lowest.release[:2], f"setup.cfg says {declared}; CI's floor is {floor}"
    assert floor < ceiling


def test_airflow_lists_the_stage_dags_from_the_project_files(project: Project) -> None:
    listed = project.airflow("dags", "list", "--output", "json")
    assert listed.returncode == 0, listed.stdout[-4000:]
    rows = {row["dag_id"]: row for row in json_rows(listed.stdout)}
    assert set(STAGES) <= set(rows), listed.stdout[-4000:]
    for stage in STAGES:
        assert Path(rows[stage]["fileloc"]) == project.directory / "dags" / f"modelyard_{stage}.py"


def test_no_import_errors(project: Project) -> None:
    errors = project.airflow("dags", "list-import-errors", "--output", "json")
    assert errors.returncode == 0, errors.stdout[-4000:]
    assert json_rows(errors.stdout) == [], errors.stdout[-4000:]


def test_provider_and_plugin_come_from_entry_points(project: Project) -> None:
    providers = project.airflow("providers", "list", "--output", "json")
    assert providers.returncode == 0, providers.stdout[-4000:]
    assert "modelyard" in {row["package_name"] for row in json_rows(providers.stdout)}
    hooks = project.airflow("providers", "hooks", "--output", "json")
    mlflow = [row for row in json_rows(hooks.stdout) if row["connection_type"] == "mlflow"]
    assert [row["class"] for row in mlflow] == ["modelyard.plugins.hooks.mlflow.MlflowHook"], hooks.stdout[-4000:]
    links = {
        row["extra_link_class_name"] for row in json_rows(project.airflow("providers", "links", "-o", "json").stdout)
    }
    assert {"modelyard.plugins.links.MlflowRunLink", "modelyard.plugins.links.MlflowModelVersionLink"} <= links
    plugins = project.airflow("plugins", "--output", "json")
    assert plugins.returncode == 0, plugins.stdout[-4000:]
    (plugin,) = [row for row in json_rows(plugins.stdout) if row["name"] == "modelyard"]
    assert "EntryPoint(name='modelyard'" in plugin["source"]
    assert not (Path(project.venv.env["AIRFLOW_HOME"]) / "plugins").exists()  # no shim


def test_a_task_runs_from_the_project_dag_file(ceiling_project: Project) -> None:
    """``airflow tasks test`` at the ceiling; at the floor the stage below runs the same task the same way."""
    ran = ceiling_project.airflow("tasks", "test", "data_processing", "select_pairs", "2026-06-01")
    assert ran.returncode == 0, ran.stdout[-4000:]
    assert "'family': 'driver_acceptance', 'region': 'jakarta'" in ran.stdout, ran.stdout[-4000:]


def test_a_stage_runs_from_the_project_dag_file(project: Project) -> None:
    """``airflow dags test`` runs data_processing for one pair: the snapshot is written and announced."""
    conf = {"families": ["driver_acceptance"], "regions": ["jakarta"]}
    small = {"MODELYARD_DATA__SYNTHETIC__ROWS": "600"}  # data.min_rows is 500
    ran = project.airflow("dags", "test", "data_processing", "2026-06-02", "--conf", json.dumps(conf), env=small)
    assert ran.returncode == 0, ran.stdout[-6000:]
    assert "driver_acceptance/jakarta: published | 600 rows" in ran.stdout, ran.stdout[-6000:]
    snapshots = project.directory / ".modelyard" / "features" / "driver_acceptance" / "jakarta"
    digest = (snapshots / "LATEST").read_text().strip()
    assert (snapshots / f"{digest}.parquet").is_file()
    query = (
        "SELECT e.extra, e.source_dag_id FROM asset_event e JOIN asset a ON a.id = e.asset_id "
        "WHERE a.uri = 'modelyard://features/driver_acceptance/jakarta'"
    )
    with contextlib.closing(sqlite3.connect(project.metadata_db)) as db:
        ((extra, dag_id),) = db.execute(query).fetchall()
    assert json.loads(extra) == {"family": "driver_acceptance", "region": "jakarta", "digest": digest, "rows": 600}
    assert dag_id == "data_processing"


def test_the_wheel_ships_the_runtime_constraints(wheel: Path) -> None:
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("modelyard/constraints-runtime.txt").decode()
    assert shipped == (REPO / "constraints-runtime.txt").read_text()


def test_doctor_says_what_the_worker_misses_then_finds_nothing(project: Project, mlflow_server: Any) -> None:
    missing = project.venv.run("modelyard", "doctor", cwd=project.directory, timeout=300)
    assert missing.returncode == 1, missing.stdout
    lines = missing.stdout.splitlines()
    assert [line.split()[1].rstrip(":") for line in lines] == ["airflow", "connection", "mlflow", "storage", "helm"]
    # The Airflow this end is meant to run, and no other: the version the constraints pin.
    assert lines[0].startswith(f"ok   airflow: {project.airflow_version} "), missing.stdout
    assert lines[1].startswith("FAIL connection: 'mlflow_default' not found"), missing.stdout
    connected = {"AIRFLOW_CONN_MLFLOW_DEFAULT": mlflow_server.url}
    found = project.venv.run("modelyard", "doctor", cwd=project.directory, timeout=300, env=connected)
    assert found.returncode == 0, found.stdout
    assert f"ok   mlflow: {mlflow_server.url} answers" in found.stdout
    assert f"ok   storage: {project.directory / '.modelyard'}" in found.stdout


def test_serving_extra_serves_without_airflow_gx_or_matplotlib(serving: Venv, tmp_path: Path) -> None:
    helped = serving.run("modelyard", "serve", "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stdout
    assert "--plan" in helped.stdout
    imported = serving.run("python", "-c", "import modelyard.deploy.serving.server", cwd=tmp_path)
    assert imported.returncode == 0, imported.stdout
    checker = serving.run("python", "-m", "modelyard.deploy.serving.check", "--help", cwd=tmp_path)  # helm test's
    assert checker.returncode == 0, checker.stdout
    assert "--plan" in checker.stdout
    for module in ("airflow", "great_expectations", "matplotlib"):
        probe = serving.run("python", "-c", f"import {module}", cwd=tmp_path)
        assert probe.returncode != 0, f"{module} is installed"
        assert f"No module named '{module}'" in probe.stdout, probe.stdout


LOAD_AND_PREDICT = """
import json, sys
from modelyard.deploy.serving.runtime import load_model

uris, records = json.loads(sys.argv[1]), json.loads(sys.argv[2])
out = {}
for key, uri in uris.items():
    model = load_model(uri)
    out[key] = {"flavor": model.status.flavor, "example": model.example,
                "predictions": model.predict(model.prepare(records)).tolist()}
out["pandas_imported"] = "pandas" in sys.modules
print(json.dumps(out))
"""


def test_serving_extra_loads_xgboost_and_sklearn_models(serving: Venv, mlflow_server: Any, tmp_path: Path) -> None:
    """The registry's two flavours load, warm up on their input examples and predict without pandas."""
    import mlflow
    import numpy as np
    import pandas as pd

    from tests.bench.serving import feature_names, register_xgboost
    from tests.integration.test_serving import N_FEATURES, _register_sklearn_regressor

    mlflow.set_tracking_uri(mlflow_server.url)
    uris = {
        "xgboost": register_xgboost("install-acceptance", n_features=N_FEATURES, n_trees=10, rows=300),
        "sklearn": _register_sklearn_regressor("install-eta"),
    }
    names = feature_names(N_FEATURES)
    records = [{name: 0.5 * i for i, name in enumerate(names)}, dict.fromkeys(names, -1.0)]
    env = {**serving.env, "MLFLOW_TRACKING_URI": mlflow_server.url, "MLFLOW_REGISTRY_URI": mlflow_server.url}
    ran = subprocess.run(
        [str(serving.root / "bin" / "python"), "-c", LOAD_AND_PREDICT, json.dumps(uris), json.dumps(records)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-4000:]
    out = json.loads(ran.stdout.strip().splitlines()[-1])
    assert out["pandas_imported"] is False
    assert {out[key]["flavor"] for key in uris} == {"xgboost", "sklearn"}
    for key in uris:
        assert len(out[key]["example"]) == 3, f"{key}: warm-up fell back to zeros: the input example was not read"
    frame = pd.DataFrame(records, columns=names)
    expected = {
        "xgboost": mlflow.xgboost.load_model(uris["xgboost"]).predict_proba(frame)[:, 1],
        "sklearn": mlflow.sklearn.load_model(uris["sklearn"]).predict(frame),
    }
    for key, values in expected.items():
        assert np.allclose(out[key]["predictions"], values, rtol=1e-4, atol=1e-6), (key, out[key], values)


def test_serving_environment_fits_the_image_budget(serving: Venv) -> None:
    size_mb = directory_megabytes(serving.root)
    print(f"[serving] venv: {size_mb:.0f} MB (goal <= {SERVING_SIZE_GOAL_MB} MB)")
    assert size_mb <= SERVING_SIZE_BUDGET_MB


def directory_megabytes(root: Path, skip: Sequence[str] = ()) -> float:
    """Bytes on disk of the files under ``root``, in MB (what ``du -s`` counts, links not followed)."""
    total = sum(p.lstat().st_blocks * 512 for p in root.rglob("*") if not p.is_symlink() and p.name not in skip)
    return total / 1e6


# ---------------------------------------------------------------------------- a trigger to a prediction

CHAIN = ("data_processing", "training", "promotion", "deploy")
CHAIN_REGION = "singapore"  # a pair no other test of this module touches: its snapshot is new
CHAIN_TIMEOUT_S = 1200


def standalone_environment(project: Project, mlflow_url: str, airflow_port: int, serving_port: int) -> dict[str, str]:
    """What a team sets for its Airflow: the ``mlflow_default`` connection, ports, one shared API secret."""
    url = f"http://127.0.0.1:{airflow_port}"
    secret = os.urandom(16).hex()
    return {
        "AIRFLOW_CONN_MLFLOW_DEFAULT": mlflow_url,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(airflow_port),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secret,
        "AIRFLOW__API__SECRET_KEY": secret,
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        # The local target's port (a config key; every key has an environment override).
        "MODELYARD_DEPLOY__LOCAL__PORT": str(serving_port),
    }


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 300) -> None:
    """Until every component of ``airflow standalone`` reports healthy (fails with its log tail)."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    health: dict[str, Any] = {}
    while time.monotonic() < deadline:
        assert process.poll() is None, f"airflow standalone exited:\n{log.read_text()[-4000:]}"
        with contextlib.suppress(httpx.HTTPError, ValueError):
            health = httpx.get(f"{url}/api/v2/monitor/health", timeout=5).json()
            parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
            if all((health.get(p) or {}).get("status") == "healthy" for p in parts):
                return
        time.sleep(2)
    raise AssertionError(f"Airflow not healthy after {timeout}s ({health}):\n{log.read_text()[-4000:]}")


def chain_runs(project: Project, columns: str = "state") -> dict[str, Any]:
    """``columns`` of each chain stage's newest run, read from the metadata database (a CLI call costs seconds)."""
    query = f"SELECT dag_id, {columns} FROM dag_run WHERE dag_id IN (?, ?, ?, ?) ORDER BY id"
    with contextlib.closing(sqlite3.connect(project.metadata_db, timeout=30)) as db:
        rows = db.execute(query, CHAIN).fetchall()
    return {str(row[0]): row[1] if len(row) == 2 else row[1:] for row in rows}


def test_a_trigger_runs_the_chain_to_a_served_prediction(
    ceiling_project: Project, mlflow_server: Any, tmp_path: Path
) -> None:
    """The README's steps at the ceiling: a running Airflow, unpaused stages, one trigger, then a prediction."""
    import time

    import httpx

    from modelyard.core.config import load_config
    from modelyard.deploy.devstack.endpoint import sample_record
    from modelyard.deploy.rollout.mlflow_server import free_port
    from modelyard.deploy.rollout.processes import stop_all

    project = ceiling_project
    airflow_port, serving_port = free_port(), free_port()
    env = standalone_environment(project, mlflow_server.url, airflow_port, serving_port)
    log = tmp_path / "standalone.log"
    with log.open("wb") as out:
        standalone = subprocess.Popen(
            [str(project.venv.root / "bin" / "airflow"), "standalone"], cwd=project.directory,
            env={**project.venv.env, **env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    run_dir = project.directory / ".modelyard" / "run"
    try:
        launched = time.monotonic()
        wait_healthy(f"http://127.0.0.1:{airflow_port}", standalone, log)
        print(f"[ceiling] airflow standalone healthy after {time.monotonic() - launched:.0f}s")
        # New DAGs are paused (Airflow's default): the README says to unpause them.
        pattern = f"^({'|'.join(CHAIN)})$"
        unpaused = project.airflow("dags", "unpause", "--treat-dag-id-as-regex", "--yes", pattern, env=env)
        assert unpaused.returncode == 0, unpaused.stdout[-4000:]
        conf = {"families": ["driver_acceptance"], "regions": [CHAIN_REGION]}
        triggered = project.airflow("dags", "trigger", "data_processing", "--conf", json.dumps(conf), env=env)
        assert triggered.returncode == 0, triggered.stdout[-4000:]
        started = time.monotonic()
        states: dict[str, str] = {}
        while time.monotonic() - started < CHAIN_TIMEOUT_S:
            states = chain_runs(project)
            failed = [d for d, s in states.items() if s == "failed"]
            assert not failed, f"{failed} failed ({states}); standalone log:\n{log.read_text()[-6000:]}"
            if states.get("deploy") == "success":
                break
            time.sleep(5)
        assert states.get("deploy") == "success", f"the chain did not reach deploy: {states}"
        chain_s = time.monotonic() - started
        config = load_config(project.directory / "modelyard.yaml")
        record = sample_record(config, "driver_acceptance")
        url = f"http://127.0.0.1:{serving_port}/v1/predict/driver_acceptance/{CHAIN_REGION}"
        answer = httpx.post(url, json=record, timeout=30)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert 0.0 <= body["predictions"][0] <= 1.0, body
        assert body["version"] == "1", body  # the pair's first model, trained and promoted by this chain
        runs = chain_runs(project, "start_date, end_date")
        print(f"[ceiling] trigger to a served prediction: {chain_s:.0f}s; runs (start, end): {runs}")
    finally:
        os.killpg(standalone.pid, 15)
        with contextlib.suppress(subprocess.TimeoutExpired):
            standalone.wait(60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(standalone.pid, 9)
        stop_all(run_dir)  # the local target's serving process is detached: it outlives Airflow
