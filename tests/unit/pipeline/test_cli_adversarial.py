"""The CLI and the config as a hostile user meets them: every probe gets an exit code and one
message that names the problem (the file, the key, the variable, the flag), printed as text:
never a traceback, and never user text eaten as rich markup."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import typer
import yaml
from rich.console import Console
from typer.testing import CliRunner

from modelyard.core.cli import print_error, writes_to
from modelyard.core.storage import write_bytes_atomic
from modelyard.deploy.cli import app
from modelyard.pipeline.build import BuildResult
from modelyard.pipeline.cli import render_summary

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "modelyard.yaml"
PATTERN = "^[a-z][a-z0-9_]*$"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "MODELYARD_CONFIG": str(DEMO),
        "MODELYARD_STORAGE__ROOT": str(tmp_path / "store"),
        "MODELYARD_DATA__SYNTHETIC__ROWS": "200",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:1",  # nothing listens: a probe must fail before it matters
        "COLUMNS": "200",
    }


def _run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, " ".join(result.output.split())


def _config_file(tmp_path: Path, content: bytes | str) -> Path:
    path = tmp_path / "modelyard.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


# ---------------------------------------------------------------- the config file and its overrides


def test_config_path_is_a_directory(env: dict[str, str], tmp_path: Path) -> None:
    code, text = _run(env, "data", "build", "--config", str(tmp_path))
    assert code == 2
    assert f"error: {tmp_path}: is a directory, not a config file" in text


def test_config_file_is_binary(env: dict[str, str], tmp_path: Path) -> None:
    path = _config_file(tmp_path, b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x00")
    code, text = _run(env, "data", "build", "--config", str(path))
    assert code == 2
    assert f"{path}: not a text file" in text


def test_config_file_is_not_yaml_and_the_snippet_survives(env: dict[str, str], tmp_path: Path) -> None:
    path = _config_file(tmp_path, "regions: [a\nfamilies: x]\n")
    code, text = _run(env, "data", "build", "--config", str(path))
    assert code == 2
    assert f"{path}: not valid YAML:" in text
    assert "expected ',' or ']'" in text


def test_a_regex_in_a_validation_message_prints_intact(env: dict[str, str], tmp_path: Path) -> None:
    demo = yaml.safe_load(DEMO.read_text())
    demo["families"][0]["name"] = "Driver_Acceptance"  # region names may be upper case (JKT); family names not
    code, text = _run(env, "data", "build", "--config", str(_config_file(tmp_path, yaml.safe_dump(demo))))
    assert code == 2
    assert "families[0].name" in text
    assert PATTERN in text


def test_mistyped_override_variable(env: dict[str, str]) -> None:
    code, text = _run({**env, "MODELYARD_DATA__SYNTEHTIC__ROWS": "50"}, "data", "build")
    assert code == 2
    assert "MODELYARD_DATA__SYNTEHTIC__ROWS: 'data' has no key 'syntehtic'" in text
    assert "valid keys: synthetic, min_rows, freshness_days" in text


def test_override_that_is_not_yaml(env: dict[str, str]) -> None:
    code, text = _run({**env, "MODELYARD_DEPLOY__ROLLOUT__CANARY_STEPS": "[abc"}, "data", "build")
    assert code == 2
    assert "MODELYARD_DEPLOY__ROLLOUT__CANARY_STEPS='[abc': not a YAML value" in text


def test_override_with_an_invalid_value_names_key_and_variable(env: dict[str, str]) -> None:
    code, text = _run({**env, "MODELYARD_DEPLOY__LOCAL__PORT": "99999"}, "data", "build")
    assert code == 2
    assert "deploy.local.port: Input should be less than or equal to 65535" in text
    assert "(set by MODELYARD_DEPLOY__LOCAL__PORT)" in text


# ---------------------------------------------------------------- data commands


@pytest.mark.parametrize(
    ("out", "reason"),
    [("/proc/x.csv", "No such file or directory"), ("{tmp}/a-file/x.csv", "File exists: {tmp}/a-file")],
)
def test_generate_out_where_nothing_can_be_written(env: dict[str, str], tmp_path: Path, out: str, reason: str) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    out, reason = out.format(tmp=tmp_path), reason.format(tmp=tmp_path)
    code, text = _run(env, "data", "generate", "--region", "jakarta", "--rows", "20", "--out", out)
    assert code == 2
    assert f"error: --out {out}: cannot write it ({reason}); choose a writable folder" in text


def test_an_output_that_is_a_folder_is_named_not_the_temporary_file_beside_it(tmp_path: Path) -> None:
    """``plan --output`` and the others write atomically through a temporary file beside the target."""
    console = Console(file=io.StringIO(), width=200)
    with pytest.raises(typer.Exit) as caught, writes_to(tmp_path, "--output", console):
        write_bytes_atomic(tmp_path, b"plan")
    assert caught.value.exit_code == 2
    assert f"error: --output {tmp_path}: is a folder; give the path of a file in it" in console.file.getvalue()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_generate_out_with_an_unknown_format(env: dict[str, str], tmp_path: Path) -> None:
    code, text = _run(env, "data", "generate", "--region", "jakarta", "--out", str(tmp_path / "x.txt"))
    assert code == 2
    assert "x.txt: use a .csv or .parquet file name" in text


def test_markup_in_a_region_name_prints_as_typed(env: dict[str, str], tmp_path: Path) -> None:
    code, text = _run(env, "data", "generate", "--region", "[bold]x", "--out", str(tmp_path / "x.csv"))
    assert code == 2
    assert "unknown region '[bold]x' (configured: jakarta," in text


def test_validate_a_missing_input(env: dict[str, str], tmp_path: Path) -> None:
    code, text = _run(env, "data", "validate", "--input", str(tmp_path / "nope.csv"), "--family", "pickup_eta")
    assert code == 2
    assert f"{tmp_path / 'nope.csv'}: no such file" in text


@pytest.mark.parametrize("named", ["file", "glob"])
def test_validate_a_file_in_a_folder_named_like_markup_and_a_glob(
    env: dict[str, str], tmp_path: Path, named: str
) -> None:
    folder = tmp_path / "[red]exports"
    folder.mkdir()
    path = folder / "jakarta.csv"
    code, _ = _run(env, "data", "generate", "--region", "jakarta", "--rows", "600", "--out", str(path))
    assert code == 0
    lines = path.read_text().splitlines()  # times without their offset, as exports of a local clock write them
    path.write_text("\n".join(line.replace("Z,", ",") for line in lines) + "\n")
    config = _config_file(
        tmp_path, DEMO.read_text().replace("naive_timestamps: refuse", "naive_timestamps: region_local")
    )
    source = str(path) if named == "file" else str(folder / "*.csv")
    code, text = _run(env, "data", "validate", "--config", str(config), "--input", source, "--family", "pickup_eta")
    assert code == 0, text  # "[red]" is a folder, not a glob's character class
    assert f"note: {path}: column 'event_time': 600 timestamps without a UTC offset were read" in text


def test_validate_an_unsupported_format(env: dict[str, str], tmp_path: Path) -> None:
    path = _config_file(tmp_path, "a: 1\n")
    code, text = _run(env, "data", "validate", "--input", str(path), "--family", "pickup_eta")
    assert code == 2
    assert "'.yaml' is not a supported format" in text


def test_build_with_an_impossible_date(env: dict[str, str]) -> None:
    code, text = _run(env, "data", "build", "--start", "2026-13-01")
    assert code == 2
    assert "--start" in text


def test_build_with_a_range_that_ends_before_it_starts(env: dict[str, str], tmp_path: Path) -> None:
    """Every pair would find 0 rows and be skipped, and the command would succeed: refused, naming both days."""
    code, text = _run(env, "data", "build", "--start", "2026-06-10", "--end", "2026-06-01")
    assert code == 2
    assert "error: start 2026-06-10 is after end 2026-06-01" in text
    assert not (tmp_path / "store").exists()  # nothing read, nothing written


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--feature", "driver_rating", "error: --feature is 'driver_rating': not an online feature"),
        ("--key", "", "error: --key is ''; send the key value as text"),
        ("--window-end", "2026-06-01T08:00", "error: --window-end is '2026-06-01T08:00'; send ISO-8601 with an"),
    ],
)
def test_push_names_the_option_that_is_wrong(env: dict[str, str], option: str, value: str, expected: str) -> None:
    given = {"--feature": "area_demand_index", "--key": "airport", "--value": "1.5", option: value}
    args = [part for pair in given.items() for part in pair]
    code, text = _run(env, "features", "push", "-f", "driver_acceptance", "-r", "jakarta", *args)
    assert code == 2, text
    assert expected in text
    assert not (Path(env["MODELYARD_STORAGE__ROOT"]) / "online").exists()  # nothing written


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{}", "values is not a list; send a non-empty JSON list"),
        ("[]", "values is an empty list"),
        ('[{"feature": "area_demand_index", "key": "airport", "value": "[high]"}]', "values[0].value is '[high]'"),
    ],
)
def test_push_from_a_file_names_the_file_and_the_value(
    env: dict[str, str], tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "values.json"
    path.write_text(content)
    code, text = _run(env, "features", "push", "-f", "driver_acceptance", "-r", "jakarta", "--file", str(path))
    assert code == 2, text
    assert f"error: --file {path}: {expected}" in text


# ---------------------------------------------------------------- training and promotion commands


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ("[bold]x", "params: not valid JSON (Expecting value at position 1): '[bold]x'"),
        ("[1, 2]", 'params: expected a JSON object such as {"max_depth": 4}, got list'),
        ("{", "params: not valid JSON"),
        ('{"max_depth": "deep"}', "hyperparameter 'max_depth' must be int, got str 'deep'"),
        ('{"no_such_knob": 1}', "no_such_knob"),
    ],
)
def test_train_with_hostile_params(env: dict[str, str], params: str, expected: str) -> None:
    code, text = _run(env, "train", "--params", params)
    assert code == 2
    assert expected in text


def test_train_an_unknown_region(env: dict[str, str]) -> None:
    code, text = _run(env, "train", "--region", "atlantis")
    assert code == 2
    assert "unknown region 'atlantis' (configured: jakarta," in text


def test_rollback_an_unknown_family(env: dict[str, str]) -> None:
    code, text = _run(env, "rollback", "--family", "[red]ghost", "--region", "jakarta")
    assert code == 2
    assert "unknown family '[red]ghost' (configured: driver_acceptance, pickup_eta)" in text


def test_promote_a_version_without_its_pair_fails_before_connecting(env: dict[str, str]) -> None:
    code, text = _run(env, "promote", "--version", "1")
    assert code == 2
    assert "give exactly one --family" in text


@pytest.mark.parametrize("command", ["deploy", "plan", "promote", "score"])
def test_a_version_that_is_not_a_number_is_refused_like_every_other_option(env: dict[str, str], command: str) -> None:
    """Each command that takes --version reads it as a number (deploy's said "String should match pattern")."""
    code, text = _run(env, command, "-f", "driver_acceptance", "-r", "jakarta", "--version", "v7")
    assert code == 2, text
    assert "Invalid value for '--version'" in text
    assert "pattern" not in text


def test_status_against_a_server_that_does_not_answer(env: dict[str, str]) -> None:
    code, text = _run(env, "status", "--tracking-uri", "http://127.0.0.1:1")
    assert code == 3
    assert "cannot reach the MLflow server at http://127.0.0.1:1" in text


# ---------------------------------------------------------------- deploy and serve commands


def test_plan_with_an_unknown_strategy(env: dict[str, str]) -> None:
    code, text = _run(env, "plan", "--strategy", "[blink]yolo")
    assert code == 2
    assert "--strategy: Input should be 'rolling', 'canary', 'blue-green' or 'shadow'" in text


def test_deploy_with_garbage_canary_steps(env: dict[str, str]) -> None:
    code, text = _run(env, "deploy", "--canary-steps", "[a,b]")
    assert code == 2
    assert "--canary-steps '[a,b]': use comma-separated percentages" in text


def test_serve_a_plan_that_is_a_directory(env: dict[str, str], tmp_path: Path) -> None:
    code, text = _run(env, "serve", "--plan", str(tmp_path))
    assert code == 2
    assert f"error: cannot read plan file {tmp_path}: Is a directory" in text


# ---------------------------------------------------------------- what rich prints


@pytest.mark.parametrize("message", [PATTERN, "while parsing [a\n  x: ] expected", "'[bold]x'", r"C:\path\[x]"])
def test_print_error_prints_user_text_as_text(message: str) -> None:
    out = io.StringIO()
    print_error(message, Console(file=out, width=200))
    assert out.getvalue() == f"error: {message}\n"


def test_table_cells_of_user_text_print_as_text() -> None:
    reason = f"column 'region' does not match {PATTERN} in 3 rows"
    out = io.StringIO()
    Console(file=out, width=300).print(render_summary([BuildResult("eta", "jakarta", "failed", reason=reason)]))
    assert PATTERN in out.getvalue()
