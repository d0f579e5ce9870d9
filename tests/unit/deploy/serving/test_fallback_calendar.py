"""A pooled model serving regions in different time zones computes each request's time features in the
request's region's zone and holidays (ADR 0015), on the real ASGI app (httpx's ASGI transport).

One pooled model, fitted for Jakarta's calendar, serves ``demand/jakarta`` (Asia/Jakarta) and
``demand/lima`` (America/Lima, with a holiday). Its predict function answers the features it was given,
so the response shows which hour and holiday flag the server computed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import httpx

from modelyard.core.config import load_config
from modelyard.core.featurespec import Calendar, FeatureDef, FeatureSpec
from modelyard.deploy.rollout.planner import PairState, PlanOptions, PooledState, build_plan
from modelyard.deploy.serving.active import build_active
from modelyard.deploy.serving.app import ServingApp
from modelyard.deploy.serving.background import BackgroundWorker
from modelyard.deploy.serving.features import RawFeatures
from modelyard.deploy.serving.manager import PlanManager
from modelyard.deploy.serving.plan import Plan, parse_plan
from modelyard.deploy.serving.runtime import ModelStatus, ServedModel
from modelyard.deploy.serving.schema import Feature, InputSchema
from modelyard.deploy.serving.settings import ServeSettings
from tests.unit.conftest import CONFIG_YAML

POOLED = "models:/demand-sea/3"
OWN = "models:/demand-lima/1"
JAKARTA = Calendar("jakarta", "Asia/Jakarta")
LIMA = Calendar("lima", "America/Lima", ((dt.date(2026, 6, 1), dt.date(2026, 6, 1)),))
INSTANT = "2026-06-01T12:00:00Z"  # 19:00 in Jakarta (UTC+7), 07:00 in Lima (UTC-5) on its holiday


def _model(uri: str, calendar: Calendar) -> ServedModel:
    """A model answering [hour, is_holiday] of each record: the features the server computed for it."""
    columns = {"booked_at": "timestamp", "distance_km": "float"}
    features = (FeatureDef("hour", "hour"), FeatureDef("is_holiday", "is_holiday"), FeatureDef("distance_km"))
    fitted = FeatureSpec("demand", "booked_at", columns, features).fit({}, calendar)
    schema = InputSchema([Feature(name, "double") for name in fitted.names])
    name, version = uri.removeprefix("models:/").split("/")
    status = ModelStatus(uri=uri, name=name, version=version, state="ready", task="regression")
    example = [{"booked_at": INSTANT, "distance_km": 1.0}]
    raw = RawFeatures(fitted, schema)
    answer = lambda m: m[:, 0] * 10 + m[:, 1]  # noqa: E731
    return ServedModel(status, schema, answer, inline=True, example=example, workdir=None, raw=raw)


def _service(region: str, timezone: str, uri: str, holidays: list[dict[str, str]]) -> dict[str, Any]:
    variants = [{"name": "primary", "model_uri": uri, "weight": 100}]
    return {"family": "demand", "region": region, "timezone": timezone, "variants": variants, "holidays": holidays}


def _plan(lima_uri: str = POOLED) -> Plan:
    holiday = [{"start": "2026-06-01", "end": "2026-06-01"}]
    services = [_service("jakarta", "Asia/Jakarta", POOLED, []), _service("lima", "America/Lima", lima_uri, holiday)]
    return parse_plan({"version": 1, "services": services})


def _answers(tmp_path: Path, plan: Plan) -> dict[str, list[float]]:
    """What each region's service answers for one record at :data:`INSTANT`, over HTTP."""
    answers: dict[str, list[float]] = {}

    async def main() -> None:
        app = ServingApp(ServeSettings(plan_path=tmp_path / "plan.json"))
        app.manager = PlanManager(app.settings, app.metrics)
        models = {POOLED: _model(POOLED, JAKARTA), OWN: _model(OWN, LIMA)}
        app.manager.active = build_active(
            plan, plan.digest(), models, old=None, shadow_pool=BackgroundWorker("shadows", maxsize=8),
            on_batch=lambda model, rows: None, prediction_log=None,
        )  # fmt: skip
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for region in ("jakarta", "lima"):
                response = await client.post(
                    f"/v1/predict/demand/{region}", json=[{"booked_at": INSTANT, "distance_km": 2.0}]
                )
                assert response.status_code == 200, response.text
                answers[region] = response.json()["predictions"]
        for batcher in app.manager.active.batchers.values():
            await batcher.close()

    asyncio.run(main())
    return answers


def test_a_pooled_model_computes_the_hour_in_the_requests_region_zone(tmp_path: Path) -> None:
    answers = _answers(tmp_path, _plan())
    # hour * 10 + is_holiday: the same UTC instant is 19:00 in Jakarta, 07:00 on a Lima holiday
    assert answers == {"jakarta": [190.0], "lima": [71.0]}


def test_a_regions_own_model_keeps_the_calendar_it_was_fitted_for(tmp_path: Path) -> None:
    own = _model(OWN, LIMA)
    assert own.calendar_for("lima", _plan(OWN).services[1].calendar) is None
    assert _answers(tmp_path, _plan(OWN))["lima"] == [71.0]


def test_an_own_model_of_a_region_declared_in_capitals_keeps_its_holidays() -> None:
    """A plan names regions in lower case (``jkt``), the config as declared (``JKT``): still its own model."""
    declared = Calendar("LIM", "America/Lima", LIMA.holidays)
    own = _model(OWN, declared)
    without_holidays = parse_plan({"version": 1, "services": [_service("lim", "America/Lima", OWN, [])]})
    assert own.calendar_for("lim", without_holidays.services[0].calendar) is None
    record = [{"booked_at": INSTANT, "distance_km": 2.0}]
    assert own.prepare(record, own.calendar_for("lim", without_holidays.services[0].calendar))[0, :2].tolist() == [
        7.0,
        1.0,
    ]


def test_without_the_region_calendar_the_pooled_model_would_use_its_own_zone() -> None:
    # the bug this guards against: featurising Lima's request in Jakarta's calendar gives 19:00, no holiday
    pooled = _model(POOLED, JAKARTA)
    record = [{"booked_at": INSTANT, "distance_km": 2.0}]
    assert pooled.prepare(record)[0, :2].tolist() == [19.0, 0.0]
    assert pooled.prepare(record, _plan().services[1].calendar())[0, :2].tolist() == [7.0, 1.0]


def test_the_planner_gives_a_fallback_service_its_regions_zone_and_holidays(tmp_path: Path) -> None:
    alpha = "{name: alpha, country: ID, timezone: Asia/Jakarta"
    festival = ", festivals: [{name: lebaran, start: 2026-03-16, end: 2026-03-27}]"
    text = (CONFIG_YAML % {"root": tmp_path / "store"}).replace(alpha + "}", alpha + festival + "}")
    (tmp_path / "modelyard.yaml").write_text(text)
    config = load_config(tmp_path / "modelyard.yaml", environ={})
    family = config.family_names[0]
    pooled = PooledState("country-id", f"{family}-country-id", {"champion": "2"})
    state = PairState(family, "alpha", f"{family}-alpha", {}, None, (pooled,))
    proposal = build_plan(config, [state], PlanOptions())
    service = proposal.plan.services[0]
    assert service.variants[0].model_uri == f"models:/{family}-country-id/2"
    assert proposal.fallbacks == {f"{family}/alpha": f"{family}-country-id v2 (group country-id)"}
    assert service.calendar() == Calendar("alpha", "Asia/Jakarta", ((dt.date(2026, 3, 16), dt.date(2026, 3, 27)),))
