"""An MLflow server that goes away during training: a bounded retry, one line, no run left RUNNING."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from mlflow import MlflowClient

from modelyard.core.config import Config
from modelyard.core.tracking import TrackingServerUnreachableError
from modelyard.pipeline import snapshots
from modelyard.training import mlflow_log, train
from tests.stand_in import Handler, stand_in


class _GoneAfterHealth(Handler):
    """Healthy for the up-front check, then every call fails as a dying server's would (503)."""

    health_checks = 0

    def do_GET(self) -> None:
        if self.path.startswith("/health") and type(self).health_checks == 0:
            type(self).health_checks += 1
            self.answer(200)
        else:
            self.answer(503)

    do_POST = do_GET  # noqa: N815


@pytest.fixture
def dying_server() -> Iterator[str]:
    _GoneAfterHealth.health_checks = 0
    with stand_in(_GoneAfterHealth) as url:
        yield url


def test_a_server_gone_mid_run_stops_training_in_seconds_with_one_line(
    small_config: Config, frame_factory, dying_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in train.MLFLOW_RETRY_BUDGET:
        monkeypatch.delenv(key, raising=False)
    snapshots.publish(
        small_config.storage.features_dir, frame_factory(), family="acceptance", region="alpha",
        target=small_config.family("acceptance").target, time_column="event_time", source="unit-test",
        validation=snapshots.ValidationSummary(success=True, checks=3),
    )  # fmt: skip
    started = time.monotonic()
    with pytest.raises(TrackingServerUnreachableError, match=f"cannot reach the MLflow server at {dying_server}"):
        train.train_all(small_config, ["acceptance"], ["alpha"], tracking_uri=dying_server)
    assert time.monotonic() - started < 60  # MLflow's own defaults retry a dead server for minutes


def test_runs_left_running_by_a_killed_process_are_marked_failed_by_the_next_run(mlflow_uri: str) -> None:
    client = MlflowClient(mlflow_uri, mlflow_uri)
    experiment = client.create_experiment(f"outage-{time.time_ns()}")
    tags = {"family": "acceptance", "region": "alpha"}
    stale = client.create_run(experiment, tags=tags).info.run_id
    other_pair = client.create_run(experiment, tags={**tags, "region": "beta"}).info.run_id
    job = SimpleNamespace(family=SimpleNamespace(name="acceptance"), region="alpha", run_name="acceptance/alpha")
    started_later = int(time.time() * 1000) + 1000
    current = client.create_run(experiment, tags=tags, start_time=started_later + 1000).info.run_id

    marked = mlflow_log.fail_stale_runs(client, experiment, job, started_later)  # type: ignore[arg-type]

    assert marked == [stale]
    assert client.get_run(stale).info.status == "FAILED"
    assert "left RUNNING" in client.get_run(stale).data.tags["failure"]
    assert client.get_run(other_pair).info.status == "RUNNING"
    assert client.get_run(current).info.status == "RUNNING"  # this process's own run is not touched


def test_the_experiment_is_searched_once_per_process_and_a_run_finished_meanwhile_is_left_alone(
    mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = MlflowClient(mlflow_uri, mlflow_uri)
    experiment = client.create_experiment(f"stale-once-{time.time_ns()}")
    runs = {
        region: client.create_run(experiment, tags={"family": "acceptance", "region": region}).info.run_id
        for region in ("alpha", "beta", "gamma")
    }
    started_later = int(time.time() * 1000) + 1000
    searches: list[str] = []
    search = client.search_runs

    def counted(*args: Any, **kwargs: Any) -> Any:
        searches.append("search")
        return search(*args, **kwargs)

    monkeypatch.setattr(client, "search_runs", counted)

    def job(region: str) -> SimpleNamespace:
        return SimpleNamespace(
            family=SimpleNamespace(name="acceptance"), region=region, run_name=f"acceptance/{region}"
        )

    assert mlflow_log.fail_stale_runs(client, experiment, job("alpha"), started_later) == [runs["alpha"]]  # type: ignore[arg-type]
    client.set_terminated(runs["beta"], status="FINISHED")  # its process was alive after all
    assert mlflow_log.fail_stale_runs(client, experiment, job("beta"), started_later) == []  # type: ignore[arg-type]
    assert mlflow_log.fail_stale_runs(client, experiment, job("gamma"), started_later) == [runs["gamma"]]  # type: ignore[arg-type]
    assert searches == ["search"]
    assert client.get_run(runs["beta"]).info.status == "FINISHED"
    assert client.get_run(runs["gamma"]).info.status == "FAILED"
