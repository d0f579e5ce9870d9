"""Window aggregates computed from a batch input, chunk by chunk, equal the data stage's over the whole table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelyard.core.config import Config, load_config
from modelyard.core.featurespec import FeatureDef
from modelyard.deploy.batch.windows import WindowTotals
from modelyard.pipeline import features
from modelyard.pipeline.generator import generate_for

REPO = Path(__file__).resolve().parents[4]
FAMILY, REGION = "driver_acceptance", "jakarta"


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(REPO / "modelyard.yaml", environ={})


@pytest.fixture(scope="module")
def raw(config: Config) -> pd.DataFrame:
    return generate_for(config, REGION, 3000)


def chunked(feature: FeatureDef, raw: pd.DataFrame, rows: int) -> np.ndarray:
    totals = WindowTotals(FAMILY, feature, "event_time", "Asia/Jakarta")
    parts = [raw.iloc[start : start + rows] for start in range(0, len(raw), rows)]
    for part in parts:
        totals.add(part)
    return np.concatenate([totals.values(part) for part in parts])


@pytest.mark.parametrize("rows", [3000, 700, 37])
def test_the_demo_demand_index_over_chunks_is_the_data_stages_exactly(
    config: Config, raw: pd.DataFrame, rows: int
) -> None:
    pair = config.pair_view(FAMILY, REGION)
    (feature,) = [f for f in pair.snapshot_spec.features if f.name == "area_demand_index"]
    expected = features.window_aggregates(raw, pair)["area_demand_index"]
    np.testing.assert_array_equal(chunked(feature, raw, rows), expected)


@pytest.mark.parametrize(
    "feature",
    [
        FeatureDef(name="trips", kind="window_count", key="pickup_area", every="day", relative=False),
        FeatureDef(name="mean_km", kind="window_mean", key="pickup_area", column="pickup_distance_km"),
    ],
    ids=["absolute daily count", "hourly mean"],
)
def test_counts_and_means_over_chunks_are_the_data_stages(
    config: Config, raw: pd.DataFrame, feature: FeatureDef
) -> None:
    pair = config.pair_view(FAMILY, REGION)
    gappy = raw.copy()
    gappy.loc[gappy.index % 7 == 0, "pickup_distance_km"] = np.nan  # a mean skips empty values, as pandas' does
    expected = features._window(gappy, pair, feature)  # the data stage's own definition
    np.testing.assert_allclose(chunked(feature, gappy, 450), expected, rtol=1e-12, atol=0)
