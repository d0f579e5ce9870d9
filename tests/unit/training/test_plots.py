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


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_kept_figures_show_only_the_last_model(tmp_path: Path) -> None:
    """A worker's kept figures, redrawn for a second model, show what a new figure shows for it."""
    rng = np.random.default_rng(2)
    y, proba = rng.integers(0, 2, 300), rng.random(300)
    other = {f"other_feature_{i}": float(10 - i) for i in range(8)}
    first = plots.write_holdout_plots("classification", 1 - y, proba**3, other, "first/pair long label", tmp_path / "a")
    second = plots.write_holdout_plots("classification", y, proba, IMPORTANCE, "fam/region xgboost", tmp_path / "b")
    fresh = plots.holdout_figures("classification", y, proba, IMPORTANCE, "fam/region xgboost")
    expected = plots.save_all(fresh, tmp_path / "fresh")
    for before, kept, new in zip(first, second, expected, strict=True):
        differ = (_pixels(kept) != _pixels(new)).any(axis=2).mean()
        # Drawn over a kept background, a curve lies above the reference line: a few pixels at most.
        assert differ < 0.002, f"{kept.name}: {differ:.2%} of the pixels differ from a new figure's"
        assert (_pixels(kept) != _pixels(before)).any(axis=2).mean() > 0.01, f"{kept.name} still shows the first model"
