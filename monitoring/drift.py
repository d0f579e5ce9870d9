"""Drift statistics of served values against a reference window, in numpy only.

* Numeric features and predictions: the **population stability index** on the reference's
  quantile bins, ``sum((a - e) * ln(a / e))`` over bins, with a small floor on empty bins so
  that one empty bin does not make it infinite. Rule of thumb: < 0.1 stable, 0.1-0.25
  moderate, > 0.25 large shift.
* Categorical features (category codes, hours, weekdays, flags, buckets): the
  **Jensen-Shannon distance** (base 2, the square root of the divergence: 0 same, 1 disjoint)
  between the value frequencies, over the union of the values seen on either side.

Which test a feature gets follows its declared kind (:func:`is_categorical`).
See ``docs/adr/0010-monitoring-and-drift.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from modelyard.core.errors import ModelyardError
from modelyard.core.featurespec import INT_KINDS

if TYPE_CHECKING:
    import numpy as np

PSI_FLOOR = 1e-4
# Feature kinds whose values are a small set of integer codes (category codes, hours, flags, buckets).
CATEGORICAL_KINDS = INT_KINDS

Statistic = Literal["psi", "js"]


class DriftInputError(ModelyardError, ValueError):
    """A drift statistic got no reference values or mismatched inputs; the message says which."""


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift figure against its bound."""

    feature: str
    statistic: Statistic
    value: float
    bound: float
    reference_rows: int
    served_rows: int

    @property
    def drifted(self) -> bool:
        return self.value > self.bound

    def to_dict(self) -> dict[str, float | str | bool]:
        return {"statistic": self.statistic, "value": round(self.value, 6), "bound": self.bound}


def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """The inner edges of ``bins`` quantile bins of ``reference`` (ties merged)."""
    import numpy as np

    values = _finite(reference, "reference")
    return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1))[1:-1])


def psi(reference: np.ndarray, served: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``served`` against ``reference`` on ``reference``'s quantile bins.

    Raises:
        DriftInputError: either side has no finite value.
    """
    import numpy as np

    expected, actual = _finite(reference, "reference"), _finite(served, "served")
    edges = quantile_edges(expected, bins)
    e = np.bincount(np.searchsorted(edges, expected, side="right"), minlength=len(edges) + 1) / len(expected)
    a = np.bincount(np.searchsorted(edges, actual, side="right"), minlength=len(edges) + 1) / len(actual)
    e, a = np.maximum(e, PSI_FLOOR), np.maximum(a, PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def js_distance(reference: np.ndarray, served: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2) between the value frequencies of ``reference`` and ``served``.

    Raises:
        DriftInputError: either side is empty.
    """
    import numpy as np

    left, right = np.asarray(reference), np.asarray(served)
    if len(left) == 0 or len(right) == 0:
        raise DriftInputError(f"no {'reference' if len(left) == 0 else 'served'} values to compare")
    values = np.union1d(left, right)
    p = np.bincount(np.searchsorted(values, left), minlength=len(values)) / len(left)
    q = np.bincount(np.searchsorted(values, right), minlength=len(values)) / len(right)
    m = (p + q) / 2
    divergence = (_kl(p, m) + _kl(q, m)) / 2
    return float(np.sqrt(max(divergence, 0.0)))


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    import numpy as np

    mask = p > 0
    return float(np.sum(p[mask] * np.log2(p[mask] / q[mask])))


def is_categorical(kind: str) -> bool:
    """Whether a feature of this declared kind is compared by category frequencies (else by PSI)."""
    return kind in CATEGORICAL_KINDS


def feature_drifts(
    names: Sequence[str],
    kinds: Mapping[str, str],
    reference: Mapping[str, np.ndarray],
    served: np.ndarray,
    *,
    max_psi: float,
    max_js: float,
    bins: int = 10,
) -> list[FeatureDrift]:
    """Every feature's drift: column ``i`` of ``served`` is feature ``names[i]``.

    Raises:
        DriftInputError: ``served`` does not have one column per name, or a reference is missing.
    """
    if served.ndim != 2 or served.shape[1] != len(names):
        raise DriftInputError(f"served features have shape {served.shape}; expected (rows, {len(names)}) for {names}")
    out = []
    for index, name in enumerate(names):
        if name not in reference:
            raise DriftInputError(f"feature '{name}' has no reference values in the training window")
        column = served[:, index]
        if is_categorical(kinds.get(name, "column")):
            value, statistic, bound = js_distance(reference[name], column), "js", max_js
        else:
            value, statistic, bound = psi(reference[name], column, bins), "psi", max_psi
        out.append(FeatureDrift(name, statistic, value, bound, len(reference[name]), len(column)))  # type: ignore[arg-type]
    return out


def _finite(values: np.ndarray, side: str) -> np.ndarray:
    import numpy as np

    array = np.asarray(values, dtype=float)
    array = array[np.isfinite(array)]
    if len(array) == 0:
        raise DriftInputError(f"no finite {side} values to compare")
    return array
