"""The config follows itself: a removed region and relative dataset paths (issue 28)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.core.config import ConfigError, load_config


def write_config(folder: Path, demo_config_path: Path, change: Any) -> Path:
    """The demo config with ``change(data)`` applied, written into ``folder``."""
    data = yaml.safe_load(demo_config_path.read_text())
    change(data)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "modelyard.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def without_singapore(data: dict[str, Any], target: str = "local") -> None:
    data["regions"] = [r for r in data["regions"] if r["name"] != "singapore"]
    data["deploy"]["target"] = target


def test_removing_a_region_keeps_the_local_target_loading_with_a_note(
    demo_config_path: Path, tmp_path: Path, clean_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_config(tmp_path, demo_config_path, without_singapore)
    with caplog.at_level(logging.WARNING, logger="modelyard.core.config.deploy"):
        config = load_config(path, environ={})
    assert config.deploy.kubernetes.releases["sea-west"] == ["jakarta", "surabaya"]
    assert "'sea-west' names ['singapore']" in caplog.text
    assert "ignored (deploy.target is local)" in caplog.text


def test_a_release_left_without_regions_goes_with_them(demo_config_path: Path, tmp_path: Path, clean_env: None) -> None:
    def drop_sea_east(data: dict[str, Any]) -> None:
        gone = {"ho_chi_minh", "hanoi", "bangkok"}
        data["regions"] = [r for r in data["regions"] if r["name"] not in gone]
        data["families"] = [{**f, "region_overrides": {}} for f in data["families"]]

    config = load_config(write_config(tmp_path, demo_config_path, drop_sea_east), environ={})
    assert set(config.deploy.kubernetes.releases) == {"sea-west"}


def test_removing_a_region_still_fails_for_the_kubernetes_target(
    demo_config_path: Path, tmp_path: Path, clean_env: None
) -> None:
    path = write_config(tmp_path, demo_config_path, lambda data: without_singapore(data, "kubernetes"))
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    message = str(raised.value)
    assert "deploy.kubernetes.releases: 'sea-west' names ['singapore'], which are not in regions" in message
    assert "remove them from the release" in message


def test_a_relative_file_source_is_relative_to_the_config_file(
    demo_config_path: Path, tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def from_files(data: dict[str, Any]) -> None:
        data["datasets"][0]["source"] = {"kind": "file", "path": "data/bookings-*.csv"}

    project = tmp_path / "team"
    path = write_config(project, demo_config_path, from_files)
    monkeypatch.chdir(tmp_path)  # a worker's working directory is not the project's
    config = load_config(Path("team") / "modelyard.yaml", environ={})
    assert config.datasets[0].source.path == str(project.resolve() / "data" / "bookings-*.csv")
    assert load_config(path, environ={}).datasets[0].source.path == config.datasets[0].source.path


@pytest.mark.parametrize("given", ["/srv/data/bookings.parquet", "s3://bucket/bookings/*.parquet"])
def test_absolute_paths_and_urls_stay_as_they_are(
    demo_config_path: Path, tmp_path: Path, clean_env: None, given: str
) -> None:
    def from_files(data: dict[str, Any]) -> None:
        data["datasets"][0]["source"] = {"kind": "file", "path": given}

    config = load_config(write_config(tmp_path, demo_config_path, from_files), environ={})
    assert config.datasets[0].source.path == given
