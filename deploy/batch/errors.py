"""The errors of batch scoring: each names the file, column or model and says what to do."""

from __future__ import annotations

from modelyard.core.errors import ModelyardError


class BatchScoringError(ModelyardError):
    """Batch scoring cannot go on; the message names what is wrong and what to do."""


class BatchInputError(BatchScoringError, ValueError):
    """The input cannot be scored: no file, an unreadable file, a missing raw column, a bad value."""


class MissingInputError(BatchInputError):
    """The input names no file: no such path, or a glob that matches nothing."""


class ScoringModelError(BatchScoringError, LookupError):
    """The version to score with cannot be found or loaded."""
