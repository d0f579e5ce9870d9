"""The prediction log of a plan: where it writes (inside the server's log directory) and its writer.

A plan's ``prediction_log`` section sets the sample rate and rotation and may name a folder
inside the server's prediction-log directory; without the section the server's own
settings apply. A plan never makes the server write outside that directory, and a plan that
keeps the folder and settings keeps the writer (and its open files).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

from modelyard.deploy.serving.plan import Plan, PlanError
from modelyard.deploy.serving.sampling import PredictionLogWriter
from modelyard.deploy.serving.settings import LOG_DIR_ENV, ServeSettings
from modelyard.deploy.serving.swap_outcomes import public_error

log = logging.getLogger("modelyard.serving")

_LOG_PATH_RULE = (
    "prediction_log.path: '{path}' must be a relative folder inside the server's prediction-log "
    f"directory (set by {LOG_DIR_ENV}), e.g. 'canary'"
)


def confined_log_path(log_dir: Path, path: Path) -> Path:
    """Where a plan's ``prediction_log.path`` writes: inside ``log_dir``, never outside.

    The plan is validated to hold a relative path without ``..``; this also refuses a
    symlink inside ``log_dir`` that points out of it. The message names only the plan's
    own path, so a refusal tells nothing about what exists on the server.

    Raises:
        PlanError: the path is absolute or resolves outside ``log_dir``.
    """
    base = log_dir.resolve()
    if path.is_absolute() or ".." in path.parts:
        raise PlanError(_LOG_PATH_RULE.format(path=path))
    resolved = (base / path).resolve()
    if resolved == base or not resolved.is_relative_to(base):
        raise PlanError(_LOG_PATH_RULE.format(path=path))
    return resolved


def check_log_target(log_dir: Path, path: Path) -> None:
    """A PUT plan's log must be a folder the server can write into (checked before any model loads).

    Raises:
        PlanError: the path leaves ``log_dir``, or names a file there.
    """
    resolved = confined_log_path(log_dir, path)
    if resolved.exists() and not resolved.is_dir():  # only ever inside the server's own log directory
        raise PlanError(f"prediction_log.path: '{path}' is a file in the prediction-log directory; name a folder")


def prediction_log_for(
    plan: Plan, settings: ServeSettings, old: PredictionLogWriter | None, on_drop: Callable[[], None]
) -> PredictionLogWriter | None:
    """The writer of ``plan``'s prediction log: ``old`` when nothing changed, None when nothing is sampled.

    A log that cannot be placed is turned off (and logged) rather than failing the swap: the
    models are loaded by then. PUT refuses such a plan up front (422).

    Args:
        plan: the plan becoming active.
        settings: the server's log directory, default sampling and shipper.
        old: the writer of the plan being replaced, if any.
        on_drop: called once per sample dropped by a full queue.
    """
    section = plan.prediction_log
    sampling = settings.sampling
    if section is not None:
        # The plan sets rate and rotation; the caps on a record and the folder stay the operator's.
        rate, mb, seconds = section.sample_rate, section.rotate_mb, section.rotate_seconds
        sampling = dataclasses.replace(sampling, sample_rate=rate, rotate_mb=mb, rotate_seconds=seconds)
    if sampling.sample_rate <= 0:
        return None
    try:
        base = settings.log_dir
        root = confined_log_path(base, section.path) if section and section.path else base.resolve()
        if old is not None and old.root == root and old.settings == sampling:
            return old
        # Ship root's files to the same relative place under the server's log URL (None: keep them here).
        shipper = settings.shipper.for_folder(root) if settings.shipper is not None else None
        return PredictionLogWriter(root, sampling, on_drop=on_drop, shipper=shipper)
    except (PlanError, OSError) as exc:
        log.error("prediction log off", extra={"event": "prediction_log_off", "error": public_error(exc)})
        return None
