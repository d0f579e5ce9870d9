"""Swap outcomes as /readyz shows them: one-line errors, a bounded list of failed models."""

from __future__ import annotations

from modelyard.deploy.serving.errors import ModelLoadFailed
from modelyard.deploy.serving.swap_outcomes import FailedModels, one_line, public_error


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
