"""The gates featurise each holdout row in its own region's calendar, as the server does (ADR 0015).

A declared group pools Jakarta (UTC+7, the larger member: the pooled spec carries its calendar) and
New York (UTC-5/-4). The evidence's features of New York's rows must be what the serving featuriser
computes for a request to New York, for the pooled challenger's holdout and for the graduation gate
(the pooled model scored on New York's own holdout).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from modelyard.core.config import Config, load_config
from modelyard.core.featurespec import Calendar, FittedSpec
from modelyard.deploy.serving.features import RawFeatures
from modelyard.pipeline import snapshots
from modelyard.pipeline.build import build_all
from modelyard.promotion import evidence
from modelyard.promotion.gates import GateInputError
from modelyard.promotion.row_calendars import RowCalendars, pooled_members
from modelyard.training.mlflow_log import raw_example
from modelyard.training.pooled import pool_snapshots, publish_pooled

REPO = Path(__file__).resolve().parents[3]
FAMILY, GROUP, BIG, SMALL = "pickup_eta", "duo", "jakarta", "new_york"


def _config(folder: Path) -> Config:
    raw = yaml.safe_load((REPO / "modelyard.yaml").read_text())
    raw["families"] = [f for f in raw["families"] if f["name"] == FAMILY]
    jakarta = next(r for r in raw["regions"] if r["name"] == BIG)
    new_york = {"name": SMALL, "country": "US", "timezone": "America/New_York", "festivals": [
        {"name": "spring_break", "start": "2026-03-07", "end": "2026-03-15"}]}  # fmt: skip
    raw["regions"] = [jakarta, new_york]
    raw["groups"] = {GROUP: [BIG, SMALL]}
    raw.pop("deploy")
    raw["storage"] = {"root": str(folder / "store")}
    synthetic = {**raw["data"]["synthetic"], "rows": 500, "rows_by_region": {SMALL: 350}}
    raw["data"] = {**raw["data"], "min_rows": 300, "synthetic": synthetic}
    path = folder / "modelyard.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(path, environ={})


@pytest.fixture(scope="module")
def pooled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, snapshots.SnapshotMeta]:
    config = _config(tmp_path_factory.mktemp("evidence-calendars"))
    results = build_all(config, families=[FAMILY])
    assert [r.status for r in results] == ["published", "published"], [r.reason for r in results]
    return config, publish_pooled(config, pool_snapshots(config, FAMILY, GROUP))


def _version(meta: snapshots.SnapshotMeta) -> Any:
    """A registered version as the gates read it: its tags (no run: the split is the config's)."""
    tags = {"family": FAMILY, "region": meta.region, "data_digest": meta.digest}
    return SimpleNamespace(name=f"{FAMILY}-{meta.region}", version="1", run_id=None, tags=tags)


def _loaded(fitted: FittedSpec) -> evidence.LoadedVersion:
    return evidence.LoadedVersion("1", None, 0.0, fitted, list(fitted.names))


def _served(fitted: FittedSpec, rows: pd.DataFrame, calendar: Calendar) -> np.ndarray:
    """What the server computes for these rows sent as raw records to a service in ``calendar``'s region."""
    records = raw_example(fitted, rows).to_dict("records")
    return RawFeatures(fitted, features=None).prepare(records, calendar).matrix  # type: ignore[arg-type]


def test_a_pooled_holdouts_rows_are_featurised_each_in_its_regions_calendar(
    pooled: tuple[Config, snapshots.SnapshotMeta],
) -> None:
    config, meta = pooled
    fitted = FittedSpec.from_dict(meta.feature_spec or {})
    assert fitted.calendar.region == BIG  # the larger member's: not New York's

    holdout, _, calendars = evidence.challenger_holdout(None, config, _version(meta), FAMILY, GROUP)  # type: ignore[arg-type]
    x = evidence.version_features(_loaded(fitted), holdout, calendars)

    assert set(calendars.regions) == {BIG, SMALL}
    for region in (BIG, SMALL):
        mine = calendars.regions == region
        expected = _served(fitted, holdout[mine], config.region(region).calendar())
        np.testing.assert_allclose(x[mine].to_numpy(dtype=np.float32), expected, rtol=0, atol=1e-6)
    # in the pooled spec's own (Jakarta's) calendar, New York's hours would be 11 or 12 hours off
    in_jakarta = evidence.version_features(_loaded(fitted), holdout[calendars.regions == SMALL])
    assert not np.allclose(x.loc[calendars.regions == SMALL, "hour_sin"], in_jakarta["hour_sin"])


def test_the_pooled_model_is_scored_on_a_regions_own_holdout_in_that_regions_calendar(
    pooled: tuple[Config, snapshots.SnapshotMeta],
) -> None:
    config, meta = pooled
    fitted = FittedSpec.from_dict(meta.feature_spec or {})
    own = snapshots.latest_snapshot(config.storage.features_dir, FAMILY, SMALL)

    holdout, _, calendars = evidence.challenger_holdout(None, config, _version(own), FAMILY, SMALL)  # type: ignore[arg-type]
    x = evidence.version_features(_loaded(fitted), holdout, calendars)

    expected = _served(fitted, holdout, config.region(SMALL).calendar())
    np.testing.assert_allclose(x.to_numpy(dtype=np.float32), expected, rtol=0, atol=1e-6)
    # and the region's own model keeps the calendar it was trained with, as the server does
    own_fitted = FittedSpec.from_dict(own.feature_spec or {})
    assert calendars.calendar_of(own_fitted, SMALL) is own_fitted.calendar


def test_a_version_fitted_for_the_rows_region_keeps_its_own_calendar_whatever_the_case() -> None:
    own = Calendar("JKT", "Asia/Jakarta", ())
    fitted = SimpleNamespace(calendar=own)
    other = Calendar("nyc", "America/New_York", ())
    rows = RowCalendars(np.array(["jkt", "nyc", "jkt"], dtype=object), {"jkt": own, "nyc": other})

    parts = rows.parts(fitted)  # type: ignore[arg-type]

    assert [(calendar, mask.tolist()) for calendar, mask in parts] == [
        (own, [True, False, True]),
        (other, [False, True, False]),
    ]


def test_rows_of_regions_sharing_a_calendar_are_featurised_together() -> None:
    fitted = SimpleNamespace(calendar=Calendar("jakarta", "Asia/Jakarta", ()))
    rows = RowCalendars(
        np.array(["jakarta", "surabaya"], dtype=object),
        {"jakarta": Calendar("jakarta", "Asia/Jakarta", ()), "surabaya": Calendar("surabaya", "Asia/Jakarta", ())},
    )
    assert [mask.tolist() for _, mask in rows.parts(fitted)] == [[True, True]]  # type: ignore[arg-type]


def test_a_pooled_source_names_its_members_and_a_pairs_does_not() -> None:
    assert pooled_members("pooled:duo:jakarta@abc,new_york@def") == [("jakarta", "abc"), ("new_york", "def")]
    assert pooled_members("synthetic:seed=42") is None


def test_a_pooled_snapshot_whose_member_is_gone_is_named(pooled: tuple[Config, snapshots.SnapshotMeta]) -> None:
    config, meta = pooled
    broken = meta.model_copy(update={"source": f"pooled:{GROUP}:{BIG}@0000000000000000"})
    frame = snapshots.load_frame(config.storage.features_dir, meta)
    from modelyard.promotion.row_calendars import row_regions

    with pytest.raises(GateInputError, match=f"cannot read member '{BIG}'"):
        row_regions(config, broken, frame)


def test_the_challengers_run_is_read_once_for_its_split_and_its_baseline(
    pooled: tuple[Config, snapshots.SnapshotMeta], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 26: the split boundaries and the baseline's metrics come from one ``get_run``, not one each."""
    from mlflow.entities import Metric, Param, RunData

    from modelyard.promotion.gates import ModelScore

    config, meta = pooled
    fitted = FittedSpec.from_dict(meta.feature_spec or {})
    data = RunData(metrics=[Metric("baseline_holdout_mae", 2.5, 0, 0)], params=[Param("baseline_algorithm", "ridge")])
    reads: list[str] = []

    class Client:
        def get_run(self, run_id: str) -> Any:
            reads.append(run_id)
            return SimpleNamespace(data=data, info=SimpleNamespace(artifact_uri="mlflow-artifacts:/1/run-1/artifacts"))

    version = SimpleNamespace(**{**vars(_version(meta)), "run_id": "run-1"})
    monkeypatch.setattr(evidence, "load_version_with_spec", lambda v, folder: _loaded(fitted))
    monkeypatch.setattr(evidence, "score_model", lambda model, v, *rest: ModelScore("1", np.zeros(1), {}))
    monkeypatch.setattr(evidence, "serving_engines", lambda *args: [])
    monkeypatch.setattr(evidence, "serving_latencies", lambda engines, calls: [evidence.EngineLatency("native", 1.0)])

    found = evidence.collect_evidence(Client(), config, version, None, latency_calls=1)  # type: ignore[arg-type]

    assert reads == ["run-1"]
    assert (found.baseline_algorithm, found.baseline_metrics) == ("ridge", {"holdout_mae": 2.5})
    assert found.run_artifact_uri == "mlflow-artifacts:/1/run-1/artifacts"  # the decision's files go there, unread
