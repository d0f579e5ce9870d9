"""Download a registered model version's files, leaving out the ones the caller never reads.

``mlflow.artifacts.download_artifacts("models:/<name>/<version>")`` fetches every file of the
version, one request each, after resolving the version twice: ~15 requests for a model of eleven
files, most of them the environment (``conda.yaml``, ``python_env.yaml``, ``requirements.txt``)
and the input examples, which the gates never open (issue 26: a promotion decision's largest
group of requests). :func:`download_model` asks the registry once where the files are, lists
them (their sizes come with the listing) and fetches only the wanted ones through the same
artifact repository MLflow would use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

# What MLflow writes beside every model to rebuild its environment elsewhere.
ENVIRONMENT_FILES = frozenset({"conda.yaml", "python_env.yaml", "requirements.txt"})
# The input examples MLflow saves with a model (the UI's and `mlflow models serve`'s).
EXAMPLE_FILES = frozenset({"input_example.json", "serving_input_example.json"})


@dataclass(frozen=True)
class DownloadedModel:
    """Where a version's files were written, and the size of all its files (those left out included)."""

    path: Path
    size_bytes: int


def download_model(
    name: str,
    version: str,
    dst: Path,
    leave_out: frozenset[str] = frozenset(),
    client: MlflowClient | None = None,
) -> DownloadedModel:
    """Download version ``version`` of registered model ``name`` into ``dst``, without the files in ``leave_out``.

    ``leave_out`` names files by their path inside the model (``conda.yaml``, ``extra_files/x``).
    ``client``: the registry client (default: one on MLflow's current registry URI). An artifact
    repository without MLflow's per-file download gets everything, as MLflow downloads it.

    Raises:
        MlflowException: the version does not exist or a file cannot be listed or fetched.
        OSError: a file cannot be written.
    """
    import mlflow

    repo = _artifact_repository(client if client is not None else mlflow.MlflowClient(), name, version)
    dst.mkdir(parents=True, exist_ok=True)
    fetch = getattr(repo, "_download_file", None)
    if fetch is None:
        local = Path(repo.download_artifacts("", dst_path=str(dst)))
        return DownloadedModel(local, sum(p.stat().st_size for p in local.rglob("*") if p.is_file()))
    files = list(_files(repo, ""))
    root = dst.resolve()
    for info in files:
        if info.path in leave_out:
            continue
        local = (root / info.path).resolve()
        if not local.is_relative_to(root):  # a listing naming "../x" must not write outside dst
            raise OSError(f"model '{name}' v{version}: artifact path '{info.path}' leaves the download folder")
        local.parent.mkdir(parents=True, exist_ok=True)
        fetch(info.path, str(local))
    return DownloadedModel(dst, sum(info.file_size or 0 for info in files))


def download_model_file(name: str, version: str, path: str, dst: Path, client: MlflowClient) -> Path:
    """Download one file of version ``version`` of ``name`` (``path`` inside the model, e.g. ``MLmodel``) into ``dst``.

    Raises:
        MlflowException: the version or the file does not exist.
        OSError: the file cannot be written.
    """
    repo = _artifact_repository(client, name, version)
    dst.mkdir(parents=True, exist_ok=True)
    local = dst / Path(path).name
    fetch = getattr(repo, "_download_file", None)  # without MLflow's progress bar, as download_model
    if fetch is None:
        return Path(repo.download_artifacts(path, dst_path=str(dst)))
    fetch(path, str(local))
    return local


def _artifact_repository(client: MlflowClient, name: str, version: str) -> Any:
    """The artifact repository holding the files of ``name`` v``version``, as the registry locates them."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    location = registry_client(client).get_model_version_download_uri(name, str(version))
    # The client's server, where an mlflow-artifacts: URI resolves (not MLflow's process-wide URI).
    return get_artifact_repository(location, tracking_uri=getattr(client, "tracking_uri", None))


def registry_client(client: Any) -> Any:
    """The registry client under an ``MlflowClient``, which calls the registry without a prompt check.

    ``MlflowClient``'s registry calls (an alias, a version tag, a description, a download URI) first
    read the registered model to refuse a prompt: one more request each (issue 26). modelyard calls
    them on registered models it just read or registered, never prompts. A client without one (another
    MLflow, a test double) is returned as it is.
    """
    inner = getattr(client, "_get_registry_client", None)
    return inner() if callable(inner) else client


def _files(repo: Any, path: str) -> Any:
    """Every file under ``path`` of ``repo`` (folders listed in turn), as MLflow's ``FileInfo``."""
    for info in repo.list_artifacts(path or None):
        if info.is_dir:
            yield from _files(repo, info.path)
        else:
            yield info
