"""``modelyard train``, composed into the root app."""

from __future__ import annotations

from typing import Annotated

import typer

from modelyard.core.cli import ConfigOption, TrackingOption
from modelyard.core.cli import FamiliesOption as FamilyOption
from modelyard.core.cli import RegionsOption as RegionOption

app = typer.Typer(no_args_is_help=True)

ForceOption = Annotated[bool, typer.Option("--force", help="Retrain even if these inputs were already trained.")]
ParamsOption = Annotated[
    str | None, typer.Option("--params", help="Hyperparameter override as a JSON object, e.g. '{\"max_depth\": 4}'.")
]


@app.command()
def train(
    family: FamilyOption = None,
    region: RegionOption = None,
    force: ForceOption = False,
    params: ParamsOption = None,
    config: ConfigOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Train every selected (family, region) on its latest snapshot and register challengers in MLflow."""
    from rich.console import Console

    from modelyard.core.cli import exits_on_expected_errors
    from modelyard.core.config import load_config
    from modelyard.training.job import validate_override
    from modelyard.training.models import parse_params_json
    from modelyard.training.render import render_results
    from modelyard.training.train import train_all

    console = Console()
    with exits_on_expected_errors():
        loaded = load_config(config)
        override = parse_params_json(params)
        validate_override(loaded, loaded.pairs(family, region), override)  # fail before anything trains
        results = train_all(loaded, family, region, force, tracking_uri=tracking_uri, params_override=override)
    console.print(render_results(results))
    if any(result.status == "failed" for result in results):
        raise typer.Exit(1)
