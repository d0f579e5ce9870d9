"""``modelyard init``: the project files, the refusal to overwrite, and the DAG names they import."""

from __future__ import annotations

import importlib
import importlib.util
import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.deploy import scaffold


def test_writes_config_dag_files_and_readme(tmp_path: Path) -> None:
    written = scaffold.write_project(tmp_path / "team")
    assert {p.relative_to(tmp_path / "team").as_posix() for p in written} == {
        "modelyard.yaml", "README.md", "dags/modelyard_data_processing.py", "dags/modelyard_training.py",
        "dags/modelyard_promotion.py", "dags/modelyard_deploy.py", "dags/modelyard_monitoring.py",
        "dags/modelyard_batch_scoring.py", "dags/modelyard_housekeeping.py",
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
    with pytest.raises(scaffold.ProjectExistsError, match=r"9 of the project's files exist already.*--force"):
        scaffold.write_project(tmp_path)
    assert config.read_text() == "# edited\n"
    scaffold.write_project(tmp_path, force=True)
    assert config.read_text().startswith(scaffold.CONFIG_HEADER)


def test_the_scaffolded_config_loads_against_the_schema(tmp_path: Path, clean_env: None) -> None:
    from modelyard.core.config import load_config

    scaffold.write_project(tmp_path)
    config = load_config(tmp_path / "modelyard.yaml", environ={})
    assert config.storage.root == tmp_path.resolve() / ".modelyard"  # relative to the project, not the cwd


def header_keys() -> list[str]:
    """The config keys the header tells a team to change (``#   key[, key]   explanation``)."""
    keys = []
    for line in scaffold.CONFIG_HEADER.splitlines():
        found = re.match(r"^#   ([a-z][a-z_.\[\], ]*?)\s{2,}\S", line)
        if found:
            keys += [key.strip() for key in found.group(1).split(",")]
    return keys


def test_every_key_the_header_names_is_a_config_key() -> None:
    from modelyard.core.config import Config

    keys = header_keys()
    assert {"storage.root", "datasets[].source", "deploy"} <= set(keys)
    for key in keys:
        model: Any = Config
        for part in key.replace("[]", "").split("."):
            assert part in model.model_fields, f"the init header names '{key}', which is no config key"
            annotation = model.model_fields[part].annotation
            model = typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else annotation


def test_the_project_readme_counts_the_dag_files_it_writes(tmp_path: Path) -> None:
    written = scaffold.write_project(tmp_path)
    dag_files = [p for p in written if p.parent.name == scaffold.DAGS_DIR]
    readme = (tmp_path / "README.md").read_text()
    assert f"({len(dag_files)} files)" in readme
    assert len(dag_files) == len(scaffold.STAGES) == 7


@pytest.mark.parametrize("stage", scaffold.STAGES, ids=lambda s: s.dag_id)
def test_each_packaged_dag_has_a_description(stage: scaffold.Stage) -> None:
    """Airflow's DAG list shows the description; doc_md only shows on the DAG's own page."""
    dag = getattr(importlib.import_module(stage.module), stage.attribute)
    assert dag.description
    assert len(dag.description) > 20


def test_the_data_processing_form_names_the_real_source_key() -> None:
    dag = importlib.import_module("modelyard.dags.data_processing").data_processing_dag
    source = dag.params.get_param("source")
    assert "datasets[].source" in source.description
    assert "data.source" not in source.description.replace("datasets[].source", "")


def readme_section(title: str) -> str:
    text = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


@pytest.mark.parametrize("title", ["Installing into an existing Airflow", "Deploying to a real cluster"])
def test_the_readme_install_sections_link_nothing_the_wheel_lacks(title: str) -> None:
    """The README is the wheel's long description: a relative link to docs/ is dead there."""
    section = readme_section(title)
    assert re.findall(r"\]\((?!https?://)[^)]+\)", section) == []
    named_as_source = re.sub(r"source repository's\s+`docs/", "", section)  # said to be outside the wheel
    assert re.findall(r"docs/[\w./-]+", named_as_source) == []


def test_the_readme_states_the_range_and_the_files_init_writes() -> None:
    from modelyard.deploy.doctor import AIRFLOW_RANGE

    section = readme_section("Installing into an existing Airflow")
    assert f"Airflow {AIRFLOW_RANGE}" in section
    assert f"{['', 'one', 'two', 'three', 'four', 'five', 'six', 'seven'][len(scaffold.STAGES)]} DAG files" in section
