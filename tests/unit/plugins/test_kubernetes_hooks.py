"""KubernetesHook and HelmHook read the cluster from the ``kubernetes_default`` Connection."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.plugins.hooks.helm import HelmHook
from modelyard.plugins.hooks.kubernetes import (
    KubernetesConnectionError,
    KubernetesHook,
    KubeSettings,
    default_kubeconfig,
    settings_from_extras,
)
from tests.stand_in import Handler, stand_in


def kubeconfig(server: str = "https://10.0.0.1:6443", context: str = "prod") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": server}},
            {"name": "d", "cluster": {"server": "https://dev:6443"}},
        ],
        "users": [{"name": "u", "user": {"token": "t0ken"}}],
        "contexts": [
            {"name": context, "context": {"cluster": "c", "user": "u"}},
            {"name": "dev", "context": {"cluster": "d", "user": "u"}},
        ],
        "current-context": "dev",
    }


def connection(monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any], conn_id: str = "kubernetes_default") -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "kubernetes", "extra": extra}))


@pytest.fixture(autouse=True)
def _no_ambient_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AIRFLOW_CONN_KUBERNETES_DEFAULT", "AIRFLOW_CONN_KUBERNETES_OTHER", "KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)


def test_extras_select_kubeconfig_context_and_namespace(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig()))
    connection(monkeypatch, {"kube_config_path": str(path), "cluster_context": "prod", "namespace": "serving"})
    hook = KubernetesHook()
    assert hook.get_settings() == KubeSettings(config_file=path, context="prod", namespace="serving")
    api = hook.get_conn()
    assert api.configuration.host == "https://10.0.0.1:6443"  # the context asked for, not current-context
    assert hook.kubeconfig_path() == path


def test_inline_kubeconfig_is_written_privately_for_helm(monkeypatch: pytest.MonkeyPatch) -> None:
    connection(monkeypatch, {"kube_config": json.dumps(kubeconfig()), "cluster_context": "prod"}, "kubernetes_other")
    hook = KubernetesHook("kubernetes_other")
    assert hook.get_conn().configuration.host == "https://10.0.0.1:6443"
    written = hook.kubeconfig_path()
    assert written is not None
    try:
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
        assert yaml.safe_load(written.read_text()) == kubeconfig()
        assert hook.kubeconfig_path() == written  # written once
    finally:
        written.unlink()


def test_without_a_connection_kubeconfig_env_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(kubeconfig(server="https://from-env:6443")))
    monkeypatch.setenv("KUBECONFIG", str(path))
    hook = KubernetesHook()
    assert hook.get_settings() == KubeSettings()
    assert default_kubeconfig() == path
    assert hook.get_conn().configuration.host == "https://dev:6443"  # current-context of the file


def test_in_cluster_needs_no_kubeconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    connection(monkeypatch, {"in_cluster": "true"})
    hook = KubernetesHook()
    assert hook.get_settings().in_cluster is True
    assert hook.kubeconfig_path() is None


@pytest.mark.parametrize(
    ("extras", "message"),
    [
        ({"in_cluster": True, "kube_config_path": "/x"}, "'in_cluster' cannot be combined"),
        ({"kube_config_path": "/x", "kube_config": "{}"}, "not both"),
        ({"kube_config": "[1, 2"}, "'kube_config' is not YAML/JSON"),
        ({"kube_config": "- a list"}, "must be a kubeconfig mapping"),
    ],
)
def test_contradictory_extras_are_refused(extras: dict[str, Any], message: str) -> None:
    with pytest.raises(KubernetesConnectionError, match=message):
        settings_from_extras(extras)


def test_prefixed_extras_of_older_connections() -> None:
    settings = settings_from_extras({"extra__kubernetes__in_cluster": "1", "extra__kubernetes__namespace": "ns"})
    assert settings == KubeSettings(in_cluster=True, namespace="ns")


def test_helm_hook_points_the_real_helm_at_the_connection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig()))
    connection(monkeypatch, {"kube_config_path": str(path), "cluster_context": "prod", "namespace": "serving"})
    hook = HelmHook(timeout_seconds=900)
    client = hook.get_conn()
    assert client.version.major == 4
    # `helm env` prints what helm itself resolved from the flags pyhelm3 passes.
    env = asyncio.run(hook.get_command().run(["env"])).decode()
    assert f'KUBECONFIG="{path}"' in env
    assert 'HELM_KUBECONTEXT="prod"' in env
    releases = hook.get_releases()
    assert releases.namespace == "serving"
    assert releases.timeout == "900s"
    assert releases.wait is True
    assert hook.get_releases(wait=False).wait is False  # the deferrable DAG path: no helm --wait


def test_the_connection_is_resolved_once_and_the_client_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    connection(monkeypatch, {"kube_config": json.dumps(kubeconfig()), "cluster_context": "prod"})
    hook = KubernetesHook()
    first = hook.get_conn()
    connection(monkeypatch, {"kube_config": json.dumps(kubeconfig(server="https://moved:6443"))})
    try:
        assert hook.get_conn() is first  # no second look at the Connection, no second pool
        assert hook.get_configuration().host == "https://10.0.0.1:6443"
    finally:
        hook.close()
    assert KubernetesHook().get_conn().configuration.host == "https://dev:6443"  # a new hook reads it again


def test_the_async_client_carries_the_connections_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    connection(monkeypatch, {"kube_config": json.dumps(kubeconfig()), "cluster_context": "prod"})

    async def client_settings() -> tuple[str, str | None]:
        async with await KubernetesHook().get_async_client() as kube:
            return str(kube._client.base_url), kube._client.headers.get("Authorization")

    base_url, authorization = asyncio.run(client_settings())
    assert base_url == "https://10.0.0.1:6443"
    assert authorization == "Bearer t0ken"


def test_an_unloadable_kubeconfig_says_which_extras_to_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig()))
    connection(monkeypatch, {"kube_config_path": str(path), "cluster_context": "staging"})
    with pytest.raises(KubernetesConnectionError, match=r"cannot load the cluster settings.*'cluster_context'"):
        KubernetesHook().get_conn()


def test_the_async_client_renews_an_expired_exec_plugin_token_during_a_wait(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An exec plugin (as EKS, GKE and AKS kubeconfigs use) whose tokens expire at once: every request of a
    long trigger wait must carry a freshly issued token, not the one read when the client was made."""
    import sys

    counter = tmp_path / "issued"
    plugin = tmp_path / "token-plugin.py"
    plugin.write_text(
        "import datetime, json, pathlib, sys\n"
        f"path = pathlib.Path({str(counter)!r})\n"
        "n = int(path.read_text()) + 1 if path.exists() else 1\n"
        "path.write_text(str(n))\n"
        "expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=1)\n"
        "json.dump({'apiVersion': 'client.authentication.k8s.io/v1', 'kind': 'ExecCredential',\n"
        "           'status': {'token': f'tok-{n}', 'expirationTimestamp': expiry.strftime('%Y-%m-%dT%H:%M:%SZ')}},\n"
        "          sys.stdout)\n"
    )
    seen: list[str] = []

    class Recorder(Handler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            self.answer(200, b'{"kind": "Deployment"}')

    async def three_polls() -> None:
        async with await KubernetesHook().get_async_client() as kube:
            for _ in range(3):
                assert await kube.deployment("serving", "eta") == {"kind": "Deployment"}

    with stand_in(Recorder) as url:
        config = kubeconfig(server=url)
        exec_user = {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable, "args": [str(plugin)]}
        config["users"] = [{"name": "u", "user": {"exec": exec_user}}]
        connection(monkeypatch, {"kube_config": json.dumps(config), "cluster_context": "prod"})
        asyncio.run(three_polls())
    assert len(seen) == 3
    assert all(header.startswith("Bearer tok-") for header in seen)
    assert len(set(seen)) == 3  # a new token for every request, since each one had expired
