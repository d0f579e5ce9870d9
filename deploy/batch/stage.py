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


def check_input(pairs: list[Pair], source: str) -> None:
    """Refuse a local input that names no file for any selected pair, before any model is loaded.

    Checked on this host's file system only: an object store's input is checked when each pair is
    scored (here it would cost a listing per pair). An input with ``{family}``/``{region}`` that
    has files for some pairs goes on: those pairs are scored, the others fail with their own error.

    Raises:
        MissingInputError: no selected pair has a file.
        BatchInputError: a file is there but is not CSV or Parquet.
    """
    from modelyard.core import storage
    from modelyard.deploy.batch.errors import MissingInputError
    from modelyard.deploy.batch.inputs import input_files
    from modelyard.deploy.batch.scoring import for_pair

    if not pairs or not storage.is_local(source):
        return
    sources = dict.fromkeys(for_pair(source, family, region) for family, region in pairs)
    missing: list[MissingInputError] = []
    for each in sources:
        try:
            input_files(each)  # a file that is there but is not CSV or Parquet is refused now
            return
        except MissingInputError as exc:
            missing.append(exc)
    if len(sources) == 1:
        raise missing[0]
    raise MissingInputError(f"input {source}: no file for any of the {len(pairs)} selected pairs (first: {missing[0]})")


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
