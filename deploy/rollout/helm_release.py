"""Helm releases of ``helm/modelyard-serving``, driven by pyhelm3 over the real helm binary.

* ``upgrade``: ``helm upgrade --install --rollback-on-failure --wait --timeout`` (Helm 4),
  skipped when the release already runs the same chart and values: applying the same plan
  twice creates no new revision.
* ``template``, ``lint`` and ``dry_run`` (``helm install --dry-run=client``) need no cluster.
* ``history``, ``last_good_revision`` and ``rollback`` pick and restore the last revision
  that was deployed successfully.

Every revision's description carries the plan digest, so ``helm history`` shows which plan
each revision served.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.core.errors import ModelyardError
from modelyard.deploy.rollout import helmbin

if TYPE_CHECKING:
    import pyhelm3

# The chart ships inside the package (``modelyard/helm`` links the repository's ``helm/``), so
# the same lookup works in a checkout and from site-packages.
PACKAGE_ROOT = Path(str(resources.files("modelyard")))
DEFAULT_CHART = PACKAGE_ROOT / "helm" / "modelyard-serving"
GOOD_STATUSES = ("deployed", "superseded")


class HelmReleaseError(ModelyardError, RuntimeError):
    """A helm command failed; the message names the release and carries helm's own words."""


@dataclass(frozen=True)
class Revision:
    """One entry of ``helm history``."""

    revision: int
    status: str
    description: str
    chart: str = ""
    app_version: str = ""


@dataclass(frozen=True)
class UpgradeResult:
    """What ``upgrade`` did: ``changed`` is False when the release already matched."""

    release: str
    revision: int
    changed: bool
    status: str


@dataclass(frozen=True)
class LintResult:
    """``helm lint`` outcome with its full output."""

    ok: bool
    output: str


def packaged_path(path: str | Path) -> Path:
    """``path`` as given when absolute, else inside the installed package (``helm/modelyard-serving``)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else PACKAGE_ROOT / path


def make_command(
    helm: Path | None = None,
    *,
    kubeconfig: Path | None = None,
    kubecontext: str | None = None,
    timeout_seconds: int = 600,
) -> pyhelm3.Command:
    """A pyhelm3 Command over the helm binary ``deploy.helmbin`` finds (or ``helm``)."""
    import pyhelm3

    return pyhelm3.Command(
        executable=str(helm or helmbin.find_helm()),
        kubeconfig=kubeconfig,
        kubecontext=kubecontext,
        default_timeout=f"{timeout_seconds}s",
    )


class HelmReleases:
    """The releases of one chart in one namespace.

    Args:
        command: The pyhelm3 Command (helm binary, kubeconfig, context).
        namespace: Namespace of the releases.
        chart: Path of the chart directory.
        timeout_seconds: ``--timeout`` of upgrades and rollbacks (covers the model download).
        wait: ``--rollback-on-failure --wait`` on upgrades (helm waits for the pods and undoes a
            failed upgrade itself). False returns as soon as helm has written the objects: the
            deferrable DAG path watches the rollout in a trigger and modelyard rolls back.
    """

    def __init__(
        self,
        command: pyhelm3.Command,
        namespace: str,
        chart: Path = DEFAULT_CHART,
        timeout_seconds: int = 600,
        *,
        wait: bool = True,
    ) -> None:
        import pyhelm3

        self.command = command
        self.client = pyhelm3.Client(command, executable=command._executable)
        self.namespace = namespace
        self.chart_path = Path(chart).resolve()
        self.timeout_seconds = timeout_seconds
        self.timeout = f"{timeout_seconds}s"
        self.wait = wait

    def in_namespace(self, namespace: str) -> HelmReleases:
        """The same helm, cluster and chart, on the releases of ``namespace``."""
        return HelmReleases(self.command, namespace, self.chart_path, self.timeout_seconds, wait=self.wait)

    async def chart(self) -> pyhelm3.Chart:
        """The chart (its metadata read by ``helm show chart``)."""
        return await self.client.get_chart(self.chart_path)

    async def template(self, release: str, values: dict[str, Any]) -> list[dict[str, Any]]:
        """Render the release's objects offline (``helm template``)."""
        import pyhelm3

        try:
            rendered = await self.client.template_resources(
                await self.chart(), release, _plain(values), namespace=self.namespace
            )
        except pyhelm3.errors.Error as exc:
            raise HelmReleaseError(f"release '{release}': helm template failed: {_stderr(exc)}") from exc
        return [obj for obj in rendered if obj]

    async def lint(self, values: dict[str, Any], *, strict: bool = True) -> LintResult:
        """``helm lint`` the chart with ``values`` (values go on stdin, as for every command here).

        Helm 4 lints in a lenient mode where the chart's ``fail`` does not fail: the
        ``validateValues`` rules surface in ``template`` and ``dry_run``, not here.
        """
        import pyhelm3

        command: list[str] = ["lint", str(self.chart_path), "--values", "-"] + (["--strict"] if strict else [])
        try:
            output = await self.command.run(command, json.dumps(_plain(values)).encode())
        except pyhelm3.errors.Error as exc:
            return LintResult(False, exc.stdout.decode() + exc.stderr.decode())
        return LintResult(True, output.decode())

    async def dry_run(self, release: str, values: dict[str, Any]) -> dict[str, Any]:
        """``helm install --dry-run=client``: the release helm would create, without a cluster.

        (``upgrade --install --dry-run=client`` needs the cluster to read the release history.)
        """
        import pyhelm3

        command: list[str] = [
            "install", release, str(self.chart_path), "--dry-run=client", "--namespace", self.namespace,
            "--output", "json", "--values", "-",
        ]  # fmt: skip
        try:
            output = await self.command.run(command, json.dumps(_plain(values)).encode())
        except pyhelm3.errors.Error as exc:
            raise HelmReleaseError(f"release '{release}': helm install --dry-run failed: {_stderr(exc)}") from exc
        result: dict[str, Any] = json.loads(output[output.index(b"{") :])
        return result

    async def upgrade(self, release: str, values: dict[str, Any], *, description: str = "") -> UpgradeResult:
        """Install or upgrade ``release`` unless it already runs this chart with these values.

        Runs ``helm upgrade --install --rollback-on-failure --wait --timeout``: if the pods do
        not become ready in time, helm itself restores the previous revision.

        Raises:
            HelmReleaseError: helm failed (the message carries its stderr).
        """
        import pyhelm3

        plain = _plain(values)
        chart = await self.chart()
        try:
            current = await self.client.get_proceedable_revision(
                release, namespace=self.namespace, timeout=self.timeout
            )
            if current is not None and not await self.client.should_install_or_upgrade_release(current, chart, plain):
                return UpgradeResult(release, current.revision, changed=False, status=current.status.value)
            revision = await self.client.install_or_upgrade_release(
                release, chart, plain,
                rollback_on_failure=self.wait, wait=self.wait, timeout=self.timeout, namespace=self.namespace,
                create_namespace=False, description=description or None,
            )  # fmt: skip
        except pyhelm3.errors.Error as exc:
            raise HelmReleaseError(f"release '{release}': helm upgrade failed: {_stderr(exc)}") from exc
        return UpgradeResult(release, revision.revision, changed=True, status=revision.status.value)

    async def history(self, release: str) -> list[Revision]:
        """Every revision of ``release``, oldest first (empty when it was never installed)."""
        import pyhelm3

        try:
            entries = await self.command.history(release, namespace=self.namespace)
        except pyhelm3.errors.ReleaseNotFoundError:
            return []
        except pyhelm3.errors.Error as exc:
            raise HelmReleaseError(f"release '{release}': helm history failed: {_stderr(exc)}") from exc
        return parse_history(entries)

    async def values(self, release: str, revision: int) -> dict[str, Any]:
        """The values ``release`` was given at ``revision`` (``helm get values --revision``).

        Raises:
            HelmReleaseError: helm failed.
        """
        import pyhelm3

        try:
            return await self.command.get_values(release, namespace=self.namespace, revision=revision)
        except pyhelm3.errors.Error as exc:
            raise HelmReleaseError(
                f"release '{release}': helm get values --revision {revision} failed: {_stderr(exc)}"
            ) from exc

    async def last_good_revision(self, release: str) -> int | None:
        """The newest revision before the current one that was deployed successfully."""
        return last_good_revision(await self.history(release))

    async def rollback(self, release: str, revision: int) -> None:
        """``helm rollback`` to ``revision`` and wait for its pods.

        Raises:
            HelmReleaseError: helm failed.
        """
        import pyhelm3

        try:
            await self.command.rollback(
                release, revision, namespace=self.namespace, timeout=self.timeout, wait=True, cleanup_on_fail=True
            )
        except pyhelm3.errors.Error as exc:
            raise HelmReleaseError(f"release '{release}': helm rollback to {revision} failed: {_stderr(exc)}") from exc


def parse_history(entries: Any) -> list[Revision]:
    """``helm history -o json`` entries as Revisions, oldest first."""
    revisions = [
        Revision(
            revision=int(entry["revision"]),
            status=str(entry.get("status", "")).lower(),
            description=str(entry.get("description", "")),
            chart=str(entry.get("chart", "")),
            app_version=str(entry.get("app_version", "")),
        )
        for entry in entries
    ]
    return sorted(revisions, key=lambda r: r.revision)


def last_good_revision(history: list[Revision]) -> int | None:
    """The newest revision before the latest one whose status shows it was deployed successfully."""
    for revision in reversed(history[:-1]):
        if revision.status in GOOD_STATUSES:
            return revision.revision
    return None


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    # JSON round trip: tuples become lists and keys strings, as in `helm get values -o json`.
    plain: dict[str, Any] = json.loads(json.dumps(values))
    return plain


def _stderr(exc: Exception) -> str:
    stderr = getattr(exc, "stderr", b"")
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else str(stderr)
    return text.strip() or str(exc)
