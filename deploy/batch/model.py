"""Which registered version scores a pair, and that version loaded exactly as the server loads it.

The version is an alias of the pair's registered model (``champion`` by default) or a version
number; a region without a champion of its own is scored by the champion of its group's pooled
model, as the planner serves it (ADR 0015). Loading goes through the serving runtime
(``deploy/serving/runtime.load_model``): the same download, flavour, engine choice and warm-up,
and the same trust rules (``MODELYARD_SERVE_ALLOWED_FUNCTION_MODULES``,
``MODELYARD_SERVE_ALLOW_PICKLE``), so a row scores here as the server answers it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelyard.core.contracts.registry import CHAMPION_ALIAS
from modelyard.deploy.batch.errors import ScoringModelError

if TYPE_CHECKING:
    from pathlib import Path

    from mlflow import MlflowClient

    from modelyard.core.config import Config
    from modelyard.core.featurespec import FittedSpec
    from modelyard.deploy.serving.runtime import ServedModel
    from modelyard.deploy.serving.trust import TrustPolicy


# This process's MLflow clients, by tracking URI: a worker reuses one across the pairs of its chunk.
_CLIENTS: dict[str, Any] = {}


def registry_client(tracking_uri: str) -> MlflowClient:
    """An MLflow client of ``tracking_uri``, which also becomes the process's (the runtime's loader reads it)."""
    if tracking_uri not in _CLIENTS:
        import mlflow
        from mlflow import MlflowClient

        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        _CLIENTS[tracking_uri] = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    client: MlflowClient = _CLIENTS[tracking_uri]
    return client


def trust_from_env(environ: Mapping[str, str]) -> TrustPolicy:
    """What a version's artifacts may run: the server's rules, read from the server's own variables."""
    from modelyard.deploy.serving.trust import ALLOW_PICKLE_ENV, ALLOWED_FUNCTION_MODULES_ENV, TrustPolicy, modules_from

    return TrustPolicy(
        allowed_function_modules=modules_from(environ.get(ALLOWED_FUNCTION_MODULES_ENV, "")),
        allow_pickle=environ.get(ALLOW_PICKLE_ENV, "").strip().lower() in ("1", "true", "yes", "on"),
    )


@dataclass(frozen=True)
class ScoringVersion:
    """The registered version that scores a pair: its model name, number and how it was chosen."""

    model_name: str
    version: str
    chosen_by: str  # "alias champion", "version 3", "pooled champion of group id"

    @property
    def uri(self) -> str:
        return f"models:/{self.model_name}/{self.version}"

    def describe(self) -> str:
        return f"model '{self.model_name}' v{self.version}"


def resolve_version(
    client: MlflowClient, config: Config, family: str, region: str, alias: str | None, version: int | None
) -> ScoringVersion:
    """The version that scores (family, region): ``version``, else ``alias`` (default champion) of its model.

    Raises:
        ScoringModelError: no such version or alias (nor a pooled champion for a missing champion).
    """
    from mlflow.exceptions import MlflowException

    name = config.pair_view(family, region).model_name
    try:
        if version is not None:
            found = client.get_model_version(name, str(version))
            return ScoringVersion(name, str(found.version), f"version {version}")
        chosen = alias or CHAMPION_ALIAS
        return ScoringVersion(name, str(client.get_model_version_by_alias(name, chosen).version), f"alias {chosen}")
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            raise
        if version is None and (alias or CHAMPION_ALIAS) == CHAMPION_ALIAS:
            pooled = _pooled_champion(client, config, family, region)
            if pooled is not None:
                return pooled
        what = f"version {version}" if version is not None else f"alias '{alias or CHAMPION_ALIAS}'"
        raise ScoringModelError(
            f"{family}/{region}: registered model '{name}' has no {what} "
            "(train and promote it first, or pick another with --version / --alias)"
        ) from exc


def _pooled_champion(client: MlflowClient, config: Config, family: str, region: str) -> ScoringVersion | None:
    from mlflow.exceptions import MlflowException

    for group in config.groups_of(region):
        name = config.pooled_model_name(family, group)
        try:
            found = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
        except MlflowException:
            continue
        return ScoringVersion(name, str(found.version), f"pooled champion of group {group}")
    return None


def load_for_scoring(version: ScoringVersion, cache: Path, trust: TrustPolicy, batch_rows: int) -> ServedModel:
    """``version`` loaded and warmed up by the serving runtime (the server's own path).

    Raises:
        ScoringModelError: the runtime cannot load it (the message says why: missing, refused, broken).
    """
    from modelyard.deploy.serving.errors import ServingError
    from modelyard.deploy.serving.runtime import load_model

    try:
        return load_model(version.uri, cache, warmup_batch=min(batch_rows, 1024), trust=trust)
    except ServingError as exc:
        raise ScoringModelError(f"{version.describe()} cannot be loaded for scoring: {exc.message}") from exc


def spec_digest(fitted: FittedSpec | None, feature_names: list[str]) -> str:
    """The sha256 (first 16 hex) of the version's fitted spec as JSON (no spec: of its feature names)."""
    content = fitted.to_dict() if fitted is not None else {"features": feature_names}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
