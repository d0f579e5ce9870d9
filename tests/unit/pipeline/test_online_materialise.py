"""Materialising online features from a snapshot frame: newest value per key, its window's end, the build note."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from modelyard.core.config import Config, load_config
from modelyard.core.online import OnlineStoreError, entry_key
from modelyard.pipeline.online import latest_values, materialise, materialise_notes, serving_env, store_from_config

REPO = Path(__file__).resolve().parents[3]
FAMILY, REGION = "driver_acceptance", "jakarta"


def _config(tmp_path: Path, **online: str) -> Config:
    environ = {"MODELYARD_STORAGE__ROOT": str(tmp_path)}
    environ.update({f"MODELYARD_ONLINE__{k.upper()}": v for k, v in online.items()})
    return load_config(REPO / "modelyard.yaml", environ=environ)


def _frame() -> pd.DataFrame:
    times = pd.to_datetime(
        ["2026-05-04T01:10:00Z", "2026-05-04T01:50:00Z", "2026-05-04T02:05:00Z", "2026-05-04T03:30:00Z"]
    )
    return pd.DataFrame(
        {
            "event_time": times,
            "raw.pickup_area": ["airport", "north", "airport", "north"],
            "area_demand_index": [0.5, 0.7, 1.5, 2.0],
        }
    )


def test_the_newest_row_per_key_with_the_end_of_its_local_hour(tmp_path: Path) -> None:
    config = _config(tmp_path)
    values = latest_values(_frame(), config.pair_view(FAMILY, REGION), "abc")
    assert [(v.key, v.value, v.source) for v in values] == [
        ("airport", 1.5, "snapshot:abc"),
        ("north", 2.0, "snapshot:abc"),
    ]
    # Jakarta is UTC+7 with whole-hour offsets: 02:05Z falls in the hour ending 03:00Z.
    assert [v.window_end for v in values] == [
        pd.Timestamp("2026-05-04T03:00:00Z").timestamp(),
        pd.Timestamp("2026-05-04T04:00:00Z").timestamp(),
    ]


def test_materialise_writes_the_embedded_store_the_server_is_pointed_at(tmp_path: Path) -> None:
    config = _config(tmp_path)
    done = materialise(config, config.pair_view(FAMILY, REGION), _frame(), "abc")
    assert done is not None
    assert (done.offered, done.landed) == (2, 2)
    store = store_from_config(config.online, config.storage.local_dir)
    key = entry_key("modelyard", FAMILY, REGION, "area_demand_index", "north")
    assert store.read([key])[0].value == 2.0  # type: ignore[union-attr]
    assert (
        serving_env(config)["MODELYARD_SERVE_ONLINE_URL"]
        == f"sqlite:///{(tmp_path / 'online' / 'online.sqlite').resolve()}"
    )


def test_a_store_that_does_not_answer_is_a_build_note_naming_the_retry(tmp_path: Path) -> None:
    config = _config(tmp_path, store="redis", url="redis://127.0.0.1:1/0")
    (note,) = materialise_notes(config, config.pair_view(FAMILY, REGION), _frame(), "abc")
    assert "redis://127.0.0.1:1/0: cannot write" in note
    assert f"modelyard features materialise --family {FAMILY} --region {REGION}" in note


def test_redis_without_a_url_is_refused_with_the_setting_to_fix(tmp_path: Path) -> None:
    config = _config(tmp_path, store="redis")
    with pytest.raises(OnlineStoreError, match=r"online\.url \(or MODELYARD_ONLINE__URL\)"):
        store_from_config(config.online, config.storage.local_dir)
