"""``modelyard data …``: exit codes and output a user sees."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from modelyard.deploy.cli import app

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "MODELYARD_CONFIG": str(REPO / "modelyard.yaml"),
        "MODELYARD_STORAGE__ROOT": str(tmp_path / "store"),
        "MODELYARD_DATA__SYNTHETIC__ROWS": "500",
        "MODELYARD_DATA__MIN_ROWS": "200",
        "COLUMNS": "200",
    }


def _run(env: dict[str, str], *args: str) -> tuple[int, str]:
    # The CLI's consoles are made at import, so they read COLUMNS then (under xdist: none, 80 wide)
    # and a table would fold the reasons the tests look for: give them the width of this run's env.
    from modelyard.core import cli

    saved = cli.console._width
    cli.console.width = int(env.get("COLUMNS", "200"))
    try:
        result = CliRunner().invoke(app, ["data", *args], env=env)
    finally:
        cli.console._width = saved
    return result.exit_code, result.output


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_generate_writes_the_format_of_the_extension(env: dict[str, str], tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"jakarta{suffix}"
    code, text = _run(env, "generate", "--region", "jakarta", "--rows", "321", "--out", str(out))
    assert code == 0, text
    frame = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert len(frame) == 321
    assert "wrote 321 rows" in text


def test_generate_for_a_family_keeps_its_columns(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "eta.csv"
    code, _ = _run(env, "generate", "-r", "hanoi", "-f", "pickup_eta", "-n", "50", "-o", str(out))
    assert code == 0
    columns = set(pd.read_csv(out).columns)
    assert "pickup_eta_min" in columns
    assert "driver_id" not in columns  # nullable, read by no pickup_eta feature
    assert "accepted" in columns  # declared not nullable: every file of the dataset holds it


def test_generate_rejects_unknown_region_and_extension(env: dict[str, str], tmp_path: Path) -> None:
    code, text = _run(env, "generate", "-r", "atlantis", "-o", str(tmp_path / "x.csv"))
    assert code == 2
    assert "unknown region 'atlantis'" in text
    code, text = _run(env, "generate", "-r", "jakarta", "-o", str(tmp_path / "x.txt"))
    assert code == 2
    assert "use a .csv or .parquet" in text


def test_build_prints_table_and_rerun_is_unchanged(env: dict[str, str]) -> None:
    code, text = _run(env, "build", "--family", "pickup_eta", "--region", "jakarta", "--region", "bangkok")
    assert code == 0, text
    assert text.count("published") == 2
    code, text = _run(env, "build", "-f", "pickup_eta", "-r", "jakarta", "-r", "bangkok")
    assert code == 0
    assert text.count("unchanged") == 2


def test_ingest_exits_non_zero_when_a_region_fails(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    _run(env, "generate", "-r", "jakarta", "-n", "300", "-o", str(path))
    frame = pd.read_csv(path)
    frame.loc[:9, "driver_rating"] = None
    frame.to_csv(path, index=False)
    code, text = _run(env, "ingest", "--input", str(path), "-f", "driver_acceptance", "-r", "jakarta")
    assert code == 1
    assert "failed" in text
    assert "report" in text


def test_ingest_of_an_unreadable_file_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text("")
    code, text = _run({**env, "COLUMNS": "400"}, "ingest", "-i", str(path), "-f", "pickup_eta", "-r", "jakarta")
    assert code == 1
    assert "the file is empty" in text


def test_bad_config_exits_2_naming_the_key(env: dict[str, str], tmp_path: Path) -> None:
    code, text = _run({**env, "MODELYARD_DATA__MIN_ROWS": "zero"}, "build")
    assert code == 2
    assert "data.min_rows" in text
