"""The one base of every error modelyard expects and explains.

Each stage raises its own typed errors (a config key is invalid, a region's data failed
validation, a gate cannot be evaluated, a plan is malformed, the MLflow server does not
answer, ...); all of them derive from :class:`ModelyardError`, so a caller that must tell an
*expected* failure (report its message, stop that region's chain) from a bug (let the
traceback through) writes one ``except ModelyardError``. A class that callers also catch as
a builtin (``ValueError``, ``RuntimeError``, ``ConnectionError``) keeps that base too.

It lives in the bottom layer so that every layer above can derive from it.
"""

from __future__ import annotations


class ModelyardError(Exception):
    """An expected failure of a modelyard stage; the message says what is wrong and what to do."""
