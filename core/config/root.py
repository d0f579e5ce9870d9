"""The root of the config: :class:`Config`, its sections and the rules that span them."""

from __future__ import annotations

import hashlib

from pydantic import Field, PrivateAttr, model_validator

from modelyard.core import featurespec
from modelyard.core.config.base import ConfigError, Section, unique
from modelyard.core.config.data import DataSettings, Schedules
from modelyard.core.config.datasets import Dataset, check_conditions
from modelyard.core.config.deploy import DeploySettings, follow_regions
from modelyard.core.config.families import Family
from modelyard.core.config.gates import GateSettings, check_gate_overrides
from modelyard.core.config.monitoring import MonitoringSettings, check_drift_overrides
from modelyard.core.config.online import OnlineSettings
from modelyard.core.config.pairs import PairView
from modelyard.core.config.promotion import PromotionSettings, check_approval_overrides
from modelyard.core.config.regions import GroupDecl, Region, groups_serving, resolve_groups
from modelyard.core.config.retention import RetentionSettings, check_sample_days
from modelyard.core.config.scale import ScaleSettings
from modelyard.core.config.storage import Storage
from modelyard.core.config.tracking import MlflowSettings
from modelyard.core.config.training import TrainingSettings


class Config(Section):
    """The whole modelyard configuration."""

    project: str = "modelyard"
    seed: int = 42
    storage: Storage = Storage()
    mlflow: MlflowSettings = MlflowSettings()
    schedules: Schedules = Schedules()
    data: DataSettings = DataSettings()
    datasets: list[Dataset] = []
    regions: list[Region] = Field(min_length=1)
    # Region groups beside the default one per country (name -> regions, or "all"): ADR 0015.
    groups: dict[str, GroupDecl] = {}
    families: list[Family] = Field(min_length=1)
    training: TrainingSettings = TrainingSettings()
    gates: GateSettings = GateSettings()
    deploy: DeploySettings = DeploySettings()
    scale: ScaleSettings = ScaleSettings()
    promotion: PromotionSettings = PromotionSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    online: OnlineSettings = OnlineSettings()
    retention: RetentionSettings = RetentionSettings()
    _region_groups: dict[str, tuple[str, ...]] = PrivateAttr(default_factory=dict)
    _groups_by_region: dict[str, tuple[str, ...]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        unique("regions", [r.name for r in self.regions])
        unique("families", [f.name for f in self.families])
        unique("datasets", [d.name for d in self.datasets])
        groups = resolve_groups(self.groups, {r.name: r.country for r in self.regions})
        # Resolved once (thousands of regions ask "which groups serve me"), like deploy below.
        self._region_groups = groups
        self._groups_by_region = {r.name: tuple(groups_serving(groups, r.name)) for r in self.regions}
        for family in self.families:
            _check_family_data(self, family)
        names = set(self.region_names)
        unknown_rows = sorted(set(self.data.synthetic.rows_by_region) - names)
        if unknown_rows:
            raise ValueError(
                f"data.synthetic.rows_by_region names unknown regions {unknown_rows} (regions: {sorted(names)})"
            )
        for family in self.families:
            unknown = set(family.region_overrides) - names
            if unknown:
                raise ValueError(f"families '{family.name}' region_overrides name unknown regions {sorted(unknown)}")
        check_gate_overrides(self.gates.region_overrides, self.family_names, names, list(groups))
        check_approval_overrides(self.promotion.overrides, self.family_names, names)
        check_drift_overrides(self.monitoring.overrides, self.family_names, names)
        check_sample_days(self.retention, self.monitoring.window_hours)
        object.__setattr__(self, "deploy", follow_regions(self.deploy, self.region_names))  # frozen: set once here
        for window in self.deploy.windows:
            unknown = (set(window.regions) - names) | (set(window.families) - set(self.family_names))
            if unknown:
                raise ValueError(f"deploy.windows '{window.name}' names unknown families/regions {sorted(unknown)}")
        return self

    @property
    def region_names(self) -> list[str]:
        """The configured regions' names, in config order."""
        return [r.name for r in self.regions]

    @property
    def family_names(self) -> list[str]:
        """The configured families' names, in config order."""
        return [f.name for f in self.families]

    @property
    def region_groups(self) -> dict[str, tuple[str, ...]]:
        """Every region group, name -> member regions (config order): per country, then ``groups`` (ADR 0015)."""
        return dict(self._region_groups)

    def groups_of(self, region: str) -> list[str]:
        """The groups whose pooled model may serve ``region``, most specific first (ConfigError: unknown region)."""
        if region not in self._groups_by_region:
            self.region(region)  # raises, naming the configured regions
        return list(self._groups_by_region[region])

    def group_members(self, group: str) -> list[str]:
        """The regions group ``group`` pools, in config order; ConfigError when no group has that name."""
        groups = self.region_groups
        if group not in groups:
            known = ", ".join(groups) or "none; the regions of one country form one"
            raise ConfigError(f"unknown region group '{group}' (groups: {known})")
        return list(groups[group])

    def pooled_model_name(self, family: str, group: str) -> str:
        """The registered model of (family, group)'s pooled model: the pair template with the group as region."""
        return self.mlflow.model_name(self.family(family).name, group)

    def region(self, name: str) -> Region:
        """The region called ``name``; ConfigError when none is."""
        for region in self.regions:
            if region.name == name:
                return region
        raise ConfigError(f"unknown region '{name}' (configured: {', '.join(self.region_names)})")

    def family(self, name: str) -> Family:
        """The family called ``name``; ConfigError when none is."""
        for family in self.families:
            if family.name == name:
                return family
        raise ConfigError(f"unknown family '{name}' (configured: {', '.join(self.family_names)})")

    def dataset(self, name: str) -> Dataset:
        """The dataset called ``name``; ConfigError when none is."""
        for dataset in self.datasets:
            if dataset.name == name:
                return dataset
        raise ConfigError(f"unknown dataset '{name}' (declared: {', '.join(d.name for d in self.datasets) or 'none'})")

    def dataset_of(self, family: Family) -> Dataset:
        """The dataset ``family`` learns from: the one it names, else the only one declared.

        Raises:
            ConfigError: the family names none and there is not exactly one dataset.
        """
        if family.dataset:
            return self.dataset(family.dataset)
        if len(self.datasets) == 1:
            return self.datasets[0]
        raise ConfigError(
            f"families '{family.name}': name its dataset (dataset: one of "
            f"{', '.join(d.name for d in self.datasets) or 'none declared; add datasets:'})"
        )

    def feature_spec(self, family: Family, *, slices: bool = False) -> featurespec.FeatureSpec:
        """The feature spec of ``family`` over its dataset (with ``slices``: the slice features, then the model's).

        Raises:
            ConfigError: no dataset; featurespec.FeatureSpecError: a feature is invalid (names family and feature).
        """
        dataset = self.dataset_of(family)
        declared = [*family.slice_features, *family.feature_decls] if slices else family.feature_decls
        return featurespec.FeatureSpec(
            family=family.name,
            time_column=dataset.time_column,
            columns=dataset.column_types,
            features=tuple(f.to_def() for f in declared),
            bounds=dataset.column_bounds,
        )

    def pair_view(self, family: str, region: str) -> PairView:
        """Resolve one (family, region) once: its declarations, dataset, calendar, feature specs and model name.

        Raises:
            ConfigError: an unknown family or region, or a family without a dataset.
        """
        declared, place = self.family(family), self.region(region)
        return PairView(
            family=declared,
            region=place,
            dataset=self.dataset_of(declared),
            calendar=place.calendar(),
            spec=self.feature_spec(declared),
            snapshot_spec=self.feature_spec(declared, slices=True),
            model_name=self.mlflow.model_name(declared.name, place.name),
        )

    def pairs(self, families: list[str] | None = None, regions: list[str] | None = None) -> list[tuple[str, str]]:
        """Every (family, region) selected, in config order; unknown names raise ConfigError."""
        chosen_families = [self.family(f).name for f in families] if families else self.family_names
        chosen_regions = [self.region(r).name for r in regions] if regions else self.region_names
        return [(f, r) for f in chosen_families for r in chosen_regions]

    def pooled_pairs(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """(family, group) of every region group serving one of ``pairs``' regions: where its pooled snapshots live."""
        groups: dict[str, set[str]] = {}
        for family, region in pairs:
            groups.setdefault(family, set()).update(self.groups_of(region))
        return [(family, group) for family, names in groups.items() for group in sorted(names)]

    def config_hash(self) -> str:
        """A stable hash of the effective configuration, logged with every run (the ``config_hash`` tag)."""
        payload = self.model_dump_json().encode()
        return hashlib.sha256(payload).hexdigest()[:16]


def _check_family_data(config: Config, family: Family) -> None:
    if not config.datasets and family.dataset is None:
        return  # a config without datasets trains from snapshots built elsewhere (tests, older stores)
    try:
        dataset = config.dataset_of(family)
        config.feature_spec(family, slices=True)
    except (ConfigError, featurespec.FeatureSpecError) as exc:
        raise ValueError(str(exc)) from exc
    check_conditions(family.rows.where, dataset, f"families '{family.name}' rows.where")
    source = family.target_from.column if family.target_from else family.target
    column = dataset.columns.get(source)
    if column is None:
        raise ValueError(
            f"family '{family.name}': target column '{source}' is not declared in dataset '{dataset.name}'"
        )
    if column.type not in featurespec.NUMERIC_TYPES:
        raise ValueError(f"family '{family.name}': target column '{source}' is {column.type}, not a number")
