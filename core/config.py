"""The one typed configuration of modelyard, loaded from ``modelyard.yaml``.

Environment variables ``MODELYARD_<SECTION>__<KEY>`` override keys of the file
(pydantic-settings; ``MODELYARD_SEED=7`` is validated as an int, lists and mappings are read
as YAML: ``MODELYARD_DEPLOY__ROLLOUT__CANARY_STEPS='[10, 100]'``). The path of the file
itself comes from ``MODELYARD_CONFIG`` when set. ``MODELYARD_CONFIG_OVERLAY`` may name a
YAML file merged over it before the variables (mappings merge key by key, lists and scalars
replace): a running stack picks up a temporary change (the demo's festival) without anyone
editing the config file; a missing overlay file is ignored.

Which variables are config keys: a ``MODELYARD_*`` variable whose first segment (up to the
first ``__``) is a top-level key (``data``, ``deploy``, ``seed``, ...) must name a key all the
way down, or loading fails naming the variable and the valid keys (so a typo such as
``MODELYARD_DATA__SYNTEHTIC__ROWS`` is not ignored). Any other ``MODELYARD_*`` variable
(``MODELYARD_CONFIG``, ``MODELYARD_SERVE_*``, ``MODELYARD_PLAN``) belongs to another part of
modelyard and is ignored here. See docs/adr/0001.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import importlib.util
import os
import zoneinfo
from collections.abc import Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars
from upath import UPath

from modelyard.core import featurespec, storage
from modelyard.core.errors import ModelyardError

ENV_PREFIX = "MODELYARD_"
CONFIG_ENV = "MODELYARD_CONFIG"
OVERLAY_ENV = "MODELYARD_CONFIG_OVERLAY"
DEFAULT_CONFIG_FILE = "modelyard.yaml"
LOCK_PROTOCOLS = ("postgresql", "postgres")

Task = Literal["classification", "regression"]
Algorithm = Literal["xgboost", "sklearn_logistic", "sklearn_ridge", "sklearn_random_forest"]


class ConfigError(ModelyardError, ValueError):
    """The configuration file is missing or invalid; the message names the key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Festival(_Model):
    name: str
    start: dt.date
    end: dt.date

    @model_validator(mode="after")
    def _ordered(self) -> Festival:
        if self.end < self.start:
            raise ValueError(f"festival '{self.name}' ends ({self.end}) before it starts ({self.start})")
        return self


class Region(_Model):
    # Whatever the data's region column holds: a city code (JKT), a name (jakarta) or a numeric id (7).
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
    country: str = Field(min_length=2, max_length=2)
    timezone: str
    festivals: list[Festival] = []

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone '{value}' (use an IANA name such as Asia/Jakarta)") from exc
        return value

    def calendar(self) -> featurespec.Calendar:
        """What the time features need: the zone and the festival dates."""
        holidays = tuple((f.start, f.end) for f in self.festivals)
        return featurespec.Calendar(self.name, self.timezone, holidays)


ColumnType = Literal["float", "int", "bool", "category", "string", "timestamp"]
Comparison = Literal[">", ">=", "<", "<=", "==", "!="]


class Column(_Model):
    """One declared column of a dataset: its type and the constraints the raw suite checks."""

    type: ColumnType
    min: float | None = None
    max: float | None = None
    allowed: list[str | int | float | bool] | None = None
    nullable: bool = False
    max_null_fraction: float | None = Field(None, ge=0, le=1)  # implies nullable
    unique: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> Column:
        if (self.min is not None or self.max is not None) and self.type not in ("float", "int"):
            raise ValueError(f"min/max apply to float and int columns, not {self.type}")
        if self.min is not None and self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


class Expectation(_Model):
    """Any further Great Expectations 1.x expectation, by class name, with its arguments."""

    expectation: str = Field(pattern=r"^Expect[A-Za-z0-9]+$")
    kwargs: dict[str, Any] = {}

    @model_validator(mode="after")
    def _known_to_gx(self) -> Expectation:
        if importlib.util.find_spec("great_expectations") is None:
            return self  # a serving install has no GX and never runs suites
        import great_expectations.expectations as gxe

        cls = getattr(gxe, self.expectation, None)
        if cls is None:
            raise ValueError(f"'{self.expectation}' is not a class of great_expectations.expectations")
        try:
            cls(**self.kwargs)
        except Exception as exc:  # GX raises its own pydantic errors
            reason = " ".join(str(exc).split())
            raise ValueError(f"{self.expectation}: invalid kwargs {self.kwargs} ({reason})") from exc
        return self


class DatasetSource(_Model):
    kind: Literal["synthetic", "file"] = "synthetic"
    path: str | None = None  # CSV/Parquet path or glob when kind: file

    @model_validator(mode="after")
    def _path_for_files(self) -> DatasetSource:
        if self.kind == "file" and not self.path:
            raise ValueError("kind 'file' needs 'path' (a CSV/Parquet path or glob)")
        return self


class Dataset(_Model):
    """A declared table: where it comes from and every column with its type and constraints."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    source: DatasetSource = DatasetSource()
    time_column: str
    region_column: str
    key_column: str | None = None  # unique; a stable order for rows at the same time
    renames: dict[str, str] = {}  # source column name -> declared name
    columns: dict[str, Column] = Field(min_length=2)
    naive_timestamps: Literal["refuse", "utc"] = "refuse"  # times without an offset
    expectations: list[Expectation] = []
    # Outcomes of served requests: a row that holds the request id the server returned (or the
    # X-Request-Id the client sent) is the outcome of that prediction; the data stage hands such
    # rows (id, record index, target) to the monitoring stage for live quality.
    request_id_column: str | None = None
    request_record_column: str | None = None  # the row's index among the request's records (unset: 0)

    @model_validator(mode="after")
    def _roles_declared(self) -> Dataset:
        for role in ("time_column", "region_column", "key_column", "request_id_column", "request_record_column"):
            name = getattr(self, role)
            if name is not None and name not in self.columns:
                raise ValueError(f"{role} '{name}' is not a declared column ({', '.join(self.columns)})")
        if self.columns[self.time_column].type != "timestamp":
            raise ValueError(f"time_column '{self.time_column}' must be declared with type timestamp")
        if self.request_record_column and self.columns[self.request_record_column].type != "int":
            raise ValueError(f"request_record_column '{self.request_record_column}' must be declared with type int")
        if self.request_record_column and not self.request_id_column:
            raise ValueError("request_record_column needs request_id_column (the request the record belongs to)")
        unknown = sorted(set(self.renames.values()) - set(self.columns))
        if unknown:
            raise ValueError(f"renames name undeclared columns {unknown}")
        return self

    @property
    def column_types(self) -> dict[str, str]:
        return {name: column.type for name, column in self.columns.items()}


class FeatureDecl(_Model):
    """A declared feature; the kinds and their fields are those of :mod:`pipeline.featurespec`."""

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

    def to_def(self) -> featurespec.FeatureDef:
        return featurespec.FeatureDef.from_dict(self.model_dump(exclude_defaults=True) | {"name": self.name})


class TargetRule(_Model):
    """A target derived from a column: 1 where ``column <op> value`` holds, else 0."""

    column: str
    op: Comparison
    value: float


class Slice(_Model):
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


class RegionOverride(_Model):
    algorithm: Algorithm | None = None
    params: dict[str, Any] = {}


class Family(_Model):
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
        _unique(f"families '{self.name}' features", names + [f.name for f in self.slice_features])
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
        override = self.region_overrides.get(region)
        return override.algorithm if override and override.algorithm else self.algorithm

    def params_for(self, region: str) -> dict[str, Any]:
        override = self.region_overrides.get(region)
        return {**self.params, **(override.params if override else {})}


def _storage_root(value: Any) -> UPath:
    """``storage.root`` as a path or URL (see pipeline/storage.py); options are added by Storage."""
    if isinstance(value, UPath):
        return value
    if not isinstance(value, str | os.PathLike) or not os.fspath(value):
        raise ValueError("storage.root: a path or URL is required (e.g. .modelyard or s3://bucket/prefix)")
    return storage.storage_path(value)


StorageRoot = Annotated[
    UPath, PlainValidator(_storage_root), PlainSerializer(str, return_type=str), WithJsonSchema({"type": "string"})
]


class Storage(_Model):
    """Where modelyard keeps snapshots, reports, plans and state: a local folder or an object store.

    ``root`` is a path or a URL (``s3://bucket/prefix``, ``gs://``, ``abfs://``); ``options`` are
    its fsspec storage options, which may name environment variables (``${AWS_ENDPOINT_URL}``)
    and never hold a secret. ``local`` is this host's own folder (pid files, logs of processes it
    starts), by default the root when that is local. ``lock_url`` is where promotions lock a
    model: unset, a file lock under the (local) root; ``postgresql://...``, an advisory lock in
    that database (ADR 0004). ``conn_id`` is the Airflow Connection whose credentials the tasks
    use for an object-store root (unset: ``aws_default`` for ``s3://`` when it exists, else the
    environment; see ``plugins/hooks/storage.py``). See docs/production.md.
    """

    root: StorageRoot = Field(Path(".modelyard"), validate_default=True)
    options: dict[str, Any] = {}
    local: Path | None = None
    lock_url: str | None = None
    conn_id: str | None = None

    @model_validator(mode="after")
    def _connect(self) -> Storage:
        storage.check_no_secrets(str(self.root), self.options, "storage")
        if self.lock_url:
            storage.check_no_secrets(self.lock_url, {}, "storage.lock_url")
            if storage.protocol_of(self.lock_url) not in LOCK_PROTOCOLS:
                raise ValueError(
                    f"storage.lock_url: '{self.lock_url}' is not a postgresql:// URL (the promotion lock's "
                    "database, e.g. MLflow's backend store); leave it unset for a file lock on a local root"
                )
        elif not self.is_local:
            raise ValueError(
                f"storage.lock_url: required when storage.root is not a local folder ({self.root}): promotions "
                "on different hosts share no disk for a file lock; set it to postgresql://user@host/db "
                "(MLflow's backend database will do), password in PGPASSWORD or ~/.pgpass"
            )
        if self.options and not self.is_local:
            object.__setattr__(self, "root", storage.storage_path(str(self.root), self.options))
        return self

    @property
    def is_local(self) -> bool:
        """Whether the root is a folder on this host."""
        return storage.is_local(self.root)

    @property
    def local_dir(self) -> Path:
        """This host's own folder: ``local``, else the root when local, else ``~/.local/state/modelyard``."""
        if self.local is not None:
            return self.local
        if isinstance(self.root, Path):
            return self.root
        return Path.home() / ".local" / "state" / "modelyard"

    @property
    def raw_dir(self) -> UPath:
        return self.root / "raw"

    @property
    def features_dir(self) -> UPath:
        return self.root / "features"

    @property
    def state_dir(self) -> UPath:
        return self.root / "state"

    @property
    def reports_dir(self) -> UPath:
        return self.root / "reports"

    @property
    def samples_dir(self) -> UPath:
        """Where servers write their prediction logs and the monitoring stage reads them."""
        return self.root / "monitoring" / "samples"

    @property
    def outcomes_dir(self) -> UPath:
        """Where outcomes of served requests land (``<family>/<region>/*.csv|parquet``), for live quality."""
        return self.root / "monitoring" / "outcomes"


class MlflowSettings(_Model):
    tracking_uri: str = "http://127.0.0.1:5000"
    model_name_template: str = "{family}-{region}"

    def model_name(self, family: str, region: str) -> str:
        return self.model_name_template.format(family=family, region=region)


class Schedules(_Model):
    data_processing: str | None = "@daily"


class SyntheticSettings(_Model):
    rows: int = Field(6000, ge=10)
    start: dt.date = dt.date(2026, 1, 5)
    days: int = Field(120, ge=7)


class DataSettings(_Model):
    synthetic: SyntheticSettings = SyntheticSettings()
    min_rows: int = Field(500, ge=1)
    freshness_days: int = Field(3650, ge=1)


class TrainingSettings(_Model):
    holdout_days: int = Field(14, ge=1)
    validation_days: int = Field(14, ge=1)
    early_stopping_rounds: int = Field(20, ge=1)
    operating_threshold: float = Field(0.5, gt=0, lt=1)


class AbsoluteGate(_Model):
    metric: str
    op: Literal[">=", "<=", ">", "<"]
    threshold: float


class VersusChampionGate(_Model):
    """Challenger vs champion on the same holdout: allow at most ``max_regression`` (absolute,
    in the metric's unit) or demand at least ``min_improvement``; set one of the two."""

    metric: str
    direction: Literal["higher", "lower"]
    max_regression: float = Field(0.0, ge=0)
    min_improvement: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _one_bound(self) -> VersusChampionGate:
        if self.max_regression and self.min_improvement:
            raise ValueError(f"gate on '{self.metric}': set max_regression or min_improvement, not both")
        return self


class TaskGates(_Model):
    absolute: list[AbsoluteGate] = []
    versus_champion: list[VersusChampionGate] = []


class GateDefaults(_Model):
    classification: TaskGates = TaskGates()
    regression: TaskGates = TaskGates()
    max_model_size_mb: float = Field(50, gt=0)
    max_p99_latency_ms: float = Field(20, gt=0)
    max_psi: float = Field(0.25, gt=0)
    # Relative: a slice metric may be at most this fraction worse than the champion's on that slice.
    max_slice_regression: float = Field(0.05, ge=0)
    latency_calls: int = Field(300, ge=20, le=100_000)


class GateSettings(_Model):
    defaults: GateDefaults = GateDefaults()
    # "<family>" or "<family>/<region>" -> partial GateDefaults fields.
    region_overrides: dict[str, dict[str, Any]] = {}


Approval = Literal["automatic", "required"]


class ApprovalOverride(_Model):
    """The approval policy of one family, one region or one pair; unset keys keep the broader value."""

    approval: Approval | None = None
    approval_timeout: dt.timedelta | None = Field(None, gt=dt.timedelta(0))


class PromotionSettings(_Model):
    """Whether a challenger that passed every gate is promoted at once or waits for a person.

    ``approval: required`` parks it in Airflow's Required Actions for at most
    ``approval_timeout`` (seconds or ISO 8601, e.g. ``PT24H``); no answer in time leaves it
    the challenger. ``overrides`` keys are ``<family>``, ``*/<region>`` or ``<family>/<region>``
    (the most specific wins). See docs/adr/0011-approval-in-airflow.md.
    """

    approval: Approval = "automatic"
    approval_timeout: dt.timedelta = Field(dt.timedelta(hours=24), gt=dt.timedelta(0))
    overrides: dict[str, ApprovalOverride] = {}


class LocalTarget(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)


class KubernetesTarget(_Model):
    namespace: str = "modelyard"
    # A relative path names a chart shipped inside the package; an absolute one, a chart of your own.
    chart: str = "helm/modelyard-serving"
    timeout_seconds: int = Field(600, ge=1)
    releases: dict[str, list[str]] = {}
    # Chart values every release gets (image, mlflow.existingSecret, resources, ...); the plan is added per release.
    values: dict[str, Any] = {}


class RolloutSettings(_Model):
    strategy: Literal["rolling", "canary", "blue-green", "shadow"] = "rolling"
    canary_steps: list[int] = [10, 50, 100]
    analysis_seconds: float = Field(20, ge=0)
    max_error_rate: float = Field(0.01, ge=0, le=1)
    max_p99_ms: float = Field(100, gt=0)
    # A canary step is judged only once the canary variant answered this many requests.
    min_requests: int = Field(20, ge=1)

    @field_validator("canary_steps")
    @classmethod
    def _increasing_percentages(cls, steps: list[int]) -> list[int]:
        if not steps or steps != sorted(set(steps)) or steps[0] <= 0 or steps[-1] != 100:
            raise ValueError("canary_steps must be increasing percentages ending at 100, e.g. [10, 50, 100]")
        return steps


class DeployWindow(_Model):
    """Route a (family, region) to the version an MLflow alias names while a local-time window holds.

    Conditions combine with AND: ``festivals`` (the region's festival dates), ``weekdays``,
    ``hours`` ([start, end) local hours; start > end wraps past midnight). A model without
    the alias is served as usual.
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_\-]*$")
    alias: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    families: list[str] = []
    regions: list[str] = []
    festivals: bool = False
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = []
    hours: tuple[int, int] | None = None

    @model_validator(mode="after")
    def _has_condition(self) -> DeployWindow:
        if not (self.festivals or self.weekdays or self.hours):
            raise ValueError(f"window '{self.name}' has no condition: set festivals, weekdays and/or hours")
        if self.hours and not (
            0 <= self.hours[0] <= 23 and 1 <= self.hours[1] <= 24 and self.hours[0] != self.hours[1]
        ):
            raise ValueError(f"window '{self.name}': hours must be [start 0-23, end 1-24] with start != end")
        return self


class ScaleSettings(_Model):
    """How a stage fans out over many pairs: at most ``max_chunks`` mapped tasks per run, each
    running its pairs (``chunk_size`` of them, more once ``max_chunks`` is reached) in a pool of
    ``workers`` processes (1: in the task's own process). See ADR 0008."""

    chunk_size: int = Field(25, ge=1)
    max_chunks: int = Field(32, ge=1, le=1024)
    workers: int = Field(2, ge=1, le=64)


class DriftBounds(_Model):
    """When a served (family, region) counts as drifted (``monitoring.defaults`` / ``overrides``).

    PSI (population stability index, on the training window's quantile bins): < 0.1 stable,
    0.1-0.25 moderate, > 0.25 large. Jensen-Shannon distance (base 2, 0 = same, 1 = disjoint)
    for categorical features (category codes, hour, weekday, flags, buckets).
    """

    max_psi: float = Field(0.25, gt=0, description="numeric feature: PSI above this is drift")
    max_js: float = Field(0.2, gt=0, le=1, description="categorical feature: JS distance above this is drift")
    max_prediction_psi: float = Field(0.25, gt=0, description="served predictions vs the holdout's")
    min_samples: int = Field(200, ge=1, description="sampled rows below which no verdict is given")


class MonitoringSettings(_Model):
    """The monitoring stage: what servers sample and when a pair counts as drifted (ADR 0010)."""

    schedule: str | None = "@hourly"
    window_hours: int = Field(24, ge=1, le=24 * 90, description="how far back the samples are read")
    sample_rate: float = Field(0.05, ge=0, le=1, description="share of requests a server deployed here samples")
    rotate_mb: float = Field(8.0, gt=0, le=1024, description="a sample file is published at this many MB of JSON")
    rotate_seconds: float = Field(300.0, ge=1, le=86400, description="... or at this age")
    bins: int = Field(10, ge=2, le=100, description="quantile bins of the training window for PSI")
    defaults: DriftBounds = DriftBounds()
    # "<family>" or "<family>/<region>" -> partial DriftBounds fields.
    overrides: dict[str, dict[str, Any]] = {}

    def bounds(self, family: str, region: str) -> DriftBounds:
        """The defaults with the family's, then the region's override on top."""
        merged = self.defaults.model_dump()
        for key in (family, f"{family}/{region}"):
            merged.update(self.overrides.get(key, {}))
        return DriftBounds(**merged)


class DeploySettings(_Model):
    target: Literal["local", "kubernetes"] = "local"
    local: LocalTarget = LocalTarget()
    kubernetes: KubernetesTarget = KubernetesTarget()
    rollout: RolloutSettings = RolloutSettings()
    windows: list[DeployWindow] = []


class Config(_Model):
    """The whole modelyard configuration."""

    project: str = "modelyard"
    seed: int = 42
    storage: Storage = Storage()
    mlflow: MlflowSettings = MlflowSettings()
    schedules: Schedules = Schedules()
    data: DataSettings = DataSettings()
    datasets: list[Dataset] = []
    regions: list[Region] = Field(min_length=1)
    families: list[Family] = Field(min_length=1)
    training: TrainingSettings = TrainingSettings()
    gates: GateSettings = GateSettings()
    deploy: DeploySettings = DeploySettings()
    scale: ScaleSettings = ScaleSettings()
    promotion: PromotionSettings = PromotionSettings()
    monitoring: MonitoringSettings = MonitoringSettings()

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        _unique("regions", [r.name for r in self.regions])
        _unique("families", [f.name for f in self.families])
        _unique("datasets", [d.name for d in self.datasets])
        for family in self.families:
            _check_family_data(self, family)
        names = set(self.region_names)
        for family in self.families:
            unknown = set(family.region_overrides) - names
            if unknown:
                raise ValueError(f"families '{family.name}' region_overrides name unknown regions {sorted(unknown)}")
        _check_gate_overrides(self.gates.region_overrides, self.family_names, names)
        _check_approval_overrides(self.promotion.overrides, self.family_names, names)
        _check_drift_overrides(self.monitoring.overrides, self.family_names, names)
        for release, regions in self.deploy.kubernetes.releases.items():
            unknown = set(regions) - names
            if unknown:
                raise ValueError(f"deploy.kubernetes.releases '{release}' names unknown regions {sorted(unknown)}")
        for window in self.deploy.windows:
            unknown = (set(window.regions) - names) | (set(window.families) - set(self.family_names))
            if unknown:
                raise ValueError(f"deploy.windows '{window.name}' names unknown families/regions {sorted(unknown)}")
        return self

    @property
    def region_names(self) -> list[str]:
        return [r.name for r in self.regions]

    @property
    def family_names(self) -> list[str]:
        return [f.name for f in self.families]

    def region(self, name: str) -> Region:
        for region in self.regions:
            if region.name == name:
                return region
        raise ConfigError(f"unknown region '{name}' (configured: {', '.join(self.region_names)})")

    def family(self, name: str) -> Family:
        for family in self.families:
            if family.name == name:
                return family
        raise ConfigError(f"unknown family '{name}' (configured: {', '.join(self.family_names)})")

    def dataset(self, name: str) -> Dataset:
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
        )

    def pairs(self, families: list[str] | None = None, regions: list[str] | None = None) -> list[tuple[str, str]]:
        """Every (family, region) selected, in config order; unknown names raise ConfigError."""
        chosen_families = [self.family(f).name for f in families] if families else self.family_names
        chosen_regions = [self.region(r).name for r in regions] if regions else self.region_names
        return [(f, r) for f in chosen_families for r in chosen_regions]

    def digest(self) -> str:
        """A stable hash of the effective configuration, logged with every run."""
        payload = self.model_dump_json().encode()
        return hashlib.sha256(payload).hexdigest()[:16]


# Besides GateDefaults' own fields, an override may give these at its top level (for the family's task).
GATE_TASK_KEYS = ("absolute", "versus_champion")


def _check_drift_overrides(overrides: dict[str, dict[str, Any]], families: list[str], regions: set[str]) -> None:
    for key, override in overrides.items():
        family, _, region = key.partition("/")
        if family not in families or (region and region not in regions):
            raise ValueError(
                f"monitoring.overrides '{key}': expected '<family>' or '<family>/<region>' with a configured "
                f"family ({', '.join(families)}) and region ({', '.join(sorted(regions))})"
            )
        allowed = sorted(DriftBounds.model_fields)
        unknown = set(override) - set(allowed)
        if unknown:
            raise ValueError(f"monitoring.overrides '{key}': unknown keys {sorted(unknown)} (allowed: {allowed})")
        DriftBounds(**override)


def _check_gate_overrides(overrides: dict[str, dict[str, Any]], families: list[str], regions: set[str]) -> None:
    allowed = set(GateDefaults.model_fields) | set(GATE_TASK_KEYS)
    for key, override in overrides.items():
        family, _, region = key.partition("/")
        if family not in families or (region and region not in regions):
            raise ValueError(
                f"gates.region_overrides '{key}': expected '<family>' or '<family>/<region>' with a configured "
                f"family ({', '.join(families)}) and region ({', '.join(sorted(regions))})"
            )
        unknown = set(override) - allowed
        if unknown:
            raise ValueError(
                f"gates.region_overrides '{key}': unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})"
            )


def _check_approval_overrides(overrides: Mapping[str, Any], families: list[str], regions: set[str]) -> None:
    for key in overrides:
        family, _, region = key.partition("/")
        known = family in families and (not region or region in regions)
        if not known and not (family == "*" and region in regions):
            raise ValueError(
                f"promotion.overrides '{key}': expected '<family>', '*/<region>' or '<family>/<region>' with a "
                f"configured family ({', '.join(families)}) and region ({', '.join(sorted(regions))})"
            )


def _check_family_data(config: Config, family: Family) -> None:
    if not config.datasets and family.dataset is None:
        return  # a config without datasets trains from snapshots built elsewhere (tests, older stores)
    try:
        dataset = config.dataset_of(family)
        config.feature_spec(family, slices=True)
    except (ConfigError, featurespec.FeatureSpecError) as exc:
        raise ValueError(str(exc)) from exc
    source = family.target_from.column if family.target_from else family.target
    column = dataset.columns.get(source)
    if column is None:
        raise ValueError(
            f"family '{family.name}': target column '{source}' is not declared in dataset '{dataset.name}'"
        )
    if column.type not in featurespec.NUMERIC_TYPES:
        raise ValueError(f"family '{family.name}': target column '{source}' is {column.type}, not a number")


def _unique(key: str, names: list[str]) -> None:
    seen = {n for n in names if names.count(n) > 1}
    if seen:
        raise ValueError(f"{key}: duplicate names {sorted(seen)}")


def config_path(path: str | Path | None = None) -> Path:
    """The config file to read: the argument, else $MODELYARD_CONFIG, else ./modelyard.yaml."""
    return Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_FILE)


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the file, merge the overlay and the environment over it, and validate.

    Priority, highest first: ``MODELYARD_<SECTION>__<KEY>`` variables, the overlay file named
    by ``MODELYARD_CONFIG_OVERLAY``, the config file (see the module docstring and ADR 0001).

    Raises:
        ConfigError: the file is missing, unreadable or not YAML, an override names no key or
            is not YAML, or a key is invalid; the message names the file, variable or key.
    """
    file = config_path(path)
    environ = os.environ if environ is None else environ
    _require_file(file, f"{file}", f"set {CONFIG_ENV} or pass --config")
    sources: list[PydanticBaseSettingsSource] = [_YamlFile(file, str(file))]
    overlay = environ.get(OVERLAY_ENV)
    if overlay and Path(overlay).exists():  # a missing overlay is no overlay (the demo removes it)
        _require_file(Path(overlay), f"{overlay} ({OVERLAY_ENV})", f"point {OVERLAY_ENV} at a YAML file or unset it")
        sources.append(_YamlFile(Path(overlay), f"{overlay} ({OVERLAY_ENV})"))
    overrides = _check_env_overrides(environ)
    sources.append(_EnvSource(overrides))
    raw: dict[str, Any] = {}
    for source in sources:
        _deep_merge(raw, source())
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{file}: invalid configuration\n{_describe(exc)}{_blame(exc, overrides)}") from exc
    return _anchor_storage(config, file)


def _anchor_storage(config: Config, file: Path) -> Config:
    """Relative local folders of ``storage`` are relative to the config file."""
    base = file.resolve().parent
    root, local = config.storage.root, config.storage.local
    update: dict[str, Any] = {}
    if isinstance(root, Path) and not root.is_absolute():
        update["root"] = storage.storage_path((base / root).resolve())
    if local is not None and not local.is_absolute():
        update["local"] = (base / local).resolve()
    if not update:
        return config
    return config.model_copy(update={"storage": config.storage.model_copy(update=update)})


class _Sources(Config, BaseSettings):
    """Config's fields as pydantic-settings' sources read them; never instantiated."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False, env_parse_none_str="null"
    )


class _YamlFile(YamlConfigSettingsSource):
    """One YAML file of sections; every way it can be unreadable is a one-line ConfigError."""

    def __init__(self, path: Path, label: str) -> None:
        self._label = label
        super().__init__(_Sources, yaml_file=path)

    def _read_file(self, file_path: Path | Traversable) -> dict[str, Any]:
        try:
            data: Any = super()._read_file(file_path)
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{self._label}: not a text file (expected UTF-8 YAML such as modelyard.yaml)") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{self._label}: not valid YAML: {_yaml_problem(exc)}") from exc
        except OSError as exc:
            raise ConfigError(f"{self._label}: cannot read it: {exc.strerror or exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{self._label}: the top level must be a mapping of sections")
        return data


class _EnvSource(EnvSettingsSource):
    """``MODELYARD_<SECTION>__<KEY>`` variables from a given mapping; structured values read as YAML."""

    def __init__(self, environ: Mapping[str, _Override]) -> None:
        self._environ = {name: override.value for name, override in environ.items()}
        # pydantic-settings leaves values under a free-form mapping (gates.region_overrides) as text.
        self._free_form = [o for o in environ.values() if o.annotation is Any]
        super().__init__(_Sources)

    def __call__(self) -> dict[str, Any]:
        values = super().__call__()
        for override in self._free_form:
            *parents, last = override.keys
            node = values
            for key in parents:
                node = node.setdefault(key, {})
            node[last] = yaml.safe_load(override.value)
        return values

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)

    def decode_complex_value(self, field_name: str, field: FieldInfo | None, value: Any) -> Any:
        # YAML rather than JSON: `[10, 50, 100]`, `[jakarta, bangkok]` and `{max_psi: 0.3}` all read.
        return yaml.safe_load(value)


def _require_file(path: Path, label: str, fix: str) -> None:
    if path.is_dir():
        raise ConfigError(f"{label}: is a directory, not a config file ({fix})")
    if not path.exists():
        raise ConfigError(f"{label}: config file not found ({fix})")


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())


@dataclasses.dataclass(frozen=True)
class _Override:
    keys: list[str]
    value: str
    annotation: Any


def _check_env_overrides(environ: Mapping[str, str]) -> dict[str, _Override]:
    """The ``MODELYARD_*`` variables that set config keys, each checked against the schema.

    A variable whose first segment names no top-level key (``MODELYARD_CONFIG``,
    ``MODELYARD_SERVE_PORT``, ``MODELYARD_PLAN``) belongs to something else and is ignored;
    one that starts with a key but then names no key, or is not YAML, fails at once.
    """
    overrides = {}
    for name, value in environ.items():
        keys = name.lower().removeprefix(ENV_PREFIX.lower()).split("__")
        if not name.upper().startswith(ENV_PREFIX) or keys[0] not in Config.model_fields:
            continue
        annotation = _target(name, keys)
        _check_value(name, value, annotation)
        overrides[name] = _Override(keys, value, annotation)
    return overrides


def _blame(exc: ValidationError, overrides: Mapping[str, _Override]) -> str:
    """Name the variables that set an invalid key, so the reader knows where to fix it."""
    locations = [[str(part) for part in error["loc"]] for error in exc.errors()]
    names = [n for n, o in overrides.items() if any(loc[: len(o.keys)] == o.keys for loc in locations)]
    return f"\n  (set by {', '.join(names)})" if names else ""


def _target(name: str, keys: list[str]) -> Any:
    """The annotation of the key ``keys`` names; ConfigError when one of them is no key."""
    annotation: Any = Config
    for depth, key in enumerate(keys):
        model = _model_of(annotation)
        where = ".".join(keys[:depth])
        if model is not None:
            if key not in model.model_fields:
                raise ConfigError(
                    f"{name}: '{where}' has no key '{key}' (valid keys: {', '.join(model.model_fields)}); "
                    "fix the variable's name or unset it"
                )
            annotation = model.model_fields[key].annotation
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
        elif annotation is Any:
            return Any
        else:
            whole = f"{ENV_PREFIX}{'__'.join(keys[:depth]).upper()}"
            raise ConfigError(f"{name}: '{where}' is a value or a list, not a section; set it whole with {whole}")
    return annotation


def _model_of(annotation: Any) -> type[BaseModel] | None:
    optional = get_origin(annotation) in (Union, UnionType)
    for candidate in (annotation, *(get_args(annotation) if optional else ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _check_value(name: str, value: str, annotation: Any) -> None:
    if annotation in (str, Path, str | None, Path | None):
        return  # text is taken as it is, so `[abc` is a fine project name
    try:
        yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}={value!r}: not a YAML value ({_yaml_problem(exc)}); quote it or fix it") from exc


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) if not isinstance(part, int) else f"[{part}]" for part in error["loc"])
        lines.append(f"  {key.replace('.[', '[')}: {error['msg']}")
    return "\n".join(lines)
