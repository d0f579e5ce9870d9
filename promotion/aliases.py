"""The registry side of promotion: the MLflow client, the model's aliases, how they move, the pair's lock.

Promotion only moves MLflow registry aliases of the registered model of one (family, region):

``champion``            the version serving the region (the deploy stage follows it);
``previous-champion``   the version it replaced, the target of a rollback;
``challenger``          the newest trained version not yet promoted (set by training; a promotion
                        removes it from the version it makes champion, once the decision is recorded).

Two promotions of the same (family, region) never interleave: each holds an exclusive
lock (promotion/locks.py) from reading the aliases to verifying them, and the aliases move
in an order in which ``champion`` and ``previous-champion`` never point at the same version
(see docs/adr/0004-promotion-aliases.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from modelyard.core.contracts.registry import CHALLENGER_ALIAS, CHAMPION_ALIAS, PREVIOUS_ALIAS
from modelyard.promotion import locks
from modelyard.promotion.decision import PromotionError
from modelyard.training.registry import registry_writer

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import RegisteredModel

    from modelyard.core.config import Config

LOCK_TIMEOUT_SECONDS = locks.LOCK_TIMEOUT_SECONDS


class AliasInconsistencyError(PromotionError):
    """``champion`` and ``previous-champion`` point at the same or a missing version."""


def open_client(config: Config, tracking_uri: str | None = None) -> MlflowClient:
    """An MLflow client on ``tracking_uri`` (default: $MLFLOW_TRACKING_URI, then the config), also set globally.

    The global URI matters: model artifacts are downloaded through ``models:/`` URIs.
    """
    import mlflow

    from modelyard.core.tracking import require_reachable, resolve_tracking_uri

    uri = require_reachable(tracking_uri or resolve_tracking_uri(config))
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(uri, uri)


def aliases(client: MlflowClient, model_name: str) -> dict[str, str]:
    """The aliases of ``model_name`` (alias -> version); empty when the model is not registered."""
    return aliases_of(registered_model(client, model_name))


def registered_model(client: MlflowClient, model_name: str) -> RegisteredModel | None:
    """The registered model ``model_name`` (its aliases, description, tags), or None when it is not registered."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def aliases_of(model: RegisteredModel | None) -> dict[str, str]:
    """The aliases of a registered model as read (alias -> version); empty for None."""
    return {alias: str(version) for alias, version in model.aliases.items()} if model is not None else {}


@contextlib.contextmanager
def pair_lock(config: Config, model_name: str, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[str]:
    """Hold the exclusive promotion lock of ``model_name`` (promotion/locks.py; ADR 0004); yields where it lives.

    Raises:
        PromotionError: another promotion held the lock for longer than ``timeout`` seconds.
    """
    try:
        with locks.promotion_lock(config.storage, model_name, timeout) as where:
            yield where
    except locks.LockTimeoutError as exc:
        raise PromotionError(str(exc)) from None


def verify_aliases(
    client: MlflowClient, model_name: str, model: RegisteredModel | None = None, known: frozenset[str] = frozenset()
) -> dict[str, str]:
    """Check the invariant: champion and previous-champion differ and both exist.

    ``model``: the registered model just read (None: read here); ``known``: versions the caller read
    under the pair's lock, not asked for again.

    Raises:
        AliasInconsistencyError: naming the aliases and versions.
    """
    current = aliases_of(model) if model is not None else aliases(client, model_name)
    champion, previous = current.get(CHAMPION_ALIAS), current.get(PREVIOUS_ALIAS)
    if previous is not None and champion is None:
        raise AliasInconsistencyError(f"{model_name}: '{PREVIOUS_ALIAS}' is v{previous} but there is no champion")
    if champion is not None and champion == previous:
        raise AliasInconsistencyError(f"{model_name}: champion and {PREVIOUS_ALIAS} both point at v{champion}")
    for version in {champion, previous} - {None} - known:
        client.get_model_version(model_name, str(version))
    return current


def move_champion(client: MlflowClient, model_name: str, new: str, current: dict[str, str]) -> None:
    """Make ``new`` the champion and the old champion the previous one.

    The order keeps the invariant after every single call: the previous alias is dropped
    first when it points at ``new``, champion moves next, previous moves last.
    """
    old = current.get(CHAMPION_ALIAS)
    writer = registry_writer(client)  # the model was just read as a model: no prompt check per move
    if current.get(PREVIOUS_ALIAS) == new:
        writer.delete_registered_model_alias(model_name, PREVIOUS_ALIAS)
    writer.set_registered_model_alias(model_name, CHAMPION_ALIAS, new)
    if old is not None and old != new:
        writer.set_registered_model_alias(model_name, PREVIOUS_ALIAS, old)


def restore_previous(client: MlflowClient, model_name: str, restored: str, new_previous: str | None) -> None:
    """Rollback's alias moves: drop previous, champion -> ``restored``, previous -> ``new_previous`` (if any)."""
    writer = registry_writer(client)
    writer.delete_registered_model_alias(model_name, PREVIOUS_ALIAS)
    writer.set_registered_model_alias(model_name, CHAMPION_ALIAS, restored)
    if new_previous is not None:
        writer.set_registered_model_alias(model_name, PREVIOUS_ALIAS, new_previous)


def retire_challenger(client: MlflowClient, model_name: str, champion: str) -> bool:
    """Drop the ``challenger`` alias when it points at ``champion``: a version is one or the other.

    Returns:
        Whether the alias was dropped (it stays when training moved it to a newer version meanwhile).
    """
    if aliases(client, model_name).get(CHALLENGER_ALIAS) != champion:
        return False
    registry_writer(client).delete_registered_model_alias(model_name, CHALLENGER_ALIAS)
    return True
