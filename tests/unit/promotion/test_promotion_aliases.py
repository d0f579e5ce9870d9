"""Alias moves, manual promotion, rollback, history and races against the real MLflow server.

The versions here are registrations of one tiny logged model without training tags, so
the gates cannot be evaluated (recorded as such) and every test stays fast; the gates on
real challengers are exercised in tests/integration/test_promotion.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import random
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

from modelyard.core.config import Config, load_config
from modelyard.core.contracts.registry import (
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    HISTORY_HEADING,
    HISTORY_TAG,
    PREVIOUS_ALIAS,
)
from modelyard.promotion.aliases import aliases, open_client, pair_lock, verify_aliases
from modelyard.promotion.decide import evaluate_pair, promote_version, rollback
from modelyard.promotion.decision import Decision, PromotionError
from modelyard.promotion.record import DESCRIPTION_MAX_CHARS, append_history, history, recorded_decision

REPO = Path(__file__).resolve().parents[3]
FAMILY, REGION = "driver_acceptance", "jakarta"


@pytest.fixture(scope="module")
def logged_model_uri(mlflow_server) -> str:
    """One tiny scikit-learn model logged once; each test registers versions of it."""
    import mlflow
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.set_experiment("unit-promotion")
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(LogisticRegression().fit(x, [0, 0, 1, 1]), name="model")
    return str(info.model_uri)


@pytest.fixture
def config(tmp_path: Path, mlflow_uri: str) -> Config:
    environ = {
        "MODELYARD_STORAGE__ROOT": str(tmp_path / "data"),
        "MODELYARD_MLFLOW__TRACKING_URI": mlflow_uri,
        "MODELYARD_MLFLOW__MODEL_NAME_TEMPLATE": f"unit-{uuid.uuid4().hex[:8]}-{{family}}-{{region}}",
    }
    return load_config(REPO / "modelyard.yaml", environ=environ)


@pytest.fixture
def client(config: Config) -> MlflowClient:
    return open_client(config)


@pytest.fixture
def versions(config: Config, logged_model_uri: str) -> list[str]:
    """Five registered versions of this test's model."""
    import mlflow

    name = config.mlflow.model_name(FAMILY, REGION)
    return [str(mlflow.register_model(logged_model_uri, name).version) for _ in range(5)]


def promote(client: MlflowClient, config: Config, version: str, by: str = "user:alice") -> Decision:
    return promote_version(client, config, FAMILY, REGION, version, "hotfix for festival traffic", by)


def state(client: MlflowClient, config: Config) -> tuple[str | None, str | None]:
    current = aliases(client, config.mlflow.model_name(FAMILY, REGION))
    return current.get(CHAMPION_ALIAS), current.get(PREVIOUS_ALIAS)


def test_promotions_move_champion_and_previous_champion(
    client: MlflowClient, config: Config, versions: list[str]
) -> None:
    v1, v2 = versions[:2]
    first = promote(client, config, v1)
    assert state(client, config) == (v1, None)
    assert first.champion_changed
    promote(client, config, v2)
    assert state(client, config) == (v2, v1)
    again = promote(client, config, v1)  # back to the previous one: it must not be champion and previous at once
    assert state(client, config) == (v1, v2)
    assert (again.champion_before, again.champion_after, again.previous_champion_after) == (v2, v1, v2)


def test_manual_promotion_is_recorded_with_reason_user_and_gate_status(
    client: MlflowClient, config: Config, versions: list[str]
) -> None:
    decision = promote(client, config, versions[2], by="user:bob")
    name = config.mlflow.model_name(FAMILY, REGION)
    tags = client.get_model_version(name, versions[2]).tags
    assert tags["promotion.outcome"] == "promoted"
    assert tags["promotion.action"] == "promote-version"
    assert tags["promotion.reason"] == "hotfix for festival traffic"
    assert tags["promotion.decided_by"] == "user:bob"
    assert "gates not evaluated" in tags["promotion.summary"]  # no snapshot tag on these bare versions
    assert recorded_decision(client.get_model_version(name, versions[2])) == decision
    [entry] = history(client, name)
    assert (entry["action"], entry["version"], entry["by"]) == ("promote-version", versions[2], "user:bob")


def test_a_promoted_challenger_leaves_the_challenger_alias_and_only_the_champion_has_champion_since(
    client: MlflowClient, config: Config, versions: list[str]
) -> None:
    name = config.mlflow.model_name(FAMILY, REGION)
    v1, v2 = versions[:2]
    client.set_registered_model_alias(name, CHALLENGER_ALIAS, v1)
    promote(client, config, v1)
    assert CHALLENGER_ALIAS not in aliases(client, name)
    client.set_registered_model_alias(name, CHALLENGER_ALIAS, v3 := versions[2])  # a newer one is not touched
    second = promote(client, config, v2)
    assert aliases(client, name)[CHALLENGER_ALIAS] == v3

    replaced, champion = client.get_model_version(name, v1), client.get_model_version(name, v2)
    assert "promotion.champion_since" not in replaced.tags
    assert replaced.tags["promotion.champion_until"] == second.decided_at.isoformat()
    assert champion.tags["promotion.champion_since"] == second.decided_at.isoformat()
    assert champion.description.startswith(f"manual promotion of v{v2} by user:alice")
    assert recorded_decision(champion) == second

    rolled = rollback(client, config, FAMILY, REGION, "user:oncall", "error rate up")
    restored, demoted = client.get_model_version(name, v1), client.get_model_version(name, v2)
    assert restored.tags["promotion.champion_since"] == rolled.decided_at.isoformat()
    assert "promotion.champion_until" not in restored.tags
    assert "promotion.champion_since" not in demoted.tags
    assert demoted.description.startswith("Rolled back at ")
    assert "error rate up" in demoted.description.splitlines()[0]
    assert recorded_decision(demoted) == second  # the note leaves the record readable


def test_manual_promotion_needs_a_reason_and_an_existing_version(
    client: MlflowClient, config: Config, versions: list[str]
) -> None:
    with pytest.raises(PromotionError, match="needs a reason"):
        promote_version(client, config, FAMILY, REGION, versions[0], "  ", "user:alice")
    with pytest.raises(PromotionError, match="version 99 does not exist"):
        promote(client, config, "99")
    assert state(client, config) == (None, None)


def test_promoting_the_champion_again_changes_nothing(
    client: MlflowClient, config: Config, versions: list[str]
) -> None:
    promote(client, config, versions[0])
    name = config.mlflow.model_name(FAMILY, REGION)
    before = history(client, name)
    decision = promote(client, config, versions[0])
    assert decision.outcome == "unchanged"
    assert not decision.champion_changed
    assert history(client, name) == before


def test_rollback_steps_back_through_the_versions_each_one_replaced(
    client: MlflowClient, config: Config, versions: list[str]
) -> None:
    v1, v2, v3 = versions[:3]
    for version in (v1, v2, v3):
        promote(client, config, version)

    first = rollback(client, config, FAMILY, REGION, "user:oncall", "error rate up")
    assert state(client, config) == (v2, v1)
    assert first.champion_changed
    assert first.asset_extra()["version"] == v2
    rollback(client, config, FAMILY, REGION, "user:oncall")
    assert state(client, config) == (v1, None)
    with pytest.raises(PromotionError, match="nothing to roll back to"):
        rollback(client, config, FAMILY, REGION, "user:oncall")

    name = config.mlflow.model_name(FAMILY, REGION)
    demoted = client.get_model_version(name, v3).tags
    assert (demoted["promotion.rolled_back_by"], demoted["promotion.rolled_back_reason"]) == (
        "user:oncall",
        "error rate up",
    )
    assert [e["action"] for e in history(client, name)][-2:] == ["rollback", "rollback"]


def test_a_model_without_challenger_is_reported_not_failed(client: MlflowClient, config: Config) -> None:
    decision = evaluate_pair(client, config, FAMILY, REGION, "test")
    assert decision.outcome == "no-challenger"
    assert not decision.champion_changed


def test_the_lock_times_out_with_a_clear_message(config: Config) -> None:
    name = config.mlflow.model_name(FAMILY, REGION)
    errors: list[Exception] = []

    def contender() -> None:
        try:
            with pair_lock(config, name, timeout=0.3):
                pass
        except PromotionError as exc:
            errors.append(exc)

    with pair_lock(config, name):
        thread = threading.Thread(target=contender)
        thread.start()
        thread.join()
    assert len(errors) == 1
    assert "another promotion" in str(errors[0])
    contender()  # free again
    assert len(errors) == 1


def test_history_keeps_the_newest_entries_within_the_description_limit(
    client: MlflowClient, config: Config, versions: list[str]
) -> None:
    name = config.mlflow.model_name(FAMILY, REGION)
    base = promote(client, config, versions[0])
    for index in range(40):
        entry = base.model_copy(update={"summary": f"entry {index} | " + "x" * 200, "reason": None})
        append_history(client, name, entry)
    model = client.get_registered_model(name)
    assert len(model.description) <= DESCRIPTION_MAX_CHARS
    assert HISTORY_TAG not in model.tags  # no JSON document in the registry's tag columns
    entries = history(client, name)
    assert entries[-1]["why"].startswith("entry 39 ")
    assert 5 < len(entries) < 41
    table = model.description.split(HISTORY_HEADING, 1)[1]
    assert f"| v{versions[0]} | none → v{versions[0]} | user:alice | entry 39 \\| xxx" in table  # "|" escaped
    assert table.index("entry 39") < table.index("entry 38")


def test_a_retraining_keeps_the_history_and_a_legacy_tag_is_read_then_moved(
    client: MlflowClient, config: Config, versions: list[str]
) -> None:
    from modelyard.training.registry import describe_model

    name = config.mlflow.model_name(FAMILY, REGION)
    legacy = [
        {"at": "2026-11-01T00:00:00", "action": "promote", "outcome": "promoted", "version": versions[0],
         "champion_before": None, "champion_after": versions[0], "by": "user:bob", "why": "old -- entry"}
    ]  # fmt: skip
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(legacy))
    assert history(client, name) == legacy
    promote(client, config, versions[1])
    assert [e["by"] for e in history(client, name)] == ["user:bob", "user:alice"]
    assert HISTORY_TAG not in client.get_registered_model(name).tags
    describe_model(client, name, "**driver_acceptance**: rewritten by a retraining.")
    description = client.get_registered_model(name).description
    assert description.startswith("**driver_acceptance**: rewritten by a retraining.\n\n" + HISTORY_HEADING)
    assert history(client, name)[0]["why"] == "old -- entry"  # "--" survives the HTML comment


def test_concurrent_promotions_and_rollbacks_never_break_the_alias_invariant(
    client: MlflowClient, config: Config, versions: list[str]
) -> None:
    name = config.mlflow.model_name(FAMILY, REGION)
    promote(client, config, versions[0])
    seen: list[tuple[str | None, str | None]] = []
    done = threading.Event()
    failures: list[BaseException] = []

    def watch() -> None:
        while not done.is_set():
            seen.append(state(client, config))

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(4):
                if rng.random() < 0.3:
                    # "nothing to roll back to" at this moment is a valid outcome
                    with contextlib.suppress(PromotionError):
                        rollback(client, config, FAMILY, REGION, f"worker-{seed}")
                else:
                    promote(client, config, rng.choice(versions), by=f"worker-{seed}")
        except BaseException as exc:
            failures.append(exc)

    watcher = threading.Thread(target=watch)
    workers = [threading.Thread(target=work, args=(seed,)) for seed in range(3)]
    watcher.start()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    done.set()
    watcher.join()

    assert not failures, failures
    verify_aliases(client, name)
    broken = [(c, p) for c, p in seen if (c is not None and c == p) or (p is not None and c is None)]
    assert len(seen) > 10
    assert not broken
    # Serialized read-modify-write: each entry starts from where the previous one ended.
    moves = [e for e in history(client, name) if e["champion_before"] != e["champion_after"]]
    for before, after in itertools.pairwise(moves):
        assert after["champion_before"] == before["champion_after"], (before, after)


def test_cli_promote_rollback_and_status(config: Config, versions: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "MODELYARD_STORAGE__ROOT": str(config.storage.root),
           "MODELYARD_MLFLOW__MODEL_NAME_TEMPLATE": config.mlflow.model_name_template,
           "MLFLOW_TRACKING_URI": config.mlflow.tracking_uri, "COLUMNS": "200"}  # fmt: skip

    def modelyard(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).parent / "modelyard"), *args, "--config", str(REPO / "modelyard.yaml")],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip

    promote(open_client(config), config, versions[0])
    promoted = modelyard("promote", "-f", FAMILY, "-r", REGION, "--version", versions[1], "--reason", "cli test")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert "promoted" in promoted.stdout
    status = modelyard("status", "-f", FAMILY, "-r", REGION)
    assert status.returncode == 0, status.stderr
    assert f"v{versions[1]}" in status.stdout
    assert f"v{versions[0]}" in status.stdout  # the previous champion
    assert dt.datetime.now(dt.UTC).strftime("%Y-%m-%d") in status.stdout  # champion since
    listed = modelyard("status", "-f", FAMILY, "-r", REGION, "--json")
    assert listed.returncode == 0, listed.stderr
    (record,) = json.loads(listed.stdout)
    assert (record["family"], record["region"], record["champion"]["version"]) == (FAMILY, REGION, versions[1])
    assert record["previous"]["version"] == versions[0]
    assert record["serving"] == {"model_name": config.mlflow.model_name(FAMILY, REGION), "version": versions[1]}

    rolled = modelyard("rollback", "-f", FAMILY, "-r", REGION, "--reason", "cli test")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert "rolled-back" in rolled.stdout
    nothing = modelyard("rollback", "-f", FAMILY, "-r", REGION)
    assert nothing.returncode == 2
    assert "nothing to roll back to" in nothing.stderr  # errors go to stderr
