"""``modelyard init DIR``: the small project a team keeps to run modelyard in its own Airflow.

The DAGs ship in the package (``modelyard.dags``); the project holds what is the team's:
the config (a copy of the packaged demo config with a header saying what to change), one
thin DAG file per stage that imports the packaged DAG (Airflow's DagBag attributes a DAG
found in a file's globals to that file, so ``airflow dags list`` shows it there and task runs
re-parse that file), and a README on connections, ``MODELYARD_CONFIG`` and scheduling.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import typer

from modelyard.core.errors import ModelyardError
from modelyard.deploy.doctor import AIRFLOW_RANGE

CONFIG_FILE = "modelyard.yaml"
DAGS_DIR = "dags"


@dataclass(frozen=True)
class Stage:
    """One packaged DAG and the name its module binds it to."""

    dag_id: str
    module: str
    attribute: str


STAGES = (
    Stage("data_processing", "modelyard.dags.data_processing", "data_processing_dag"),
    Stage("training", "modelyard.dags.model_training", "training_dag"),
    Stage("promotion", "modelyard.dags.promotion", "promotion_dag"),
    Stage("deploy", "modelyard.dags.deployment", "deploy_dag"),
    Stage("monitoring", "modelyard.dags.monitoring", "monitoring_dag"),
    Stage("batch_scoring", "modelyard.dags.batch_scoring", "batch_scoring_dag"),
    Stage("housekeeping", "modelyard.dags.housekeeping", "housekeeping_dag"),
)

CONFIG_HEADER = """\
# modelyard config for this Airflow deployment, written by `modelyard init` from the packaged
# demo config. The DAG files in dags/ read it through $MODELYARD_CONFIG (default: this file).
# Change before the first run:
#   storage.root         a URL every scheduler and worker reaches (s3://bucket/modelyard,
#                        gs://...); a relative path is relative to this file: one machine only.
#   mlflow.tracking_uri  used only without $MLFLOW_TRACKING_URI and the Airflow connection
#                        `mlflow_default`.
#   regions, families    your regions (time zones, festivals) and model families.
#   datasets[].source    kind: file and a CSV/Parquet path or glob for your own bookings, on a
#                        disk every worker reads (a relative path is relative to this file).
#   deploy               target local or kubernetes (namespace, releases, chart values).
#   schedules            when data_processing runs; the later stages follow through Assets.
# Every key can be overridden with MODELYARD_<SECTION>__<KEY> (e.g. MODELYARD_STORAGE__ROOT).

"""

DAG_FILE = '''\
"""modelyard's `{dag_id}` Airflow DAG, defined in the installed package ({module}).

Written by `modelyard init`; upgrade modelyard to change the DAG, not this file. The DAG
reads its config from $MODELYARD_CONFIG, by default the modelyard.yaml of this project.
"""

import os
from pathlib import Path

os.environ.setdefault("MODELYARD_CONFIG", str(Path(__file__).resolve().parents[1] / "{config}"))

from {module} import {attribute}  # noqa: E402

__all__ = ["{attribute}"]
'''

README = """\
# modelyard in this Airflow

Written by `modelyard init`. The stage DAGs ship in the `modelyard` package; this project
holds the config (`{config}`) and one thin DAG file per stage in `{dags}/` ({dag_count} files).

## Install

On the image of every Airflow component (scheduler, DAG processor, triggerer, workers):

    pip install 'modelyard[airflow]'          # Airflow {airflow_range}
    pip install 'modelyard[kubernetes]'       # only with deploy.target: kubernetes (helm included)
    modelyard doctor                          # what this host still misses, one line per check

modelyard registers itself through entry points: `airflow providers list` shows it (hooks,
the `mlflow` connection type, the links from task pages to MLflow), `airflow plugins` shows
the `modelyard` plugin. Nothing goes into `$AIRFLOW_HOME/plugins`.

## Put the DAG files where Airflow reads them

Point the DAG bundle (or `[core] dags_folder`) at `{dags}/` of this project, e.g. with the
official chart's git-sync on this repository. `airflow dags list` then shows
{dag_ids}, each attributed to its file here.

## The config: MODELYARD_CONFIG

The DAG files default `MODELYARD_CONFIG` to `{config}` one level above `{dags}/`. Set it
explicitly when the config lives elsewhere, as an environment variable of every component:

* official chart: `env: [{{name: MODELYARD_CONFIG, value: /opt/airflow/dags/repo/{config}}}]`;
* docker compose / systemd: `MODELYARD_CONFIG=/path/to/{config}`.

Every key can also be overridden with `MODELYARD_<SECTION>__<KEY>` (e.g.
`MODELYARD_STORAGE__ROOT=s3://bucket/modelyard`): with several workers, `storage.root` must be
a location they all reach.

## Connections

* `mlflow_default` (type `mlflow`): the MLflow tracking server; host and port (or a full URL
  in host), login/password for basic auth, e.g.
  `AIRFLOW_CONN_MLFLOW_DEFAULT='{{"conn_type": "mlflow", "host": "mlflow.internal", "port": 5000}}'`.
  Without it the tasks use `$MLFLOW_TRACKING_URI`, then `mlflow.tracking_uri` of the config; the
  `modelyard` CLI reads `$MLFLOW_TRACKING_URI` first, then this connection, then the config.
* `kubernetes_default` (type `kubernetes`): the cluster the deploy DAG rolls out to with Helm,
  extras `kube_config_path`, `kube_config`, `cluster_context`, `namespace` or `in_cluster: true`.
  Only needed with `deploy.target: kubernetes`.

## Scheduling

`data_processing` runs on `schedules.data_processing` of the config (a cron expression or a
preset such as `@daily`). `training`, `promotion` and `deploy` are scheduled on the Assets the
stage before them emits, so they run only for the (family, region) pairs that changed. Every
DAG can also be triggered by hand from the UI with its parameter form.
"""


class ProjectExistsError(ModelyardError, FileExistsError):
    """``init`` would overwrite files; the message lists them and names ``--force``."""


def project_files(directory: Path) -> dict[Path, str]:
    """What ``init`` writes into ``directory``: path -> content."""
    files = {directory / CONFIG_FILE: CONFIG_HEADER + packaged_config()}
    for stage in STAGES:
        files[directory / DAGS_DIR / f"modelyard_{stage.dag_id}.py"] = DAG_FILE.format(
            dag_id=stage.dag_id, module=stage.module, attribute=stage.attribute, config=CONFIG_FILE
        )
    dag_ids = ", ".join(f"`{stage.dag_id}`" for stage in STAGES)
    files[directory / "README.md"] = README.format(
        config=CONFIG_FILE, dags=DAGS_DIR, dag_ids=dag_ids, dag_count=len(STAGES), airflow_range=AIRFLOW_RANGE
    )
    return files


def packaged_config() -> str:
    """The demo config shipped in the package (``modelyard/modelyard.yaml``)."""
    return resources.files("modelyard").joinpath(CONFIG_FILE).read_text()


def write_project(directory: Path, force: bool = False) -> list[Path]:
    """Write the project files into ``directory`` (created when missing).

    Raises:
        ProjectExistsError: a file exists already and ``force`` is False; nothing is written.
    """
    files = project_files(directory)
    existing = sorted(path for path in files if path.exists())
    if existing and not force:
        listed = ", ".join(str(path) for path in existing)
        raise ProjectExistsError(
            f"{len(existing)} of the project's files exist already ({listed}); nothing written. "
            "Re-run with --force to overwrite them."
        )
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return list(files)


def init(
    directory: Path = typer.Argument(..., help="Project folder to write (created when missing)."),
    force: bool = typer.Option(False, "--force", help="Overwrite files that exist already."),
) -> None:
    """Write a project for your own Airflow: modelyard.yaml, one DAG file per stage, README."""
    try:
        written = write_project(directory, force)
    except ProjectExistsError as exc:
        typer.echo(f"modelyard init: {exc}", err=True)
        raise typer.Exit(1) from exc
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(f"Point Airflow's DAG folder at {directory / DAGS_DIR}; see {directory / 'README.md'}.")
