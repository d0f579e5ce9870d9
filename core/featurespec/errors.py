"""The feature spec's errors: one base, and one subclass per way a feature can fail."""

from __future__ import annotations

from modelyard.core.errors import ModelyardError


class FeatureSpecError(ModelyardError, ValueError):
    """A feature cannot be declared or computed; the one-line message names family, feature and column."""


class UnknownTransformError(FeatureSpecError):
    """A feature names a kind this module does not have."""


class UndeclaredColumnError(FeatureSpecError):
    """A feature reads a column the dataset does not declare (or of the wrong type)."""


class UserFunctionError(FeatureSpecError):
    """A user function cannot be imported, or returned the wrong length or type."""


class FunctionNotAllowedError(UserFunctionError):
    """A ``function`` feature names a module the caller does not allow (``module`` names it)."""

    def __init__(self, message: str, *, module: str) -> None:
        super().__init__(message)
        self.module = module


class MissingInputError(FeatureSpecError):
    """A raw column (or a window aggregate) the features need was not given."""


class TimeOffsetError(FeatureSpecError):
    """A time is not a timestamp, or is text without a UTC offset."""
