"""``KubernetesHook``: a configured kubernetes ``ApiClient`` from an Airflow Connection.

Like the cncf.kubernetes provider's hook, the Connection ``kubernetes_default`` (conn type
``kubernetes``) carries everything in its extras:

* ``in_cluster`` (bool): use the pod's service account (Airflow runs in the cluster);
* ``kube_config_path``: a kubeconfig file on the worker;
* ``kube_config``: the kubeconfig itself (YAML or JSON text, or a mapping);
* ``cluster_context``: the kubeconfig context to use;
* ``namespace``: the default namespace of the releases.

Without the Connection (the embedded demo, a laptop) the hook uses ``$KUBECONFIG`` or
``~/.kube/config``, like kubectl. Example::

    AIRFLOW_CONN_KUBERNETES_DEFAULT='{"conn_type": "kubernetes",
        "extra": {"kube_config_path": "/opt/airflow/kubeconfig", "cluster_context": "prod"}}'
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from airflow.sdk import BaseHook

from modelyard.pipeline.errors import ModelyardError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

TRUE_STRINGS = ("true", "1", "yes", "on")


class KubernetesConnectionError(ModelyardError, ValueError):
    """The Connection's extras are contradictory or unreadable; the message names the extra."""


@dataclass(frozen=True)
class KubeSettings:
    """Where the cluster is, as the Connection (or the environment) says."""

    in_cluster: bool = False
    config_file: Path | None = None
    config_inline: dict[str, Any] | None = None
    context: str | None = None
    namespace: str | None = None


class KubernetesHook(BaseHook):
    """Hand out a kubernetes ``ApiClient`` configured from ``kubernetes_conn_id``."""

    conn_name_attr = "kubernetes_conn_id"
    default_conn_name = "kubernetes_default"
    conn_type = "kubernetes"
    hook_name = "Kubernetes Cluster Connection"

    def __init__(self, kubernetes_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.kubernetes_conn_id = kubernetes_conn_id
        self._settings: KubeSettings | None = None
        self._inline_file: Path | None = None

    def get_settings(self) -> KubeSettings:
        """The cluster settings from the Connection's extras (or defaults without one).

        Raises:
            KubernetesConnectionError: ``in_cluster`` is combined with a kubeconfig, or
                ``kube_config`` is not YAML/JSON.
        """
        if self._settings is None:
            self._settings = settings_from_extras(self._extras())
        return self._settings

    def get_conn(self) -> ApiClient:
        """A kubernetes ``ApiClient`` for the configured cluster and context."""
        from kubernetes import client, config

        settings = self.get_settings()
        if settings.in_cluster:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            return client.ApiClient(configuration)
        if settings.config_inline is not None:
            return config.new_client_from_config_dict(settings.config_inline, context=settings.context)
        path = settings.config_file or default_kubeconfig()
        return config.new_client_from_config(config_file=str(path), context=settings.context)

    def kubeconfig_path(self) -> Path | None:
        """The kubeconfig file for tools that need a path (helm); None in-cluster.

        An inline ``kube_config`` is written once to a private (0600) temporary file.
        """
        settings = self.get_settings()
        if settings.in_cluster:
            return None
        if settings.config_inline is None:
            return settings.config_file or default_kubeconfig()
        if self._inline_file is None:
            handle, name = tempfile.mkstemp(prefix="modelyard-kubeconfig-", suffix=".yaml")
            with os.fdopen(handle, "w") as file:
                yaml.safe_dump(settings.config_inline, file)
            self._inline_file = Path(name)
        return self._inline_file

    def _extras(self) -> dict[str, Any]:
        from airflow.exceptions import AirflowNotFoundException  # 3.1 raises it; 3.3 aliases the sdk one

        try:
            connection = self.get_connection(self.kubernetes_conn_id)
        except AirflowNotFoundException:
            self.log.info("no Airflow connection '%s'; using $KUBECONFIG or ~/.kube/config", self.kubernetes_conn_id)
            return {}
        return dict(connection.extra_dejson or {})

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """How the connection form looks in the Airflow UI."""
        return {
            "hidden_fields": ["host", "schema", "login", "password", "port"],
            "placeholders": {
                "extra": '{"kube_config_path": "/opt/airflow/kubeconfig", "cluster_context": "prod", '
                '"namespace": "modelyard"}  or  {"in_cluster": true}'
            },
        }


def settings_from_extras(extras: dict[str, Any]) -> KubeSettings:
    """Parse the Connection's extras (keys may carry the ``extra__kubernetes__`` prefix).

    Raises:
        KubernetesConnectionError: contradictory or unreadable extras.
    """
    values = {key.removeprefix("extra__kubernetes__"): value for key, value in extras.items()}
    in_cluster = _as_bool(values.get("in_cluster"))
    path = values.get("kube_config_path") or None
    inline = _inline_config(values.get("kube_config"))
    if in_cluster and (path or inline is not None):
        raise KubernetesConnectionError(
            "kubernetes connection: 'in_cluster' cannot be combined with 'kube_config_path' or 'kube_config'; keep one"
        )
    if path and inline is not None:
        raise KubernetesConnectionError("kubernetes connection: set 'kube_config_path' or 'kube_config', not both")
    return KubeSettings(
        in_cluster=in_cluster,
        config_file=Path(path).expanduser() if path else None,
        config_inline=inline,
        context=values.get("cluster_context") or None,
        namespace=values.get("namespace") or None,
    )


def default_kubeconfig() -> Path:
    """``$KUBECONFIG`` (its first entry) or ``~/.kube/config``, like kubectl."""
    env = os.environ.get("KUBECONFIG")
    if env:
        return Path(env.split(os.pathsep)[0]).expanduser()
    return Path("~/.kube/config").expanduser()


def _inline_config(value: Any) -> dict[str, Any] | None:
    if value in (None, ""):
        return None
    if isinstance(value, dict):
        return value
    try:
        parsed = yaml.safe_load(str(value))
    except yaml.YAMLError as exc:
        raise KubernetesConnectionError(f"kubernetes connection: 'kube_config' is not YAML/JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise KubernetesConnectionError("kubernetes connection: 'kube_config' must be a kubeconfig mapping")
    return parsed


def _as_bool(value: Any) -> bool:
    return value is True or str(value).strip().lower() in TRUE_STRINGS
