"""pyhelm3 driving the real helm binary, as far as helm runs without a cluster.

* ``template``, ``lint`` and ``install --dry-run=client`` run the real helm v4 offline.
* ``upgrade``/``history``/``rollback`` need a cluster to store release records, and helm
  cannot store them in the Kubernetes emulator (client-go sends the release Secret as
  protobuf). For those, the tests put a small ``helm`` in front of the real one that keeps
  release records in a JSON file and builds each record with the real
  ``helm install --dry-run=client`` (so chart, values and manifest are helm's own). What
  is tested is modelyard's use of it: idempotency (same values, no new revision), the flags
  of the upgrade, picking the last good revision and rolling back to it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.core.config import load_config
from modelyard.deploy.rollout import helmbin
from modelyard.deploy.rollout.helm_release import HelmReleaseError, HelmReleases, make_command
from modelyard.deploy.rollout.helm_target import deployment_name
from modelyard.deploy.rollout.releases import release_groups, release_values, split_plan
from modelyard.deploy.serving.plan import parse_plan

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "modelyard"
BASE: dict[str, Any] = {"mlflow": {"existingSecret": "modelyard-mlflow"}}

FILESTORE_HELM = textwrap.dedent(
    '''
    #!{python}
    """helm with its release storage in a JSON file; rendering is the real helm's."""
    import datetime, json, os, subprocess, sys
    REAL, STORE = {real!r}, {store!r}
    args = sys.argv[1:]
    with open(STORE + ".log", "a") as log:
        log.write(json.dumps(args) + "\\n")

    def flag(name, default=None):
        return args[args.index(name) + 1] if name in args else default

    def load():
        return json.load(open(STORE)) if os.path.exists(STORE) else {{}}

    def save(store):
        json.dump(store, open(STORE, "w"))

    def fail(message):
        sys.stderr.write("Error: " + message + "\\n")
        sys.exit(1)

    def revisions(name):
        found = load().get(name)
        if not found:
            fail("release: not found")
        return found

    def pick(name):
        records = revisions(name)
        wanted = flag("--revision")
        return next(r for r in records if str(r["version"]) == wanted) if wanted else records[-1]

    def record(name, chart, values, description):
        command = [REAL, "install", name, chart, "--dry-run=client", "--namespace", flag("--namespace", "default"),
                   "--output", "json", "--values", "-"]
        rendered = subprocess.run(command, input=values, capture_output=True)
        if rendered.returncode:
            sys.stderr.write(rendered.stderr.decode())
            sys.exit(rendered.returncode)
        release = json.loads(rendered.stdout[rendered.stdout.index(b"{{"):])
        store = load()
        history = store.setdefault(name, [])
        for old in history:
            old["info"]["status"] = "superseded" if old["info"]["status"] == "deployed" else old["info"]["status"]
        now = datetime.datetime.now(datetime.timezone.utc).isoformat()
        release["version"] = len(history) + 1
        release["info"].update(status="deployed", last_deployed=now, description=description)
        history.append(release)
        save(store)
        return release

    command = args[0]
    if command in ("version", "show", "template", "lint", "env", "install"):
        os.execv(REAL, [REAL] + args)
    if command == "status":
        print(json.dumps(pick(args[1])))
    elif command == "get" and args[1] == "values":
        print(json.dumps(pick(args[2])["config"]))
    elif command == "get" and args[1] == "all":
        metadata = pick(args[2])["chart"]["metadata"]
        print(json.dumps({{k: metadata[k] for k in ("apiVersion", "name", "version") }}))
    elif command == "history":
        print(json.dumps([{{"revision": r["version"], "status": r["info"]["status"],
                            "chart": r["chart"]["metadata"]["name"],
                            "app_version": r["chart"]["metadata"].get("appVersion", ""),
                            "description": r["info"]["description"]}} for r in revisions(args[1])]))
    elif command == "upgrade":
        values = sys.stdin.buffer.read()
        if b"fail-the-upgrade" in values:
            fail("UPGRADE FAILED: context deadline exceeded (release rolled back: --rollback-on-failure)")
        print(json.dumps(record(args[1], args[2], values, flag("--description", "Upgrade complete"))))
    elif command == "rollback":
        target = next(r for r in revisions(args[1]) if r["version"] == int(args[2]))
        record(args[1], {chart!r}, json.dumps(target["config"]).encode(), "Rollback to " + args[2])
    else:
        fail("unsupported in the file-store helm: " + " ".join(args))
    '''
).lstrip()


@pytest.fixture(scope="module")
def real_helm() -> Path:
    try:
        return helmbin.find_helm()
    except helmbin.HelmNotFoundError:
        return helmbin.install(helmbin.DEFAULT_DEST)


@pytest.fixture
def offline(real_helm: Path) -> HelmReleases:
    return HelmReleases(make_command(real_helm), NAMESPACE)


@pytest.fixture
def filestore(tmp_path: Path, real_helm: Path) -> tuple[HelmReleases, Path]:
    script = tmp_path / "helm"
    store = tmp_path / "releases.json"
    chart = str(REPO / "helm" / "modelyard-serving")
    script.write_text(FILESTORE_HELM.format(python=sys.executable, real=str(real_helm), store=str(store), chart=chart))
    script.chmod(0o755)
    return HelmReleases(make_command(script), NAMESPACE, timeout_seconds=420), Path(str(store) + ".log")


def shards(version: int) -> list[Any]:
    config = load_config(REPO / "modelyard.yaml")
    plan = parse_plan(
        {
            "version": 1,
            "services": [
                {
                    "family": family,
                    "region": region,
                    "timezone": config.region(region).timezone,
                    "variants": [
                        {"name": "champion", "model_uri": f"models:/{family}-{region}/{version}", "weight": 100}
                    ],
                }
                for family, region in config.pairs()
            ],
        }
    )
    return split_plan(plan, release_groups(config))


def test_every_release_of_the_demo_config_renders_its_own_plan(offline: HelmReleases) -> None:
    async def render_all() -> dict[str, list[dict[str, Any]]]:
        return {s.release: await offline.template(s.release, release_values(s, BASE)) for s in shards(1)}

    rendered = asyncio.run(render_all())
    assert sorted(rendered) == ["sea-east", "sea-west"]
    for release, objects in rendered.items():
        kinds = {o["kind"] for o in objects}
        assert {"Deployment", "ConfigMap", "Service", "HorizontalPodAutoscaler"} <= kinds
        configmap = next(o for o in objects if o["kind"] == "ConfigMap")
        plan = parse_plan(yaml.safe_load(configmap["data"]["plan.yaml"]))
        regions = {s.region for s in plan.services}
        assert regions == set(load_config(REPO / "modelyard.yaml").deploy.kubernetes.releases[release])
        deployment = next(o for o in objects if o["kind"] == "Deployment")
        assert deployment["metadata"]["annotations"]["modelyard.io/plan-digest"] == plan.digest()
        assert deployment["metadata"]["labels"]["modelyard.io/shard"] == release


@pytest.mark.parametrize("release", ["sea-west", "modelyard-serving-canary", "r" * 53])
def test_watched_deployment_name_is_the_rendered_one(offline: HelmReleases, release: str) -> None:
    shard = shards(1)[0]
    objects = asyncio.run(offline.template(release, release_values(shard, BASE)))
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["metadata"]["name"] == deployment_name(release)
    (service,) = [o for o in objects if o["kind"] == "Service"]
    assert service["metadata"]["name"] == deployment_name(release)  # the smoke test goes through it


def test_lint_and_client_dry_run_need_no_cluster(offline: HelmReleases) -> None:
    shard = shards(1)[0]
    values = release_values(shard, BASE)
    lint = asyncio.run(offline.lint(values))
    assert lint.ok, lint.output
    release = asyncio.run(offline.dry_run(shard.release, values))
    assert release["name"] == shard.release
    assert release["namespace"] == NAMESPACE
    assert release["config"]["planDigest"] == shard.plan_digest
    assert "kind: Deployment" in release["manifest"]


def test_bad_values_fail_with_the_chart_message(offline: HelmReleases) -> None:
    shard = shards(1)[0]
    with pytest.raises(
        HelmReleaseError, match=r"(?s)release .sea-west.: helm template failed: .*mlflow.existingSecret"
    ):
        asyncio.run(offline.template(shard.release, release_values(shard, {})))
    with pytest.raises(HelmReleaseError, match="additional properties 'replicas' not allowed"):
        asyncio.run(offline.dry_run(shard.release, release_values(shard, {**BASE, "replicas": 3})))


def test_same_values_twice_make_no_new_revision(filestore: tuple[HelmReleases, Path]) -> None:
    helm, log = filestore
    shard = shards(1)[0]
    values = release_values(shard, BASE)

    first = asyncio.run(helm.upgrade(shard.release, values, description=f"plan {shard.plan_digest}"))
    again = asyncio.run(helm.upgrade(shard.release, values, description=f"plan {shard.plan_digest}"))

    assert (first.revision, first.changed, first.status) == (1, True, "deployed")
    assert (again.revision, again.changed) == (1, False)
    upgrades = [json.loads(line) for line in log.read_text().splitlines() if line.startswith('["upgrade"')]
    assert len(upgrades) == 1
    argv = upgrades[0]
    assert argv[:3] == ["upgrade", shard.release, str(REPO / "helm" / "modelyard-serving")]
    for flag in ("--install", "--rollback-on-failure", "--wait"):
        assert flag in argv
    assert argv[argv.index("--timeout") + 1] == "420s"
    assert argv[argv.index("--namespace") + 1] == NAMESPACE
    assert argv[argv.index("--description") + 1] == f"plan {shard.plan_digest}"
    history = asyncio.run(helm.history(shard.release))
    assert [(r.revision, r.status) for r in history] == [(1, "deployed")]


def test_new_plan_upgrades_and_rollback_restores_the_last_good_revision(filestore: tuple[HelmReleases, Path]) -> None:
    helm, _ = filestore
    one, two = shards(1)[0], shards(2)[0]
    asyncio.run(helm.upgrade(one.release, release_values(one, BASE), description=f"plan {one.plan_digest}"))
    second = asyncio.run(helm.upgrade(two.release, release_values(two, BASE), description=f"plan {two.plan_digest}"))
    assert (second.revision, second.changed) == (2, True)

    good = asyncio.run(helm.last_good_revision(two.release))
    assert good == 1
    asyncio.run(helm.rollback(two.release, good))

    history = asyncio.run(helm.history(two.release))
    assert [(r.revision, r.status) for r in history] == [(1, "superseded"), (2, "superseded"), (3, "deployed")]
    assert history[0].description == f"plan {one.plan_digest}"
    assert history[2].description == "Rollback to 1"
    # After the rollback the release serves plan 1 again, so re-applying plan 1 changes nothing.
    again = asyncio.run(helm.upgrade(one.release, release_values(one, BASE)))
    assert (again.revision, again.changed) == (3, False)


def test_failed_upgrade_is_a_typed_error_with_helms_words(filestore: tuple[HelmReleases, Path]) -> None:
    helm, _ = filestore
    shard = shards(1)[0]
    values = release_values(shard, {**BASE, "podAnnotations": {"note": "fail-the-upgrade"}})
    with pytest.raises(HelmReleaseError, match="helm upgrade failed: Error: UPGRADE FAILED: context deadline exceeded"):
        asyncio.run(helm.upgrade(shard.release, values))
    assert asyncio.run(helm.history(shard.release)) == []
    assert asyncio.run(helm.last_good_revision(shard.release)) is None


def test_the_plans_of_every_revision_keep_their_versions_from_a_prune(
    filestore: tuple[HelmReleases, Path], tmp_path: Path, real_helm: Path
) -> None:
    from modelyard.deploy.rollout.version_retention import ServedUnknownError, release_plans, served_by

    helm, _ = filestore
    config = load_config(REPO / "modelyard.yaml")
    one, two = shards(1)[0], shards(2)[0]  # the first release; the others were never installed
    for shard in (one, two):
        asyncio.run(helm.upgrade(shard.release, release_values(shard, BASE), description=f"plan {shard.plan_digest}"))

    plans = asyncio.run(release_plans(config, helm))

    assert [where for _, where in plans] == [f"release {one.release} revision 1", f"release {one.release} revision 2"]
    served = served_by(plans)
    family, region = next((s.family, s.region) for s in one.plan.services)
    model = config.mlflow.model_name(family, region)
    assert served[model] == {"1": [f"release {one.release} revision 1"], "2": [f"release {one.release} revision 2"]}

    unreachable = tmp_path / "helm-unreachable"  # helm without a cluster: only `helm version` works
    unreachable.write_text(
        f'#!/bin/sh\n[ "$1" = version ] && exec {real_helm} "$@"\n'
        'echo "Error: Kubernetes cluster unreachable: connection refused" >&2\nexit 1\n'
    )
    unreachable.chmod(0o755)
    with pytest.raises(ServedUnknownError, match=r"so no version is deleted: .*Kubernetes cluster unreachable"):
        asyncio.run(release_plans(config, HelmReleases(make_command(unreachable), NAMESPACE)))
