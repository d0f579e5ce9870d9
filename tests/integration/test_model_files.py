"""A registered version's files downloaded without those the caller leaves out, on a real ``mlflow server`` (issue 26).

Gates and the server fetch a model without its environment files and input examples: fewer
requests a model, the same model loaded, and the size of all its files still known.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.linear_model import LogisticRegression

from modelyard.core.model_files import ENVIRONMENT_FILES, EXAMPLE_FILES, download_model


@pytest.fixture
def registered(mlflow_uri: str, tmp_path: Path) -> tuple[str, str]:
    """A small sklearn model with an extra file, logged and registered as version 1 of a fresh name."""
    frame = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) % 3})
    model = LogisticRegression().fit(frame, np.arange(20) % 2)
    extra = tmp_path / "notes.json"
    extra.write_text('{"kept": true}')
    name = f"files-{uuid.uuid4().hex[:8]}"
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model, name="model", input_example=frame.head(2), extra_files=[str(extra)], registered_model_name=name
        )
    assert str(info.registered_model_version) == "1"
    return name, "1"


def _requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    sent: list[str] = []
    original = requests.Session.request

    def counted(self: requests.Session, method: str, url: str, *args: object, **kwargs: object) -> requests.Response:
        sent.append(f"{method} {url}")
        return original(self, method, url, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(requests.Session, "request", counted)
    return sent


def test_the_left_out_files_are_not_fetched_and_the_model_loads(
    registered: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, version = registered
    everything = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(tmp_path / "all")))
    all_files = {p.relative_to(everything).as_posix(): p.stat().st_size for p in everything.rglob("*") if p.is_file()}
    all_files.pop("registered_model_meta")  # written by MLflow's download itself, not a stored file
    assert set(all_files) >= ENVIRONMENT_FILES | EXAMPLE_FILES  # what MLflow wrote beside the model
    sent = _requests(monkeypatch)

    got = download_model(name, version, tmp_path / "some", ENVIRONMENT_FILES | EXAMPLE_FILES)

    fetched = {p.relative_to(got.path).as_posix() for p in got.path.rglob("*") if p.is_file()}
    assert fetched == set(all_files) - ENVIRONMENT_FILES - EXAMPLE_FILES
    assert "extra_files/notes.json" in fetched
    assert got.size_bytes == sum(all_files.values())  # every file counted, fetched or not
    # One registry answer, one listing per folder, one request per fetched file.
    assert len(sent) == 1 + 2 + len(fetched), sent
    model = mlflow.sklearn.load_model(str(got.path))
    assert model.predict(pd.DataFrame({"a": [1.0], "b": [1.0]})).shape == (1,)


def test_an_unknown_version_is_an_mlflow_error(registered: tuple[str, str], tmp_path: Path) -> None:
    name, _ = registered
    with pytest.raises(mlflow.exceptions.MlflowException, match=r"not found|does not exist|RESOURCE_DOES_NOT_EXIST"):
        download_model(name, "99", tmp_path / "none")
