"""The PNG plots a reviewer looks at in the MLflow UI, drawn with matplotlib's Agg backend.

Each function draws into a ``Figure`` built without pyplot (no global state, safe in threads).
:func:`write_holdout_plots` is what training calls: one figure per pair, cleared and redrawn for
each plot, fixed margins instead of a layout engine and a modest DPI, so a pair's plots cost a
fraction of a second (a layout engine re-measures every text on every save).
:func:`holdout_figures` and :func:`save_all` build and write separate figures (for notebooks).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

    from modelyard.training.metrics import Task


DPI = 80
WIDTH, HEIGHT = 6.0, 4.5
# Fixed margins (fractions of the figure) fit the titles and axis labels these plots have.
MARGINS = {"left": 0.13, "right": 0.96, "bottom": 0.12, "top": 0.9}
# Feature names sit left of the bars: a wider left margin.
IMPORTANCE_MARGINS = {**MARGINS, "left": 0.36}


def _figure(width: float = WIDTH, height: float = HEIGHT, fig: Figure | None = None) -> Figure:
    # The object API never touches pyplot's global state, so plotting is safe in threads.
    from matplotlib.figure import Figure

    if fig is None:
        fig = Figure(figsize=(width, height), dpi=DPI)
    else:
        fig.clear()
        fig.set_size_inches(width, height)
    fig.subplots_adjust(**MARGINS)
    return fig


def feature_importance(importance: dict[str, float], title: str, fig: Figure | None = None) -> Figure:
    """Horizontal bars, most important feature on top."""
    ordered = sorted(importance.items(), key=lambda item: item[1])
    height = max(3.0, 0.35 * len(ordered) + 1)
    fig = _figure(WIDTH, height, fig)
    fig.subplots_adjust(**{**IMPORTANCE_MARGINS, "bottom": 0.5 / height + 0.05, "top": 1 - 0.45 / height})
    ax = fig.add_subplot()
    ax.barh([name for name, _ in ordered], [value for _, value in ordered], color="#3b7dd8")
    fig.suptitle(title)  # centred on the figure: the axes start right of the long feature names
    ax.set_xlabel("importance")
    return fig


def roc_curve(y_true: np.ndarray, proba: np.ndarray, title: str, fig: Figure | None = None) -> Figure:
    """ROC curve with its AUC."""
    from sklearn.metrics import roc_auc_score
    from sklearn.metrics import roc_curve as sk_roc_curve

    fpr, tpr, _ = sk_roc_curve(y_true, proba)
    fig = _figure(fig=fig)
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, label=f"AUC {roc_auc_score(y_true, proba):.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(title=title, xlabel="false positive rate", ylabel="true positive rate")
    ax.legend(loc="lower right")
    return fig


def precision_recall_curve(y_true: np.ndarray, proba: np.ndarray, title: str, fig: Figure | None = None) -> Figure:
    """Precision-recall curve with average precision."""
    from sklearn.metrics import average_precision_score
    from sklearn.metrics import precision_recall_curve as sk_pr_curve

    precision, recall, _ = sk_pr_curve(y_true, proba)
    fig = _figure(fig=fig)
    ax = fig.add_subplot()
    ax.plot(recall, precision, label=f"AP {average_precision_score(y_true, proba):.3f}")
    ax.set(title=title, xlabel="recall", ylabel="precision", ylim=(0, 1.02))
    ax.legend(loc="lower left")
    return fig


def calibration(y_true: np.ndarray, proba: np.ndarray, title: str, bins: int = 10, fig: Figure | None = None) -> Figure:
    """Mean predicted probability against observed frequency, per probability bin."""
    from sklearn.calibration import calibration_curve

    observed, predicted = calibration_curve(y_true, proba, n_bins=bins, strategy="quantile")
    fig = _figure(fig=fig)
    ax = fig.add_subplot()
    ax.plot(predicted, observed, marker="o", label="model")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.set(title=title, xlabel="mean predicted probability", ylabel="observed frequency")
    ax.legend(loc="upper left")
    return fig


def residuals(y_true: np.ndarray, predicted: np.ndarray, title: str, fig: Figure | None = None) -> Figure:
    """Residuals (actual - predicted) against the prediction."""
    import numpy as np

    fig = _figure(fig=fig)
    ax = fig.add_subplot()
    ax.scatter(predicted, np.asarray(y_true) - np.asarray(predicted), s=6, alpha=0.4)
    ax.axhline(0, color="grey", linestyle="--")
    ax.set(title=title, xlabel="predicted", ylabel="actual - predicted")
    return fig


def predicted_vs_actual(y_true: np.ndarray, predicted: np.ndarray, title: str, fig: Figure | None = None) -> Figure:
    """Scatter of predicted against actual with the identity line."""
    import numpy as np

    low = float(min(np.min(y_true), np.min(predicted)))
    high = float(max(np.max(y_true), np.max(predicted)))
    fig = _figure(fig=fig)
    ax = fig.add_subplot()
    ax.scatter(y_true, predicted, s=6, alpha=0.4)
    ax.plot([low, high], [low, high], color="grey", linestyle="--")
    ax.set(title=title, xlabel="actual", ylabel="predicted")
    return fig


def holdout_figures(
    task: Task, y_true: np.ndarray, predicted: np.ndarray, importance: dict[str, float], label: str
) -> dict[str, Figure]:
    """Every plot for one model's holdout predictions, keyed by file name."""
    figures = {"feature_importance.png": feature_importance(importance, f"Feature importance - {label}")}
    if task == "classification":
        figures["roc_curve.png"] = roc_curve(y_true, predicted, f"ROC (holdout) - {label}")
        figures["precision_recall.png"] = precision_recall_curve(y_true, predicted, f"PR (holdout) - {label}")
        figures["calibration.png"] = calibration(y_true, predicted, f"Calibration (holdout) - {label}")
    else:
        figures["residuals.png"] = residuals(y_true, predicted, f"Residuals (holdout) - {label}")
        figures["predicted_vs_actual.png"] = predicted_vs_actual(y_true, predicted, f"Predicted vs actual - {label}")
    return figures


def write_holdout_plots(
    task: Task, y_true: np.ndarray, predicted: np.ndarray, importance: dict[str, float], label: str, folder: Path
) -> list[Path]:
    """Draw and write every plot of :func:`holdout_figures` into ``folder`` on one reused figure."""
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI)
    draws: dict[str, Callable[[], Figure]] = {
        "feature_importance.png": lambda: feature_importance(importance, f"Feature importance - {label}", fig)
    }
    if task == "classification":
        draws["roc_curve.png"] = lambda: roc_curve(y_true, predicted, f"ROC (holdout) - {label}", fig)
        draws["precision_recall.png"] = lambda: precision_recall_curve(
            y_true, predicted, f"PR (holdout) - {label}", fig
        )
        draws["calibration.png"] = lambda: calibration(y_true, predicted, f"Calibration (holdout) - {label}", fig=fig)
    else:
        draws["residuals.png"] = lambda: residuals(y_true, predicted, f"Residuals (holdout) - {label}", fig)
        draws["predicted_vs_actual.png"] = lambda: predicted_vs_actual(
            y_true, predicted, f"Predicted vs actual - {label}", fig
        )
    paths = []
    for name, draw in draws.items():
        draw().savefig(folder / name, format="png")
        paths.append(folder / name)
    return paths


def save_all(figures: dict[str, Figure], folder: Path) -> list[Path]:
    """Write each figure as PNG into ``folder``; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures.items():
        path = folder / name
        fig.savefig(path, format="png")
        paths.append(path)
    return paths
