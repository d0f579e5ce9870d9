"""A (family, region) resolved against the config once, then passed around as a value.

The data stage reads the same facts of a pair at every step (its dataset, its feature spec,
its region's calendar); :meth:`Config.pair_view <modelyard.core.config.root.Config.pair_view>`
looks them up once, so no step goes back to the config for them.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelyard.core import featurespec
from modelyard.core.config.datasets import Dataset
from modelyard.core.config.families import Family
from modelyard.core.config.regions import Region


@dataclass(frozen=True)
class PairView:
    """What one (family, region) is, as the config declares it.

    Attributes:
        family: The family's declaration (task, target, features, slices).
        region: The region's declaration (time zone, festivals).
        dataset: The dataset the family learns from.
        calendar: What the time features need of the region: zone and festival dates.
        spec: The family's model features over the dataset, in model order.
        snapshot_spec: The slice features, then the model's: what a snapshot computes.
        model_name: The pair's registered model in MLflow.
    """

    family: Family
    region: Region
    dataset: Dataset
    calendar: featurespec.Calendar
    spec: featurespec.FeatureSpec
    snapshot_spec: featurespec.FeatureSpec
    model_name: str

    @property
    def timezone(self) -> str:
        """The region's IANA time zone."""
        return self.calendar.timezone

    @property
    def label(self) -> str:
        """``family/region``, as messages and reports name the pair."""
        return f"{self.family.name}/{self.region.name}"
