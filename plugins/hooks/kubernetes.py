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

from modelyard.core.errors import ModelyardError
from modelyard.deploy.rollout.kube_api import api_retry

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, Configuration

    from modelyard.deploy.rollout.kube_api import AsyncKubeClient

__all__ = ["KubeSettings", "KubernetesConnectionError", "KubernetesHook", "api_retry", "settings_from_extras"]

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
    """Hand out a kubernetes ``ApiClient`` configured from ``kubernetes_conn_id``.

    The Connection is resolved once and the client cached, like the cncf.kubernetes provider's
    hook; calls through it are retried on transient API errors by ``api_retry`` (tenacity,
    ``Retry-After`` honoured), which ``deploy.rollout.deployment_status`` applies to its reads.
    """

    conn_name_attr = "kubernetes_conn_id"
    default_conn_name = "kubernetes_default"
    conn_type = "kubernetes"
    hook_name = "Kubernetes Cluster Connection"

    def __init__(self, kubernetes_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.kubernetes_conn_id = kubernetes_conn_id
        self._settings: KubeSettings | None = None
        self._inline_file: Path | None = None
        self._configuration: Configuration | None = None
        self._client: ApiClient | None = None

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
        """The kubernetes ``ApiClient`` for the configured cluster and context (built once, then cached)."""
        if self._client is None:
            from kubernetes import client

            self._client = client.ApiClient(self.get_configuration())
        return self._client

    def get_configuration(self) -> Configuration:
        """The client ``Configuration`` (host, credentials, TLS) the Connection resolves to.

        Raises:
            KubernetesConnectionError: the kubeconfig cannot be loaded or names no such context.
        """
        if self._configuration is None:
            self._configuration = configuration_for(self.get_settings())
        return self._configuration

    async def get_async_client(self) -> AsyncKubeClient:
        """An async client (httpx) with the same credentials, for triggers (close it, or ``async with``).

        The Connection is read with ``aget_connection``: a trigger must not block the triggerer's loop.
        """
        from modelyard.deploy.rollout.kube_api import AsyncKubeClient

        if self._settings is None:
            self._settings = settings_from_extras(await self._aextras())
        return AsyncKubeClient(self.get_configuration())

    def close(self) -> None:
        """Close the cached client (its connection pool)."""
        if self._client is not None:
            self._client.close()
            self._client = None

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

    async def _aextras(self) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            connection = await self.aget_connection(self.kubernetes_conn_id)
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


def configuration_for(settings: KubeSettings) -> Configuration:
    """Load the kubeconfig (file or inline) or the in-cluster service account into a ``Configuration``.

    Raises:
        KubernetesConnectionError: the kubeconfig is missing or invalid, or the context is unknown.
    """
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        if settings.in_cluster:
            config.load_incluster_config(client_configuration=configuration)
        elif settings.config_inline is not None:
            config.load_kube_config_from_dict(
                settings.config_inline, context=settings.context, client_configuration=configuration
            )
        else:
            path = settings.config_file or default_kubeconfig()
            config.load_kube_config(config_file=str(path), context=settings.context, client_configuration=configuration)
    except (config.ConfigException, OSError) as exc:
        raise KubernetesConnectionError(
            f"kubernetes connection: cannot load the cluster settings ({exc}); check 'kube_config_path', "
            "'kube_config', 'cluster_context' or 'in_cluster' of the connection"
        ) from exc
    return configuration


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
