"""The promotion CLI's tables: decisions, one decision's gates, and where every pair stands; a decision as Markdown.

Rendering only: the domain functions (promotion/decide.py, promotion/status.py) return data;
the CLI (promotion/cli.py) and the devstack demo print the tables, promotion/record.py writes
the Markdown on the model version (its description in the MLflow UI).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard.promotion.gates import format_number, verdict

if TYPE_CHECKING:
    from rich.table import Table

    from modelyard.promotion.decision import Decision
    from modelyard.promotion.gates import GateResult
    from modelyard.promotion.status import PairStatus, VersionInfo


# The status table at 120 columns: a drifted feature's name up to this long stays whole.
DRIFT_MAX_WIDTH = 24
CHALLENGER_MIN_WIDTH = 12


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
    """The per-gate table of one decision; ``better`` says which way each row's value is better."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"Gates of {decision.model_name} v{decision.version}: {decision.outcome}")
    for column in ("gate", "value", "better", "op", "threshold", "result", "summary"):
        table.add_column(column, overflow="fold")
    for gate in decision.gates:
        result = verdict(gate)
        colour = "red" if result == "FAIL" else "green" if result == "pass" else "cyan"
        table.add_row(
            gate.name,
            format_number(gate.value),
            gate.better,
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
    """A rich table, one row per (family, region), that fits 120 columns.

    Names never break (they size their columns); a cell with several items (metrics, drifted
    features) puts one per line, and only the drift and challenger cells wrap, between words.
    """
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title="Model status",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        show_lines=True,
        collapse_padding=True,
    )
    for column in ("family", "region", "champion (since UTC)", "key metrics"):
        table.add_column(column, no_wrap=True)
    rows = [_status_row(status) for status in statuses]
    # The drift cell's names decide its width (up to a bound): the challenger cell is the one that wraps.
    longest = max((len(line) for row in rows for line in Text.from_markup(row[4]).plain.splitlines()), default=5)
    table.add_column("drift", overflow="fold", min_width=min(longest, DRIFT_MAX_WIDTH))
    table.add_column("challenger", overflow="fold", min_width=CHALLENGER_MIN_WIDTH)
    table.add_column("prev.", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


def _status_row(status: PairStatus) -> tuple[str, ...]:
    from rich.markup import escape

    champion = status.champion
    return (
        status.family,
        status.region,
        _champion(champion) if champion or not status.fallback else f"[cyan]{escape(str(status.fallback))}[/cyan]",
        _metrics(champion),
        _drift(status.serving),
        _challenger(status),
        f"v{status.previous.version}" if status.previous else "-",
    )


def _champion(info: VersionInfo | None) -> str:
    if info is None:
        return "[yellow]none[/yellow]"
    since = (info.champion_since or "")[:16].replace("T", " ")
    return f"[green]v{info.version}[/green]" + (f"\n{since}" if since else "")


def _metrics(info: VersionInfo | None) -> str:
    """One metric a line, without the ``holdout_`` every key metric has."""
    if info is None or not info.metrics:
        return "-"
    names = {name: name.replace("holdout_", "") for name in info.metrics}
    return "\n".join(f"{names[name]}={value:.3f}" for name, value in info.metrics.items())


def _challenger(status: PairStatus) -> str:
    from rich.markup import escape

    challenger = status.challenger
    if challenger is None:
        return "-"
    if status.champion and challenger.version == status.champion.version:
        return f"v{challenger.version} (is champion)"
    outcome = challenger.outcome or "pending"
    colour = {"promoted": "green", "rejected": "red"}.get(outcome, "cyan")
    suffix = " (rolled back)" if challenger.rolled_back_at else ""
    # Spaced, not hyphenated: the cell wraps between words ("awaiting / approval").
    shown = escape(outcome.replace("-", " "))
    # Which gates said no, one a line like the drifted features: the figures are on the version's page.
    failed = "".join(f"\n{escape(name)}" for name in challenger.failed_gates) if outcome == "rejected" else ""
    return f"v{challenger.version} [{colour}]{shown}[/{colour}]{suffix}{failed}"


def _drift(info: VersionInfo | None) -> str:
    """The serving version's last monitoring verdict and what drifted, one name a line."""
    from rich.markup import escape

    if info is None or info.drift is None:
        return "-"
    colour = {"drifted": "red", "stable": "green"}.get(info.drift, "yellow")
    verdict = f"[{colour}]{escape(info.drift.replace('_', ' '))}[/{colour}]"
    if info.drift != "drifted":
        return verdict
    # the names only: the figures are on the monitoring run
    parts = (info.drift_summary or "").removeprefix("drifted: ").split(", ")
    names = [escape(part.split(" ")[0]) for part in parts if part.strip()]
    return "\n".join([verdict, *names])


# ---------------------------------------------------------------- Markdown, for the MLflow model version page


def decision_markdown(decision: Decision) -> str:
    """The decision as Markdown for the version's description: the summary first, the gate table, who and when.

    The first line is plain text: the registry's list of versions shows it (cut to 32 characters).
    """
    when = decision.decided_at.isoformat(timespec="seconds")
    lines = [_line(decision.summary), ""]
    if decision.gates:
        lines += ["#### Gates", "", *gate_markdown(decision.gates), ""]
    before, after = (f"v{v}" if v else "none" for v in (decision.champion_before, decision.champion_after))
    moved = f"champion {before} -> {after}" if before != after else f"champion stays {before}"
    lines.append(f"Decided ({decision.outcome}) by `{decision.decided_by}` at {when}: {decision.action}; {moved}.")
    if decision.reason:
        lines += ["", f"Reason: {_line(decision.reason)}"]
    return "\n".join(lines)


def gate_markdown(gates: list[GateResult]) -> list[str]:
    """The per-gate table as Markdown lines: gate, value, better (higher or lower), op, threshold, result, summary."""
    rows = ["| gate | value | better | op | threshold | result | summary |", "|---|---|---|---|---|---|---|"]
    for gate in gates:
        result = verdict(gate)
        shown = f"**{result}**" if result == "FAIL" else result
        value, threshold = format_number(gate.value), format_number(gate.threshold)
        cells = [gate.name, value, gate.better, gate.op, threshold, shown, gate.summary]
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return rows


def _line(text: str) -> str:
    """``text`` on one line (a newline inside would end a Markdown paragraph or table row)."""
    return " ".join(text.split())


def _cell(text: str) -> str:
    """``text`` on one line, safe inside a Markdown table cell (pipes escaped)."""
    return _line(text).replace("|", "\\|")
