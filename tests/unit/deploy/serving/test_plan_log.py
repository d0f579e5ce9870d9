"""Where a plan's prediction log writes: inside the server's log directory, never outside."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelyard.deploy.serving.plan import PlanError
from modelyard.deploy.serving.plan_log import confined_log_path


def test_a_relative_log_path_stays_inside_the_log_dir(tmp_path):
    assert confined_log_path(tmp_path, Path("a/b.jsonl")) == (tmp_path / "a" / "b.jsonl").resolve()


@pytest.mark.parametrize("path", ["/etc/passwd", "/nonexistent/dir/x.jsonl", "../x.jsonl", "a/../../x.jsonl", "."])
def test_paths_escaping_the_log_dir_are_refused_with_one_message(tmp_path, path):
    with pytest.raises(PlanError) as caught:
        confined_log_path(tmp_path, Path(path))
    # The same sentence whether the target exists or not: nothing about the server's files leaks.
    assert str(caught.value) == (
        f"prediction_log.path: '{Path(path)}' must be a relative folder inside the server's prediction-log "
        "directory (set by MODELYARD_SERVE_LOG_DIR), e.g. 'canary'"
    )
    assert str(tmp_path) not in str(caught.value)


def test_a_symlink_out_of_the_log_dir_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "escape").symlink_to(outside)
    with pytest.raises(PlanError, match="inside the server's prediction-log directory"):
        confined_log_path(logs, Path("escape/x.jsonl"))


def test_checking_a_log_path_creates_no_folder(tmp_path):
    # A rejected plan must not leave folders behind: the check only resolves.
    confined_log_path(tmp_path / "not-yet", Path("x.jsonl"))
    assert not os.path.exists(tmp_path / "not-yet")
