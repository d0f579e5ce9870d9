from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from modelyard.training import plots

IMPORTANCE = {f"feature_{i}": float(i) for i in range(8)}


def _sizes(paths: list[Path]) -> dict[str, tuple[int, int]]:
    sizes = {}
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG"
            sizes[path.name] = image.size
    return sizes


def test_classification_plots_are_written_as_pngs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y, proba = rng.integers(0, 2, 400), rng.random(400)
    paths = plots.write_holdout_plots("classification", y, proba, IMPORTANCE, "fam/region xgboost", tmp_path / "p")
    sizes = _sizes(paths)
    assert set(sizes) == {"feature_importance.png", "roc_curve.png", "precision_recall.png", "calibration.png"}
    assert sizes["roc_curve.png"] == (plots.WIDTH * plots.DPI, plots.HEIGHT * plots.DPI)


def test_regression_plots_match_the_separate_figures(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    y = rng.random(300) * 20
    predicted = y + rng.normal(0, 1, 300)
    reused = plots.write_holdout_plots("regression", y, predicted, IMPORTANCE, "label", tmp_path / "reused")
    separate = plots.save_all(plots.holdout_figures("regression", y, predicted, IMPORTANCE, "label"), tmp_path / "own")
    # One reused figure draws the same plots at the same sizes as one figure each.
    assert _sizes(reused) == _sizes(separate)
    assert set(_sizes(reused)) == {"feature_importance.png", "residuals.png", "predicted_vs_actual.png"}
