"""StorageHook: an object-store root's credentials from an Airflow Connection (AIRFLOW_CONN_* here).

The Connection is resolved by Airflow itself (its environment-variable secrets backend), and
the variables it yields are the ones botocore reads: checked by building a real S3 client.
"""

from __future__ import annotations

import json

import pytest

from modelyard.core import storage
from modelyard.core.config import Storage
from modelyard.plugins.hooks.storage import StorageHook, credential_variables

LOCK_URL = "postgresql://postgres@127.0.0.1/modelyard_unused"
AWS = {
    "login": "AKIATEST",
    "password": "s3cret",
    "extra": {"region_name": "eu-west-1", "endpoint_url": "http://s3.internal:9000"},
}


@pytest.fixture(autouse=True)
def _no_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AIRFLOW_CONN_AWS_DEFAULT", "AIRFLOW_CONN_MY_S3"):
        monkeypatch.delenv(name, raising=False)


def _s3(**fields: object) -> Storage:
    return Storage.model_validate({"root": "s3://bucket/prefix", "lock_url": LOCK_URL, **fields})


def _connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, conn_type: str = "aws", **fields: object) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": conn_type, **fields}))


def test_aws_default_gives_an_s3_root_its_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    _connection(monkeypatch, "aws_default", **AWS)
    environ: dict[str, str] = {"AWS_ACCESS_KEY_ID": "from-the-environment"}
    names = StorageHook(_s3()).export_credentials(environ)
    assert names == ["AWS_ACCESS_KEY_ID", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3", "AWS_SECRET_ACCESS_KEY"]
    assert environ == {
        "AWS_ACCESS_KEY_ID": "AKIATEST",  # the Connection wins over the environment
        "AWS_SECRET_ACCESS_KEY": "s3cret",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL_S3": "http://s3.internal:9000",
    }


def test_without_aws_default_the_environment_is_left_to_the_client() -> None:
    environ = {"AWS_ACCESS_KEY_ID": "from-the-environment"}
    assert StorageHook(_s3()).export_credentials(environ) == []
    assert environ == {"AWS_ACCESS_KEY_ID": "from-the-environment"}


def test_a_local_root_looks_nothing_up(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    _connection(monkeypatch, "aws_default", **AWS)
    environ: dict[str, str] = {}
    assert StorageHook(Storage(root=str(tmp_path), conn_id="aws_default")).export_credentials(environ) == []
    assert environ == {}


def test_a_named_connection_is_used_and_its_session_token_too(monkeypatch: pytest.MonkeyPatch) -> None:
    _connection(monkeypatch, "aws_default", login="not-this-one", password="x")
    _connection(
        monkeypatch,
        "my_s3",
        extra={"aws_access_key_id": "AKIAEXTRA", "aws_secret_access_key": "k", "aws_session_token": "tok"},
    )
    environ: dict[str, str] = {}
    StorageHook(_s3(conn_id="my_s3")).export_credentials(environ)
    assert environ == {"AWS_ACCESS_KEY_ID": "AKIAEXTRA", "AWS_SECRET_ACCESS_KEY": "k", "AWS_SESSION_TOKEN": "tok"}


def test_a_named_connection_that_does_not_exist_is_named() -> None:
    with pytest.raises(
        storage.StorageError, match=r"storage.conn_id: there is no Airflow Connection 'my_s3'.*AIRFLOW_CONN_MY_S3"
    ):
        StorageHook(_s3(conn_id="my_s3")).export_credentials({})


def test_a_connection_of_another_type_is_refused_with_the_supported_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    _connection(monkeypatch, "my_s3", conn_type="postgres", login="u", password="p")
    with pytest.raises(storage.StorageError, match=r"Connection 'my_s3' is of type 'postgres'.*aws / s3 / amazon"):
        StorageHook(_s3(conn_id="my_s3")).export_credentials({})


def test_botocore_reads_the_exported_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    botocore_session = pytest.importorskip("botocore.session")  # `make install-production` (part of make test)
    for name, value in credential_variables("aws_default", "aws", "AKIATEST", "s3cret", AWS["extra"]).items():
        monkeypatch.setenv(name, value)
    client = botocore_session.get_session().create_client("s3")
    assert client.meta.endpoint_url == "http://s3.internal:9000"
    assert client.meta.region_name == "eu-west-1"
    credentials = client._request_signer._credentials.get_frozen_credentials()
    assert (credentials.access_key, credentials.secret_key) == ("AKIATEST", "s3cret")
