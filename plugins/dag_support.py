"""What every modelyard DAG file shares: the config read once at parse time, default
task arguments, and the Params that render as a form in the trigger UI.

Only cheap imports here: the DAG processor parses DAG files in a loop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
from collections.abc import Iterator
from typing import Any

from airflow.sdk import Asset, Param

from modelyard.pipeline import assets
from modelyard.pipeline.config import Config, load_config
from modelyard.pipeline.errors import ModelyardError

OWNER = "ml-platform"

DEFAULT_ARGS: dict[str, Any] = {
    "owner": OWNER,
    "retries": 2,
    "retry_delay": dt.timedelta(seconds=30),
    "retry_exponential_backoff": True,
}


@functools.cache
def config() -> Config:
    """The modelyard config ($MODELYARD_CONFIG or ./modelyard.yaml), read once per process."""
    return load_config()


@contextlib.contextmanager
def expected_errors_fail_the_task() -> Iterator[None]:
    """Turn an expected error (:class:`ModelyardError`) into a task failure without retries.

    A bad form, a missing snapshot, a failed gate or a malformed plan does not improve on
    retry, so the task fails at once with the error's message. A transient one (it is also a
    ``ConnectionError`` or ``TimeoutError``: the MLflow server does not answer) and any other
    exception (a bug: its traceback is what a reader needs) propagate, and Airflow retries.
    """
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except ModelyardError as exc:
        if isinstance(exc, ConnectionError | TimeoutError):
            raise
        raise AirflowFailException(str(exc)) from exc


def families_param(description: str = "Model families to run (empty: all).") -> Param:
    names = config().family_names
    return Param(
        [], type="array", items={"type": "string", "enum": names}, examples=names, title="Families",
        description=description,
    )  # fmt: skip


def regions_param(description: str = "Regions to run (empty: all).") -> Param:
    names = config().region_names
    return Param(
        [], type="array", items={"type": "string", "enum": names}, examples=names, title="Regions",
        description=description,
    )  # fmt: skip


def triggering_uris(context: Any) -> list[str]:
    """The URIs of the asset events that triggered this run (empty for a manual run)."""
    return [event.asset.uri for events in context["triggering_asset_events"].values() for event in events]


def feature_assets() -> list[Asset]:
    return [Asset(assets.features_uri(f, r)) for f, r in config().pairs()]


def challenger_assets() -> list[Asset]:
    return [Asset(assets.challenger_uri(f, r)) for f, r in config().pairs()]


def champion_assets() -> list[Asset]:
    return [Asset(assets.champion_uri(f, r)) for f, r in config().pairs()]


def drift_assets() -> list[Asset]:
    return [Asset(assets.drift_uri(f, r)) for f, r in config().pairs()]
