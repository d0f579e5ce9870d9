"""Rich tables of deploy results and plan diffs, for the CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table

    from modelyard.deploy.rollout.planner import ServiceChange
    from modelyard.deploy.rollout.staged_deploy import DeployResult


OUTCOME_STYLE = {"deployed": "green", "unchanged": "cyan", "dry-run": "yellow", "rolled-back": "red", "failed": "red"}


def render_deploy(result: DeployResult) -> Table:
    """A table of one deploy: release, outcome, digest, versions per service, steps and the reason."""
    from rich.markup import escape
    from rich.table import Table

    style = OUTCOME_STYLE[result.outcome]
    table = Table(
        title=f"deploy {result.release} → {result.target} ({result.strategy}): [{style}]{result.outcome}[/{style}]",
        caption=f"plan {result.plan_digest[:19]}" + (f" · {result.url}" if result.url else ""),
    )
    table.add_column("service")
    table.add_column("versions")
    for key, versions in result.versions.items():
        table.add_row(key, ", ".join(f"{name} v{version}" for name, version in versions.items()))
    for key, why in result.skipped.items():
        table.add_row(key, f"[yellow]skipped[/yellow]: {escape(why)}")
    for key, pooled in result.fallbacks.items():
        table.add_row(key, f"[cyan]fallback[/cyan]: no champion of its own, served by {escape(pooled)}")
    for key, note in result.raw_fields.items():
        table.add_row(key, f"[magenta]raw fields[/magenta]: {escape(note)}")
    for step in result.steps:
        table.add_row(f"[dim]step[/dim] {step.step}", escape(f"{step.outcome} {step.detail}".strip()))
    if result.reason:
        table.add_row(f"[{style}]reason[/{style}]", escape(result.reason))
    return table


def render_diff(changes: list[ServiceChange], title: str) -> Table:
    """The plan diff against what is live: one row per service."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title)
    for column in ("service", "change", "live", "planned"):
        table.add_column(column)
    colors = {"added": "green", "removed": "red", "changed": "yellow", "unchanged": "dim"}
    for change in changes:
        color = colors[change.change]
        table.add_row(change.key, f"[{color}]{change.change}[/{color}]", escape(change.before), escape(change.after))
    return table
