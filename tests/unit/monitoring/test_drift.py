"""Drift statistics against independent computations (scipy's Jensen-Shannon, a PSI by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from modelyard.monitoring.drift import DriftInputError, feature_drifts, is_categorical, js_distance, psi, quantile_edges

pytestmark = pytest.mark.unit


def _hand_psi(reference: list[float], served: list[float], edges: list[float]) -> float:
    """PSI written out: bin i is [edges[i-1], edges[i]), open at both ends; empty bins floored at 1e-4."""

    def shares(values: list[float]) -> list[float]:
        counts = [0] * (len(edges) + 1)
        for value in values:
            counts[sum(1 for edge in edges if value >= edge)] += 1
        return [max(c / len(values), 1e-4) for c in counts]

    e, a = shares(reference), shares(served)
    return sum((ai - ei) * math.log(ai / ei) for ai, ei in zip(a, e, strict=True))


def test_psi_matches_a_hand_computation_on_the_reference_quantile_bins():
    rng = np.random.default_rng(7)
    reference, served = rng.normal(0, 1, 5000), rng.normal(0.6, 1.2, 800)
    edges = quantile_edges(reference, 10)
    assert len(edges) == 9
    assert psi(reference, served, 10) == pytest.approx(_hand_psi(reference.tolist(), served.tolist(), edges.tolist()))


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(1)
    reference = rng.gamma(2.0, 3.0, 20_000)
    assert psi(reference, rng.gamma(2.0, 3.0, 2000)) < 0.03
    assert psi(reference, rng.gamma(2.0, 3.0, 2000) * 1.8) > 0.25


def test_psi_survives_an_empty_bin_and_ties():
    reference = np.array([0, 0, 0, 0, 1, 1, 2, 3, 4, 5] * 50, dtype=float)
    value = psi(reference, np.full(300, 9.0))  # every served value in the top bin
    assert math.isfinite(value)
    assert value > 1


def test_js_distance_matches_scipy_base_2():
    rng = np.random.default_rng(3)
    reference = rng.choice([0, 1, 2, 3], size=4000, p=[0.4, 0.3, 0.2, 0.1])
    served = rng.choice([0, 1, 2, 3, 4], size=700, p=[0.1, 0.2, 0.3, 0.3, 0.1])  # 4: never seen in training
    values = np.union1d(reference, served)
    p = np.array([(reference == v).mean() for v in values])
    q = np.array([(served == v).mean() for v in values])
    assert js_distance(reference, served) == pytest.approx(jensenshannon(p, q, base=2))


def test_js_distance_bounds():
    same = np.array([1, 2, 3, 1, 2, 3])
    assert js_distance(same, same) == pytest.approx(0.0, abs=1e-12)
    assert js_distance(np.array([0, 0]), np.array([1, 1])) == pytest.approx(1.0)


def test_empty_or_non_finite_inputs_are_named():
    with pytest.raises(DriftInputError, match="no finite served values"):
        psi(np.arange(10.0), np.array([np.nan]))
    with pytest.raises(DriftInputError, match="no reference values"):
        js_distance(np.array([]), np.array([1]))


def test_feature_drifts_pick_the_test_by_kind_and_flag_over_the_bound():
    rng = np.random.default_rng(5)
    reference = {"distance": rng.normal(5, 1, 3000), "hour": rng.integers(0, 24, 3000).astype(float)}
    served = np.column_stack([rng.normal(8, 1, 500), rng.integers(0, 24, 500)])
    kinds = {"distance": "log1p", "hour": "hour"}
    found = {
        d.feature: d for d in feature_drifts(["distance", "hour"], kinds, reference, served, max_psi=0.25, max_js=0.2)
    }
    assert (found["distance"].statistic, found["hour"].statistic) == ("psi", "js")
    assert found["distance"].drifted
    assert not found["hour"].drifted
    assert is_categorical("category")
    assert not is_categorical("column")


def test_feature_drifts_refuse_a_matrix_of_the_wrong_width():
    with pytest.raises(DriftInputError, match=r"shape \(3, 1\); expected \(rows, 2\)"):
        feature_drifts(["a", "b"], {}, {"a": np.ones(3), "b": np.ones(3)}, np.ones((3, 1)), max_psi=0.2, max_js=0.2)
