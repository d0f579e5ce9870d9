"""How the plugin mounts the fleet page: its URL, its nav entry, and an app built on first use.

Kept free of FastAPI and Airflow's API-server imports: Airflow instantiates plugins in every
process (scheduler, workers, triggerer), and only the API server serves the page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelyard.plugins.fleet.urls import PAGE_PATH, URL_PREFIX


class LazyApp:
    """An ASGI app that builds ``factory()`` on its first request (only the API server pays for it)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            self._app = self._factory()
        await self._app(scope, receive, send)


def fleet_app() -> Any:
    """The fleet page's app as the API server mounts it (login required)."""
    from modelyard.plugins.fleet.app import airflow_app

    return airflow_app()


def fleet_mounts() -> list[dict[str, Any]]:
    """The plugin's ``fastapi_apps``: the fleet page under ``URL_PREFIX``."""
    return [{"app": LazyApp(fleet_app), "url_prefix": URL_PREFIX, "name": "modelyard fleet"}]


def fleet_views() -> list[dict[str, Any]]:
    """The "Fleet" entry in the Airflow UI's navigation: the page in the UI's plugin frame."""
    return [
        {
            "name": "Fleet",
            "href": f"{URL_PREFIX}{PAGE_PATH}",
            "url_route": "fleet",
            "destination": "nav",
            "nav_top_level": True,
        }
    ]
