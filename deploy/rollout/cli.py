"""``modelyard plan`` and ``modelyard deploy`` (composed into the root app by ``deploy/cli.py``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from modelyard.core.cli import ConfigOption, FamiliesOption, RegionsOption, TrackingOption

if TYPE_CHECKING:
    from rich.console import Console

    from modelyard.core.config import Config
    from modelyard.deploy.rollout.planner import PlanOptions
    from modelyard.deploy.rollout.request import DeployRequest
    from modelyard.deploy.serving.plan import Plan

T = TypeVar("T")

app = typer.Typer(no_args_is_help=True)

VersionOption = Annotated[
    int | None,
    typer.Option("--version", min=1, help="Deploy this registered version instead of the champion (one pair)."),
]
StrategyOption = Annotated[
    str | None,
    typer.Option("--strategy", "-s", help="rolling | canary | blue-green | shadow (default: deploy.rollout.strategy)."),
]
TargetOption = Annotated[
    str | None, typer.Option("--target", "-t", help="local | kubernetes (default: deploy.target).")
]
ChallengerWeightOption = Annotated[
    int, typer.Option("--challenger-weight", min=0, max=99, help="Send this % of traffic to the challenger alias.")
]
ShadowChallengerOption = Annotated[
    bool, typer.Option("--shadow-challenger", help="Mirror traffic to the challenger alias as a shadow.")
]
PortOption = Annotated[int | None, typer.Option("--port", help="Local serving port (default: deploy.local.port).")]
ForceOption = Annotated[
    bool,
    typer.Option("--force", help="Roll out even when the new version needs raw fields live clients are not sending."),
]


@app.command("plan")
def plan_command(
    family: FamiliesOption = None,
    region: RegionsOption = None,
    version: VersionOption = None,
    strategy: StrategyOption = None,
    target: TargetOption = None,
    challenger_weight: ChallengerWeightOption = 0,
    shadow_challenger: ShadowChallengerOption = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the plan (YAML) here.")] = None,
    show_yaml: Annotated[bool, typer.Option("--yaml", help="Also print the plan itself (YAML).")] = False,
    config: ConfigOption = None,
    tracking_uri: TrackingOption = None,
    port: PortOption = None,
    force: ForceOption = False,
) -> None:
    """Show what `modelyard deploy` would change against what is live (the plan's YAML with --yaml/--output)."""
    from rich.console import Console

    console = Console()
    loaded, request, uri = _prepare(console, config, tracking_uri, locals())
    _show_plans(console, loaded, request, uri, show_yaml=show_yaml, output=output)


def _show_plans(
    console: Console, loaded: Config, request: DeployRequest, uri: str, *, show_yaml: bool, output: Path | None
) -> None:
    """Per release: the diff against what is live first, then (on request) the plan's YAML or its file."""
    from rich.markup import escape
    from rich.syntax import Syntax

    from modelyard.core.cli import writes_to
    from modelyard.core.storage import write_bytes_atomic
    from modelyard.deploy.rollout.apply import release_names
    from modelyard.deploy.rollout.planner import diff_plans
    from modelyard.deploy.rollout.render import render_diff
    from modelyard.deploy.rollout.staged_deploy import propose
    from modelyard.deploy.serving.plan import dump_plan

    for release, live, options in _releases(console, loaded, request, uri):
        proposal = _or_exit(console, lambda: propose(loaded, options, live, uri))  # noqa: B023
        title = f"{release}: plan vs live ({live.digest()[:19] if live else 'nothing live'})"
        console.print(render_diff(diff_plans(live, proposal.plan), title))
        for key, why in proposal.skipped.items():
            console.print(f"[yellow]skipped[/yellow] {key}: {escape(why)}")
        for key, pooled in proposal.fallbacks.items():
            console.print(f"[cyan]fallback[/cyan] {key}: no champion of its own, served by {escape(pooled)}")
        for key, note in proposal.raw_fields.items():
            console.print(f"[magenta]raw fields[/magenta] {key}: {escape(note)}")
        for key, note in proposal.windows_over.items():
            console.print(f"[blue]window over[/blue] {key}: {escape(note)}")
        console.print(f"[bold]plan digest[/bold] {proposal.plan.digest()}")
        text = dump_plan(proposal.plan).decode()
        if show_yaml:
            console.print(Syntax(text, "yaml"))
        if output is not None:
            path = output if len(release_names(loaded, request)) == 1 else output.with_suffix(f".{release}.yaml")
            with writes_to(path, "--output"):
                write_bytes_atomic(path, text.encode())
            console.print(f"wrote {escape(str(path))}", highlight=False)


@app.command("deploy")
def deploy_command(
    target: TargetOption = None,
    strategy: StrategyOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan and show the diff; change nothing.")] = False,
    family: FamiliesOption = None,
    region: RegionsOption = None,
    version: VersionOption = None,
    canary_steps: Annotated[
        str | None, typer.Option("--canary-steps", help="Canary weights, e.g. 10,50,100 (default: config).")
    ] = None,
    analysis_seconds: Annotated[
        float | None, typer.Option("--analysis-seconds", min=0, help="Hold per canary step (default: config).")
    ] = None,
    challenger_weight: ChallengerWeightOption = 0,
    shadow_challenger: ShadowChallengerOption = False,
    config: ConfigOption = None,
    tracking_uri: TrackingOption = None,
    port: PortOption = None,
    force: ForceOption = False,
) -> None:
    """Apply the registry's champions to the target with a rollout strategy; roll back on failure."""
    from rich.console import Console

    from modelyard.deploy.rollout.apply import deploy
    from modelyard.deploy.rollout.render import render_deploy

    console = Console()
    loaded, request, uri = _prepare(console, config, tracking_uri, locals())
    if dry_run:
        _show_plans(console, loaded, request, uri, show_yaml=False, output=None)
    results = _or_exit(console, lambda: deploy(loaded, request, uri))
    for result in results:
        console.print(render_deploy(result))
    if any(not result.ok for result in results):
        raise typer.Exit(1)
    local = next((r for r in results if r.target == "local" and r.url), None)
    if local is not None and not dry_run:
        family_name, region_name = next(iter(local.versions)).split("/")
        console.print(f"[bold]live:[/bold] {local.url}  e.g. curl -s {local.url}/readyz")
        console.print(f"  curl -s -X POST {local.url}/v1/predict/{family_name}/{region_name} -d '{{...features...}}'")


def _prepare(
    console: Console, config: Path | None, tracking_uri: str | None, args: dict[str, Any]
) -> tuple[Config, DeployRequest, str]:
    """Load the config and resolve the flags against it into a ``DeployRequest`` (exit 2 on a bad flag)."""
    from pydantic import ValidationError

    from modelyard.core.config import load_config
    from modelyard.core.errors import ModelyardError
    from modelyard.core.tracking import resolve_tracking_uri
    from modelyard.deploy.rollout.request import DeployChoices, DeployRequest

    try:
        loaded = load_config(config)
        choices = DeployChoices.model_validate(
            {
                "target": args.get("target"),
                "strategy": args.get("strategy"),
                "dry_run": bool(args.get("dry_run", False)),
                "families": list(args.get("family") or []),
                "regions": list(args.get("region") or []),
                "version": None if args.get("version") is None else str(args["version"]),
                "challenger_weight": args.get("challenger_weight") or 0,
                "shadow_challenger": bool(args.get("shadow_challenger")),
                "canary_steps": _steps(args.get("canary_steps")),
                "analysis_seconds": args.get("analysis_seconds"),
                "port": args.get("port"),
                "force": bool(args.get("force")),
            }
        )
        request = DeployRequest.resolve(loaded, choices)
    except ValidationError as exc:
        _fail(console, _flag_errors(exc))
    except (ModelyardError, ValueError) as exc:
        _fail(console, str(exc))
    return loaded, request, tracking_uri or resolve_tracking_uri(loaded)


def _flag_errors(exc: Any) -> str:
    names = {"families": "--family", "regions": "--region", "strategy": "--strategy", "target": "--target"}
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        lines.append(f"{names.get(field, '--' + field.replace('_', '-'))}: {error['msg']}")
    return "; ".join(lines)


def _steps(value: object) -> list[int] | None:
    if not value:
        return None
    try:
        return [int(part) for part in str(value).split(",")]
    except ValueError as exc:
        raise ValueError(f"--canary-steps {value!r}: use comma-separated percentages, e.g. 10,50,100") from exc


def _releases(
    console: Console, config: Config, request: DeployRequest, uri: str
) -> list[tuple[str, Plan | None, PlanOptions]]:
    """(release, live plan, planner options) per release of the request's target."""
    from modelyard.deploy.rollout.local_target import LocalTarget

    if request.target == "local":
        live = _or_exit(console, lambda: LocalTarget.from_config(config, uri, port=request.port).live())
        return [("local", live, request.plan_options())]
    from modelyard.deploy.rollout.kube_deploy import live_plans

    return _or_exit(console, lambda: live_plans(config, request))


def _or_exit(console: Console, action: Callable[[], T]) -> T:
    """Run ``action``; an expected error prints the reason and exits 2 (3: a server does not answer)."""
    from modelyard.core.cli import exits_on_expected_errors

    with exits_on_expected_errors(console):
        return action()


def _fail(console: Console, message: str) -> NoReturn:
    from modelyard.core.cli import print_error

    print_error(message, console)
    raise typer.Exit(2)
