"""``modelyard train``, composed into the root app."""

from __future__ import annotations

from typing import Annotated

import typer

from modelyard.core.cli import ConfigOption, FamiliesOption, RegionsOption, TrackingOption

app = typer.Typer(no_args_is_help=True)

ForceOption = Annotated[bool, typer.Option("--force", help="Retrain even if these inputs were already trained.")]
PooledOption = Annotated[
    bool,
    typer.Option(
        "--pooled",
        help="Train the pooled model of each region group (per country by default; ADR 0015) instead of pairs.",
    ),
]
GroupsOption = Annotated[
    list[str] | None, typer.Option("--group", "-g", help="Region group, with --pooled (repeatable; default: all).")
]
ParamsOption = Annotated[
    str | None, typer.Option("--params", help="Hyperparameter override as a JSON object, e.g. '{\"max_depth\": 4}'.")
]


@app.command()
def train(
    family: FamiliesOption = None,
    region: RegionsOption = None,
    force: ForceOption = False,
    params: ParamsOption = None,
    pooled: PooledOption = False,
    group: GroupsOption = None,
    config: ConfigOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Train every selected (family, region) on its latest snapshot and register challengers in MLflow.

    With --pooled: the pooled model of every selected (family, region group) instead, trained on the
    group's regions' snapshots together and registered as <family>-<group> (the model name template
    with the group as region); it serves the group's regions that have no champion of their own.
    """
    from rich.console import Console

    from modelyard.core.cli import exits_on_expected_errors
    from modelyard.core.config import load_config
    from modelyard.training.job import validate_override
    from modelyard.training.models import parse_params_json
    from modelyard.training.pooled import train_pooled
    from modelyard.training.render import render_results
    from modelyard.training.train import train_all

    console = Console()
    with exits_on_expected_errors():
        loaded = load_config(config)
        override = parse_params_json(params)
        if pooled:
            _pooled_selection(region, group)
            groups = group or list(loaded.region_groups)
            validate_override(loaded, [(f, g) for f in family or loaded.family_names for g in groups], override)
            results = train_pooled(
                loaded, family, group, tracking_uri=tracking_uri, force=force, params_override=override
            )
        else:
            if group:
                raise typer.BadParameter(
                    "--group selects region groups of --pooled; add --pooled", param_hint="--group"
                )
            validate_override(loaded, loaded.pairs(family, region), override)  # fail before anything trains
            results = train_all(loaded, family, region, force, tracking_uri=tracking_uri, params_override=override)
    console.print(render_results(results))
    if any(result.status == "failed" for result in results):
        raise typer.Exit(1)


def _pooled_selection(region: list[str] | None, group: list[str] | None) -> None:
    if region:
        raise typer.BadParameter(
            "--pooled trains region groups: select them with --group (regions of one country form country-<code>)",
            param_hint="--region",
        )
