"""Gates and promotion end to end: real snapshots, real training, the real MLflow server.

Each test gets its own registered-model names (a unique ``model_name_template``), so the
session's shared MLflow server never mixes their versions.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from modelyard.core.config import Config, load_config
from modelyard.core.contracts.registry import CHAMPION_ALIAS, PREVIOUS_ALIAS
from modelyard.pipeline.snapshots import ValidationSummary, publish
from modelyard.promotion.aliases import aliases, open_client
from modelyard.promotion.decide import evaluate_pair, rollback
from modelyard.promotion.decision import Decision, PromotionError
from modelyard.promotion.gates import GateResult
from modelyard.promotion.record import _from_tags, history
from modelyard.training.train import train_pair

REPO = Path(__file__).resolve().parents[2]
FAMILY = "driver_acceptance"
REGION = "jakarta"
START = pd.Timestamp("2026-01-05", tz="UTC")


def write_config(folder: Path, mlflow_url: str, *, baseline: bool = False, **gate_overrides: Any) -> Config:
    """The demo config shrunk to one region, small models, its own storage and model names.

    ``bookings`` has a linear signal: the logistic and ridge baselines are the true models and the
    baseline gate (on by default) rightly rejects the small xgboost models, so it is off here unless
    ``baseline`` (the tests are about the other gates; one is about that gate).
    """
    raw = yaml.safe_load((REPO / "modelyard.yaml").read_text())
    raw["regions"] = [r for r in raw["regions"] if r["name"] in (REGION, "ho_chi_minh")]
    raw.pop("deploy", None)  # not used here; the defaults keep this test independent of deploy settings
    raw["storage"] = {"root": str(folder / "data")}
    raw["mlflow"] = {"tracking_uri": mlflow_url, "model_name_template": f"{{family}}-{{region}}-{uuid.uuid4().hex[:8]}"}
    for family in raw["families"]:
        family["params"] = {**family["params"], "n_estimators": 60, "learning_rate": 0.15}  # small but fitted
    raw["gates"]["defaults"].update(gate_overrides)
    if not baseline:
        for task in ("classification", "regression"):
            raw["gates"]["defaults"].setdefault(task, {})["baseline"] = []
    path = folder / "modelyard.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(path, environ={})


def bookings(seed: int, rows: int = 2000, days: int = 70, festival_days: int = 0) -> pd.DataFrame:
    """Synthetic bookings with the snapshot columns of both families and a strong, learnable signal.

    ``festival_days``: the last days are a festival (``is_festival`` 1) in which drivers accept far less.
    """
    rng = np.random.default_rng(seed)
    times = START + pd.to_timedelta(np.sort(rng.uniform(0, days * 86400, rows)), unit="s")
    local = times.tz_convert("Asia/Jakarta")
    hour = local.hour.to_numpy()
    tenure = rng.gamma(2.0, 200.0, rows)
    frame = pd.DataFrame(
        {
            "event_time": times,
            "hour": hour.astype("int64"),
            "pickup_distance_km": rng.gamma(2.0, 1.5, rows),
            "driver_rating": rng.uniform(3.8, 5.0, rows),
            "driver_acceptance_rate": rng.beta(5, 2, rows),
            "driver_tenure_days": tenure,
            "is_new_driver": (tenure < 60).astype("int64"),
            "surge_multiplier": rng.choice([1.0, 1.2, 1.5, 2.0], rows),
            "area_demand_index": rng.uniform(0, 1, rows),
            "hour_sin": np.sin(2 * np.pi * hour / 24),
            "hour_cos": np.cos(2 * np.pi * hour / 24),
            "day_of_week": local.dayofweek.to_numpy().astype("int64"),
            "is_weekend": np.asarray(local.dayofweek >= 5, dtype="int64"),
            "is_festival": np.asarray(times >= times.max() - pd.Timedelta(days=festival_days), dtype="int64"),
        }
    )
    if not festival_days:
        frame["is_festival"] = 0
    logit = (
        1.0 - 0.9 * frame.pickup_distance_km + 5.0 * (frame.driver_acceptance_rate - 0.7)
        + 1.5 * (frame.driver_rating - 4.4) + 0.8 * (frame.surge_multiplier - 1) - 2.5 * frame.is_festival
    )  # fmt: skip
    frame["accepted"] = (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype("int64")
    frame["pickup_eta_min"] = 2 + 2.2 * frame.pickup_distance_km + 3 * frame.area_demand_index + rng.normal(0, 1, rows)
    return frame


def shuffle_training_labels(frame: pd.DataFrame, config: Config, seed: int, fraction: float = 1.0) -> pd.DataFrame:
    """Shuffle the target of (a fraction of) the rows before the holdout; the holdout stays honest."""
    holdout_start = frame.event_time.max() - pd.Timedelta(days=config.training.holdout_days)
    rng = np.random.default_rng(seed)
    before = np.flatnonzero((frame.event_time < holdout_start).to_numpy())
    chosen = rng.choice(before, size=int(len(before) * fraction), replace=False)
    shuffled = frame.copy()
    shuffled.loc[chosen, "accepted"] = rng.permutation(shuffled.loc[chosen, "accepted"].to_numpy())
    return shuffled


def publish_and_train(config: Config, frame: pd.DataFrame, family: str = FAMILY) -> str:
    """Publish ``frame`` as the family's snapshot and train a challenger on it; returns its version."""
    spec = config.family(family)
    columns = ["event_time", "hour", *dict.fromkeys([*spec.features, "is_new_driver"]), spec.target]
    publish(
        config.storage.features_dir, frame[columns], family=family, region=REGION, target=spec.target,
        time_column="event_time", source="test", validation=ValidationSummary(success=True, checks=3),
    )  # fmt: skip
    result = train_pair(config, family, REGION, tracking_uri=config.mlflow.tracking_uri)
    assert result.status == "registered", result.reason
    assert result.version is not None
    return result.version


def gate(decision: Decision, name: str) -> GateResult:
    return next(g for g in decision.gates if g.name == name)


@pytest.fixture
def config(tmp_path: Path, mlflow_uri: str) -> Config:
    return write_config(tmp_path, mlflow_uri)


@pytest.fixture
def client(config: Config) -> MlflowClient:
    return open_client(config)


def test_first_model_is_promoted_on_absolute_gates_and_the_decision_is_recorded(
    config: Config, client: MlflowClient
) -> None:
    version = publish_and_train(config, bookings(seed=1))

    decision = evaluate_pair(client, config, FAMILY, REGION, decided_by="user:test")

    assert decision.outcome == "promoted", decision.summary
    assert (decision.champion_before, decision.champion_after, decision.previous_champion_after) == (
        None,
        version,
        None,
    )
    assert gate(decision, "absolute:holdout_auc").passed
    assert gate(decision, "absolute:holdout_auc").value > 0.7
    assert gate(decision, "versus_champion:holdout_auc").skipped
    assert gate(decision, "prediction_psi").skipped
    assert {g.name for g in decision.gates} >= {"data_validation", "model_size", "latency"}
    assert gate(decision, "latency").value > 0
    model_name = config.mlflow.model_name(FAMILY, REGION)
    tags = client.get_model_version(model_name, version).tags
    assert tags["promotion.outcome"] == "promoted"
    assert tags["promotion.decided_by"] == "user:test"
    assert "first model" in tags["promotion.summary"]
    skipped = sum(g.skipped for g in decision.gates)
    assert tags["promotion.gates"] == f"{len(decision.gates) - skipped} passed, {skipped} skipped"
    assert "promotion.decision" not in tags  # the record is in the description, not a JSON tag
    description = client.get_model_version(model_name, version).description
    assert "| absolute:holdout_auc |" in description
    assert "| latency |" in description
    assert "challenger" not in aliases(client, model_name)  # the champion is not also the challenger
    artifacts = _artifact_files(client, decision.run_id or "")
    assert {"decision.json", "gates.txt", "history.json"} <= {Path(a).name for a in artifacts}
    assert "comparison.png" not in {Path(a).name for a in artifacts}  # a first model has no champion to compare with
    assert [e["outcome"] for e in history(client, model_name)] == ["promoted"]
    # Absent alias tags read as none (issue 26: a tag is a request); no champion_until to delete.
    assert "promotion.champion_before" not in tags
    assert "promotion.previous_champion_after" not in tags
    assert tags["promotion.champion_after"] == version
    from_tags = _from_tags(client.get_model_version(model_name, version))  # the record without its description
    assert from_tags is not None
    assert (from_tags.champion_before, from_tags.champion_after) == (None, version)


def test_worse_challenger_is_rejected_for_the_right_reasons_and_champion_is_unchanged(
    config: Config, client: MlflowClient
) -> None:
    frame = bookings(seed=2)
    champion = publish_and_train(config, frame)
    assert evaluate_pair(client, config, FAMILY, REGION, "test").outcome == "promoted"
    worse = publish_and_train(config, shuffle_training_labels(frame, config, seed=3))

    decision = evaluate_pair(client, config, FAMILY, REGION, decided_by="test")

    assert decision.outcome == "rejected"
    failed = {g.name for g in decision.gates if not g.passed}
    assert {"absolute:holdout_auc", "versus_champion:holdout_auc"} <= failed
    assert not failed & {"data_validation", "model_size"}
    assert gate(decision, "versus_champion:holdout_auc").value < -0.1
    model_name = config.mlflow.model_name(FAMILY, REGION)
    current = aliases(client, model_name)
    assert current[CHAMPION_ALIAS] == champion
    assert current["challenger"] == worse
    assert PREVIOUS_ALIAS not in current
    tags = client.get_model_version(model_name, worse).tags
    assert tags["promotion.outcome"] == "rejected"
    assert "holdout_auc" in tags["promotion.summary"]
    assert tags["promotion.champion_before"] == tags["promotion.champion_after"] == champion
    artifacts = _artifact_files(client, decision.run_id or "")
    assert "comparison.png" in {Path(a).name for a in artifacts}  # challenger against its champion


def test_second_run_on_a_decided_version_changes_nothing(config: Config, client: MlflowClient) -> None:
    frame = bookings(seed=4)
    publish_and_train(config, frame)
    evaluate_pair(client, config, FAMILY, REGION, "test")
    worse = publish_and_train(config, shuffle_training_labels(frame, config, seed=5))
    first = evaluate_pair(client, config, FAMILY, REGION, "test")
    model_name = config.mlflow.model_name(FAMILY, REGION)
    before = (aliases(client, model_name), client.get_model_version(model_name, worse).tags)
    history_before = history(client, model_name)

    again = evaluate_pair(client, config, FAMILY, REGION, "someone-else")

    assert again.already_decided
    assert not again.champion_changed
    assert (again.outcome, again.decided_by, again.decided_at) == (first.outcome, first.decided_by, first.decided_at)
    assert (aliases(client, model_name), client.get_model_version(model_name, worse).tags) == before
    assert history(client, model_name) == history_before


def test_better_challenger_is_promoted_and_rollback_restores_the_old_champion(
    config: Config, client: MlflowClient
) -> None:
    frame = bookings(seed=6)
    # Less history, same calibration: a weaker model whose predictions are distributed alike
    # (label noise would also shrink its predictions, and the PSI gate would rightly object).
    weaker = publish_and_train(config, frame[frame.event_time >= START + pd.Timedelta(days=30)].reset_index(drop=True))
    assert evaluate_pair(client, config, FAMILY, REGION, "test").outcome == "promoted"
    better = publish_and_train(config, frame)

    decision = evaluate_pair(client, config, FAMILY, REGION, decided_by="airflow:promotion/run-1")

    assert decision.outcome == "promoted", decision.summary
    assert gate(decision, "versus_champion:holdout_auc").value > 0
    assert any(g.kind == "slice" and not g.skipped for g in decision.gates)
    assert decision.champion_changed
    model_name = config.mlflow.model_name(FAMILY, REGION)
    assert aliases(client, model_name)[CHAMPION_ALIAS] == better
    assert aliases(client, model_name)[PREVIOUS_ALIAS] == weaker
    replaced = client.get_model_version(model_name, weaker).tags
    assert "promotion.champion_since" not in replaced
    assert replaced["promotion.champion_until"] == decision.decided_at.isoformat()

    rolled = rollback(client, config, FAMILY, REGION, decided_by="user:oncall", reason="bad canary")

    assert (rolled.outcome, rolled.champion_before, rolled.champion_after) == ("rolled-back", better, weaker)
    current = aliases(client, model_name)
    assert current[CHAMPION_ALIAS] == weaker
    assert PREVIOUS_ALIAS not in current  # the weaker one replaced nobody: nothing further back
    demoted = client.get_model_version(model_name, better)
    assert demoted.tags["promotion.rolled_back_by"] == "user:oncall"
    assert "promotion.champion_since" not in demoted.tags
    assert demoted.tags["promotion.champion_until"] == rolled.decided_at.isoformat()
    assert demoted.description.startswith(f"Rolled back at {rolled.decided_at.isoformat(timespec='seconds')}")
    restored = client.get_model_version(model_name, weaker).tags
    assert restored["promotion.champion_since"] == rolled.decided_at.isoformat()
    assert "promotion.champion_until" not in restored
    entries = history(client, model_name)
    assert [e["action"] for e in entries] == ["evaluate", "evaluate", "rollback"]
    assert entries[-1]["why"] == "bad canary"
    with pytest.raises(PromotionError, match="nothing to roll back to"):
        rollback(client, config, FAMILY, REGION, decided_by="user:oncall")


def festival(tmp_path: Path, mlflow_uri: str, earned: float | None) -> tuple[Config, MlflowClient, str, Decision]:
    """The demo's festival act on one pair: a champion from before, then the festival's challenger, gated.

    Drivers accept far less in the last weeks; the stale champion keeps predicting the old rate. The
    challenger's predictions move (PSI far above 0.25) because the outcomes moved, and its logloss on
    the same fresh holdout shows it (ADR 0032). Returns the config, its client, the champion's version
    and the challenger's decision. ``earned``: ``gates.defaults.psi_earned_improvement``.
    """
    # Slices of a 14-day holdout are a few dozen rows: this is about the shift gate, not theirs.
    config = write_config(tmp_path, mlflow_uri, psi_earned_improvement=earned, max_slice_regression=0.5)
    client = open_client(config)
    before = bookings(seed=8)  # the champion: before the festival, on less history (ranks a little worse)
    before = before[before.event_time >= START + pd.Timedelta(days=30)].reset_index(drop=True)
    champion = publish_and_train(config, before)
    assert evaluate_pair(client, config, FAMILY, REGION, "test").outcome == "promoted"
    publish_and_train(config, bookings(seed=8, festival_days=30))
    return config, client, champion, evaluate_pair(client, config, FAMILY, REGION, decided_by="test")


@pytest.mark.parametrize("earned", [0.05, None])
def test_a_festival_challenger_whose_shift_the_holdout_earns_is_promoted_unless_earning_is_off(
    tmp_path: Path, mlflow_uri: str, earned: float | None
) -> None:
    config, client, champion, decision = festival(tmp_path, mlflow_uri, earned)

    shift = gate(decision, "prediction_psi")
    assert shift.value is not None
    assert shift.value > 0.25, shift.summary
    if earned is None:
        assert decision.outcome == "rejected"
        assert not shift.passed
        assert "; not earned: holdout_logloss" in shift.summary
        assert aliases(client, config.mlflow.model_name(FAMILY, REGION))[CHAMPION_ALIAS] == champion
    else:
        assert decision.outcome == "promoted", decision.summary
        assert shift.passed
        assert "; earned: holdout_logloss" in shift.summary
        assert "; earned: holdout_logloss" in decision.summary  # the version's first line in MLflow says why
        version = client.get_model_version(config.mlflow.model_name(FAMILY, REGION), decision.version)
        assert "earned: holdout_logloss" in version.description.splitlines()[0]
        assert "earned: holdout_logloss" in version.tags["promotion.summary"]


def test_regression_family_first_model(config: Config, client: MlflowClient) -> None:
    version = publish_and_train(config, bookings(seed=8), family="pickup_eta")

    decision = evaluate_pair(client, config, "pickup_eta", REGION, decided_by="test")

    assert decision.outcome == "promoted", decision.summary
    assert decision.version == version
    assert gate(decision, "absolute:holdout_mae").value < 6.0


def test_a_model_no_better_than_its_baseline_is_rejected_and_the_reason_names_both(
    tmp_path: Path, mlflow_uri: str
) -> None:
    config = write_config(tmp_path, mlflow_uri, baseline=True)
    publish_and_train(config, bookings(seed=8), family="pickup_eta")

    decision = evaluate_pair(open_client(config), config, "pickup_eta", REGION, decided_by="test")

    assert decision.outcome == "rejected", decision.summary
    assert [g.name for g in decision.gates if not g.passed] == ["baseline:holdout_mae"]
    summary = gate(decision, "baseline:holdout_mae").summary
    assert "vs baseline sklearn_ridge" in summary
    assert "needs a margin >= " in summary
    assert summary in decision.summary


def _artifact_files(client: MlflowClient, run_id: str, path: str = "promotion") -> list[str]:
    found = []
    for item in client.list_artifacts(run_id, path):
        found += _artifact_files(client, run_id, item.path) if item.is_dir else [item.path]
    return found
