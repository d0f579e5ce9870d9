"""The deployment plan: which model versions serve which (family, region), and how.

A plan is a YAML or JSON file written by the deploy stage and read by the serving
runtime. Per service (family, region) it lists weighted variants, optional time-window
rules evaluated in the region's time zone, and optional shadows; globally it sets the
micro-batching bounds, the routing-key field and an optional sampled prediction log.

Validation errors name the field, e.g. ``services[2].variants: weights sum to 90, must
be 100``. ``Plan.digest()`` is the sha256 of the canonical JSON of the plan, so the same
plan always has the same digest (the deploy stage uses it for idempotency).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import zoneinfo
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from modelyard.core.errors import ModelyardError
from modelyard.core.featurespec import Calendar
from modelyard.core.yaml_shape import shape_problem

MODEL_URI_PATTERN = r"^models:/[^/@\s]+(/[0-9]+|@[A-Za-z0-9_\-]+)$"
NAME_PATTERN = r"^[a-z][a-z0-9_\-]*$"
# A region is named as the config names it (pipeline.config.Region): whatever the data holds, a city
# code (JKT), a name (jakarta) or a numeric id (7). Kubernetes never sees it raw (releases.chart_region_name).
REGION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]*$"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def normalize_model_uri(uri: str) -> str:
    """``models:/name/007`` -> ``models:/name/7``: one model version has one URI (and is loaded once)."""
    if "@" in uri:
        return uri
    head, _, version = uri.rpartition("/")
    return f"{head}/{int(version)}" if version.isdigit() else uri


class PlanError(ModelyardError, ValueError):
    """A plan file is missing, unreadable or invalid; the message names the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


SOURCE_DESCRIPTION = (
    "The registry's source of the version when it was planned (its logged model, e.g. models:/m-<id>): "
    "a server refuses the version if the registry now says another (a registered model deleted and "
    "registered again reuses version numbers). Written by the deploy stage; optional."
)


class _Pinned(_Model):
    """A named model reference that may pin its version's source; an unpinned one serialises without the key."""

    name: str = Field(pattern=NAME_PATTERN)
    model_uri: str = Field(pattern=MODEL_URI_PATTERN, description="models:/<name>/<version> or models:/<name>@<alias>")
    source: str | None = Field(default=None, min_length=1, max_length=2048, description=SOURCE_DESCRIPTION)

    @field_validator("model_uri")
    @classmethod
    def _one_uri_per_version(cls, uri: str) -> str:
        return normalize_model_uri(uri)

    @model_serializer(mode="wrap")
    def _without_empty_source(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("source") is None:
            data.pop("source", None)  # plans written before the field keep their digest
        return data


class Variant(_Pinned):
    """One model taking a share of a service's traffic."""

    weight: int = Field(ge=0, le=100, description="Percent of the weighted split (0 = only via rules)")


class Shadow(_Pinned):
    """A model that gets a copy of every request off the response path."""


class DateWindow(_Model):
    """Inclusive local calendar dates, e.g. a festival."""

    start: dt.date
    end: dt.date

    @model_validator(mode="after")
    def _ordered(self) -> DateWindow:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class HourWindow(_Model):
    """Local hours ``start <= hour < end``; ``start > end`` wraps past midnight."""

    start: int = Field(ge=0, le=23)
    end: int = Field(ge=1, le=24)

    @model_validator(mode="after")
    def _not_empty(self) -> HourWindow:
        if self.start == self.end:
            raise ValueError(f"start and end are both {self.start}: the window is empty")
        return self

    def contains(self, hour: int) -> bool:
        if self.start < self.end:
            return self.start <= hour < self.end
        return hour >= self.start or hour < self.end


class Rule(_Model):
    """Send all traffic to ``variant`` while every given condition holds (local time)."""

    name: str = Field(pattern=NAME_PATTERN)
    variant: str
    dates: list[DateWindow] = []
    weekdays: list[Weekday] = []
    hours: HourWindow | None = None

    @model_validator(mode="after")
    def _has_condition(self) -> Rule:
        if not (self.dates or self.weekdays or self.hours):
            raise ValueError(f"rule '{self.name}' has no condition: set dates, weekdays and/or hours")
        return self

    def matches(self, local: dt.datetime) -> bool:
        """Whether the rule holds at ``local`` (a datetime in the region's time zone)."""
        if self.dates and not any(w.start <= local.date() <= w.end for w in self.dates):
            return False
        if self.weekdays and WEEKDAYS[local.weekday()] not in self.weekdays:
            return False
        return self.hours is None or self.hours.contains(local.hour)


class Service(_Model):
    """The models serving one (family, region)."""

    family: str = Field(pattern=NAME_PATTERN)
    region: str = Field(pattern=REGION_PATTERN)
    timezone: str = "UTC"
    variants: list[Variant] = Field(min_length=1)
    rules: list[Rule] = []
    shadows: list[Shadow] = []
    # The region's holidays (local dates): with ``timezone``, the calendar a model fitted for another
    # region (its group's pooled model, ADR 0015) computes this region's time features in.
    holidays: list[DateWindow] = []

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone '{value}' (use an IANA name such as Asia/Jakarta)") from exc
        return value

    @field_validator("variants")
    @classmethod
    def _weights(cls, variants: list[Variant]) -> list[Variant]:
        _unique([v.name for v in variants], "variant")
        total = sum(v.weight for v in variants)
        if total != 100:
            raise ValueError(f"weights sum to {total}, must be 100")
        return variants

    @field_validator("shadows")
    @classmethod
    def _unique_shadows(cls, shadows: list[Shadow]) -> list[Shadow]:
        _unique([s.name for s in shadows], "shadow")
        return shadows

    @model_validator(mode="after")
    def _rules_name_variants(self) -> Service:
        names = {v.name for v in self.variants}
        for index, rule in enumerate(self.rules):
            if rule.variant not in names:
                raise ValueError(
                    f"rules[{index}].variant: '{rule.variant}' is not a variant of this service "
                    f"(variants: {', '.join(sorted(names))})"
                )
        clash = names & {s.name for s in self.shadows}
        if clash:
            raise ValueError(f"shadows: name(s) {sorted(clash)} are also variant names; use distinct names")
        return self

    @property
    def key(self) -> tuple[str, str]:
        return (self.family, self.region)

    def calendar(self) -> Calendar:
        """The region's calendar (zone and holidays) for time features: what a request to this service means."""
        return Calendar(self.region, self.timezone, tuple((h.start, h.end) for h in self.holidays))

    def model_uris(self) -> list[str]:
        return [v.model_uri for v in self.variants] + [s.model_uri for s in self.shadows]


class Batching(_Model):
    """Micro-batching bounds, per variant."""

    max_batch_size: int = Field(
        default=64, ge=1, le=100_000, description="Rows per model call (one request is never split)"
    )
    max_wait_ms: float = Field(default=1.0, ge=0, le=50, description="Longest a request waits for companions")


class PredictionLog(_Model):
    """The sample of served requests the monitoring stage reads (``deploy/serving/sampling.py``).

    Files are rotated JSONL.gz under ``<log dir>[/<path>]/<family>/<region>/<version>/``;
    the log dir is the server's (``MODELYARD_SERVE_LOG_DIR``): a plan cannot make a server
    write anywhere else. Without this section the server's own defaults apply
    (``MODELYARD_SERVE_SAMPLE_RATE``, ``..._ROTATE_MB``, ``..._ROTATE_SECONDS``).
    """

    path: Path | None = Field(default=None, description="Folder inside the server's prediction-log directory")
    sample_rate: float = Field(default=0.01, ge=0, le=1)
    rotate_mb: float = Field(default=8.0, gt=0, le=1024, description="MB of JSON (uncompressed) per file")
    rotate_seconds: float = Field(default=300.0, ge=1, le=86400, description="Age at which a file is rotated")

    @field_validator("path")
    @classmethod
    def _inside_log_dir(cls, path: Path | None) -> Path | None:
        if path is not None and (path.is_absolute() or ".." in path.parts or path == Path()):
            raise ValueError(
                f"'{path}' must be a relative folder inside the server's prediction-log directory "
                "(no leading '/', no '..'), e.g. canary"
            )
        return path


class Plan(_Model):
    """A complete, validated deployment plan."""

    version: Literal[1] = 1
    services: list[Service] = Field(min_length=1)
    batching: Batching = Batching()
    routing_key: str = Field(default="customer_id", min_length=1)
    max_records: int = Field(default=10_000, ge=1, description="Largest accepted request, in records")
    prediction_log: PredictionLog | None = None
    clock_override: dt.datetime | None = Field(
        default=None, description="Fixed 'now' for time-window rules (tests and drills only; must be tz-aware)"
    )
    metadata: dict[str, str] = {}

    @field_validator("services")
    @classmethod
    def _unique_services(cls, services: list[Service]) -> list[Service]:
        _unique([f"{s.family}/{s.region}" for s in services], "service")
        pinned: dict[str, str] = {}
        for service in services:
            for model in [*service.variants, *service.shadows]:
                if model.source and pinned.setdefault(model.model_uri, model.source) != model.source:
                    raise ValueError(
                        f"{model.model_uri} is pinned to two sources ({pinned[model.model_uri]} and {model.source}); "
                        "one URI is one model in a plan"
                    )
        return services

    @field_validator("clock_override")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a UTC offset, e.g. 2026-03-20T18:30:00+07:00")
        return value

    def service(self, family: str, region: str) -> Service | None:
        return next((s for s in self.services if s.family == family and s.region == region), None)

    def model_uris(self) -> list[str]:
        """Every distinct model URI of the plan, in plan order."""
        return list(dict.fromkeys(uri for s in self.services for uri in s.model_uris()))

    def model_sources(self) -> dict[str, str]:
        """Model URI -> the source the plan pins it to (URIs without one are left out)."""
        return {m.model_uri: m.source for s in self.services for m in [*s.variants, *s.shadows] if m.source}

    def canonical_json(self) -> bytes:
        """The plan as canonical JSON (sorted keys, no whitespace): the input of ``digest()``."""
        data = self.model_dump(mode="json")
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def fallbacks(self) -> dict[tuple[str, str], str]:
        """(family, region) -> ``<family>/<group>``: the services served by their region group's pooled model.

        Read from the planner's metadata (ADR 0015): ``fallback.<family>/<region>: <model> v<N> (group <g>)``.
        """
        found = {}
        for key, note in self.metadata.items():
            match = _FALLBACK.match(key + "\n" + note)
            if match is not None:
                found[(match["family"], match["region"])] = f"{match['family']}/{match['group']}"
        return found

    def digest(self) -> str:
        """``sha256:<hex>`` of the canonical JSON; equal plans have equal digests."""
        return "sha256:" + hashlib.sha256(self.canonical_json()).hexdigest()


_FALLBACK = re.compile(r"^fallback\.(?P<family>[^/\n]+)/(?P<region>[^\n]+)\n.*\(group (?P<group>[^)]+)\)$", re.S)


def _unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"duplicate {what} '{name}'")
        seen.add(name)


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem, each naming the field path, e.g. ``services[2].variants: ...``."""
    lines = []
    for error in exc.errors():
        path = _field_path(error["loc"])
        message = _in_our_words(error)
        lines.append(f"{path}: {message}" if path else message)
    return f"invalid plan {source}:\n  " + "\n  ".join(lines)


# pydantic's phrasing ("Input should be a valid integer") -> ours, naming what was sent.
_PYDANTIC_WORDS = (("Input should be", "must be"), ("List should have", "must have"), (" after validation", ""))


def _in_our_words(error: Any) -> str:
    """One validation problem without pydantic's phrasing; a type or range problem shows the value sent."""
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a plan field; remove it (or check its spelling)"
    message = str(error["msg"])
    if kind == "value_error":  # our own validators' messages
        return message.removeprefix("Value error, ")
    if kind.endswith(("_parsing", "_type")):
        message = message.split(",")[0]  # "..., unable to parse string as an integer": the value says it
    for theirs, ours in _PYDANTIC_WORDS:
        message = message.replace(theirs, ours)
    value = error.get("input")
    if isinstance(value, str | int | float | bool) or value is None:
        return f"{message} (got {json.dumps(value)[:40]})"
    return f"{message} (got {'a list' if isinstance(value, list) else 'an object'})"


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def parse_plan(data: Any, source: str = "<plan>") -> Plan:
    """Validate already-parsed plan data.

    Raises:
        PlanError: the data does not describe a valid plan; the message names each field.
    """
    if not isinstance(data, dict):
        raise PlanError(f"invalid plan {source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        raise PlanError(format_validation_error(exc, source)) from exc


def parse_plan_text(text: str | bytes, source: str = "<plan>") -> Plan:
    """Parse a YAML or JSON plan document (JSON is a subset of YAML).

    Raises:
        PlanError: the text is not YAML/JSON or not a valid plan.
    """
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~8x faster
    try:
        _check_shape(text, source, loader)
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        raise PlanError(f"plan {source} is not valid YAML/JSON: {exc}") from exc
    return parse_plan(data, source)


def _check_shape(text: str | bytes, source: str, loader: Any) -> None:
    """A plan has no use for many YAML aliases or deep nesting: refused as the config is (core.yaml_shape)."""
    found = shape_problem(text, loader)
    if found is not None:
        line, problem = found
        raise PlanError(f"plan {source}, line {line}: {problem}")


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file.

    Raises:
        PlanError: the file is missing or unreadable, or the plan is invalid.
    """
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise PlanError(f"cannot read plan file {path}: {exc.strerror or exc}") from exc
    return parse_plan_text(text, str(path))


def dump_plan(plan: Plan, fmt: Literal["yaml", "json"] = "yaml") -> bytes:
    """Serialize a plan for writing to a file (YAML for humans, JSON for machines)."""
    data = plan.model_dump(mode="json", exclude_defaults=False)
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True).encode() + b"\n"
    return yaml.safe_dump(data, sort_keys=False).encode()


def last_good_path(plan_path: Path) -> Path:
    """The copy of the last plan that was active, next to the plan file (``plan.json.last-good``)."""
    return plan_path.with_name(f"{plan_path.name}.last-good")
