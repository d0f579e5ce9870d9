"""Which registry failures the server retries: real MLflow client calls against a closed port
and against an HTTP server that answers 503, next to failures that must not be retried."""

from __future__ import annotations

import socket

import pytest

from modelyard.deploy.serving.errors import ModelLoadFailed, ModelMissing
from modelyard.deploy.serving.faults import REGISTRY_CLIENT_DEFAULTS, bound_registry_wait, is_transient
from modelyard.deploy.serving.runtime import load_model
from tests.stand_in import Handler, stand_in


class _Answers503(Handler):
    def do_GET(self) -> None:
        self.answer(503, b"unavailable", "text/plain")


@pytest.fixture
def registry_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in REGISTRY_CLIENT_DEFAULTS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    return monkeypatch


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _point_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", url)
    # An earlier test of the session may have set MLflow's in-process URIs; the client prefers them.
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)


def test_a_registry_on_a_closed_port_is_transient(registry_env: pytest.MonkeyPatch) -> None:
    _point_at(registry_env, f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(ModelLoadFailed) as caught:
        load_model("models:/anything/1")
    assert is_transient(caught.value), caught.value


def test_a_registry_answering_503_is_transient(registry_env: pytest.MonkeyPatch) -> None:
    with stand_in(_Answers503) as url:
        _point_at(registry_env, url)
        with pytest.raises(ModelLoadFailed) as caught:
            load_model("models:/anything/1")
    assert is_transient(caught.value), caught.value


@pytest.mark.parametrize(
    "error",
    [
        ModelMissing("registered model 'x' has no version 3 in the MLflow registry"),
        ModelLoadFailed("warm-up failed on a batch of 8: model raised ValueError"),
        ValueError("this model is broken"),
    ],
)
def test_a_model_that_does_not_exist_or_load_is_permanent(error: Exception) -> None:
    assert not is_transient(error)


def test_a_bad_uri_is_permanent() -> None:
    with pytest.raises(ModelMissing) as caught:
        load_model("models:/not a uri")
    assert not is_transient(caught.value)


def _raise_cut_link() -> None:
    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except OSError:
        raise RuntimeError("API request failed") from None


def _raise_like_mlflow() -> None:
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as exc:
            raise RuntimeError(f"API request failed with exception {exc}")  # noqa: B904 (as MLflow does)
    except RuntimeError as exc:
        raise ModelLoadFailed("cannot reach the MLflow registry") from exc


def test_a_cause_in_the_implicit_context_is_found() -> None:
    with pytest.raises(ModelLoadFailed) as caught:
        _raise_like_mlflow()
    assert is_transient(caught.value)


def test_a_link_cut_with_from_none_is_not_followed() -> None:
    with pytest.raises(RuntimeError) as caught:
        _raise_cut_link()
    assert not is_transient(caught.value)


def test_bound_registry_wait_keeps_what_the_user_set() -> None:
    env = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "300"}
    bound_registry_wait(env)
    assert env["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "300"
    assert env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == REGISTRY_CLIENT_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]


def test_a_full_model_cache_disk_is_transient_so_the_plan_is_retried() -> None:
    import errno

    from modelyard.deploy.serving.errors import ModelMissing

    def download() -> None:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/var/cache/modelyard/m/1/model.xgb")
        except OSError as exc:
            raise ModelMissing(f"artifacts of models:/m/1 cannot be downloaded: {exc}") from exc

    with pytest.raises(ModelMissing) as caught:
        download()
    assert is_transient(caught.value)
    assert not is_transient(OSError(errno.ENOENT, "No such file or directory"))  # gone stays gone


def test_the_model_cache_removed_under_a_load_is_a_transient_fault_without_the_path(tmp_path) -> None:
    import shutil

    from modelyard.deploy.serving.faults import ModelCacheFault, model_cache_faults

    cache = tmp_path / "cache"

    def load() -> None:
        shutil.rmtree(cache)  # someone cleans the cache while the model downloads into it
        (cache / "modelyard-model-x").mkdir()

    with pytest.raises(ModelCacheFault) as caught, model_cache_faults("models:/m/1", cache):
        load()
    assert is_transient(caught.value)
    assert str(tmp_path) not in caught.value.message
    assert "MODELYARD_SERVE_MODEL_CACHE" in caught.value.message


def test_a_full_cache_disk_is_a_fault_and_a_file_missing_inside_a_model_is_not(tmp_path) -> None:
    import errno

    from modelyard.deploy.serving.errors import ModelLoadFailed
    from modelyard.deploy.serving.faults import ModelCacheFault, model_cache_faults

    cache = tmp_path / "cache"
    with pytest.raises(ModelCacheFault, match="disk is full"), model_cache_faults("models:/m/1", cache):
        raise OSError(errno.ENOSPC, "No space left on device", str(cache / "modelyard-model-x" / "model.xgb"))
    missing = FileNotFoundError(errno.ENOENT, "No such file", str(cache / "modelyard-model-x" / "model" / "MLmodel"))
    with pytest.raises(ModelLoadFailed) as caught, model_cache_faults("models:/m/1", cache):
        raise ModelLoadFailed("models:/m/1: no readable MLmodel file in the artifacts") from missing
    assert not isinstance(caught.value, ModelCacheFault)  # the artifact's own fault: not retried
    assert not is_transient(caught.value)
