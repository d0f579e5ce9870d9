"""The festival's drifting traffic is sent as a client sends it: online aggregates are looked up, not sent;
the other regions' usual traffic replays rows with the aggregates they had.

``area_demand_index`` is declared ``online`` in the demo (ADR 0019): the server reads it by its key
``pickup_area``, so the demo's clients send the key and never the aggregate (issue 27).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from modelyard.core.config import Config, load_config
from modelyard.deploy.devstack import festival
from modelyard.pipeline import snapshots
from modelyard.pipeline.build import build_all

REPO = Path(__file__).resolve().parents[4]
FAMILY, REGION, ONLINE, KEY = "driver_acceptance", "jakarta", "area_demand_index", "pickup_area"


def _config(folder: Path) -> Config:
    raw = yaml.safe_load((REPO / "modelyard.yaml").read_text())
    raw["families"] = [f for f in raw["families"] if f["name"] == FAMILY]
    raw["regions"] = [r for r in raw["regions"] if r["name"] == REGION]
    raw.pop("deploy")
    raw.pop("groups", None)
    raw["storage"] = {"root": str(folder / "store")}
    raw["data"] = {**raw["data"], "min_rows": 300, "synthetic": {**raw["data"]["synthetic"], "rows": 500}}
    raw.setdefault("monitoring", {})["rotate_seconds"] = 1
    path = folder / "modelyard.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(path, environ={})


def test_drifting_traffic_sends_the_online_key_and_never_the_online_aggregate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path)
    assert [r.status for r in build_all(config)] == ["published"]
    sent: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"/v1/predict/{FAMILY}/{REGION}"
        sent.extend(orjson.loads(request.content))
        return httpx.Response(200, json={"predictions": []})

    real_client = httpx.Client
    monkeypatch.setattr(festival.httpx, "Client", lambda **kw: real_client(transport=httpx.MockTransport(answer), **kw))
    monkeypatch.setattr(festival.time, "sleep", lambda seconds: None)

    festival.send_drifting_traffic(config, "http://serving.test", REGION, rows=40)

    assert len(sent) == 40
    assert all(KEY in record and ONLINE not in record for record in sent)
    assert all(record["driver_tenure_days"] <= 20 for record in sent)  # the festival's new drivers

    # A region without the festival replays its training rows with the aggregates they had: looked up, all
    # of them got the store's one latest value per area, and monitoring flagged the usual traffic as drifted.
    sent.clear()
    festival.send_drifting_traffic(config, "http://serving.test", "elsewhere", rows=40)

    assert len(sent) == 40
    assert all(KEY in record and ONLINE in record for record in sent)
    meta = snapshots.latest_snapshot(config.storage.features_dir, FAMILY, REGION)
    learnt = set(snapshots.load_frame(config.storage.features_dir, meta)[ONLINE])
    assert {record[ONLINE] for record in sent} <= learnt
