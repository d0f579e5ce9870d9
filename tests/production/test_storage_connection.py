"""An s3:// storage root reached with the credentials and endpoint of an Airflow Connection only.

No ``AWS_*`` variable and no ``storage.options`` endpoint: the ``aws_default`` Connection (as
``AIRFLOW_CONN_AWS_DEFAULT``, resolved by Airflow's own secrets backend) holds the keys, the
region and the S3 server's URL. The task's pre-execute hook exports them, and the data stage then
publishes its snapshot to the bucket over the S3 protocol (moto's server).
"""

from __future__ import annotations

import json
from pathlib import Path

import cluster
import pytest
import yaml

from modelyard.core.config import load_config
from modelyard.pipeline.build import build_all
from modelyard.plugins.hooks.storage import AWS_VARIABLES, StorageHook

PREFIX = "by-connection"
CLEARED = (*AWS_VARIABLES.values(), "AWS_ENDPOINT_URL", "MODELYARD_TEST_S3_ENDPOINT", "MLFLOW_S3_ENDPOINT_URL")


def test_the_aws_default_connection_alone_reaches_the_bucket(
    tmp_path: Path, s3: cluster.S3, databases: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = cluster.write_config(
        tmp_path / "modelyard.yaml", s3, databases["mlflow"], "http://127.0.0.1:1", 1, prefix=PREFIX
    )
    raw = yaml.safe_load(path.read_text())
    del raw["storage"]["options"]  # the endpoint too comes from the Connection
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    for name in CLEARED:
        monkeypatch.setenv(name, "")  # restored (or removed) after the test
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    keys = cluster.S3_KEY
    connection = {
        "conn_type": "aws",
        "login": keys["AWS_ACCESS_KEY_ID"],
        "password": keys["AWS_SECRET_ACCESS_KEY"],
        "extra": {"region_name": keys["AWS_DEFAULT_REGION"], "endpoint_url": s3.endpoint},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    monkeypatch.setenv("MODELYARD_STORAGE__LOCAL", str(tmp_path / "scratch"))
    config = load_config(path)

    exported = StorageHook(config.storage).export_credentials()
    assert exported == ["AWS_ACCESS_KEY_ID", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3", "AWS_SECRET_ACCESS_KEY"]
    results = build_all(config, regions=["jakarta"])
    assert [r.status for r in results] == ["published"], [(r.region, r.reason) for r in results]
    assert f"{PREFIX}/features/{cluster.FAMILY}/jakarta/LATEST" in s3.list_keys(f"{PREFIX}/")
