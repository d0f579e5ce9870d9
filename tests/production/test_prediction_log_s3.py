"""Served samples reach an s3:// storage root and the monitoring stage reads them back from there.

The local serving process on an object-store root writes its prediction log to a local spool
and ships each rotated file to ``<root>/monitoring/samples`` (``local_target.sampling_env``);
here the same settings drive a :class:`PredictionLogWriter` against moto's S3 server, and the
monitoring stage's own readers (``served_versions``, ``read_samples``) find the version and
its samples in the bucket.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import cluster
import numpy as np
import pytest

from modelyard.core.config import load_config
from modelyard.deploy.rollout.local_target import sampling_env
from modelyard.deploy.serving.sampling import PredictionLogWriter, Sample, SamplingSettings
from modelyard.deploy.serving.settings import shipper_from_env
from modelyard.monitoring.measure import read_samples, served_versions

PREFIX = "prediction-log"


def test_samples_shipped_to_s3_are_read_by_the_monitoring_stage(
    tmp_path: Path, s3: cluster.S3, databases: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in cluster.s3_env(s3).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MODELYARD_STORAGE__LOCAL", str(tmp_path / "local"))
    path = cluster.write_config(
        tmp_path / "modelyard.yaml", s3, databases["mlflow"], "http://127.0.0.1:1", 1, prefix=PREFIX
    )
    config = load_config(path)
    env = sampling_env(config)
    spool = Path(env["MODELYARD_SERVE_LOG_DIR"])
    assert env["MODELYARD_SERVE_LOG_URL"] == f"s3://{s3.bucket}/{PREFIX}/monitoring/samples"

    started = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    log = PredictionLogWriter(spool, SamplingSettings(sample_rate=1.0), shipper=shipper_from_env(env, spool))
    labels = (cluster.FAMILY, "jakarta", "main", "4")
    for n in range(3):
        features = np.array([[float(n), 1.0]], dtype=np.float32)
        log.offer(
            Sample(
                "prediction", f"req-{n}", labels, "plan", [{"x": n}], features, np.array([0.5]), started.timestamp() + 1
            )
        )
    log.close(wait=30)

    assert list(spool.rglob("*.jsonl.gz")) == []  # nothing left behind on this host
    keys = s3.list_keys(f"{PREFIX}/monitoring/samples/{cluster.FAMILY}/jakarta/4/")
    assert len(keys) == 1
    assert keys[0].endswith(".jsonl.gz")
    found = served_versions(config.storage.samples_dir, [(cluster.FAMILY, "jakarta")], since=started)
    assert [(v.family, v.region, v.version) for v in found] == [(cluster.FAMILY, "jakarta", "4")]
    window = read_samples(found[0].folder, started)
    assert window.files == 1
    assert window.features == [[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]
