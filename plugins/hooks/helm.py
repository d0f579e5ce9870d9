"""``HelmHook``: a pyhelm3 client over the real helm binary, pointed at the cluster of a
Kubernetes Connection.

The cluster comes from ``kubernetes_conn_id`` (see ``KubernetesHook``: kubeconfig path,
inline kubeconfig, context, or in-cluster); the helm binary from ``deploy.helmbin``
(``$MODELYARD_HELM``, ``helm`` on PATH, or ``.tools/bin/helm``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from airflow.sdk import BaseHook

from modelyard.plugins.hooks.kubernetes import KubernetesHook

if TYPE_CHECKING:
    import pyhelm3

    from modelyard.deploy.rollout.helm_release import HelmReleases


class HelmHook(BaseHook):
    """Hand out a pyhelm3 ``Client`` (and modelyard's ``HelmReleases``) for one cluster."""

    conn_name_attr = "kubernetes_conn_id"
    default_conn_name = "kubernetes_default"
    conn_type = "kubernetes"
    hook_name = "Helm (over a Kubernetes connection)"

    def __init__(
        self, kubernetes_conn_id: str = default_conn_name, helm_binary: Path | None = None, timeout_seconds: int = 600
    ) -> None:
        super().__init__()
        self.kubernetes_conn_id = kubernetes_conn_id
        self.helm_binary = helm_binary
        self.timeout_seconds = timeout_seconds
        self.kubernetes = KubernetesHook(kubernetes_conn_id)

    def get_command(self) -> pyhelm3.Command:
        """The pyhelm3 Command: helm binary, kubeconfig and context of the Connection."""
        from modelyard.deploy.rollout.helm_release import make_command

        settings = self.kubernetes.get_settings()
        return make_command(
            self.helm_binary,
            kubeconfig=self.kubernetes.kubeconfig_path(),
            kubecontext=settings.context,
            timeout_seconds=self.timeout_seconds,
        )

    def get_conn(self) -> pyhelm3.Client:
        """A pyhelm3 ``Client`` running the helm binary against the Connection's cluster."""
        import pyhelm3

        command = self.get_command()
        return pyhelm3.Client(command, executable=command._executable)

    def get_releases(
        self, namespace: str | None = None, chart: Path | None = None, *, wait: bool = True
    ) -> HelmReleases:
        """The modelyard-serving releases of ``namespace`` (default: the Connection's, else ``modelyard``).

        ``wait=False``: upgrades return once helm wrote the objects (no ``--wait``, no
        ``--rollback-on-failure``); the caller watches the rollout (the deferrable DAG path).
        """
        from modelyard.deploy.rollout.helm_release import DEFAULT_CHART, HelmReleases

        namespace = namespace or self.kubernetes.get_settings().namespace or "modelyard"
        return HelmReleases(self.get_command(), namespace, chart or DEFAULT_CHART, self.timeout_seconds, wait=wait)
