"""The plugin mounts the fleet page and adds it to the nav; the app is built on first use only."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelyard.plugins.fleet.app import create_app
from modelyard.plugins.fleet.mount import LazyApp
from modelyard.plugins.modelyard_plugin import ModelyardPlugin


def test_the_plugin_mounts_the_fleet_page_and_puts_it_in_the_nav() -> None:
    plugin = ModelyardPlugin()
    fleet = next(view for view in plugin.external_views if view["name"] == "Fleet")
    assert fleet["href"] == "/modelyard/fleet"
    assert fleet["url_route"] == "fleet"
    assert fleet["destination"] == "nav"
    (mount,) = plugin.fastapi_apps
    assert mount["url_prefix"] == "/modelyard"
    assert isinstance(mount["app"], LazyApp)


def test_the_app_is_built_on_its_first_request_and_refuses_a_bad_query_by_name() -> None:
    built: list[Any] = []

    def factory() -> Any:
        app = create_app(lambda: pytest.fail("a bad query must not read the registry"))
        built.append(app)
        return app

    lazy = LazyApp(factory)
    assert built == []
    with TestClient(lazy) as client:
        response = client.get("/fleet", params={"sort": "size"})
        assert response.status_code == 400
        assert "sort: &#39;size&#39; is not one of family, region, champion, drift, deploy, approval" in response.text
        assert client.get("/fleet", params={"per_page": "many"}).status_code == 400
    assert len(built) == 1
