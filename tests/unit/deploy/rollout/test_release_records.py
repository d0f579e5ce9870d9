"""The Kubernetes releases a deploy records in storage (deploy.rollout.release_records, ADR 0036).

The prune reads them to know which Helm histories to ask for; tests/integration/test_deploy_dag_kubernetes.py
records them through the deploy DAG and prunes with them through the housekeeping DAG.
"""

from __future__ import annotations

import pytest

from modelyard.core.config import Config
from modelyard.deploy.rollout import kube_deploy, release_records, version_retention
from modelyard.deploy.rollout.strategies import DeployError

pytestmark = pytest.mark.unit


def test_a_release_is_recorded_once_with_its_namespace(small_config: Config) -> None:
    release_records.record(small_config, "sea-east")
    path = release_records.records_dir(small_config) / "modelyard" / "sea-east.json"
    first = path.read_text()
    release_records.record(small_config, "sea-east")

    assert path.read_text() == first  # the first record stays
    assert '"namespace": "modelyard", "release": "sea-east"' in first
    assert release_records.recorded(small_config) == {"modelyard": ["sea-east"]}


def test_a_deploy_that_cannot_record_its_release_fails_naming_the_folder(small_config: Config) -> None:
    blocked = small_config.storage.root / "deploy"
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("not a folder")

    with pytest.raises(DeployError) as raised:
        kube_deploy._record(small_config, "sea-east")

    message = str(raised.value)
    assert message.startswith(f"release 'sea-east': cannot record it under {release_records.records_dir(small_config)}")
    assert "nothing was changed" in message
    assert "make storage.root writable and deploy again" in message


def test_records_that_cannot_be_read_delete_no_version(small_config: Config) -> None:
    folder = release_records.records_dir(small_config)
    folder.parent.mkdir(parents=True)
    folder.write_text("not a folder")  # exists, cannot be listed

    with pytest.raises(version_retention.ServedUnknownError, match="so no version is deleted"):
        version_retention.kubernetes_releases(small_config)
