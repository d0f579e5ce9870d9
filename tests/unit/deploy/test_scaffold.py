"""``modelyard init``: the project files, the refusal to overwrite, and the DAG names they import."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from modelyard.deploy import scaffold


def test_writes_config_dag_files_and_readme(tmp_path: Path) -> None:
    written = scaffold.write_project(tmp_path / "team")
    assert {p.relative_to(tmp_path / "team").as_posix() for p in written} == {
        "modelyard.yaml", "README.md", "dags/modelyard_data_processing.py", "dags/modelyard_training.py",
        "dags/modelyard_promotion.py", "dags/modelyard_deploy.py", "dags/modelyard_monitoring.py",
    }  # fmt: skip
    config = yaml.safe_load((tmp_path / "team" / "modelyard.yaml").read_text())
    assert config == yaml.safe_load(scaffold.packaged_config())
    assert {r["name"] for r in config["regions"]} >= {"jakarta", "singapore"}


@pytest.mark.parametrize("stage", scaffold.STAGES, ids=lambda s: s.dag_id)
def test_each_dag_file_imports_a_name_the_packaged_module_binds(tmp_path: Path, stage: scaffold.Stage) -> None:
    scaffold.write_project(tmp_path)
    source = (tmp_path / "dags" / f"modelyard_{stage.dag_id}.py").read_text()
    assert f"from {stage.module} import {stage.attribute}" in source
    spec = importlib.util.find_spec(stage.module)
    assert spec is not None
    assert spec.origin is not None
    packaged = Path(spec.origin).read_text()
    assert f'dag_id="{stage.dag_id}"' in packaged
    assert f"\n{stage.attribute} = " in packaged


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    scaffold.write_project(tmp_path)
    config = tmp_path / "modelyard.yaml"
    config.write_text("# edited\n")
    with pytest.raises(scaffold.ProjectExistsError, match=r"7 of the project's files exist already.*--force"):
        scaffold.write_project(tmp_path)
    assert config.read_text() == "# edited\n"
    scaffold.write_project(tmp_path, force=True)
    assert config.read_text().startswith(scaffold.CONFIG_HEADER)
