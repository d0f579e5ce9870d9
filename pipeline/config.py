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
import os
import zoneinfo
from collections.abc import Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

from modelyard.pipeline.errors import ModelyardError

ENV_PREFIX = "MODELYARD_"
CONFIG_ENV = "MODELYARD_CONFIG"
OVERLAY_ENV = "MODELYARD_CONFIG_OVERLAY"
DEFAULT_CONFIG_FILE = "modelyard.yaml"

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
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
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


class RegionOverride(_Model):
    algorithm: Algorithm | None = None
    params: dict[str, Any] = {}


class Family(_Model):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    task: Task
    target: str
    features: list[str] = Field(min_length=1)
    algorithm: Algorithm = "xgboost"
    params: dict[str, Any] = {}
    baseline: Algorithm | None = None
    region_overrides: dict[str, RegionOverride] = {}

    def algorithm_for(self, region: str) -> Algorithm:
        override = self.region_overrides.get(region)
        return override.algorithm if override and override.algorithm else self.algorithm

    def params_for(self, region: str) -> dict[str, Any]:
        override = self.region_overrides.get(region)
        return {**self.params, **(override.params if override else {})}


class Storage(_Model):
    root: Path = Path(".modelyard")

    @property
    def raw_dir(self) -> Path:
        return self.root / "raw"

    @property
    def features_dir(self) -> Path:
        return self.root / "features"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"


class MlflowSettings(_Model):
    tracking_uri: str = "http://127.0.0.1:5000"
    model_name_template: str = "{family}-{region}"

    def model_name(self, family: str, region: str) -> str:
        return self.model_name_template.format(family=family, region=region)


class Schedules(_Model):
    data_processing: str | None = "@daily"


class DataSource(_Model):
    kind: Literal["synthetic", "file"] = "synthetic"
    path: str | None = None

    @model_validator(mode="after")
    def _path_for_files(self) -> DataSource:
        if self.kind == "file" and not self.path:
            raise ValueError("kind 'file' needs 'path' (a CSV/Parquet path or glob)")
        return self


class SyntheticSettings(_Model):
    rows: int = Field(6000, ge=10)
    start: dt.date = dt.date(2026, 1, 5)
    days: int = Field(120, ge=7)


class DataSettings(_Model):
    source: DataSource = DataSource()
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
    regions: list[Region] = Field(min_length=1)
    families: list[Family] = Field(min_length=1)
    training: TrainingSettings = TrainingSettings()
    gates: GateSettings = GateSettings()
    deploy: DeploySettings = DeploySettings()

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        _unique("regions", [r.name for r in self.regions])
        _unique("families", [f.name for f in self.families])
        names = set(self.region_names)
        for family in self.families:
            unknown = set(family.region_overrides) - names
            if unknown:
                raise ValueError(f"families '{family.name}' region_overrides name unknown regions {sorted(unknown)}")
        _check_gate_overrides(self.gates.region_overrides, self.family_names, names)
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
    if not config.storage.root.is_absolute():
        root = (file.resolve().parent / config.storage.root).resolve()
        config = config.model_copy(update={"storage": Storage(root=root)})
    return config


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
