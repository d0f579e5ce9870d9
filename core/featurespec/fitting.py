"""Fitting: what a spec learns on the training window (category vocabularies, quantile bucket edges)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from modelyard.core.featurespec.definitions import FeatureDef
from modelyard.core.featurespec.errors import FeatureSpecError
from modelyard.core.featurespec.inputs import Columns, column, numbers, text

Vocabularies = dict[str, tuple[str, ...]]
Edges = dict[str, tuple[float, ...]]


def learn(
    family: str, column_types: Mapping[str, str], features: Sequence[FeatureDef], columns: Columns
) -> tuple[Vocabularies, Edges]:
    """The vocabulary of every ``category`` feature and the edges of every ``bucket`` feature.

    Args:
        family: The family (for messages).
        column_types: The dataset's declared columns, name -> type.
        features: The declared features.
        columns: The training window's raw columns.

    Returns:
        Vocabularies (sorted text values) and bucket edges (declared, or learnt quantiles), by feature name.

    Raises:
        MissingInputError: a column a learnt feature reads is not in ``columns``.
        FeatureSpecError: a learnt bucket's column has no values.
    """
    vocabularies: Vocabularies = {}
    edges: Edges = {}
    for feature in features:
        if feature.kind == "category":
            values = text(column(family, feature, columns, feature.column or feature.name))
            vocabularies[feature.name] = tuple(sorted({v for v in values.tolist() if v is not None}))
        elif feature.kind == "bucket":
            edges[feature.name] = feature.edges or quantile_edges(family, column_types, feature, columns)
    return vocabularies, edges


def quantile_edges(
    family: str, column_types: Mapping[str, str], feature: FeatureDef, columns: Columns
) -> tuple[float, ...]:
    """``feature.buckets`` quantile edges of its column's values (missing ones left out), duplicates dropped.

    Raises:
        FeatureSpecError: the column has no values.
    """
    import numpy as np

    name = feature.column or feature.name
    values = numbers(family, feature, column(family, feature, columns, name), column_types[name]).astype(np.float64)
    values = values[~np.isnan(values)]
    if not len(values):
        raise FeatureSpecError(
            f"family '{family}', feature '{feature.name}': column '{name}' has no values to learn bucket edges on"
        )
    quantiles = np.quantile(values, np.linspace(0, 1, int(feature.buckets or 2) + 1)[1:-1])
    return tuple(float(q) for q in np.unique(quantiles))
