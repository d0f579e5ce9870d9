"""One pair of a ``batch_scoring`` chunk: score it and say what happened, as the other chunked stages do.

Airflow-free: the DAG's chunk task runs :func:`score_one` on each pair in its worker pool
(``plugins/dag_support.run_chunk``). The request carries everything resolved once (the config,
the tracking URI, what to score and with what), so a worker looks nothing up again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelyard.core.chunks import Pair, PairOutcome
from modelyard.core.contracts import assets

if TYPE_CHECKING:
    from modelyard.core.config import Config
    from modelyard.deploy.batch.scoring import ScoreRequest, ScoreResult


@dataclass(frozen=True)
class BatchRequest:
    """What a batch-scoring chunk asks of every pair."""

    config: Config
    tracking_uri: str
    score: ScoreRequest


def check_selection(pairs: list[Pair], version: int | None, source: str | None, *, manual: bool) -> None:
    """Refuse a form that cannot be scored, before anything runs.

    Raises:
        BatchScoringError: a version for more than one pair, or a manual run with no input.
    """
    from modelyard.deploy.batch.errors import BatchScoringError

    if version is not None and len(pairs) != 1:
        raise BatchScoringError(
            f"version {version} is one version of one registered model, but {len(pairs)} pairs are selected: "
            "select one family and one region, or score with an alias"
        )
    if manual and not source:
        raise BatchScoringError(
            "no input to score: give input in the form (a CSV/Parquet path, glob or URL) or set MODELYARD_BATCH_INPUT"
        )


def score_one(request: BatchRequest, pair: Pair) -> PairOutcome:
    """Score one pair; published predictions announce ``modelyard://predictions/<family>/<region>``."""
    from modelyard.deploy.batch.model import registry_client
    from modelyard.deploy.batch.scoring import score_pair

    client = registry_client(request.tracking_uri)
    return score_outcome(score_pair(request.config, pair[0], pair[1], request.score, client))


def score_outcome(result: ScoreResult) -> PairOutcome:
    """Scored (with its event), unchanged or no rows (nothing to announce)."""
    common: dict[str, Any] = {"family": result.family, "region": result.region, "status": result.status}
    if result.status != "scored":
        return PairOutcome(**common, detail=result.summary(), link=result.out)
    uri = assets.predictions_uri(result.family, result.region)
    return PairOutcome(
        **common, detail=result.summary(), link=result.out, event_uri=uri, event_extra=result.asset_extra()
    )
