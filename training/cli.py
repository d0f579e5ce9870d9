"""``modelyard train`` (and the other model-lifecycle commands composed into the root app)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True)

FamilyOption = Annotated[
    list[str] | None, typer.Option("--family", "-f", help="Family to train (repeatable; default: all).")
]
RegionOption = Annotated[
    list[str] | None, typer.Option("--region", "-r", help="Region to train (repeatable; default: all).")
]
ForceOption = Annotated[bool, typer.Option("--force", help="Retrain even if these inputs were already trained.")]
ParamsOption = Annotated[
    str | None, typer.Option("--params", help="Hyperparameter override as a JSON object, e.g. '{\"max_depth\": 4}'.")
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="Config file (default: $MODELYARD_CONFIG or ./modelyard.yaml).")
]
TrackingOption = Annotated[
    str | None,
    typer.Option("--tracking-uri", help="MLflow server (default: $MLFLOW_TRACKING_URI, then mlflow.tracking_uri)."),
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

    from pipeline.config import ConfigError, load_config
    from training.models import AlgorithmError, ParamError, parse_params_json
    from training.train import render_results, train_all, validate_override

    console = Console()
    try:
        loaded = load_config(config)
        override = parse_params_json(params)
        validate_override(loaded, loaded.pairs(family, region), override)  # fail before anything trains
    except (ConfigError, ParamError, AlgorithmError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    results = train_all(loaded, family, region, force, tracking_uri=tracking_uri, params_override=override)
    console.print(render_results(results))
    if any(result.status == "failed" for result in results):
        raise typer.Exit(1)
