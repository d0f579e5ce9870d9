"""Loading the config: the file, the overlay and ``MODELYARD_*`` variables, and every way they can be wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.core.config import ConfigError, load_config


def test_environment_overrides_nested_keys(demo_config_path: Path, clean_env: None) -> None:
    config = load_config(demo_config_path, environ={"MODELYARD_DATA__SYNTHETIC__ROWS": "1234", "MODELYARD_SEED": "7"})
    assert config.data.synthetic.rows == 1234
    assert config.seed == 7


def test_unrelated_modelyard_variables_are_not_config_keys(demo_config_path: Path) -> None:
    config = load_config(demo_config_path, environ={"MODELYARD_PLAN": "/tmp/plan.yaml"})
    assert config.project == "modelyard"


# ------------------------------------------------------------- overrides: precedence and typos


def test_env_beats_overlay_which_beats_the_file(demo_config_path: Path, tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("seed: 3\ndata: {synthetic: {rows: 777}}\n")
    env = {"MODELYARD_CONFIG_OVERLAY": str(overlay), "MODELYARD_SEED": "4"}
    config = load_config(demo_config_path, environ=env)
    assert (config.seed, config.data.synthetic.rows) == (4, 777)
    assert config.data.synthetic.days == load_config(demo_config_path, environ={}).data.synthetic.days


def test_a_missing_overlay_is_no_overlay(demo_config_path: Path, tmp_path: Path) -> None:
    config = load_config(demo_config_path, environ={"MODELYARD_CONFIG_OVERLAY": str(tmp_path / "gone.yaml")})
    assert config.seed == load_config(demo_config_path, environ={}).seed


def test_lists_and_free_form_values_are_read_as_yaml(demo_config_path: Path) -> None:
    env = {
        "MODELYARD_DEPLOY__ROLLOUT__CANARY_STEPS": "[20, 100]",
        "MODELYARD_DEPLOY__KUBERNETES__RELEASES__ASIA": "[jakarta, bangkok]",
        "MODELYARD_GATES__REGION_OVERRIDES__PICKUP_ETA__MAX_PSI": "0.3",
        "MODELYARD_SCHEDULES__DATA_PROCESSING": "null",
    }
    config = load_config(demo_config_path, environ=env)
    assert config.deploy.rollout.canary_steps == [20, 100]
    assert config.deploy.kubernetes.releases["asia"] == ["jakarta", "bangkok"]
    assert config.gates.region_overrides["pickup_eta"] == {"max_psi": 0.3}
    assert config.schedules.data_processing is None


def test_text_keys_take_the_value_as_it_is(demo_config_path: Path) -> None:
    config = load_config(
        demo_config_path, environ={"MODELYARD_PROJECT": "[abc", "MODELYARD_MLFLOW__TRACKING_URI": "5000"}
    )
    assert (config.project, config.mlflow.tracking_uri) == ("[abc", "5000")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("MODELYARD_DATA__SYNTEHTIC__ROWS", "'data' has no key 'syntehtic' (valid keys: synthetic, min_rows,"),
        (
            "MODELYARD_DATA__SYNTHETIC__ROWZ",
            "'data.synthetic' has no key 'rowz' (valid keys: rows, start, days, rows_by_region)",
        ),
        ("MODELYARD_DEPLOY__ROLOUT__STRATEGY", "'deploy' has no key 'rolout'"),
        ("MODELYARD_REGIONS__0__NAME", "'regions' is a value or a list, not a section"),
        ("MODELYARD_SEED__VALUE", "set it whole with MODELYARD_SEED"),
    ],
)
def test_a_mistyped_override_fails_naming_the_variable(demo_config_path: Path, name: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(demo_config_path, environ={name: "5"})
    assert str(info.value).startswith(f"{name}: ")
    assert expected in str(info.value)


@pytest.mark.parametrize("name", ["MODELYARD_CONFIG", "MODELYARD_SERVE_PORT", "MODELYARD_PLAN", "MODELYARD_SEEDS"])
def test_variables_that_start_with_no_config_key_are_ignored(demo_config_path: Path, name: str) -> None:
    assert load_config(demo_config_path, environ={name: "[abc"}).project == "modelyard"


def test_an_override_that_is_not_yaml_is_one_line_naming_it(demo_config_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(demo_config_path, environ={"MODELYARD_DEPLOY__ROLLOUT__CANARY_STEPS": "[abc"})
    message = str(info.value)
    assert message.startswith("MODELYARD_DEPLOY__ROLLOUT__CANARY_STEPS='[abc': not a YAML value")
    assert "\n" not in message


def test_an_invalid_override_value_names_the_variable(demo_config_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(demo_config_path, environ={"MODELYARD_DEPLOY__LOCAL__PORT": "99999"})
    assert "deploy.local.port" in str(info.value)
    assert "set by MODELYARD_DEPLOY__LOCAL__PORT" in str(info.value)


# ------------------------------------------------------------- files that are not config files


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x00", "not a text file"),
        (b"regions: [abc\n", "not valid YAML: expected ',' or ']'"),
        (b"- just\n- a list\n", "the top level must be a mapping"),
    ],
)
def test_an_unreadable_file_is_one_line_naming_it(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "modelyard.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value).startswith(f"{path}: ")
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_a_directory_is_not_a_config_file(tmp_path: Path, demo_config_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"^{tmp_path}: is a directory, not a config file"):
        load_config(tmp_path, environ={})
    with pytest.raises(ConfigError, match=r"MODELYARD_CONFIG_OVERLAY.*is a directory"):
        load_config(demo_config_path, environ={"MODELYARD_CONFIG_OVERLAY": str(tmp_path)})


def test_a_billion_laughs_config_is_refused_before_it_is_built(tmp_path: Path) -> None:
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    (tmp_path / "modelyard.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"modelyard.yaml, line \d+: more than 64 YAML aliases"):
        load_config(tmp_path / "modelyard.yaml", environ={})


def test_a_config_nested_without_end_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "modelyard.yaml").write_text("seed: " + "[" * 40 + "]" * 40 + "\n")
    with pytest.raises(ConfigError, match=r"line 1: nested deeper than 32 levels"):
        load_config(tmp_path / "modelyard.yaml", environ={})


def test_a_model_name_template_must_name_each_pair(demo_config_path: Path, tmp_path: Path) -> None:
    text = demo_config_path.read_text() + "\n"
    config = tmp_path / "modelyard.yaml"
    config.write_text(text)
    environ = {"MODELYARD_MLFLOW__MODEL_NAME_TEMPLATE": "{family}"}
    with pytest.raises(ConfigError, match=r"model_name_template.*lacks \{region\}"):
        load_config(config, environ=environ)


def test_a_terminal_command_reads_the_embedded_stacks_overlay_as_its_tasks_do(
    tmp_path: Path, demo_config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After `make demo-festival`, `modelyard deploy` from a terminal planned without the festival window.
    import yaml

    raw = yaml.safe_load(demo_config_path.read_text())
    raw["storage"] = {"root": str(tmp_path / "store")}
    path = tmp_path / "modelyard.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.delenv("MODELYARD_CONFIG_OVERLAY", raising=False)
    monkeypatch.delenv("MODELYARD_SEED", raising=False)
    plain = load_config(path).seed
    overlay = tmp_path / "store" / "run" / "config-overlay.yaml"
    overlay.parent.mkdir(parents=True)
    overlay.write_text(f"seed: {plain + 1}\n")

    assert load_config(path).seed == plain + 1  # the process's environment: the stack's overlay too
    assert load_config(path, environ={}).seed == plain  # exactly the given variables
    other = tmp_path / "other.yaml"
    other.write_text(f"seed: {plain + 2}\n")
    monkeypatch.setenv("MODELYARD_CONFIG_OVERLAY", str(other))
    assert load_config(path).seed == plain + 2  # a named overlay wins


def test_with_the_stacks_overlay_a_config_note_is_logged_once(
    tmp_path: Path, demo_config_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The config was validated twice to find the overlay: `modelyard plan` printed each note twice."""
    import logging

    import yaml

    raw = yaml.safe_load(demo_config_path.read_text())
    raw["storage"] = {"root": "store"}  # relative: found next to the config file, as the load anchors it
    raw["regions"] = [r for r in raw["regions"] if r["name"] != "bangkok"]  # still in a release
    path = tmp_path / "modelyard.yaml"
    path.write_text(yaml.safe_dump(raw))
    overlay = tmp_path / "store" / "run" / "config-overlay.yaml"
    overlay.parent.mkdir(parents=True)
    overlay.write_text("seed: 99\n")
    monkeypatch.delenv("MODELYARD_CONFIG_OVERLAY", raising=False)
    monkeypatch.delenv("MODELYARD_SEED", raising=False)

    with caplog.at_level(logging.WARNING, logger="modelyard.core.config.deploy"):
        config = load_config(path)

    assert config.seed == 99
    notes = [r.getMessage() for r in caplog.records if "names ['bangkok']" in r.getMessage()]
    assert len(notes) == 1, notes
