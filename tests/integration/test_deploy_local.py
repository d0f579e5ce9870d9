"""The local target end to end: the real MLflow server, a real ``modelyard serve`` process, real HTTP.

Every test registers its own models (a unique ``model_name_template``) and starts its own
serving process on a free port, which it stops at the end. Traffic comes from a small
load generator running in threads while the deploy swaps plans.
"""

from __future__ import annotations

import textwrap
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from modelyard.core.config import Config, load_config
from modelyard.deploy.rollout.apply import deploy_local
from modelyard.deploy.rollout.local_target import LocalTarget
from modelyard.deploy.rollout.mlflow_server import free_port
from modelyard.deploy.rollout.request import DeployChoices, DeployRequest
from modelyard.deploy.rollout.strategies import TargetError, parse_metrics
from modelyard.deploy.serving.plan import parse_plan
from modelyard.promotion.aliases import aliases, move_champion

REPO = Path(__file__).resolve().parents[2]
REGIONS = ("jakarta",)  # two services (one per family): enough for every path, half the model loads
pytestmark = pytest.mark.timeout(240)

FLAKY_MODEL = textwrap.dedent(
    """
    import mlflow
    import numpy as np


    class Flaky(mlflow.pyfunc.PythonModel):
        # Fails on long pickups: fine on its input example (short ones), broken under real traffic.
        def predict(self, context, model_input, params=None):
            if (model_input["pickup_distance_km"] > 5).any():
                raise ValueError("pickup_distance_km above 5 is not supported")
            return np.full(len(model_input), 0.5)


    mlflow.models.set_model(Flaky())
    """
)


@pytest.fixture
def config(tmp_path: Path, mlflow_uri: str) -> Config:
    raw = yaml.safe_load((REPO / "modelyard.yaml").read_text())
    raw["regions"] = [r for r in raw["regions"] if r["name"] in REGIONS]
    raw["storage"] = {"root": str(tmp_path / "data")}
    raw["mlflow"] = {
        "tracking_uri": mlflow_uri,
        "model_name_template": f"dl{uuid.uuid4().hex[:6]}-{{family}}-{{region}}",
    }
    raw["deploy"]["local"] = {"host": "127.0.0.1", "port": free_port()}
    raw["deploy"]["kubernetes"]["releases"] = {"sea": list(REGIONS)}
    raw["deploy"]["rollout"].update({"analysis_seconds": 4, "min_requests": 10, "canary_steps": [20, 100]})
    path = tmp_path / "modelyard.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(path, environ={})


def local_request(config: Config, **choices: Any) -> DeployRequest:
    """The request ``modelyard deploy --target local`` makes of these choices."""
    return DeployRequest.resolve(config, DeployChoices(target="local", **choices))


@pytest.fixture
def serving(config: Config, mlflow_uri: str) -> Iterator[LocalTarget]:
    target = LocalTarget.from_config(config, mlflow_uri, port=config.deploy.local.port)
    try:
        yield target
    finally:
        target.stop()


def features(config: Config, family: str, rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    names = config.family(family).features
    frame = pd.DataFrame(rng.uniform(0, 3, size=(rows, len(names))), columns=names)
    return frame.astype("float64")


def register_sklearn(config: Config, family: str, region: str, seed: int, serialization: str = "skops") -> str:
    """Fit a small scikit-learn model on random data, log and register it; its version."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression, Ridge

    x = features(config, family, 200, seed)
    if config.family(family).task == "classification":
        y = (x.iloc[:, 0] > 1.5).astype(int)
        model: Any = LogisticRegression(max_iter=200).fit(x, y)
    else:
        y = x.sum(axis=1)
        model = Ridge().fit(x, y)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model, name="model", signature=infer_signature(x, y), input_example=x.head(3), pip_requirements=[],
            registered_model_name=config.mlflow.model_name(family, region), serialization_format=serialization,
        )  # fmt: skip
    return str(info.registered_model_version)


def register_flaky(config: Config, family: str, region: str, folder: Path) -> str:
    """A pyfunc model (from code) that raises on pickups longer than 5 km."""
    import mlflow
    from mlflow.models import infer_signature

    code = folder / "flaky_model.py"
    code.write_text(FLAKY_MODEL)
    x = features(config, family, 20, 0)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(code), signature=infer_signature(x, np.zeros(len(x))),
            input_example=x.head(3), registered_model_name=config.mlflow.model_name(family, region),
        )  # fmt: skip
    return str(info.registered_model_version)


def promote(config: Config, family: str, region: str, version: str) -> None:
    client = MlflowClient()
    name = config.mlflow.model_name(family, region)
    move_champion(client, name, version, aliases(client, name))


def register_all(config: Config, seed: int = 0) -> dict[tuple[str, str], str]:
    versions = {}
    for family, region in config.pairs():
        versions[(family, region)] = register_sklearn(config, family, region, seed)
        promote(config, family, region, versions[(family, region)])
    return versions


@dataclass
class Load:
    """Background prediction traffic on one service; statuses and answering versions are counted."""

    url: str
    record: dict[str, float]
    far_share: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    versions: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, workers: int = 2) -> Load:
        for index in range(workers):
            thread = threading.Thread(target=self._run, args=(index,), daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def _run(self, index: int) -> None:
        rng = np.random.default_rng(index)
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                record = dict(self.record)
                record["pickup_distance_km"] = 9.0 if rng.random() < self.far_share else 1.0
                response = client.post(self.url, json=record)
                self.statuses[response.status_code] += 1
                if response.status_code == 200:
                    self.versions.append(str(response.json()["version"]))

    def finish(self) -> Load:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
        return self


def predict_url(target: LocalTarget, family: str, region: str) -> str:
    return f"{target.url}/v1/predict/{family}/{region}"


def readyz(target: LocalTarget) -> dict[str, Any]:
    return dict(httpx.get(f"{target.url}/readyz", timeout=10).json())


def test_rolling_promotion_under_load_has_no_failed_request_and_redeploy_is_a_no_op(
    config: Config, serving: LocalTarget
) -> None:
    versions = register_all(config)
    first = deploy_local(config)
    assert first.outcome == "deployed", first.reason
    assert first.versions["pickup_eta/jakarta"] == {"primary": versions[("pickup_eta", "jakarta")]}
    assert readyz(serving)["plan"]["active_digest"] == first.plan_digest

    again = deploy_local(config)
    assert again.outcome == "unchanged"
    assert again.plan_digest == first.plan_digest
    assert readyz(serving)["plan"]["swaps"]["applied"] == 1  # no second swap
    # The server this target started has its admin API on, for the target's token only.
    assert serving.token_file.stat().st_mode & 0o777 == 0o600
    refused = httpx.get(f"{serving.url}/admin/plan", timeout=10)
    assert refused.status_code == 401
    assert "Authorization: Bearer" in refused.json()["message"]
    assert serving.live() is not None
    assert serving.live().digest() == first.plan_digest  # type: ignore[union-attr]

    record = dict.fromkeys(config.family("driver_acceptance").features, 1.0)
    new = register_sklearn(config, "driver_acceptance", "jakarta", seed=7)
    promote(config, "driver_acceptance", "jakarta", new)
    load = Load(predict_url(serving, "driver_acceptance", "jakarta"), record).start()
    try:
        second = deploy_local(config)
        tail = len(load.versions)
        threading.Event().wait(1.0)
    finally:
        load.finish()

    assert second.outcome == "deployed", second.reason
    assert second.versions["driver_acceptance/jakarta"] == {"primary": new}
    assert second.changes == [
        f"driver_acceptance/jakarta: changed: primary v{versions[('driver_acceptance', 'jakarta')]} 100% → "
        f"primary v{new} 100%"
    ]
    assert set(load.statuses) == {200}, load.statuses  # zero failed requests across the swap
    assert sum(load.statuses.values()) > 20
    assert set(load.versions[tail:]) == {new}  # after the deploy returned only the new version answers


def test_canary_of_an_erroring_model_rolls_back_and_the_old_version_keeps_serving(
    config: Config, serving: LocalTarget, tmp_path: Path
) -> None:
    versions = register_all(config)
    live = deploy_local(config)
    assert live.outcome == "deployed", live.reason
    old = versions[("driver_acceptance", "jakarta")]
    flaky = register_flaky(config, "driver_acceptance", "jakarta", tmp_path)
    promote(config, "driver_acceptance", "jakarta", flaky)
    record = dict.fromkeys(config.family("driver_acceptance").features, 1.0)
    load = Load(predict_url(serving, "driver_acceptance", "jakarta"), record, far_share=0.5).start()
    try:
        result = deploy_local(config, local_request(config, strategy="canary"))
    finally:
        load.finish()

    assert result.outcome == "rolled-back"
    assert result.reason is not None
    assert "canary of driver_acceptance/jakarta: error rate" in result.reason
    assert [s.step for s in result.steps] == ["canary 20%", "canary 20% analysis", "rollback"]
    assert readyz(serving)["plan"]["active_digest"] == live.plan_digest
    answers = [httpx.post(predict_url(serving, "driver_acceptance", "jakarta"), json=record).json() for _ in range(20)]
    assert {a["version"] for a in answers} == {old}
    metrics = parse_metrics(httpx.get(f"{serving.url}/metrics").text)
    assert metrics.requests[("driver_acceptance", "jakarta", "canary", "error")] >= 5


def test_a_pickled_notebook_model_is_refused_at_load_and_the_deploy_rolls_back_saying_why(
    config: Config, serving: LocalTarget
) -> None:
    versions = register_all(config)
    live = deploy_local(config)
    assert live.outcome == "deployed", live.reason
    # Someone's notebook logs with cloudpickle (MLflow 2's default); the server loads no pickles by default.
    pickled = register_sklearn(config, "driver_acceptance", "jakarta", seed=3, serialization="cloudpickle")
    promote(config, "driver_acceptance", "jakarta", pickled)

    result = deploy_local(config)

    assert result.outcome == "rolled-back"
    reason = result.reason or ""
    uri = f"models:/{config.mlflow.model_name('driver_acceptance', 'jakarta')}/{pickled}"
    assert reason.count(uri) == 1, reason  # named once (it used to be repeated)
    for expected in ("loads no pickles", "serialization_format='skops'", "MODELYARD_SERVE_ALLOW_PICKLE=1"):
        assert expected in reason, reason
    assert readyz(serving)["plan"]["active_digest"] == live.plan_digest
    record = dict.fromkeys(config.family("driver_acceptance").features, 1.0)
    answer = httpx.post(predict_url(serving, "driver_acceptance", "jakarta"), json=record, timeout=10).json()
    assert answer["version"] == versions[("driver_acceptance", "jakarta")]


def test_a_registered_model_deleted_and_registered_again_is_served_anew_and_an_old_plan_is_refused(
    config: Config, serving: LocalTarget
) -> None:
    # Someone deletes the registered model in the MLflow UI and retrains: the new v1 is another model
    # under the old URI. It used to leave the plan "unchanged" and the server answering with the old model.
    register_all(config)
    first = deploy_local(config)
    assert first.outcome == "deployed", first.reason
    family, region = "pickup_eta", "jakarta"
    name = config.mlflow.model_name(family, region)
    url, record = predict_url(serving, family, region), dict.fromkeys(config.family(family).features, 1.0)
    before = httpx.post(url, json=record, timeout=10).json()
    pinned = readyz(serving)["models"][f"models:/{name}/1"]["source"]
    assert pinned
    assert pinned.startswith("models:/m-")
    old_plan = serving.plan_file.read_text()

    MlflowClient().delete_registered_model(name)
    assert register_sklearn(config, family, region, seed=7) == "1"
    promote(config, family, region, "1")
    again = deploy_local(config)

    assert again.outcome == "deployed", again.reason
    assert again.plan_digest != first.plan_digest
    after = httpx.post(url, json=record, timeout=10).json()
    assert after["version"] == before["version"] == "1"
    assert after["predictions"] != before["predictions"]  # the new model answers
    assert readyz(serving)["models"][f"models:/{name}/1"]["source"] not in (None, pinned)

    # A server restarted on the old plan refuses the version rather than serve another model under it.
    serving.stop()
    serving.plan_file.write_text(old_plan)
    with pytest.raises(TargetError, match="another model than the plan pinned"):
        serving.apply(parse_plan(yaml.safe_load(old_plan)))


def test_blue_green_keeps_the_old_version_warm_and_shadow_mirrors_the_new_one(
    config: Config, serving: LocalTarget
) -> None:
    versions = register_all(config)
    assert deploy_local(config).outcome == "deployed"
    old = versions[("pickup_eta", "jakarta")]
    green = register_sklearn(config, "pickup_eta", "jakarta", seed=3)
    promote(config, "pickup_eta", "jakarta", green)

    blue_green = deploy_local(config, local_request(config, strategy="blue-green"))

    assert blue_green.outcome == "deployed", blue_green.reason
    assert blue_green.versions["pickup_eta/jakarta"] == {"primary": green, "standby": old}
    assert [s.step for s in blue_green.steps] == ["warm green 0%", "switch 100%"]
    models = readyz(serving)["models"]
    assert models[f"models:/{config.mlflow.model_name('pickup_eta', 'jakarta')}/{old}"]["state"] == "ready"
    record = dict.fromkeys(config.family("pickup_eta").features, 1.0)
    url = predict_url(serving, "pickup_eta", "jakarta")
    assert {httpx.post(url, json=record).json()["version"] for _ in range(10)} == {green}

    shadowed = register_sklearn(config, "pickup_eta", "jakarta", seed=4)
    promote(config, "pickup_eta", "jakarta", shadowed)
    shadow = deploy_local(config, local_request(config, strategy="shadow", families=["pickup_eta"]))

    assert shadow.outcome == "deployed", shadow.reason
    assert shadow.versions["pickup_eta/jakarta"] == {"primary": green, "shadow:shadow": shadowed}
    assert shadow.versions["driver_acceptance/jakarta"] == blue_green.versions["driver_acceptance/jakarta"]
    assert {httpx.post(url, json=record).json()["version"] for _ in range(10)} == {green}
    assert shadow_answers(serving, "pickup_eta", "jakarta") >= 1


def shadow_answers(target: LocalTarget, family: str, region: str, wait: float = 10) -> float:
    """Shadow predictions that succeeded (they run off the request path: poll a little)."""
    import time

    deadline = time.monotonic() + wait
    sample = f'modelyard_shadow_predictions_total{{family="{family}",region="{region}",shadow="shadow",status="ok"}}'
    while True:
        for line in httpx.get(f"{target.url}/metrics").text.splitlines():
            if line.startswith(sample):
                return float(line.rsplit(" ", 1)[1])
        if time.monotonic() > deadline:
            return 0.0
        time.sleep(0.2)


def test_plan_command_shows_the_diff_and_dry_run_changes_nothing(config: Config, serving: LocalTarget) -> None:
    from modelyard.deploy.cli import app

    register_all(config)
    deployed = deploy_local(config)
    new = register_sklearn(config, "pickup_eta", "jakarta", seed=9)
    promote(config, "pickup_eta", "jakarta", new)
    runner = CliRunner()
    args = ["--config", str(config.storage.root.parent / "modelyard.yaml")]

    planned = runner.invoke(app, ["plan", *args], env={"COLUMNS": "200"})
    dry = runner.invoke(app, ["deploy", "--dry-run", *args], env={"COLUMNS": "200"})
    bad = runner.invoke(app, ["deploy", "--strategy", "sideways", *args])
    stranger = runner.invoke(app, ["plan", *args], env={"MODELYARD_SERVE_ADMIN_TOKEN": "not-the-servers-token"})

    assert planned.exit_code == 0, planned.output
    assert "pickup_eta/jakarta" in planned.output
    assert "changed" in planned.output
    assert f"primary v{new} 100%" in planned.output
    assert dry.exit_code == 0, dry.output
    assert "dry-run" in dry.output
    assert readyz(serving)["plan"]["active_digest"] == deployed.plan_digest
    assert bad.exit_code == 2
    assert "--strategy" in bad.output
    # A server that refuses the token may serve anything: never "nothing live" and a wrong diff.
    assert stranger.exit_code == 2, stranger.output
    assert "refused this command's admin token (401" in stranger.output
    assert "nothing live" not in stranger.output


def test_a_canary_overtaken_by_another_deploy_stops_and_leaves_the_other_plan_serving(
    config: Config, serving: LocalTarget
) -> None:
    """On-call runs ``modelyard deploy`` while the deployment DAG's canary is analysing: the canary used
    to go on with its stale plan over the newer one (or roll back over it on a breach)."""
    register_all(config)
    assert deploy_local(config).outcome == "deployed"
    family, region = "driver_acceptance", "jakarta"
    canaried = register_sklearn(config, family, region, seed=1)
    newer = register_sklearn(config, family, region, seed=2)
    promote(config, family, region, canaried)
    record = dict.fromkeys(config.family(family).features, 1.0)
    load = Load(predict_url(serving, family, region), record).start()
    outcome: dict[str, Any] = {}
    canary = threading.Thread(
        target=lambda: outcome.update(
            result=deploy_local(config, local_request(config, strategy="canary", analysis_seconds=20))
        ),
        daemon=True,
    )
    try:
        canary.start()
        assert wait_for_variant(serving, family, region, "canary"), "the canary step never went live"
        promote(config, family, region, newer)
        other = deploy_local(config)  # rolling, from the canary's plan as live
        canary.join(120)
    finally:
        load.finish()

    assert other.outcome == "deployed", other.reason
    result = outcome["result"]
    assert result.outcome == "failed", result
    assert result.reason is not None
    assert f"serves plan {other.plan_digest}, which this deploy did not apply" in result.reason
    assert [s.step for s in result.steps][-1] != "rollback"
    assert readyz(serving)["plan"]["active_digest"] == other.plan_digest
    answer = httpx.post(predict_url(serving, family, region), json=record, timeout=10).json()
    assert answer["version"] == newer
    assert set(load.statuses) == {200}


def wait_for_variant(target: LocalTarget, family: str, region: str, variant: str, seconds: float = 60) -> bool:
    """Whether the plan ``target`` serves routes (family, region) to ``variant`` within ``seconds``."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        live = target.live()
        service = live.service(family, region) if live else None
        if service is not None and any(v.name == variant for v in service.variants):
            return True
        time.sleep(0.2)
    return False
