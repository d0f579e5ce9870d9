"""The MLflow model registry side of training: idempotency keys, registration, the ``challenger`` alias.

One registered model per (family, region), named by ``config.mlflow.model_name``. Every
version carries the tags below; ``input_key`` is what makes training idempotent: a
version whose ``input_key`` tag matches the inputs about to be trained is returned instead
of training again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from modelyard.core.contracts.registry import CHALLENGER_ALIAS, INPUT_KEY_TAG, PROMOTION_TAG, split_history
from modelyard.core.model_files import registry_client

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from modelyard.core.config import Config

# Tags every registered version carries (plus the metric summary, one tag per metric).
# What loading a model of each flavor imports (what MLflow's inference finds, without its child process).
FLAVOR_MODULES: dict[str, tuple[str, ...]] = {
    "xgboost": ("xgboost", "sklearn", "numpy", "pandas", "scipy"),
    "sklearn": ("sklearn", "skops", "numpy", "pandas", "scipy"),
}
VERSION_TAGS = ("family", "region", "data_digest", "run_id", "config_hash", "input_key", "algorithm", "task", "flavor")
# The holdout metrics shown in tables and written as version tags (the metric summary), per task.
KEY_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("holdout_auc", "holdout_logloss", "holdout_brier", "baseline_holdout_auc"),
    "regression": ("holdout_mae", "holdout_rmse", "holdout_mape", "baseline_holdout_mae"),
}


def _stable_hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def training_settings_hash(config: Config, family: str, region: str) -> str:
    """A hash of everything in the config that changes what (family, region) trains into.

    Unlike ``config.config_hash()`` it ignores unrelated sections (deploy targets, gates, other
    regions), so editing those does not retrain every model.
    """
    spec = config.family(family)
    payload = {
        "task": spec.task,
        "target": spec.target,
        "features": [f.model_dump(exclude_defaults=True) for f in spec.feature_decls],
        "slices": [s.model_dump(exclude_defaults=True) for s in spec.slices],
        "target_from": spec.target_from.model_dump() if spec.target_from else None,
        "algorithm": spec.algorithm_for(region),
        "params": spec.params_for(region),
        "baseline": spec.baseline,
        "training": config.training.model_dump(mode="json"),
        "min_rows": config.data.min_rows,
    }
    return _stable_hash(payload)


def pip_requirements(flavor: str) -> list[str]:
    """The model's declared requirements: ``mlflow`` and the packages of its flavor, pinned to the installed versions.

    Computed once per process. Declaring them spares ``log_model`` its inference, which imports
    the saved model in a child process (seconds per pair).
    """
    return list(_pinned_requirements(flavor))


def pinned_here(requirements: list[str]) -> bool:
    """Whether every one of ``requirements`` is a pin :func:`pip_requirements` reads from this environment."""
    return set(requirements) <= _pins_here()


@functools.cache
def _pins_here() -> frozenset[str]:
    return frozenset(requirement for flavor in FLAVOR_MODULES for requirement in _pinned_requirements(flavor))


@functools.cache
def _pinned_requirements(flavor: str) -> tuple[str, ...]:
    from importlib import metadata

    # By import name: a module may come from a differently named distribution (xgboost from xgboost-cpu).
    distributions = _distributions()
    pinned = []
    for module in ("mlflow", *FLAVOR_MODULES.get(flavor, ())):
        found = distributions.get(module, [])
        for name in [module] if module in found else found[:1]:
            pinned.append(f"{name}=={metadata.version(name)}")
    return tuple(dict.fromkeys(pinned))


@functools.cache
def _distributions() -> Mapping[str, list[str]]:
    """Import name -> distributions, read once per process (it walks every installed package)."""
    from importlib import metadata

    return metadata.packages_distributions()


def input_key(data_digest: str, settings_hash: str, seed: int, algorithm: str, params: Mapping[str, Any]) -> str:
    """The identity of one training's inputs: same key, same model (the idempotency key)."""
    return _stable_hash(
        {"data": data_digest, "settings": settings_hash, "seed": seed, "algorithm": algorithm, "params": dict(params)}
    )


def find_version(client: MlflowClient, model_name: str, key: str) -> ModelVersion | None:
    """The oldest version of ``model_name`` trained on inputs ``key``, or None."""
    found = client.search_model_versions(f"name = '{model_name}' and tags.{INPUT_KEY_TAG} = '{key}'")
    if not found:
        return None
    return min(found, key=lambda version: int(version.version))


def older_twin(client: MlflowClient, version: ModelVersion, key: str) -> ModelVersion | None:
    """The older version trained on the same inputs as ``version`` (which is then deleted), or None.

    Two trainings of one pair's inputs can both find nothing and both register (two hosts, a retried
    task running beside its first try): each looks again once registered, and the younger version
    gives way, so the registry holds one version per inputs and the loser reports ``unchanged``.
    """
    oldest = find_version(client, version.name, key)
    if oldest is None or int(oldest.version) >= int(version.version):
        return None
    client.delete_model_version(version.name, str(version.version))
    return oldest


def register(model_uri: str, model_name: str, tags: Mapping[str, str]) -> ModelVersion:
    """Register ``model_uri`` as a new version of ``model_name`` (created if missing) with ``tags``.

    The tags are written with the version in one call, so a version found by its
    ``input_key`` is always complete. Callers use the returned version number: with
    concurrent registrations, "the latest version" may be someone else's.

    MLflow prints ``Successfully registered model ...`` and ``Created version ...`` to stderr, which
    an Airflow task log shows as errors; they are kept quiet here (the training logs the version).
    """
    import mlflow
    from mlflow.utils import logging_utils

    stream = logging_utils.MLFLOW_LOGGING_STREAM
    was_enabled = stream.enabled
    stream.enabled = False  # MLflow's eprint stream only; its loggers go through logging as before
    try:
        return mlflow.register_model(model_uri, model_name, tags=dict(tags))
    finally:
        stream.enabled = was_enabled


def model_description(config: Config, family: str, region: str) -> str:
    """The registered model's description (Markdown): the family's ``description`` and what ``region`` is.

    ``region`` is a configured region or a region group (whose pooled model the name then is).
    """
    spec = config.family(family)
    if region in config.region_names:
        where = config.region(region)
        scope = f"Region **{region}** ({where.country}, {where.timezone})."
    else:
        members = ", ".join(config.group_members(region))
        scope = f"Pooled model of the region group **{region}** ({members})."
    about = spec.description.strip() or f"A {spec.task} model."
    return f"**{family}**: {about}\n\n{scope} Target: `{spec.target}`; features: {', '.join(spec.feature_names)}."


def describe_model(client: MlflowClient, model_name: str, description: str, first_version: bool = False) -> None:
    """Set the registered model's description (the config is its source; a re-registration rewrites it).

    The promotion history section at its end (promotion writes it) is kept. ``first_version``: the
    model's version 1 was just registered, so nothing was promoted yet and there is no history to
    keep: the description is written without reading the model first (issue 26: a request a pair).
    """
    if first_version:
        client.update_registered_model(model_name, description=description)
        return
    current = client.get_registered_model(model_name).description
    _, history = split_history(current)
    wanted = f"{description}\n\n{history}" if history else description
    if (current or "") != wanted:  # a retrain on an unchanged config has nothing to write
        client.update_registered_model(model_name, description=wanted)


def registry_writer(client: MlflowClient) -> Any:
    """What writes the registered model of a just-registered version: the registry client under ``client``.

    ``MlflowClient.set_registered_model_alias`` and ``update_registered_model`` first read the registered
    model to refuse a prompt: one more request each per pair (issue 26). The model was just registered
    as a model, so the registry client writes directly (the same calls, same arguments); a client
    without one (another MLflow) writes through ``client`` itself. Promotion writes its decisions,
    history and alias moves through it too: the version or model it writes was just read from the
    registry as a model, never a prompt.
    """
    return registry_client(client)


def set_challenger(client: MlflowClient, model_name: str, version: str, attempts: int = 5) -> None:
    """Point the ``challenger`` alias of ``model_name`` at ``version``; of concurrent trainings the newest wins.

    MLflow's SQL store sets an alias by reading, then inserting: two trainings of one pair
    registering at once (two hosts, a retried task) can collide on the alias row
    (PostgreSQL answers a unique violation). A collision is not a failure: the alias is read
    again and set only while it still points below ``version``.
    """
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            client.set_registered_model_alias(model_name, CHALLENGER_ALIAS, version)
            return
        except MlflowException as exc:
            if "unique" not in str(exc).lower() or attempt == attempts - 1:
                raise
        time.sleep(0.05 * (attempt + 1) + random.random() * 0.05)
        current = _alias_version(client, model_name)
        if current is not None and int(current) >= int(version):
            return


def _alias_version(client: MlflowClient, model_name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model_name, CHALLENGER_ALIAS).version)
    except MlflowException:
        return None


def repair_alias(client: MlflowClient, version: ModelVersion) -> bool:
    """Alias ``version`` as challenger if a retried registration lost its alias step.

    Only the newest version of a model without any alias qualifies: older ones were
    superseded on purpose, and a version with an alias or a promotion decision is already
    managed by promotion (a promoted version leaves ``challenger``; a rolled-back one stays out).
    """
    if version.aliases or (version.tags or {}).get(f"{PROMOTION_TAG}outcome"):
        return False
    newest = client.search_model_versions(f"name = '{version.name}'", order_by=["version_number DESC"], max_results=1)
    if not newest or newest[0].version != version.version:
        return False
    set_challenger(client, version.name, str(version.version))
    return True


def metric_tags(metrics: Mapping[str, float], names: tuple[str, ...]) -> dict[str, str]:
    """The metric summary tags of a version: each of ``names`` present in ``metrics``, rounded."""
    return {name: f"{metrics[name]:.6g}" for name in names if name in metrics}
