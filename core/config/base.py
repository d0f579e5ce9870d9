"""What every section of the config shares: the strict, frozen base model and the one config error."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from modelyard.core.errors import ModelyardError


class ConfigError(ModelyardError, ValueError):
    """The configuration file is missing or invalid; the message names the key."""


class Section(BaseModel):
    """A part of the config: an unknown key is an error and a loaded value never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def unique(key: str, names: list[str]) -> None:
    """Refuse a list of declarations that names one thing twice.

    Args:
        key: The config key the names are declared under (for the message).
        names: The declared names, in order.

    Raises:
        ValueError: some names occur more than once (pydantic reports it under the key).
    """
    seen = {n for n in names if names.count(n) > 1}
    if seen:
        raise ValueError(f"{key}: duplicate names {sorted(seen)}")
