"""Where a model version comes from: its ``models:/`` URI, the MLflow registry's answer, its files.

The tracking URI comes from ``MLFLOW_TRACKING_URI``. A version or alias the registry does not
know is ``ModelMissing``; a registry that cannot be reached or answers an error is
``ModelLoadFailed`` (``faults.is_transient`` tells whether to retry it).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from modelyard.core.model_files import ENVIRONMENT_FILES, download_model
from modelyard.deploy.serving.errors import ModelLoadFailed, ModelMissing

_URI = re.compile(r"^models:/(?P<name>[^/@\s]+)(?:/(?P<version>[0-9]+)|@(?P<alias>[A-Za-z0-9_\-]+))$")


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """A parsed ``models:/name/version`` or ``models:/name@alias`` URI."""

    uri: str
    name: str
    version: str | None
    alias: str | None

    @classmethod
    def parse(cls, uri: str) -> ModelRef:
        match = _URI.match(uri)
        if not match:
            raise ModelMissing(f"model URI '{uri}' is not models:/<name>/<version> or models:/<name>@<alias>")
        return cls(uri, match["name"], match["version"], match["alias"])


def import_client() -> None:
    """Import MLflow's client modules in the calling thread, before loader threads use them.

    MLflow's packages import each other in cycles: two loader threads importing them for the first
    time at once can meet a partially initialised module (``ImportError: cannot import name
    '_get_store' from partially initialized module 'mlflow.tracking'``), which failed a pod's first
    plan of two models. Imported once, every thread finds them complete.
    """
    import mlflow.artifacts
    import mlflow.exceptions
    import mlflow.tracking  # noqa: F401


def resolve_version(ref: ModelRef) -> tuple[str, dict[str, str], str | None]:
    """The version number ``ref`` names in the registry, its tags and its source (e.g. ``models:/m-<id>``).

    Raises:
        ModelMissing: the registry has no such version or alias.
        ModelLoadFailed: the registry answered an error or could not be reached.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        if ref.alias is not None:
            found = client.get_model_version_by_alias(ref.name, ref.alias)
        else:
            found = client.get_model_version(ref.name, str(ref.version))
        return str(found.version), dict(found.tags or {}), found.source or None
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            what = f"alias '{ref.alias}'" if ref.alias else f"version {ref.version}"
            raise ModelMissing(
                f"registered model '{ref.name}' has no {what} in the MLflow registry "
                f"(check the plan's model_uri {ref.uri} or register the model first)"
            ) from exc
        raise ModelLoadFailed(f"MLflow registry error for {ref.uri}: {exc.message}") from exc
    except Exception as exc:
        raise ModelLoadFailed(f"cannot reach the MLflow registry for {ref.uri}: {type(exc).__name__}: {exc}") from exc


# What the server never opens: the environment files (it serves in its own) and the REST example.
LEFT_OUT = ENVIRONMENT_FILES | {"serving_input_example.json"}


def download(ref: ModelRef, version: str, workdir: Path) -> Path:
    """Download the files of ``version`` of ``ref`` into ``workdir`` (not those in ``LEFT_OUT``); the model folder.

    Raises:
        ModelMissing: the artifacts are gone or cannot be read.
    """
    try:
        return download_model(ref.name, version, workdir, LEFT_OUT).path
    except Exception as exc:
        raise ModelMissing(f"artifacts of {ref.uri} (version {version}) cannot be downloaded: {exc}") from exc


def download_run_artifact(uri: str, run_id: str | None, artifact: str, path: Path) -> Path:
    """Download ``artifact`` of the run that logged model ``uri`` into ``path`` (a feature spec).

    Raises:
        ModelLoadFailed: the model names no run, or the artifact cannot be downloaded.
    """
    import mlflow

    if not run_id:
        raise ModelLoadFailed(f"{uri} is tagged feature_spec={artifact} but its MLmodel names no run")
    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=str(path)))
    except Exception as exc:
        raise ModelLoadFailed(
            f"{uri}: feature spec '{artifact}' of run {run_id} cannot be downloaded ({exc}); "
            "the version takes raw fields only with it: re-log the run artifact or retrain"
        ) from exc
