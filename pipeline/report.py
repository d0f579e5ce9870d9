"""The data-quality report: a self-contained HTML page of every suite run on one (family, region).

The data stage stores it beside the snapshot it published (or under ``<root>/reports`` when
the data failed); ``modelyard data validate --report`` writes it where the user asks.
"""

from __future__ import annotations

import html

from modelyard.pipeline.validation import CheckResult, ValidationOutcome, example_values


def render_report(title: str, outcomes: list[ValidationOutcome]) -> str:
    """A self-contained HTML data-quality report of every suite run on one (family, region)."""
    sections = "\n".join(_section(o) for o in outcomes)
    verdict = "passed" if all(o.success for o in outcomes) else "FAILED"
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}: {verdict}</h1>{sections}</body></html>"
    )


def _section(outcome: ValidationOutcome) -> str:
    rows = "\n".join(_row(c) for c in sorted(outcome.checks, key=lambda c: c.success))
    passed = sum(c.success for c in outcome.checks)
    return (
        f"<h2>{html.escape(outcome.stage)} ({html.escape(outcome.suite)}): {passed}/{len(outcome.checks)} passed, "
        f"{outcome.rows} rows</h2><table><tr><th>result</th><th>column</th><th>expectation</th>"
        f"<th>arguments</th><th>offending rows</th><th>observed / examples</th><th>message</th></tr>{rows}</table>"
    )


def _row(check: CheckResult) -> str:
    cells = [
        "pass" if check.success else "FAIL",
        check.column or "(table)",
        check.expectation,
        ", ".join(f"{k}={v}" for k, v in check.kwargs.items() if k != "column"),
        "" if check.unexpected_count is None else str(check.unexpected_count),
        str(check.observed) if check.observed is not None else example_values(check.sample),
        check.message,
    ]
    css = "ok" if check.success else "bad"
    return f"<tr class='{css}'>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"


_CSS = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;width:100%}"
    "td,th{border:1px solid #ccc;padding:4px;font-size:13px;text-align:left}"
    "tr.bad{background:#fdd}tr.ok{background:#efe}"
)
