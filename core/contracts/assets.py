"""Names of the Airflow Assets that chain the stages.

Plain strings, so library code can name them without importing Airflow. Every event
carries an ``extra`` dict; the keys each stage writes are listed next to its URI.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

SCHEME = "modelyard"

# Each stage announces its per-pair events through one AssetAlias, and the next stage is scheduled on
# that alias (ADR 0023): a schedule of one Asset per pair made the DAG's asset expression grow with
# the pairs, and Airflow decodes it once per queued event (the scheduler) and per event registered
# (the API server), a cost that grew with the square of the pairs.
FEATURES_ALIAS = "modelyard-features"
DRIFT_ALIAS = "modelyard-drift"
CHALLENGERS_ALIAS = "modelyard-challengers"
CHAMPIONS_ALIAS = "modelyard-champions"


class FeaturesExtra(TypedDict):
    """The ``extra`` of a features event: the data stage writes it, training trains on ``digest``."""

    family: str
    region: str
    digest: str  # the snapshot digest (pipeline/snapshots.py)
    rows: int


def features_uri(family: str, region: str) -> str:
    """Validated feature snapshot published. extra: :class:`FeaturesExtra`."""
    return f"{SCHEME}://features/{family}/{region}"


def snapshot_digest(extra: Mapping[str, Any]) -> str | None:
    """The snapshot digest a features event's ``extra`` carries (None when it carries none)."""
    digest = extra.get("digest")
    return digest if isinstance(digest, str) and digest else None


def challenger_uri(family: str, region: str) -> str:
    """Challenger registered. extra: family, region, model_name, version, run_id.

    ``region`` may be a region group: the challenger of the group's pooled model (ADR 0015).
    """
    return f"{SCHEME}://challenger/{family}/{region}"


def champion_uri(family: str, region: str) -> str:
    """Champion promoted (the model serving ``region`` changed). extra: family, region, model_name, version.

    ``region`` may be a region group: the group's pooled champion moved. It is then announced as well
    for every region it serves as a fallback (no champion of their own), with ``pooled_group`` in the
    extra and the pooled model's ``model_name`` and ``version`` (:func:`fallback_champions`), so the
    stages scheduled on a region's champion (deploy, batch scoring) follow it.
    """
    return f"{SCHEME}://champion/{family}/{region}"


POOLED_GROUP_KEY = "pooled_group"


def fallback_champions(
    family: str, group: str, extra: Mapping[str, Any], regions: Iterable[str]
) -> list[tuple[str, dict[str, Any]]]:
    """The champion events, ``(uri, extra)``, of the ``regions`` a group's new pooled champion serves.

    ``extra``: the pooled champion's own event extra (model_name, version, ...).
    """
    return [
        (champion_uri(family, region), {**extra, "family": family, "region": region, POOLED_GROUP_KEY: group})
        for region in regions
    ]


def drift_uri(family: str, region: str) -> str:
    """Served inputs or predictions drifted past the monitoring bounds. extra: family, region,
    model_name, version, run_id, reason, drifted ({feature: {statistic, value, bound}}), prediction_psi."""
    return f"{SCHEME}://drift/{family}/{region}"


def deployed_uri(release: str) -> str:
    """Plan deployed. extra: release, target, plan_digest, versions."""
    return f"{SCHEME}://deployed/{release}"


def pairs_in(uris: Iterable[str], kind: str, known: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The ``known`` (family, region) pairs named by ``kind`` URIs (e.g. the events that
    triggered a run), in the order of ``known``, each once; other URIs are ignored."""
    named = set()
    for uri in uris:
        uri_kind, parts = parse_uri(uri)
        if uri_kind == kind and len(parts) == 2:
            named.add((parts[0], parts[1]))
    return [pair for pair in known if pair in named]


def parse_uri(uri: str) -> tuple[str, list[str]]:
    """Split ``modelyard://kind/a/b`` into ``("kind", ["a", "b"])``."""
    if not uri.startswith(f"{SCHEME}://"):
        raise ValueError(f"not a modelyard asset URI: {uri!r}")
    kind, *rest = uri[len(SCHEME) + 3 :].split("/")
    return kind, rest


class PredictionsExtra(TypedDict):
    """The ``extra`` of a predictions event: batch scoring writes it (deploy/batch/)."""

    family: str
    region: str
    model_name: str
    version: str
    spec_digest: str  # the fitted feature spec the version scored with
    input_digest: str  # the scored input's content
    rows: int
    path: str  # the published Parquet file


def predictions_uri(family: str, region: str) -> str:
    """Batch predictions published. extra: :class:`PredictionsExtra`."""
    return f"{SCHEME}://predictions/{family}/{region}"
