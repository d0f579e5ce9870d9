"""Paginated registry reads (training.catalog) against a real ``mlflow server``.

The page and chunk sizes are shrunk so that a few dozen models cross several pages and
several ``name IN (...)`` chunks; the answers must equal one request per model.
"""

from __future__ import annotations

import uuid

import pytest
from mlflow import MlflowClient

from modelyard.core import catalog
from modelyard.deploy.rollout.mlflow_server import MlflowServer


@pytest.fixture(scope="module")
def registered(mlflow_server: MlflowServer) -> tuple[MlflowClient, list[str]]:
    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    prefix = f"catalog-{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}-{i:02d}" for i in range(13)]
    for i, name in enumerate(names):
        client.create_registered_model(name)
        for number in range(1 + i % 3):
            client.create_model_version(name, source=f"s3://catalog-test/{name}/{number}", tags={"rank": str(number)})
        if i % 2 == 0:
            client.set_registered_model_alias(name, "champion", "1")
        if i % 3 == 2:
            client.set_registered_model_alias(name, "challenger", "3")
    return client, names


def test_aliases_of_many_models_equal_one_read_per_model(
    registered: tuple[MlflowClient, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, names = registered
    monkeypatch.setattr(catalog, "PAGE_SIZE", 2)
    monkeypatch.setattr(catalog, "NAMES_PER_QUERY", 4)
    expected = {name: {a: str(v) for a, v in client.get_registered_model(name).aliases.items()} for name in names}
    unknown = f"{names[0]}-never-registered"

    found = catalog.aliases_of(client, [*names, unknown])

    assert found == {**expected, unknown: {}}
    assert sum(1 for a in found.values() if "champion" in a) == 7


def test_versions_of_returns_the_wanted_versions_with_their_tags(
    registered: tuple[MlflowClient, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, names = registered
    monkeypatch.setattr(catalog, "PAGE_SIZE", 2)
    monkeypatch.setattr(catalog, "NAMES_PER_QUERY", 3)
    wanted = {name: {"1", "3"} for name in names}

    found = catalog.versions_of(client, wanted)

    expected = {(n, v) for n in names for v in ("1", "3") if int(v) <= 1 + names.index(n) % 3}
    assert set(found) == expected
    assert all(found[(n, v)].tags["rank"] == str(int(v) - 1) for n, v in found)


def test_all_versions_of_many_models_equal_one_search_per_model(
    registered: tuple[MlflowClient, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What retention reads (every version's ``data_digest``), across several pages and chunks."""
    client, names = registered
    monkeypatch.setattr(catalog, "PAGE_SIZE", 2)
    monkeypatch.setattr(catalog, "NAMES_PER_QUERY", 4)
    expected = {name: sorted(v.version for v in client.search_model_versions(f"name = '{name}'")) for name in names}
    unknown = f"{names[0]}-never-registered"

    found = catalog.all_versions(client, [*names, unknown])

    assert {name: sorted(v.version for v in versions) for name, versions in found.items()} == {**expected, unknown: []}
    assert sum(len(versions) for versions in found.values()) == sum(1 + i % 3 for i in range(len(names)))
    assert all(v.tags["rank"] == str(int(v.version) - 1) for versions in found.values() for v in versions)


def test_a_name_with_a_quote_is_escaped(mlflow_uri: str) -> None:
    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    name = f"o'brien-{uuid.uuid4().hex[:6]}"
    client.create_registered_model(name)
    client.create_model_version(name, source="s3://catalog-test/x")
    client.set_registered_model_alias(name, "champion", "1")

    assert catalog.aliases_of(client, [name]) == {name: {"champion": "1"}}


def test_many_long_names_stay_under_the_servers_request_line_limit(
    registered: tuple[MlflowClient, list[str]],
) -> None:
    """The embedded server (gunicorn) refuses a request line over 4,094 bytes, as MLflow 2's did: 200 long
    names in one ``name IN (...)`` GET were 400 Bad Request ("Request Line is too large")."""
    client, names = registered
    unknown = [f"a-rather-long-family-name-for-a-model-{i:04d}-region-{'x' * 20}" for i in range(300)]

    found = catalog.aliases_of(client, [*names, *unknown])
    versions = catalog.versions_of(client, {name: {"1"} for name in [*names, *unknown]})

    assert all(found[name] == {} for name in unknown)
    assert sum(1 for a in found.values() if "champion" in a) == 7
    assert {name for name, _ in versions} == set(names)
