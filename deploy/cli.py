"""The ``modelyard`` command: one entry point over every stage.

It sits above all three layers (like ``dags/``), so it lives in the top layer and
composes each layer's own commands.
"""

from __future__ import annotations

import typer

from pipeline.cli import app as data_app
from training.cli import app as training_app

app = typer.Typer(
    name="modelyard",
    help="Per-region ML models from raw bookings to a live endpoint, in versioned stages.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data", help="Generate, ingest, validate and publish feature snapshots.")
app.registered_commands.extend(training_app.registered_commands)


def main() -> None:
    app()
