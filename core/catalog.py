"""The registry state of many models in a few requests: aliases and versions by paginated search.

``modelyard status``, ``modelyard plan`` and the deploy planner read every configured
(family, region) model. One ``get_registered_model`` / ``get_model_version`` call per model
costs a round trip each (1,000 models: thousands of requests); these helpers ask the
registry with ``name IN (...)`` filters, ``NAMES_PER_QUERY`` names at a time (fewer when the
names are long: the filter travels in the URL), and follow ``page_token`` to the end, so the
request count grows with pages, not with models.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote_plus

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

# Names per ``name IN (...)`` filter: keeps each query string well under URL and SQL limits.
NAMES_PER_QUERY = 200
PAGE_SIZE = 1000  # MLflow's maximum page for registered models (SEARCH_REGISTERED_MODEL_MAX_RESULTS_THRESHOLD)


# The URL-encoded filter's bytes per query: registry searches are GETs, and gunicorn (MLflow 2's
# server, the embedded one: ADR 0022) refuses a request line over 4,094 bytes; nginx's default buffer is 8 kB.
FILTER_BYTES = 3000


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    """``items`` in order, at most ``NAMES_PER_QUERY`` a chunk and ``FILTER_BYTES`` of encoded filter."""
    chunk: list[str] = []
    size = 0
    for item in items:
        cost = len(quote_plus(f"{_quoted(item)}, "))
        if chunk and (len(chunk) >= NAMES_PER_QUERY or size + cost > FILTER_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += cost
    if chunk:
        yield chunk


def _quoted(value: str) -> str:
    # MLflow's filter grammar has no escape inside a literal; a name with a single quote goes in double quotes.
    return f'"{value}"' if "'" in value else f"'{value}'"


def _in_filter(key: str, values: Iterable[str]) -> str:
    return f"{key} IN ({', '.join(_quoted(value) for value in values)})"


def aliases_of(client: MlflowClient, names: Iterable[str]) -> dict[str, dict[str, str]]:
    """``{model name: {alias: version}}`` for ``names``; a name that is not registered maps to ``{}``."""
    wanted = sorted(set(names))
    found: dict[str, dict[str, str]] = {name: {} for name in wanted}
    for chunk in _chunks(wanted):
        token: str | None = None
        while True:
            page = client.search_registered_models(
                filter_string=_in_filter("name", chunk), max_results=PAGE_SIZE, page_token=token
            )
            for model in page:
                found[model.name] = {alias: str(version) for alias, version in (model.aliases or {}).items()}
            token = page.token
            if not token:
                break
    return found


def versions_of(client: MlflowClient, wanted: dict[str, set[str]]) -> dict[tuple[str, str], ModelVersion]:
    """``{(model name, version): ModelVersion}`` for the wanted versions of each model, with their tags."""
    every = all_versions(client, [name for name, versions in wanted.items() if versions])
    return {
        (name, str(version.version)): version
        for name, versions in every.items()
        for version in versions
        if str(version.version) in wanted[name]
    }


def all_versions(client: MlflowClient, names: Iterable[str]) -> dict[str, list[ModelVersion]]:
    """``{model name: every registered version, with its tags}``; a name that is not registered maps to ``[]``."""
    wanted = sorted(set(names))
    found: dict[str, list[ModelVersion]] = {name: [] for name in wanted}
    for chunk in _chunks(wanted):
        token: str | None = None
        while True:
            page = client.search_model_versions(
                filter_string=_in_filter("name", chunk), max_results=PAGE_SIZE, page_token=token
            )
            for version in page:
                if version.name in found:
                    found[version.name].append(version)
            token = page.token
            if not token:
                break
    return found
