"""The root ``modelyard`` command's help at 120 columns: a version, no ``<bool>`` on flags, honest texts."""

from __future__ import annotations

import importlib.metadata

import pytest
from typer.testing import CliRunner

from modelyard.deploy.cli import LAZY_COMMANDS, app

COMMANDS = [
    "train",
    "promote",
    "rollback",
    "status",
    "monitor",
    "plan",
    "deploy",
    "serve",
    "data",
    *sorted(LAZY_COMMANDS),
]


def _help(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "120", "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    return result.output


def test_version_prints_the_package_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"modelyard {importlib.metadata.version('modelyard')}"


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_flags_show_no_bool_type_and_lines_fit_120_columns(command: str) -> None:
    text = _help(*command.split())
    assert "<bool>" not in text, text
    assert max(len(line) for line in text.splitlines()) <= 120, text
    assert "Family to train" not in text or command == "train", text


def test_data_subcommands_show_no_bool_type() -> None:
    for line in _help("data").splitlines():
        name = line.strip("│ ").split(" ")[0]
        if name and name.isidentifier() and name not in ("Usage", "Options", "Commands"):
            assert "<bool>" not in _help("data", name)


@pytest.mark.parametrize("command", sorted(LAZY_COMMANDS))
def test_only_the_root_offers_shell_completion(command: str) -> None:
    assert "--install-completion" in _help()
    assert "--install-completion" not in _help(command)  # a lazy command is built as an app of its own
