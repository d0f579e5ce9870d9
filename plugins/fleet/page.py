"""The fleet page's HTML: one server-rendered table (jinja2, autoescaped: ``fleet.html``), no script.

Links to the Airflow UI open in the top window (the page sits in the UI's plugin frame);
links to MLflow open in a new tab.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from modelyard.plugins.fleet.sources import deployed_at
from modelyard.plugins.links import model_version_page

if TYPE_CHECKING:
    import jinja2

    from modelyard.plugins.fleet.rows import FleetPage, FleetQuery


@dataclass(frozen=True)
class Links:
    """Where the page links to: the MLflow UI (None when MLflow is not an HTTP server) and the Airflow UI."""

    mlflow: str | None
    airflow: str  # the Airflow UI's base path, e.g. "/" or "/airflow/"

    def version(self, model_name: str, version: str) -> str | None:
        return model_version_page(self.mlflow, model_name, version) if self.mlflow else None

    def run(self, run_id: str | None) -> str | None:
        return f"{self.mlflow.rstrip('/')}/#/runs/{quote(run_id, safe='')}" if self.mlflow and run_id else None

    def dag_run(self, dag_id: str | None, run_id: str | None) -> str | None:
        if not dag_id or not run_id:
            return None
        return f"{self.airflow.rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"

    @property
    def required_actions(self) -> str:
        return f"{self.airflow.rstrip('/')}/required_actions?response_received=false"


COLUMNS = (
    ("family", "Family"),
    ("region", "Region"),
    ("champion", "Champion"),
    ("", "Challenger"),
    ("", "Previous"),
    ("", "Serving"),
    ("drift", "Drift"),
    ("approval", "Approval"),
    ("deploy", "Last deploy"),
)


@cache
def _environment() -> jinja2.Environment:
    import jinja2

    loader = jinja2.FileSystemLoader(Path(__file__).parent)  # fleet.html, error.html: package data
    return jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined)


def render_page(page: FleetPage, links: Links) -> str:
    """The fleet page as HTML."""
    query: FleetQuery = page.query

    def sort_link(key: str) -> str:
        # A first click on a registry column shows what needs attention first (drifted, newest, waiting).
        descending = not query.descending if query.sort == key else key in ("drift", "deploy", "approval")
        return urlencode(query.with_(sort=key, descending=descending, page=1))

    return (
        _environment()
        .get_template("fleet.html")
        .render(
            page=page,
            q=query,
            links=links,
            columns=COLUMNS,
            pending=sum(row.awaiting_approval for row in page.rows),
            sort_link=sort_link,
            page_link=lambda number: urlencode(query.with_(page=number)),
            deployed_at=deployed_at,
        )
    )


def render_error(message: str) -> str:
    """A short HTML page that says what is wrong and what to do."""
    return _environment().get_template("error.html").render(message=message)
