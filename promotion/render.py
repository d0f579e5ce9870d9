"""The promotion CLI's tables: decisions, one decision's gates, and where every pair stands.

Rendering only: the domain functions (promotion/decide.py, promotion/status.py) return data;
the CLI (promotion/cli.py) and the devstack demo print these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard.promotion.gates import format_number, verdict

if TYPE_CHECKING:
    from rich.table import Table

    from modelyard.promotion.decision import Decision
    from modelyard.promotion.status import PairStatus, VersionInfo


def render_decisions(decisions: list[Decision]) -> Table:
    """A rich table: pair, outcome, version, champion before -> after, summary."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Promotion decisions")
    for column in ("family", "region", "outcome", "version", "champion", "summary"):
        table.add_column(column, overflow="fold")
    for d in decisions:
        outcome = d.outcome + (" (already decided)" if d.already_decided else "")
        table.add_row(
            d.family,
            d.region,
            _styled(d.outcome, outcome),
            d.version or "-",
            f"{d.champion_before or '-'} -> {d.champion_after or '-'}",
            escape(d.summary),
        )
    return table


def render_gates(decision: Decision) -> Table:
    """The per-gate table of one decision."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"Gates of {decision.model_name} v{decision.version}: {decision.outcome}")
    for column in ("gate", "value", "op", "threshold", "result", "summary"):
        table.add_column(column, overflow="fold")
    for gate in decision.gates:
        result = verdict(gate)
        colour = "red" if result == "FAIL" else "green" if result == "pass" else "cyan"
        table.add_row(
            gate.name,
            format_number(gate.value),
            gate.op,
            format_number(gate.threshold),
            f"[{colour}]{result}[/{colour}]",
            escape(gate.summary),
        )
    return table


def _styled(outcome: str, text: str) -> str:
    colour = {"promoted": "green", "rolled-back": "yellow", "rejected": "red", "failed": "red"}.get(outcome, "cyan")
    return f"[{colour}]{text}[/{colour}]"


def render_status(statuses: list[PairStatus]) -> Table:
    """A rich table, one row per (family, region)."""
    from rich.table import Table

    table = Table(title="Model status")
    columns = ("family", "region", "champion", "key metrics", "champion since", "drift", "challenger", "previous")
    for column in columns:
        table.add_column(column, overflow="fold", min_width=10 if column == "champion since" else None)
    for status in statuses:
        champion = status.champion
        table.add_row(
            status.family,
            status.region,
            f"[green]v{champion.version}[/green]" if champion else "[yellow]none[/yellow]",
            _metrics(champion),
            (champion.champion_since or "-")[:19].replace("T", " ") if champion else "-",
            _drift(champion),
            _challenger(status),
            f"v{status.previous.version}" if status.previous else "-",
        )
    return table


def _metrics(info: VersionInfo | None) -> str:
    if info is None:
        return "-"
    return " ".join(f"{name.removeprefix('holdout_')}={value:.3f}" for name, value in info.metrics.items())


def _challenger(status: PairStatus) -> str:
    challenger = status.challenger
    if challenger is None:
        return "-"
    if status.champion and challenger.version == status.champion.version:
        return f"v{challenger.version} (is champion)"
    outcome = challenger.outcome or "pending"
    colour = {"promoted": "green", "rejected": "red"}.get(outcome, "cyan")
    suffix = " (rolled back)" if challenger.rolled_back_at else ""
    return f"v{challenger.version} [{colour}]{outcome}[/{colour}]{suffix}"


def _drift(info: VersionInfo | None) -> str:
    """The champion's last monitoring verdict and what drifted."""
    if info is None or info.drift is None:
        return "-"
    colour = {"drifted": "red", "stable": "green"}.get(info.drift, "yellow")
    # the names only: the figures are on the monitoring run
    names = " ".join(p.split(" ")[0] for p in (info.drift_summary or "").removeprefix("drifted: ").split(", "))
    return (
        f"[{colour}]{info.drift}[/{colour}] {names}"
        if info.drift == "drifted"
        else f"[{colour}]{info.drift}[/{colour}]"
    )
