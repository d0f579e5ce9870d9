"""A chunk's worker processes log at the real level: nothing third-party reaches the task's stderr.

Airflow marks every stderr line of a task as ERROR. These tests run a chunk through the real
worker pool (forkserver processes, as in a task) with work that does what MLflow does during
training: a UserWarning, an INFO record on the ``mlflow`` logger (which MLflow itself wires to
stderr), and the artifact download progress bar switch.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings

import pytest

from modelyard.core.chunks import PairOutcome, run_pairs
from modelyard.core.config import load_config
from modelyard.plugins import stage_pairs

PAIRS = [("pickup_eta", "jakarta"), ("pickup_eta", "manila")]


def noisy(pair: tuple[str, str]) -> PairOutcome:
    """What a training pair does to the logs, in a worker process."""
    import mlflow  # noqa: F401  (importing it wires its logger to stderr unless told not to)

    warnings.warn(f"{pair[1]}: hyperparameter 'x' is deprecated", UserWarning, stacklevel=1)
    logging.getLogger("mlflow.tracking._model_registry").info("Successfully registered model 'm-%s'.", pair[1])
    bar = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true")
    return PairOutcome(family=pair[0], region=pair[1], status="ok", detail=f"progress bar {bar}")


@pytest.mark.parametrize("workers", [1, 2], ids=["inline", "pool"])
def test_worker_logs_keep_their_level_and_stay_off_stderr(
    workers: int, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    config = load_config("modelyard.yaml", environ={})
    caplog.set_level(logging.INFO)
    with stage_pairs.worker_logs() as logs:
        outcomes = run_pairs(
            PAIRS, functools.partial(noisy), workers=workers, initializer=stage_pairs.start_worker,
            initargs=(config, logs),
        )  # fmt: skip
    assert [o.status for o in outcomes] == ["ok", "ok"], [o.detail for o in outcomes]
    assert {o.detail for o in outcomes} == {"progress bar false"}
    err = capfd.readouterr().err
    assert "deprecated" not in err, err
    assert "Successfully registered" not in err, err
    levels = {(r.levelname, r.getMessage()) for r in caplog.records}
    assert ("INFO", "Successfully registered model 'm-jakarta'.") in levels
    if workers > 1:  # inline, pytest's own warning capture takes the warning before logging can
        assert any(level == "WARNING" and "jakarta: hyperparameter" in message for level, message in levels), levels


def test_great_expectations_per_expectation_chatter_stays_out_of_the_task_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    stage_pairs.quiet_third_party()
    gx = logging.getLogger(stage_pairs.GX_EXPECTATION_LOGGER)
    gx.info('_get_default_value called with key "row_condition", but it is not a known field')
    gx.warning("an expectation could not be built")
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.name == gx.name] == [
        ("WARNING", "an expectation could not be built")
    ]
