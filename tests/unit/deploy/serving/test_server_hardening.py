"""The server's pure guards: admin token, log-path confinement, limits before work, bounded state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelyard.deploy.serving.plan import PlanError, normalize_model_uri, parse_plan
from modelyard.deploy.serving.runtime import ModelLoadFailed
from modelyard.deploy.serving.server import (
    MAX_BODY_BYTES,
    FailedModels,
    RequestError,
    _check_declared_length,
    check_admin_token,
    confined_log_path,
    mlflow_records,
    one_line,
    public_error,
)

# ---------------------------------------------------------------------------- admin token


def test_admin_is_off_without_a_configured_token():
    for header in (None, "Bearer ", "Bearer anything"):
        with pytest.raises(RequestError) as caught:
            check_admin_token(None, header)
        assert caught.value.status == 403
        assert "MODELYARD_SERVE_ADMIN_TOKEN" in caught.value.message


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Bearer s3cret-x", "Bearer s3cre", "Basic s3cret", "s3cret", "Bearer S3CRET"],
)
def test_admin_needs_exactly_the_bearer_token(header):
    with pytest.raises(RequestError) as caught:
        check_admin_token("s3cret", header)
    assert caught.value.status == 401
    assert "Authorization: Bearer" in caught.value.message


def test_the_right_token_is_admitted_whatever_the_scheme_case():
    check_admin_token("s3cret", "Bearer s3cret")
    check_admin_token("s3cret", "bearer s3cret")


# ---------------------------------------------------------------------------- prediction-log confinement


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


@pytest.mark.parametrize("path", ["/tmp/x.jsonl", "../x.jsonl", "logs/../../x"])
def test_the_plan_refuses_absolute_and_parent_log_paths(path):
    plan = {
        "services": [
            {"family": "f", "region": "r", "variants": [{"name": "a", "model_uri": "models:/m/1", "weight": 100}]}
        ],
        "prediction_log": {"path": path},
    }
    with pytest.raises(PlanError, match=r"prediction_log\.path: .* must be a relative folder"):
        parse_plan(plan)


# ---------------------------------------------------------------------------- limits before work


def test_dataframe_split_rows_are_counted_before_any_row_is_checked():
    # Rows that are not even lists: a 413 (not a 400 about row 0) shows nothing was built first.
    with pytest.raises(RequestError) as caught:
        mlflow_records({"dataframe_split": {"columns": ["a"], "data": [None] * 11}}, 10)
    assert (caught.value.status, caught.value.field) == (413, "dataframe_split.data")


@pytest.mark.parametrize("bad", [["a", "b"], {"a": 1}, 3, None])
def test_dataframe_split_column_names_must_be_strings(bad):
    with pytest.raises(RequestError) as caught:
        mlflow_records({"dataframe_split": {"columns": ["ok", bad], "data": [[1, 2]]}}, 10)
    assert (caught.value.status, caught.value.field) == (400, "dataframe_split.columns[1]")
    assert "column names must be strings" in caught.value.message


def test_columnar_inputs_are_counted_before_rows_are_built():
    with pytest.raises(RequestError) as caught:
        mlflow_records({"inputs": {"a": list(range(11)), "b": list(range(11))}}, 10)
    assert (caught.value.status, caught.value.field) == (413, "inputs")
    assert "11 records, at most 10" in caught.value.message


def test_a_declared_body_over_the_limit_is_refused_before_reading():
    _check_declared_length(str(MAX_BODY_BYTES))
    _check_declared_length(None)
    with pytest.raises(RequestError) as caught:
        _check_declared_length(str(MAX_BODY_BYTES + 1))
    assert caught.value.status == 413


# ---------------------------------------------------------------------------- errors and bounded state


def test_public_errors_are_one_line_without_a_traceback():
    native = 'Traceback (most recent call last):\n  File "x.py", line 1\nOSError: libfoo.so: cannot open'
    assert one_line(native) == 'File "x.py", line 1'
    assert public_error(ModelLoadFailed("load failed: boom\n  at frame 1\n  at frame 2")) == "load failed: boom"
    assert len(one_line("x" * 5000)) == 300
    assert "\n" not in public_error(RuntimeError("a\nb"))


def test_failed_models_keep_the_latest_and_report_evictions():
    evicted: list[str] = []
    failures = FailedModels(3, evicted.append)
    for i in range(5):
        failures[f"models:/m/{i}"] = {"i": i}
    failures["models:/m/2"] = {"i": 2}  # a repeat refreshes, it does not grow
    assert list(failures) == ["models:/m/3", "models:/m/4", "models:/m/2"]
    assert evicted == ["models:/m/0", "models:/m/1"]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/bench/01", "models:/bench/1"),
        ("models:/bench/0001", "models:/bench/1"),
        ("models:/bench/10", "models:/bench/10"),
        ("models:/bench@champion", "models:/bench@champion"),
        ("models:/bench-007@v007", "models:/bench-007@v007"),
    ],
)
def test_one_version_has_one_uri(uri, expected):
    assert normalize_model_uri(uri) == expected


def test_plans_naming_one_version_three_ways_load_it_once():
    variants = [
        {"name": n, "model_uri": u, "weight": w}
        for n, u, w in (("a", "models:/bench/01", 50), ("b", "models:/bench/001", 50))
    ]
    plan = parse_plan({"services": [{"family": "f", "region": "r", "variants": variants}]})
    assert plan.model_uris() == ["models:/bench/1"]


def test_checking_a_log_path_creates_no_folder(tmp_path):
    # A rejected plan must not leave folders behind: the check only resolves.
    confined_log_path(tmp_path / "not-yet", Path("x.jsonl"))
    assert not os.path.exists(tmp_path / "not-yet")
