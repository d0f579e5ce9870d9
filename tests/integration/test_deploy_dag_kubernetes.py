"""The ``deploy`` DAG with ``target=kubernetes`` under ``airflow dags test``, against the emulated cluster.

Real: Airflow (``dags test`` runs each deferred task's trigger in line, then resumes the
task from the event), the MLflow server and registry, the chart rendered by the real helm,
``KubernetesHook``/``HelmHook`` from the ``kubernetes_default`` Connection, the triggers'
async client over HTTP. Emulated, as in ``test_kubernetes_target.py``: the API server and
the Deployment controller (kmock + ``SimulatedController``, served from this test process),
and Helm's cluster side: the Airflow subprocess runs a ``helm`` (``$MODELYARD_HELM``) that
keeps release records in a JSON file (``FILESTORE_HELM``, records built by the real
``helm install --dry-run=client``) and applies each record's manifest to the emulator through
the kubernetes client — helm itself cannot store releases in kmock (ADR 0003).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube_emulator import NAMESPACE, Cluster, image_tag
from test_deploy_dag import register_champions
from test_kubernetes_helm import FILESTORE_HELM

from modelyard.core.config import Config, load_config
from modelyard.deploy.rollout import helmbin
from modelyard.deploy.rollout.helm_target import deployment_name
from modelyard.deploy.rollout.mlflow_server import MlflowServer
from modelyard.deploy.serving.plan import parse_plan_text

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(900)

# Applies what the file-store helm recorded (upgrade, rollback) to the cluster of --kubeconfig.
CLUSTER_HELM = textwrap.dedent(
    '''
    #!{python}
    """helm: release records from the file-store helm, objects applied to the cluster over HTTP."""
    import json, subprocess, sys
    import yaml
    from kubernetes import client, config

    FILESTORE, STORE = {filestore!r}, {store!r}
    args = sys.argv[1:]
    stdin = sys.stdin.buffer.read() if args and args[0] == "upgrade" else None
    done = subprocess.run([FILESTORE, *args], input=stdin, capture_output=True)
    sys.stdout.buffer.write(done.stdout)
    sys.stderr.buffer.write(done.stderr)
    if done.returncode or args[0] not in ("upgrade", "rollback"):
        sys.exit(done.returncode)

    def flag(name):
        return args[args.index(name) + 1] if name in args else None

    release = json.load(open(STORE))[args[1]][-1]
    api = config.new_client_from_config(config_file=flag("--kubeconfig"), context=flag("--kube-context"))
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    namespace = flag("--namespace")
    suffixes = {{"ConfigMap": (core, "config_map"), "Service": (core, "service"), "Deployment": (apps, "deployment")}}
    objects = [o for o in yaml.safe_load_all(release["manifest"]) if o]
    for kind in ("ConfigMap", "Service", "Deployment"):
        for obj in (o for o in objects if o["kind"] == kind):
            api_of, suffix = suffixes[kind]
            read, create, patch = (getattr(api_of, f"{{v}}_namespaced_{{suffix}}") for v in ("read", "create", "patch"))
            name = obj["metadata"]["name"]
            try:
                read(name, namespace)
            except client.exceptions.ApiException as exc:
                if exc.status != 404:
                    raise
                create(namespace, obj)
            else:
                patch(name, namespace, obj)
    '''
).lstrip()


@dataclasses.dataclass
class KubeDeployEnv:
    airflow: Any
    config: Config
    config_path: Path
    cluster: Cluster
    store: Path

    def retag(self, tag: str, timeout_seconds: int) -> None:
        """Point the next deploys at pods that behave like ``tag`` (see ``SimulatedController``)."""
        raw = yaml.safe_load(self.config_path.read_text())
        raw["deploy"]["kubernetes"]["values"]["image"] = {"tag": tag}
        raw["deploy"]["kubernetes"]["timeout_seconds"] = timeout_seconds
        self.config_path.write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.fixture
def kube_env(
    airflow: Any, mlflow_server: MlflowServer, mlflow_uri: str, cluster: Cluster, tmp_path: Path
) -> KubeDeployEnv:
    raw = yaml.safe_load(airflow.config_path.read_text())
    raw["deploy"]["kubernetes"].update(
        namespace=NAMESPACE,
        timeout_seconds=180,  # a ready rollout finishes in seconds; the margin is for a loaded CI machine
        values={
            "mlflow": {"existingSecret": "modelyard-mlflow"},
            "autoscaling": {"enabled": False},
            "replicaCount": 2,
            "image": {"tag": "good"},
        },
    )
    raw["deploy"]["rollout"].update(analysis_seconds=1, min_requests=5)
    config_path = tmp_path / "modelyard.yaml"
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False))

    store = tmp_path / "releases.json"
    filestore, helm = tmp_path / "filestore-helm", tmp_path / "helm"
    chart = str(REPO / "helm" / "modelyard-serving")
    real = str(helmbin.find_helm())
    filestore.write_text(FILESTORE_HELM.format(python=sys.executable, real=real, store=str(store), chart=chart))
    helm.write_text(CLUSTER_HELM.format(python=sys.executable, filestore=str(filestore), store=str(store)))
    for script in (filestore, helm):
        script.chmod(0o755)

    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": cluster.url}}],
        "users": [{"name": "airflow", "user": {"token": "dag-t0ken"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "airflow"}}],
        "current-context": "emulator",
    }
    connection = {"conn_type": "kubernetes", "extra": {"kube_config": json.dumps(kubeconfig), "namespace": NAMESPACE}}
    overrides = {
        "MODELYARD_CONFIG": str(config_path),
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "MODELYARD_MLFLOW__MODEL_NAME_TEMPLATE": f"k8s{uuid.uuid4().hex[:6]}-{{family}}-{{region}}",
        "MODELYARD_HELM": str(helm),
        "AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps(connection),
    }
    env = dataclasses.replace(airflow, env={**airflow.env, **overrides})
    names = {"MODELYARD_MLFLOW__MODEL_NAME_TEMPLATE": overrides["MODELYARD_MLFLOW__MODEL_NAME_TEMPLATE"]}
    return KubeDeployEnv(env, load_config(config_path, environ=names), config_path, cluster, store)


def served_digest(cluster: Cluster, release: str) -> str:
    configmap = cluster.get("configmaps", f"{deployment_name(release)}-plan")
    return parse_plan_text(configmap["data"]["plan.yaml"]).digest()


def latest_events(env: KubeDeployEnv, before: int) -> dict[str, dict[str, Any]]:
    events = env.airflow.asset_events("modelyard://deployed/", dag_id="deploy")[before:]
    return {event.uri.rsplit("/", 1)[1]: event.extra for event in events}


def test_deploy_dag_defers_the_rollout_and_canary_waits_and_records_each_release(kube_env: KubeDeployEnv) -> None:
    first = register_champions(kube_env.config)
    before = len(
        kube_env.airflow.asset_events("modelyard://deployed/", dag_id="deploy")
    )  # the session's earlier deploys
    run = kube_env.airflow.run_dag_test("deploy", {"target": "kubernetes", "strategy": "rolling"})

    assert run.returncode == 0, run.stdout[-8000:]
    events = latest_events(kube_env, before)
    assert sorted(events) == ["sea-east", "sea-west"]
    for release, extra in events.items():
        assert extra["target"] == "kubernetes"
        assert extra["outcome"] == "deployed"
        assert extra["plan_digest"] == served_digest(kube_env.cluster, release)  # the pods serve what was recorded
    served = {key: value["primary"] for extra in events.values() for key, value in extra["versions"].items()}
    assert served == first
    # Each release deferred once (pods rolling out after helm upgrade) and resumed from the trigger's event.
    assert run.stdout.count("[DAG TEST] running trigger in line") == 2
    watched = [r for r in list(kube_env.cluster.emulator) if "python-httpx" in r.headers.get("User-Agent", "")]
    assert watched, "the rollout must be watched by the trigger's async client"
    assert {r.headers.get("Authorization") for r in watched} == {"Bearer dag-t0ken"}  # kubernetes_default's token
    helm_calls = [json.loads(line) for line in Path(str(kube_env.store) + ".log").read_text().splitlines()]
    upgrades = [call for call in helm_calls if call[0] == "upgrade"]
    assert len(upgrades) == 2
    assert all("--wait" not in call and "--rollback-on-failure" not in call for call in upgrades)

    before = len(kube_env.airflow.asset_events("modelyard://deployed/", dag_id="deploy"))
    second = register_champions(kube_env.config)
    run = kube_env.airflow.run_dag_test(
        "deploy", {"target": "kubernetes", "strategy": "canary", "canary_steps": [50, 100]}
    )

    assert run.returncode == 0, run.stdout[-8000:]
    events = latest_events(kube_env, before)
    assert sorted(events) == ["sea-east", "sea-west"]
    assert {k: v["primary"] for e in events.values() for k, v in e["versions"].items()} == second
    assert all(extra["strategy"] == "canary" and extra["outcome"] == "deployed" for extra in events.values())
    # Per release: canary 50% rolls out (1), its analysis window (2), the promotion rolls out (3).
    assert run.stdout.count("[DAG TEST] running trigger in line") == 6
    assert "canary 50% analysis" in run.stdout


def test_a_rollout_that_never_gets_ready_is_rolled_back_by_the_resumed_task(kube_env: KubeDeployEnv) -> None:
    register_champions(kube_env.config)
    conf = {"target": "kubernetes", "regions": ["jakarta"], "strategy": "rolling"}
    assert kube_env.airflow.run_dag_test("deploy", conf).returncode == 0
    good = served_digest(kube_env.cluster, "sea-west")
    before = len(kube_env.airflow.asset_events("modelyard://deployed/", dag_id="deploy"))

    register_champions(kube_env.config)
    kube_env.retag("never-ready", timeout_seconds=2)
    run = kube_env.airflow.run_dag_test("deploy", conf)

    states = {(task, index): state for task, index, state in kube_env.airflow.task_states("deploy")}
    assert states[("deploy_release", 0)] == "failed", run.stdout[-8000:]
    assert "release sea-west: rolled-back" in run.stdout
    assert "timed out after 2s" in run.stdout
    assert "rolled back to revision 1" in run.stdout
    assert served_digest(kube_env.cluster, "sea-west") == good  # the old plan serves again
    assert image_tag(kube_env.cluster.get("deployments", deployment_name("sea-west"))) == "good"
    assert len(kube_env.airflow.asset_events("modelyard://deployed/", dag_id="deploy")) == before


def test_housekeeping_keeps_each_version_a_release_revision_names_reading_them_through_helmhook(
    kube_env: KubeDeployEnv, tmp_path: Path
) -> None:
    """The deploy form's target is kubernetes while ``deploy.target`` says local: the deploy records its
    releases, and the housekeeping DAG with ``versions: 1`` reads every revision of each through
    ``HelmHook`` on ``kubernetes_default``, keeps the version revision 1 serves though no alias holds
    it any more, and deletes the one nothing names."""
    from mlflow import MlflowClient

    from modelyard.deploy.rollout import release_records
    from modelyard.deploy.rollout.mlflow_server import free_port

    own = {  # this test's storage (the release records, snapshots), local server port and monitoring runs
        "MODELYARD_STORAGE__ROOT": str(tmp_path / "store"),
        "MODELYARD_DEPLOY__LOCAL__PORT": str(free_port()),
        "MODELYARD_PROJECT": f"hk{uuid.uuid4().hex[:6]}",
    }
    airflow = dataclasses.replace(kube_env.airflow, env={**kube_env.airflow.env, **own})
    config, client = kube_env.config, MlflowClient()
    assert config.deploy.target == "local"
    served = register_champions(config)  # v1 of each pair, champion
    deployed = airflow.run_dag_test("deploy", {"target": "kubernetes", "strategy": "rolling"})
    assert deployed.returncode == 0, deployed.stdout[-8000:]
    stored = load_config(kube_env.config_path, environ=own)
    assert release_records.recorded(stored) == {NAMESPACE: ["sea-east", "sea-west"]}
    models = {pair: config.mlflow.model_name(*pair) for pair in config.pairs()}
    for name in models.values():
        for number in (2, 3):
            client.create_model_version(name, source=f"s3://housekeeping/{name}/{number}")
        client.set_registered_model_alias(name, "champion", "3")  # v1 keeps no alias; v2 never had one
    calls_before = len(Path(str(kube_env.store) + ".log").read_text().splitlines())

    run = airflow.run_dag_test("housekeeping", {"versions": 1})

    assert run.returncode == 0, run.stdout[-8000:]
    assert set(served.values()) == {"1"}
    for (family, region), name in models.items():
        assert f"removing model version {name} v2 ({family}/{region})" in run.stdout, run.stdout[-8000:]
        assert sorted(v.version for v in client.search_model_versions(f"name = '{name}'")) == ["1", "3"]
    log = Path(str(kube_env.store) + ".log").read_text().splitlines()
    calls = [json.loads(line) for line in log[calls_before:]]  # the prune's, through the cluster's helm
    histories = [call for call in calls if call[0] == "history"]
    assert sorted(call[1] for call in histories) == ["sea-east", "sea-west"]
    assert all("--kubeconfig" in call for call in histories)  # kubernetes_default's cluster
    assert any(call[:2] == ["get", "values"] and "--revision" in call for call in calls)
