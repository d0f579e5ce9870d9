"""``modelyard promote``, ``rollback`` and ``status``, composed into the root app."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from modelyard.core.cli import ConfigOption, FamiliesOption, FamilyOption, RegionsOption, TrackingOption

if TYPE_CHECKING:
    from rich.console import Console

    from modelyard.core.config import Config
    from modelyard.promotion.decision import Decision

app = typer.Typer(no_args_is_help=True)


def _decided_by() -> str:
    import getpass

    return f"cli:{getpass.getuser()}"


def _one(values: list[str] | None, option: str) -> str:
    if not values or len(values) != 1:
        raise typer.BadParameter(f"give exactly one {option}", param_hint=option)
    return values[0]


def _pair_or_group(config: Config, family: str, region: str | None, group: str | None) -> tuple[str, str]:
    """(family, region), or (family, group) for a group's pooled model: exactly one of the two named.

    Raises:
        typer.BadParameter: both or neither of --region and --group.
        ConfigError: an unknown family, region or group.
    """
    if (region is None) == (group is None):
        raise typer.BadParameter(
            "give --region for a region's own model or --group for a region group's pooled model (one of them)",
            param_hint="--region/--group",
        )
    if group is not None:
        from modelyard.promotion.decide import pooled_pairs

        [pair] = pooled_pairs(config, [family], [group])
        return pair
    [pair] = config.pairs([family], [str(region)])
    return pair


@app.command()
def promote(
    family: FamiliesOption = None,
    region: RegionsOption = None,
    version: Annotated[
        int | None,
        typer.Option("--version", min=1, help="Promote this version by hand (one --family; one --region or --group)."),
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (required with --version; recorded).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Decide again on challengers already decided.")] = False,
    group: Annotated[
        list[str] | None,
        typer.Option("--group", "-g", help="Decide the pooled models of this region group instead (repeatable)."),
    ] = None,
    config: ConfigOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Run the validation gates on each challenger and promote those that pass; or promote --version N by hand."""
    from rich.console import Console

    from modelyard.core.cli import exits_on_expected_errors
    from modelyard.core.config import load_config
    from modelyard.promotion.aliases import open_client
    from modelyard.promotion.decide import promote_all, promote_version
    from modelyard.promotion.render import render_decisions, render_gates

    console = Console()
    with exits_on_expected_errors():
        loaded = load_config(config)
        if version is not None:
            one_region = _one(region, "--region") if region else None
            one_group = _one(group, "--group") if group else None
            pair = _pair_or_group(loaded, _one(family, "--family"), one_region, one_group)  # before connecting
            client = open_client(loaded, tracking_uri)
            decisions = [promote_version(client, loaded, *pair, str(version), reason or "", _decided_by())]
        else:
            if group and region:
                raise typer.BadParameter("--group decides pooled models; leave out --region", param_hint="--group")
            decisions = promote_all(
                loaded, family, region, _decided_by(), force=force, tracking_uri=tracking_uri, groups=group
            )
    for decision in decisions:
        if decision.gates and not decision.already_decided:
            console.print(render_gates(decision))
    console.print(render_decisions(decisions))
    _print_next_step(console, decisions)
    if any(decision.outcome == "failed" for decision in decisions):
        raise typer.Exit(1)


def _print_next_step(console: Console, decisions: list[Decision]) -> None:
    """After a champion moved: serving follows only a deploy (the deployment DAG follows the promotion DAG)."""
    moved = [d for d in decisions if d.champion_changed]
    if not moved:
        return
    pairs = ", ".join(f"{d.family}/{d.region} v{d.champion_after}" for d in moved[:5])
    more = f" and {len(moved) - 5} more" if len(moved) > 5 else ""
    console.print(
        f"champion moved: {pairs}{more}. What serves changes when `modelyard deploy` applies it "
        "(`modelyard plan` shows the change; the deployment DAG does it when the promotion DAG moves a champion).",
        markup=False,
        highlight=False,
    )


@app.command()
def rollback(
    family: FamilyOption,
    region: Annotated[str | None, typer.Option("--region", "-r", help="Region.")] = None,
    group: Annotated[
        str | None, typer.Option("--group", "-g", help="Roll back the pooled model of this region group instead.")
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded in the history).")] = None,
    config: ConfigOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Move the champion of (family, region), or of a region group's pooled model, back to the previous champion."""
    from rich.console import Console

    from modelyard.core.cli import exits_on_expected_errors
    from modelyard.core.config import load_config
    from modelyard.promotion.aliases import open_client
    from modelyard.promotion.decide import rollback as do_rollback
    from modelyard.promotion.render import render_decisions

    console = Console()
    with exits_on_expected_errors():
        loaded = load_config(config)
        pair = _pair_or_group(loaded, family, region, group)
        decision = do_rollback(open_client(loaded, tracking_uri), loaded, *pair, _decided_by(), reason)
    console.print(render_decisions([decision]))
    _print_next_step(console, [decision])


@app.command()
def status(
    family: FamiliesOption = None,
    region: RegionsOption = None,
    group: Annotated[
        list[str] | None,
        typer.Option("--group", "-g", help="The pooled models of this region group instead (repeatable)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list, one object per pair (for scripts and jq).")
    ] = False,
    config: ConfigOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Per (family, region): the champion (since when, key metrics, drift), the challenger, the previous champion.

    A region without a champion of its own that a pooled model serves gets a line naming it
    (``driver_acceptance/surabaya: pooled: country-id v3 (driver_acceptance-country-id)``).
    With --group: the same for the pooled models of those region groups. With --json: each pair's
    fields, and ``serving`` (the model and version that answers the region).
    """
    from rich.console import Console

    from modelyard.core.cli import exits_on_expected_errors
    from modelyard.core.config import load_config
    from modelyard.promotion.aliases import open_client
    from modelyard.promotion.decide import selected_pairs
    from modelyard.promotion.render import render_status
    from modelyard.promotion.status import collect_status, pair_statuses, status_record

    console = Console()
    with exits_on_expected_errors():
        loaded = load_config(config)
        if group:  # the pooled models of those groups (their region column shows the group)
            pairs = selected_pairs(loaded, family, region, group)  # checked before connecting
            statuses = pair_statuses(open_client(loaded, tracking_uri), loaded, pairs)
        else:
            statuses = collect_status(loaded, family, region, tracking_uri=tracking_uri)
    if as_json:
        typer.echo(json.dumps([status_record(served) for served in statuses], indent=2))
        return
    console.print(render_status(statuses))
    for served in statuses:
        if served.fallback is not None:
            pooled = served.fallback
            line = f"{served.family}/{served.region}: no champion of its own, served by {pooled} ({pooled.model_name})"
            console.print(line, markup=False, highlight=False)
