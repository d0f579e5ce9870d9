"""The PNG plots a reviewer looks at in the MLflow UI, drawn with matplotlib's Agg backend.

Each plot kind is a small class owning one ``Figure`` built without pyplot (no global state): it
lays out its axes, labels, reference lines and legend once, and :meth:`draw` only swaps in a
model's data, limits and title. :func:`write_holdout_plots` is what training calls: it keeps one
instance per kind per thread and process, so a chunk worker builds each figure once and then
pays per pair for the data and the PNG alone (building axes and their ticks was most of a pair's
plotting CPU, issue 26). The plots on [0, 1] axes (ROC, precision-recall, calibration) go further:
their frame, ticks, labels and legend box are rendered once into a background, and a pair draws
only its curve, title and legend text over a copy of it (matplotlib's blitting); rendering text
is what a save costs. Fixed margins instead of a layout engine, a modest DPI, zlib's fastest level.
:func:`holdout_figures` and :func:`save_all` build and write separate figures (for notebooks).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from modelyard.training.metrics import Task


DPI = 80
WIDTH, HEIGHT = 6.0, 4.5
# Fixed margins (fractions of the figure) fit the titles and axis labels these plots have.
MARGINS = {"left": 0.13, "right": 0.96, "bottom": 0.12, "top": 0.9}
# Feature names sit left of the bars: a wider left margin.
IMPORTANCE_MARGINS = {**MARGINS, "left": 0.36}
# Rates and probabilities: the axes span [0, 1] whatever the model, so their ticks are fixed.
UNIT_TICKS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
UNIT_LIMITS = (-0.02, 1.02)
UNIT_XLABEL, UNIT_YLABEL = (0.5, -0.083), (-0.076, 0.5)  # axes fractions, as measured by matplotlib's own layout
# Scatter plots: a margin around the data, as matplotlib's autoscale leaves (5% a side).
PAD = 0.05
# zlib's fastest level: at the default (6) the encoding is ~5 ms a plot; the files are ~6% larger.
PNG_OPTIONS = {"compress_level": 1}


def _figure(width: float = WIDTH, height: float = HEIGHT, margins: dict[str, float] = MARGINS) -> tuple[Figure, Axes]:
    # The object API never touches pyplot's global state, so plotting is safe in threads.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(**margins)
    return fig, fig.add_subplot()


class _Plot:
    """A plot kind on a figure of its own; :meth:`save` writes what its last ``draw`` drew."""

    fig: Figure

    def save(self, path: Path) -> None:
        """Render the whole figure and write it as PNG."""
        self.fig.savefig(path, format="png", pil_kwargs=PNG_OPTIONS)


class _UnitPlot(_Plot):
    """A plot on [0, 1] axes: only its :meth:`changing` artists differ between models.

    The first :meth:`save` renders the figure with those artists transparent and keeps the pixels (the
    background); each save then restores the background and draws only them, in place, on top.
    """

    def __init__(self, xlabel: str, ylabel: str) -> None:
        self.fig, self.ax = _figure()
        _unit_axes(self.ax, xlabel, ylabel)
        self._background: Any = None  # matplotlib's BufferRegion

    def changing(self) -> list[Artist]:
        """What a model changes: its curve, the title, the legend's texts."""
        return []

    def save(self, path: Path) -> None:
        """Restore the background, draw this model's artists over it and write the pixels as PNG."""
        from PIL import Image

        canvas = self.fig.canvas
        if self._background is None:
            self._background = self._render_background()
        canvas.restore_region(self._background)  # type: ignore[attr-defined]
        for artist in self.changing():
            self.fig.draw_artist(artist)
        width, height = canvas.get_width_height()
        pixels = Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)  # type: ignore[attr-defined]
        pixels.save(path, format="png", **PNG_OPTIONS)

    def _render_background(self) -> Any:
        # Transparent rather than hidden: the legend keeps the size its texts give it.
        changing = self.changing()
        alphas = [artist.get_alpha() for artist in changing]
        for artist in changing:
            artist.set_alpha(0.0)
        self.fig.canvas.draw()
        for artist, alpha in zip(changing, alphas, strict=True):
            artist.set_alpha(alpha)
        return self.fig.canvas.copy_from_bbox(self.fig.bbox)  # type: ignore[attr-defined]


def _unit_axes(ax: Axes, xlabel: str, ylabel: str) -> None:
    ax.set(xlabel=xlabel, ylabel=ylabel, xlim=UNIT_LIMITS, ylim=UNIT_LIMITS, xticks=UNIT_TICKS, yticks=UNIT_TICKS)
    # Where matplotlib places the labels beside these ticks; fixed, it does not measure the ticks per save.
    ax.xaxis.set_label_coords(*UNIT_XLABEL)
    ax.yaxis.set_label_coords(*UNIT_YLABEL)


def _title(ax: Axes, title: str) -> None:
    # At the top of the axes (no ticks there): a fixed position spares measuring the axes on every save.
    ax.set_title(title, y=1.0)


def _padded(*values: np.ndarray) -> tuple[float, float]:
    """The range of ``values`` with :data:`PAD` of it added each side (1 each side when it is a point)."""
    import numpy as np

    low = float(min(np.min(v) for v in values))
    high = float(max(np.max(v) for v in values))
    pad = (high - low) * PAD or 1.0
    return low - pad, high + pad


class FeatureImportancePlot(_Plot):
    """Horizontal bars, most important feature on top (one instance per number of features)."""

    def __init__(self, features: int) -> None:
        height = max(3.0, 0.35 * features + 1)
        margins = {**IMPORTANCE_MARGINS, "bottom": 0.5 / height + 0.05, "top": 1 - 0.45 / height}
        self.fig, self.ax = _figure(WIDTH, height, margins)
        self.bars = self.ax.barh(range(features), [0.0] * features, color="#3b7dd8")
        self.ax.set_ylim(-0.6, features - 0.4)
        self.ax.set_xlabel("importance")

    def draw(self, importance: dict[str, float], title: str) -> Figure:
        """The bars of ``importance`` (as many features as this plot was built for)."""
        ordered = sorted(importance.items(), key=lambda item: item[1])
        for bar, (_, value) in zip(self.bars, ordered, strict=True):
            bar.set_width(value)
        self.ax.set_yticks(range(len(ordered)), labels=[name for name, _ in ordered])
        values = [0.0, *(value for _, value in ordered)]
        self.ax.set_xlim(min(values), (max(values) or 1.0) * (1 + PAD))
        self.fig.suptitle(title)  # centred on the figure: the axes start right of the long feature names
        return self.fig


class RocPlot(_UnitPlot):
    """ROC curve with its AUC."""

    def __init__(self) -> None:
        super().__init__("false positive rate", "true positive rate")
        (self.curve,) = self.ax.plot([], [])
        self.ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
        self.legend = self.ax.legend([self.curve], ["AUC 0.000"], loc="lower right")  # sized for its texts

    def changing(self) -> list[Artist]:
        """The curve, the title, the AUC."""
        return [self.curve, self.ax.title, *self.legend.get_texts()]

    def draw(self, y_true: np.ndarray, proba: np.ndarray, title: str) -> Figure:
        """The curve of ``proba`` against ``y_true``."""
        from sklearn.metrics import roc_auc_score
        from sklearn.metrics import roc_curve as sk_roc_curve

        fpr, tpr, _ = sk_roc_curve(y_true, proba)
        self.curve.set_data(fpr, tpr)
        self.legend.get_texts()[0].set_text(f"AUC {roc_auc_score(y_true, proba):.3f}")
        _title(self.ax, title)
        return self.fig


class PrecisionRecallPlot(_UnitPlot):
    """Precision-recall curve with average precision."""

    def __init__(self) -> None:
        super().__init__("recall", "precision")
        (self.curve,) = self.ax.plot([], [])
        self.legend = self.ax.legend([self.curve], ["AP 0.000"], loc="lower left")  # sized for its texts

    def changing(self) -> list[Artist]:
        """The curve, the title, the average precision."""
        return [self.curve, self.ax.title, *self.legend.get_texts()]

    def draw(self, y_true: np.ndarray, proba: np.ndarray, title: str) -> Figure:
        """The curve of ``proba`` against ``y_true``."""
        from sklearn.metrics import average_precision_score
        from sklearn.metrics import precision_recall_curve as sk_pr_curve

        precision, recall, _ = sk_pr_curve(y_true, proba)
        self.curve.set_data(recall, precision)
        self.legend.get_texts()[0].set_text(f"AP {average_precision_score(y_true, proba):.3f}")
        _title(self.ax, title)
        return self.fig


class CalibrationPlot(_UnitPlot):
    """Mean predicted probability against observed frequency, per probability bin."""

    def __init__(self) -> None:
        super().__init__("mean predicted probability", "observed frequency")
        (self.curve,) = self.ax.plot([], [], marker="o", label="model")
        self.ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
        self.ax.legend(loc="upper left")

    def changing(self) -> list[Artist]:
        """The curve and the title."""
        return [self.curve, self.ax.title]

    def draw(self, y_true: np.ndarray, proba: np.ndarray, title: str, bins: int = 10) -> Figure:
        """The ``bins`` quantile bins of ``proba`` against ``y_true``."""
        from sklearn.calibration import calibration_curve

        observed, predicted = calibration_curve(y_true, proba, n_bins=bins, strategy="quantile")
        self.curve.set_data(predicted, observed)
        _title(self.ax, title)
        return self.fig


class ResidualsPlot(_Plot):
    """Residuals (actual - predicted) against the prediction."""

    def __init__(self) -> None:
        import numpy as np

        self.fig, self.ax = _figure()
        self.points = self.ax.scatter(np.empty(0), np.empty(0), s=6, alpha=0.4)
        self.ax.axhline(0, color="grey", linestyle="--")
        self.ax.set(xlabel="predicted", ylabel="actual - predicted")

    def draw(self, y_true: np.ndarray, predicted: np.ndarray, title: str) -> Figure:
        """One point per holdout row."""
        import numpy as np

        predicted = np.asarray(predicted, dtype=np.float64)
        residual = np.asarray(y_true, dtype=np.float64) - predicted
        self.points.set_offsets(np.column_stack([predicted, residual]))
        self.ax.set(xlim=_padded(predicted), ylim=_padded(residual, np.zeros(1)))
        _title(self.ax, title)
        return self.fig


class PredictedVsActualPlot(_Plot):
    """Scatter of predicted against actual with the identity line."""

    def __init__(self) -> None:
        import numpy as np

        self.fig, self.ax = _figure()
        self.points = self.ax.scatter(np.empty(0), np.empty(0), s=6, alpha=0.4)
        (self.identity,) = self.ax.plot([], [], color="grey", linestyle="--")
        self.ax.set(xlabel="actual", ylabel="predicted")

    def draw(self, y_true: np.ndarray, predicted: np.ndarray, title: str) -> Figure:
        """One point per holdout row."""
        import numpy as np

        actual, predicted = np.asarray(y_true, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
        low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
        self.points.set_offsets(np.column_stack([actual, predicted]))
        self.identity.set_data([low, high], [low, high])
        self.ax.set(xlim=_padded(actual), ylim=_padded(predicted))
        _title(self.ax, title)
        return self.fig


def feature_importance(importance: dict[str, float], title: str) -> Figure:
    """Horizontal bars, most important feature on top (a figure of its own)."""
    return FeatureImportancePlot(len(importance)).draw(importance, title)


def roc_curve(y_true: np.ndarray, proba: np.ndarray, title: str) -> Figure:
    """ROC curve with its AUC (a figure of its own)."""
    return RocPlot().draw(y_true, proba, title)


def precision_recall_curve(y_true: np.ndarray, proba: np.ndarray, title: str) -> Figure:
    """Precision-recall curve with average precision (a figure of its own)."""
    return PrecisionRecallPlot().draw(y_true, proba, title)


def calibration(y_true: np.ndarray, proba: np.ndarray, title: str, bins: int = 10) -> Figure:
    """Mean predicted probability against observed frequency (a figure of its own)."""
    return CalibrationPlot().draw(y_true, proba, title, bins)


def residuals(y_true: np.ndarray, predicted: np.ndarray, title: str) -> Figure:
    """Residuals against the prediction (a figure of its own)."""
    return ResidualsPlot().draw(y_true, predicted, title)


def predicted_vs_actual(y_true: np.ndarray, predicted: np.ndarray, title: str) -> Figure:
    """Predicted against actual with the identity line (a figure of its own)."""
    return PredictedVsActualPlot().draw(y_true, predicted, title)


# One instance per plot kind (and feature count) per thread: figures are not shared between threads.
_KEPT = threading.local()


def _kept(kind: type[Any], *args: int) -> Any:
    """This thread's instance of plot class ``kind`` built with ``args``, built on first use."""
    plots: dict[tuple[Any, ...], Any] = _KEPT.__dict__.setdefault("plots", {})
    key = (kind, *args)
    if key not in plots:
        plots[key] = kind(*args)
    return plots[key]


def _drawn(
    task: Task, y_true: np.ndarray, predicted: np.ndarray, importance: dict[str, float], label: str, kept: bool
) -> dict[str, _Plot]:
    """Every plot of one model's holdout predictions, drawn, by file name (this thread's kept ones, or new)."""

    def plot(kind: type[Any], *args: int) -> Any:
        return _kept(kind, *args) if kept else kind(*args)

    importance_plot = plot(FeatureImportancePlot, len(importance))
    importance_plot.draw(importance, f"Feature importance - {label}")
    plots: dict[str, _Plot] = {"feature_importance.png": importance_plot}
    if task == "classification":
        curves = {
            "roc_curve.png": (plot(RocPlot), f"ROC (holdout) - {label}"),
            "precision_recall.png": (plot(PrecisionRecallPlot), f"PR (holdout) - {label}"),
            "calibration.png": (plot(CalibrationPlot), f"Calibration (holdout) - {label}"),
        }
    else:
        curves = {
            "residuals.png": (plot(ResidualsPlot), f"Residuals (holdout) - {label}"),
            "predicted_vs_actual.png": (plot(PredictedVsActualPlot), f"Predicted vs actual - {label}"),
        }
    for name, (drawn, title) in curves.items():
        drawn.draw(y_true, predicted, title)
        plots[name] = drawn
    return plots


def holdout_figures(
    task: Task, y_true: np.ndarray, predicted: np.ndarray, importance: dict[str, float], label: str
) -> dict[str, Figure]:
    """Every plot for one model's holdout predictions, keyed by file name, each a figure of its own."""
    return {name: plot.fig for name, plot in _drawn(task, y_true, predicted, importance, label, kept=False).items()}


def write_holdout_plots(
    task: Task, y_true: np.ndarray, predicted: np.ndarray, importance: dict[str, float], label: str, folder: Path
) -> list[Path]:
    """Draw and write every plot of :func:`holdout_figures` into ``folder``, on this thread's kept figures.

    Each kind has a figure of its own, redrawn for each model: nothing of the previous model stays.
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, plot in _drawn(task, y_true, predicted, importance, label, kept=True).items():
        plot.save(folder / name)
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
