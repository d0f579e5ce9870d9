"""Loading the config: the file, an optional overlay and ``MODELYARD_*`` variables, validated as :class:`Config`.

Environment variables ``MODELYARD_<SECTION>__<KEY>`` override keys of the file
(pydantic-settings; ``MODELYARD_SEED=7`` is validated as an int, lists and mappings are read
as YAML: ``MODELYARD_DEPLOY__ROLLOUT__CANARY_STEPS='[10, 100]'``). The path of the file
itself comes from ``MODELYARD_CONFIG`` when set. ``MODELYARD_CONFIG_OVERLAY`` may name a
YAML file merged over it before the variables (mappings merge key by key, lists and scalars
replace): a running stack picks up a temporary change (the demo's festival) without anyone
editing the config file; a missing overlay file is ignored. Without the variable (in the
process's environment), the embedded stack's own overlay
(``<storage.local_dir>/run/config-overlay.yaml``, which its tasks read and which exists only
while a demo act has one) is merged too, so a command in a terminal plans with the config the
stack's DAGs use (``modelyard deploy`` after ``make demo-festival`` dropped the festival window
from the plan).

Which variables are config keys: a ``MODELYARD_*`` variable whose first segment (up to the
first ``__``) is a top-level key (``data``, ``deploy``, ``seed``, ...) must name a key all the
way down, or loading fails naming the variable and the valid keys (so a typo such as
``MODELYARD_DATA__SYNTEHTIC__ROWS`` is not ignored). Any other ``MODELYARD_*`` variable
(``MODELYARD_CONFIG``, ``MODELYARD_SERVE_*``, ``MODELYARD_PLAN``) belongs to another part of
modelyard and is ignored here. See docs/adr/0001.

Relative paths in the config (``storage.root``, ``storage.local``, a file
``datasets[].source.path``) are relative to the folder of the config file, not to the
working directory of whoever loads it (a CLI, a scheduler, a worker).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

from modelyard.core import storage
from modelyard.core.config.base import ConfigError
from modelyard.core.config.root import Config
from modelyard.core.config.storage import Storage
from modelyard.core.yaml_shape import shape_problem

ENV_PREFIX = "MODELYARD_"
CONFIG_ENV = "MODELYARD_CONFIG"
OVERLAY_ENV = "MODELYARD_CONFIG_OVERLAY"
DEFAULT_CONFIG_FILE = "modelyard.yaml"
STACK_OVERLAY = Path("run") / "config-overlay.yaml"  # under storage.local_dir: the embedded stack's overlay


def config_path(path: str | Path | None = None) -> Path:
    """The config file to read: the argument, else $MODELYARD_CONFIG, else ./modelyard.yaml."""
    return Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_FILE)


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the file, merge the overlay and the environment over it, and validate.

    Priority, highest first: ``MODELYARD_<SECTION>__<KEY>`` variables, the overlay file named
    by ``MODELYARD_CONFIG_OVERLAY``, the config file (see the module docstring and ADR 0001).
    ``environ``: the variables to read; by default the process's, and then, when they name no
    overlay, the embedded stack's own overlay is merged if it has one.

    Raises:
        ConfigError: the file is missing, unreadable or not YAML, an override names no key or
            is not YAML, or a key is invalid; the message names the file, variable or key.
    """
    file = config_path(path)
    if environ is not None:  # exactly these variables (a test, a task building its own environment)
        return _load(file, environ)
    if OVERLAY_ENV in os.environ:  # an overlay named outright (the embedded stack's tasks name its own)
        return _load(file, os.environ)
    stack_overlay = _stack_overlay(file)
    if stack_overlay is not None:  # a terminal beside the embedded stack reads what its tasks read
        return _load(file, {**os.environ, OVERLAY_ENV: str(stack_overlay)})
    return _load(file, os.environ)


def _stack_overlay(file: Path) -> Path | None:
    """The embedded stack's overlay when it exists, found from the ``storage`` section alone.

    Only that section is validated here: the whole config is validated once, by the load that
    follows (twice, its notes, such as a release naming a removed region, were logged twice).
    """
    raw, _ = _merged(file, os.environ)
    try:
        section = Storage.model_validate(raw.get("storage") or {})
    except ValidationError:
        return None  # the load that follows reports it, naming the key
    overlay = _anchored(section, file).local_dir / STACK_OVERLAY
    return overlay if overlay.is_file() else None


def _load(file: Path, environ: Mapping[str, str]) -> Config:
    raw, overrides = _merged(file, environ)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{file}: invalid configuration\n{_describe(exc)}{_blame(exc, overrides)}") from exc
    config = config.model_copy(update={"storage": _anchored(config.storage, file)})
    return _anchor_datasets(config, file)


def _merged(file: Path, environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, _Override]]:
    """The file, the overlay ``environ`` names and its ``MODELYARD_*`` overrides merged, not validated; and
    the overrides."""
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
        deep_merge(raw, source())
    return raw, overrides


def _anchored(section: Storage, file: Path) -> Storage:
    """Relative local folders of ``storage`` are relative to the config file."""
    base = file.resolve().parent
    root, local = section.root, section.local
    update: dict[str, Any] = {}
    if isinstance(root, Path) and not root.is_absolute():
        update["root"] = storage.storage_path((base / root).resolve())
    if local is not None and not local.is_absolute():
        update["local"] = (base / local).resolve()
    return section.model_copy(update=update) if update else section


def _anchor_datasets(config: Config, file: Path) -> Config:
    """A relative ``datasets[].source.path`` (a file or glob) is relative to the config file, like storage."""
    base = file.resolve().parent
    datasets = []
    for dataset in config.datasets:
        path = dataset.source.path
        if path and "://" not in path and not Path(path).expanduser().is_absolute():
            source = dataset.source.model_copy(update={"path": str(base / path)})
            dataset = dataset.model_copy(update={"source": source})
        datasets.append(dataset)
    if datasets == config.datasets:
        return config
    return config.model_copy(update={"datasets": datasets})


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
            _check_shape(Path(str(file_path)), self._label)
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


MAX_CONFIG_BYTES = 4 * 1024 * 1024


def _check_shape(path: Path, label: str) -> None:
    """Refuse a config no one writes by hand before building it: too large, too deep, too many aliases.

    A few YAML aliases of aliases expand to billions of values when the result is walked ("billion
    laughs"); the event stream is read without building anything, so the check costs no memory.

    Raises:
        ConfigError: names the file, the limit and the line where it was passed.
    """
    if path.is_file() and path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{label}: {path.stat().st_size:,} bytes, larger than a config can be ({MAX_CONFIG_BYTES:,}); "
            "point datasets at data files instead of inlining data"
        )
    with path.open(encoding="utf-8") as stream:  # a binary file fails here, as "not a text file"
        found = shape_problem(stream)
    if found is not None:
        line, problem = found
        raise ConfigError(f"{label}, line {line}: {problem}")


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


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Merge ``extra`` into ``base`` as the config's sources combine: mappings merge, anything else replaces."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = value


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) if not isinstance(part, int) else f"[{part}]" for part in error["loc"])
        lines.append(f"  {key.replace('.[', '[')}: {error['msg']}")
    return "\n".join(lines)
