"""What every ``modelyard`` command shares: the common options, declared once, and how errors print.

Exit codes: 0 success, 1 a pair failed (data validation, training, a gate), 2 unusable input or
configuration (the one-line cause is printed), 3 a server (MLflow) does not answer.

Every command prints its errors through :func:`print_error`: user text (a regex pattern, a YAML
snippet, ``--params '[bold]x'``) is printed as it is, never read as rich markup.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from modelyard.core.errors import ModelyardError

if TYPE_CHECKING:
    from modelyard.core.config import Config

console = Console()
errors = Console(stderr=True)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="Config file (default: $MODELYARD_CONFIG, then ./modelyard.yaml).")
]
FamiliesOption = Annotated[list[str] | None, typer.Option("--family", "-f", help="Family (repeatable; default: all).")]
RegionsOption = Annotated[list[str] | None, typer.Option("--region", "-r", help="Region (repeatable; default: all).")]
FamilyOption = Annotated[str, typer.Option("--family", "-f", help="Family.")]
RegionOption = Annotated[str, typer.Option("--region", "-r", help="Region.")]
TrackingOption = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow server (default: $MLFLOW_TRACKING_URI, the mlflow_default connection, mlflow.tracking_uri).",
    ),
]


def print_error(message: object, console: Console = errors) -> None:
    """Print ``error: <message>`` on one line; the message is text, never rich markup."""
    console.print(f"[bold red]error:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


@contextmanager
def exits_on_expected_errors(console: Console = errors, code: int = 2) -> Iterator[None]:
    """Turn an expected error (:class:`ModelyardError`) into one line and an exit code.

    ``code`` for bad input or configuration; 3 when a server does not answer (the error is
    also a ``ConnectionError``). Anything else is a bug and keeps its traceback.
    """
    try:
        yield
    except ModelyardError as exc:
        print_error(exc, console)
        raise typer.Exit(3 if isinstance(exc, ConnectionError) else code) from exc


def config_or_exit(path: Path | None) -> Config:
    """The config at ``path`` (default: ``$MODELYARD_CONFIG``, then ./modelyard.yaml); a bad one: one line, exit 2."""
    from modelyard.core.config import load_config

    with exits_on_expected_errors():
        return load_config(path)


@contextmanager
def writes_to(path: Path, option: str, console: Console = errors) -> Iterator[None]:
    """Turn a failed write of a path the user gave (missing, read-only folder, a folder) into one line and exit 2."""
    try:
        yield
    except OSError as exc:
        if path.is_dir():  # the error names the temporary file beside it, not what the user gave
            print_error(f"{option} {path}: is a folder; give the path of a file in it", console)
            raise typer.Exit(2) from exc
        where = f": {exc.filename}" if exc.filename and str(exc.filename) != str(path) else ""
        problem = f"{exc.strerror or exc}{where}"
        print_error(f"{option} {path}: cannot write it ({problem}); choose a writable folder", console)
        raise typer.Exit(2) from exc


def hide_flag_types(command: Any, ctx: Any) -> None:
    """Show flags as ``--force``, not ``--force <bool>``: typer's rich help prints every option's type.

    A flag takes no value, so its type column is left empty (``metavar=""``), for ``command``'s
    own flags, its ``--help`` and, for a group, every subcommand's.
    """
    help_option = command.get_help_option(ctx)
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        hide_flag_types(sub, ctx)
