"""Model families: the dataset each learns from, its target, declared features (model order) and slices."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from modelyard.core import featurespec
from modelyard.core.config.base import Section, unique
from modelyard.core.config.datasets import Condition

Task = Literal["classification", "regression"]
Algorithm = Literal["xgboost", "sklearn_logistic", "sklearn_ridge", "sklearn_random_forest"]
Comparison = Literal[">", ">=", "<", "<=", "==", "!="]


class FeatureDecl(Section):
    """A declared feature; the kinds and their fields are those of :mod:`core.featurespec`."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    kind: str = "column"
    column: str | None = None
    inputs: list[str] = []
    function: str | None = None
    lower: float | None = None
    upper: float | None = None
    edges: list[float] | None = None
    buckets: int | None = None
    op: Comparison | None = None
    value: float | None = None
    key: str | None = None
    every: Literal["hour", "day"] = "hour"
    relative: bool = True
    dtype: Literal["float", "int"] = "float"
    online: bool = False  # a window aggregate the server looks up by ``key`` in the online store (ADR 0019)
    default: float | None = None  # online: served when the store holds no value for the key, or times out

    def to_def(self) -> featurespec.FeatureDef:
        """The feature spec's definition of this feature."""
        return featurespec.FeatureDef.from_dict(self.model_dump(exclude_defaults=True) | {"name": self.name})


class TargetRule(Section):
    """A target derived from a column: 1 where ``column <op> value`` holds, else 0."""

    column: str
    op: Comparison
    value: float


class Slice(Section):
    """Rows whose feature value lies in [min, max] (either end optional) or in ``values``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_]+$")
    feature: str
    min: float | None = None
    max: float | None = None
    values: list[str | int | float | bool] | None = None

    @model_validator(mode="after")
    def _one_condition(self) -> Slice:
        if self.values is None and self.min is None and self.max is None:
            raise ValueError(f"slice '{self.name}' needs min and/or max, or values")
        return self


class RowSelection(Section):
    """Which rows a family learns from (and batch scoring scores): all of ``where`` hold, and a label.

    ``missing_target: drop`` drops rows without a label (counted per region in the build report);
    ``fail`` keeps them, so the build fails naming the region and the count.
    """

    where: list[Condition] = []
    missing_target: Literal["drop", "fail"] = "drop"


class RegionOverride(Section):
    """A region's own algorithm and/or params for a family (params merge over the family's)."""

    algorithm: Algorithm | None = None
    params: dict[str, Any] = {}


class Family(Section):
    """A model family: its dataset, target, features (model order) and slices.

    ``target`` is a column name, or ``{name, column, op, value}`` to derive it
    (``delayed = dep_delay > 15``). A feature given as a bare name is that column as it is.
    ``slice_features`` are computed for slices only, not given to the model.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    task: Task
    dataset: str | None = None  # default: the only dataset declared
    target: str
    target_from: TargetRule | None = None
    # Declared under the YAML key ``features``; ``features`` (the property) gives their names.
    feature_decls: list[FeatureDecl] = Field(alias="features", min_length=1)
    slice_features: list[FeatureDecl] = []
    slices: list[Slice] = []
    algorithm: Algorithm = "xgboost"
    params: dict[str, Any] = {}
    baseline: Algorithm | None = None
    region_overrides: dict[str, RegionOverride] = {}
    rows: RowSelection = RowSelection()

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        target = data.get("target")
        if isinstance(target, dict):
            rule = {k: v for k, v in target.items() if k != "name"}
            data["target"], data["target_from"] = target.get("name"), rule
        for key in ("features", "slice_features"):
            if isinstance(data.get(key), list):
                data[key] = [{"name": f} if isinstance(f, str) else f for f in data[key]]
        return data

    @model_validator(mode="after")
    def _names(self) -> Family:
        names = self.feature_names
        unique(f"families '{self.name}' features", names + [f.name for f in self.slice_features])
        if self.target in names:
            raise ValueError(f"family '{self.name}': the target '{self.target}' is also listed as a feature")
        known = set(names) | {f.name for f in self.slice_features}
        for piece in self.slices:
            if piece.feature not in known:
                raise ValueError(
                    f"family '{self.name}': slice '{piece.name}' reads feature '{piece.feature}', which is not a "
                    f"feature or slice_feature of the family ({', '.join(sorted(known))})"
                )
        return self

    @property
    def feature_names(self) -> list[str]:
        """The model's input features, in order."""
        return [f.name for f in self.feature_decls]

    @property
    def features(self) -> list[str]:
        """The model's input feature names, in order (the same as :attr:`feature_names`)."""
        return self.feature_names

    def algorithm_for(self, region: str) -> Algorithm:
        """The algorithm ``region`` trains: its override, else the family's."""
        override = self.region_overrides.get(region)
        return override.algorithm if override and override.algorithm else self.algorithm

    def params_for(self, region: str) -> dict[str, Any]:
        """The family's params with ``region``'s override on top."""
        override = self.region_overrides.get(region)
        return {**self.params, **(override.params if override else {})}
