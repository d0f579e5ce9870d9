"""Which model versions a prune deletes (deploy.rollout.version_retention, ADR 0036), and what it does with them.

The registry is a small in-memory stand-in here (the searches, aliases and deletes the module
uses); tests/integration/test_prune.py runs the same against a real ``mlflow server``, and
tests/integration/test_kubernetes_helm.py reads the plans of a release's Helm history with the real helm.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.store.entities.paged_list import PagedList

from modelyard.core.config import Config
from modelyard.deploy.rollout import pruning, release_records, version_retention
from modelyard.deploy.rollout.helm_release import HelmReleaseError, Revision
from modelyard.deploy.rollout.local_target import LocalTarget
from modelyard.deploy.serving.plan import dump_plan, last_good_path, parse_plan
from modelyard.pipeline import snapshots
from tests.unit.conftest import make_frame

pytestmark = pytest.mark.unit

PAIR = ("acceptance", "alpha")
DAY_MS = 86_400_000


class Registry:
    """The MlflowClient calls retention makes, on models held in memory."""

    def __init__(self) -> None:
        self.versions: dict[str, list[Any]] = {}
        self.aliases: dict[str, dict[str, str]] = {}
        self.refuse: set[tuple[str, str]] = set()
        self.deleted: list[tuple[str, str]] = []

    def add(self, name: str, n: int, tags: dict[int, dict[str, str]] | None = None) -> None:
        made = dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp() * 1000
        self.versions[name] = [
            SimpleNamespace(
                name=name, version=str(v), creation_timestamp=made + v * DAY_MS, tags=(tags or {}).get(v, {})
            )
            for v in range(1, n + 1)
        ]
        self.aliases.setdefault(name, {})

    def search_model_versions(self, filter_string: str, max_results: int, page_token: str | None) -> PagedList:
        return PagedList([v for name, vs in self.versions.items() if f"'{name}'" in filter_string for v in vs], None)

    def search_registered_models(self, filter_string: str, max_results: int, page_token: str | None) -> PagedList:
        found = [SimpleNamespace(name=n, aliases=a) for n, a in self.aliases.items() if f"'{n}'" in filter_string]
        return PagedList(found, None)

    def get_experiment_by_name(self, name: str) -> None:
        return None  # nothing measured yet: no monitoring runs

    def get_registered_model(self, name: str) -> Any:
        return SimpleNamespace(name=name, aliases=dict(self.aliases[name]))

    def delete_model_version(self, name: str, version: str) -> None:
        if (name, version) in self.refuse:
            raise MlflowException(f"Model version {name} v{version}: permission denied")
        self.versions[name] = [v for v in self.versions[name] if v.version != version]
        self.deleted.append((name, version))


def plan_of(uris: list[str]) -> Any:
    return parse_plan(
        {
            "version": 1,
            "services": [
                {
                    "family": "acceptance",
                    "region": f"r{i}",
                    "variants": [{"name": "champion", "model_uri": uri, "weight": 100}],
                }
                for i, uri in enumerate(uris)
            ],
        }
    )


def test_keeps_aliased_newest_and_served_versions_and_deletes_the_rest(small_config: Config) -> None:
    name = small_config.mlflow.model_name(*PAIR)
    registry = Registry()
    registry.add(name, 7, tags={2: {"promotion.outcome": "rejected"}})
    registry.aliases[name] = {"champion": "3", "previous-champion": "1", "challenger": "6"}
    served = {name: {"4": ["local last-good"]}, "another-model": {"2": ["release r1 revision 2"]}}
    chosen = [(*PAIR, name)]

    plan = version_retention.plan_versions(registry, chosen, served, keep=2)  # type: ignore[arg-type]

    assert [(r.model, r.version) for r in plan.removals] == [(name, "5"), (name, "2")]
    assert plan.removals[1].detail == "registered 2026-12-03 00:00 UTC; rejected"
    assert plan.removals[0].detail.endswith("never decided")
    assert plan.kept == {
        (name, "7"): ["newest 2"],
        (name, "6"): ["challenger", "newest 2"],
        (name, "4"): ["local last-good"],
        (name, "3"): ["champion"],
        (name, "1"): ["previous-champion"],
    }
    assert version_retention.describe(plan.removals) == "2 model versions of 1 model"
    assert version_retention.describe_kept(plan) == "kept 5 model versions, 1 of them only because a plan names them"


def test_local_plans_are_read_and_an_unreadable_one_deletes_nothing(
    small_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LocalTarget, "live", lambda self: plan_of(["models:/m/9"]))
    run = small_config.storage.local_dir / "run"
    run.mkdir(parents=True)
    (run / "plan.json").write_bytes(dump_plan(plan_of(["models:/m/3", "models:/m@champion"]), "json"))
    last_good_path(run / "plan.json").write_bytes(dump_plan(plan_of(["models:/m/2", "models:/m/3"]), "json"))

    served = version_retention.served_versions(small_config, "http://unused")

    assert served == {
        "m": {
            "9": ["served at http://127.0.0.1:8000"],
            "3": ["local plan file", "local last-good"],
            "2": ["local last-good"],
        }
    }
    last_good_path(run / "plan.json").write_text('{"version": 1, "services": [{"family": "acceptance"')
    with pytest.raises(version_retention.ServedUnknownError, match=r"plan\.json\.last-good: cannot read the plan"):
        version_retention.served_versions(small_config, "http://unused")


class Releases:
    """Helm's history and values of each release, as ``HelmReleases`` returns them."""

    def __init__(
        self,
        history: dict[str, list[list[str]]],
        fail: str | None = None,
        namespace: str = "modelyard",
        elsewhere: dict[str, Releases] | None = None,
    ) -> None:
        self.history_of, self.fail, self.namespace, self.elsewhere = history, fail, namespace, elsewhere or {}

    def in_namespace(self, namespace: str) -> Releases:
        return self.elsewhere[namespace]

    async def history(self, release: str) -> list[Revision]:
        if self.fail:
            raise HelmReleaseError(f"release '{release}': helm history failed: {self.fail}")
        return [Revision(n, "superseded", "") for n in range(1, len(self.history_of.get(release, [])) + 1)]

    async def values(self, release: str, revision: int) -> dict[str, Any]:
        return {"plan": plan_of(self.history_of[release][revision - 1]).model_dump(mode="json"), "replicaCount": 2}


def test_every_revision_of_every_release_is_read_and_a_helm_failure_deletes_nothing(small_config: Config) -> None:
    import asyncio

    project = small_config.project
    helm = Releases({project: [["models:/m/1"], ["models:/m/2", "models:/n/5"]]})

    plans = asyncio.run(version_retention.release_plans(small_config, helm))  # type: ignore[arg-type]

    assert [(where, plan.model_uris()) for plan, where in plans] == [
        (f"release {project} revision 1", ["models:/m/1"]),
        (f"release {project} revision 2", ["models:/m/2", "models:/n/5"]),
    ]
    unreachable = Releases({}, fail="Kubernetes cluster unreachable")
    with pytest.raises(version_retention.ServedUnknownError) as raised:
        asyncio.run(version_retention.release_plans(small_config, unreachable))  # type: ignore[arg-type]
    assert "Kubernetes cluster unreachable" in str(raised.value)
    assert "no version is deleted" in str(raised.value)
    assert "kubernetes_default" in str(raised.value)


def test_every_release_a_deploy_recorded_is_read_in_its_namespace_whatever_deploy_target_says(
    small_config: Config,
) -> None:
    import asyncio

    def configured(target: str, namespace: str = "modelyard") -> Config:
        kubernetes = small_config.deploy.kubernetes.model_copy(update={"namespace": namespace})
        return small_config.model_copy(
            update={"deploy": small_config.deploy.model_copy(update={"target": target, "kubernetes": kubernetes})}
        )

    assert small_config.deploy.target == "local"
    assert version_retention.kubernetes_releases(small_config) == {}  # never deployed to a cluster: helm is not run
    release_records.record(small_config, "sea-east")  # the deploy form's target: kubernetes
    release_records.record(small_config, "sea-east")  # recorded once
    release_records.record(configured("local", "old"), "retired")  # a namespace the config has left since
    assert version_retention.kubernetes_releases(small_config) == {"modelyard": ["sea-east"], "old": ["retired"]}
    project = small_config.project
    assert version_retention.kubernetes_releases(configured("kubernetes")) == {
        "modelyard": sorted(["sea-east", project]),  # and the configured releases, installed yet or not
        "old": ["retired"],
    }
    old = Releases({"retired": [["models:/m/4"]]}, namespace="old")
    helm = Releases({"sea-east": [["models:/m/1"], ["models:/m/2"]]}, elsewhere={"old": old})

    releases = version_retention.kubernetes_releases(small_config)
    plans = asyncio.run(version_retention.release_plans(small_config, helm, releases))  # type: ignore[arg-type]

    assert [(where, plan.model_uris()) for plan, where in plans] == [
        ("release sea-east revision 1", ["models:/m/1"]),
        ("release sea-east revision 2", ["models:/m/2"]),
        ("release old/retired revision 1", ["models:/m/4"]),
    ]


def test_a_version_an_alias_moved_onto_is_kept_and_a_refused_delete_is_reported(small_config: Config) -> None:
    name = small_config.mlflow.model_name(*PAIR)
    registry = Registry()
    registry.add(name, 5)
    registry.aliases[name] = {"champion": "5"}
    plan = version_retention.plan_versions(registry, [(*PAIR, name)], {}, keep=1)  # type: ignore[arg-type]
    assert [r.version for r in plan.removals] == ["4", "3", "2", "1"]
    registry.aliases[name] = {"champion": "3", "previous-champion": "5"}  # a rollback since the plan
    registry.refuse.add((name, "2"))

    outcome = version_retention.delete_versions(small_config, registry, plan)  # type: ignore[arg-type]

    assert [r.version for r in outcome.removed] == ["4", "1"]
    assert [(r.version, why) for r, why in outcome.skipped] == [
        ("3", "an alias points at it again (since the plan); kept")
    ]
    assert [(r.version, why) for r, why in outcome.failed] == [("2", f"Model version {name} v2: permission denied")]
    assert registry.deleted == [(name, "4"), (name, "1")]


def publish(config: Config, seed: int) -> str:
    meta, _ = snapshots.publish(
        config.storage.features_dir, make_frame(rows=30, seed=seed), family=PAIR[0], region=PAIR[1],
        target="accepted", time_column="event_time", source=f"seed {seed}",
        validation=snapshots.ValidationSummary(success=True, checks=1),
    )  # fmt: skip
    return meta.digest


def test_a_deleted_version_frees_its_snapshot_in_the_same_prune_but_a_failed_delete_keeps_it(
    small_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LocalTarget, "live", lambda self: None)
    made = [publish(small_config, seed) for seed in range(4)]  # oldest first; made[3] is LATEST
    name = small_config.mlflow.model_name(*PAIR)
    registry = Registry()
    registry.add(name, 3, tags={v: {"data_digest": made[v - 1]} for v in (1, 2, 3)})
    registry.aliases[name] = {"champion": "3"}
    registry.refuse.add((name, "2"))

    chosen = pruning.plan(small_config, registry, "http://unused", keep=1, versions=1)  # type: ignore[arg-type]

    assert chosen.versions is not None
    assert [r.version for r in chosen.versions.removals] == ["2", "1"]
    assert sorted(r.name for r in chosen.files.removals) == sorted([made[0], made[1]])
    assert chosen.describe().startswith("2 model versions of 1 model, 2 snapshots (")
    result = pruning.execute(small_config, registry, chosen)  # type: ignore[arg-type]
    assert [r.version for r in result.versions.removed] == ["1"]
    assert [r.name for r in result.files.removed] == [made[0]]  # v2 was not deleted: its snapshot stays
    left = [meta.digest for meta in snapshots.list_snapshots(small_config.storage.features_dir, *PAIR)]
    assert left == [made[3], made[2], made[1]]
    assert result.failed == 1


def test_without_retention_versions_no_version_is_read_or_deleted(small_config: Config) -> None:
    name = small_config.mlflow.model_name(*PAIR)
    registry = Registry()
    registry.add(name, 4)

    chosen = pruning.plan(small_config, registry, "http://unused")  # type: ignore[arg-type]

    assert chosen.versions is None
    assert chosen.describe() == "nothing; no snapshot published yet"
    assert not pruning.execute(small_config, registry, chosen).versions.removed
    assert registry.deleted == []


def test_retention_versions_must_keep_at_least_one(tmp_path: Path) -> None:
    from modelyard.core.config.retention import RetentionSettings

    with pytest.raises(ValueError, match="greater than or equal to 1"):
        RetentionSettings(versions=0)


def test_the_report_names_only_what_was_removed() -> None:
    from rich.console import Console

    from modelyard.deploy.rollout.prune_cli import report
    from modelyard.monitoring.retention import PruneOutcome

    removed = [version_retention.VersionRemoval("acceptance", "alpha", "m", v, "") for v in ("1", "2")]
    for versions, expected in ((removed, "removed 2 model versions of 1 model"), ([], "removed nothing")):
        console = Console(record=True, width=200)
        outcome = version_retention.VersionOutcome(removed=list(versions))
        report(console, pruning.PruneResult(outcome, PruneOutcome()))
        assert console.export_text().strip() == expected
