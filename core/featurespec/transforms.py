"""Row-wise transforms: numeric kinds, category codes and user functions, each on one batch.

A user function is named ``"package.module:name"``. Signature::

    def price_band(columns: Mapping[str, np.ndarray]) -> np.ndarray

``columns`` holds the feature's ``inputs`` (raw columns, each of the batch length); it returns
one 1-D numeric or boolean array of that length (checked).

Who may run which function is the caller's to say: ``allowed`` is a set of modules (a module
also allows its submodules) or None for any. The pipeline passes None (it runs the team's own
config); a server passes its operator's allow-list, so a spec read from a registry artifact
cannot name code the operator did not allow. Modules that run processes or import code
(:data:`NEVER_ALLOWED`) are refused whatever the caller allows.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from modelyard.core.featurespec.definitions import FeatureDef
from modelyard.core.featurespec.errors import FunctionNotAllowedError, UserFunctionError
from modelyard.core.featurespec.inputs import Columns, column, length, text
from modelyard.core.featurespec.kinds import COMPARISONS

if TYPE_CHECKING:
    import numpy as np

# A feature's function gets the request's fields as its argument: these would run them as code or argv.
NEVER_ALLOWED = frozenset({
    "builtins", "code", "codeop", "ctypes", "importlib", "marshal", "multiprocessing", "nt", "os", "pdb",
    "pickle", "posix", "pty", "runpy", "shelve", "shutil", "signal", "socket", "subprocess", "sys", "webbrowser",
})  # fmt: skip


def numeric(feature: FeatureDef, values: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """``column``, ``log1p``, ``clip``, ``bucket`` (by ``edges``) or ``compare`` of numeric ``values``."""
    import numpy as np

    kind = feature.kind
    if kind == "column":
        return values
    if kind == "log1p":
        return np.log1p(values.astype(np.float64))
    if kind == "clip":
        low = -np.inf if feature.lower is None else feature.lower
        high = np.inf if feature.upper is None else feature.upper
        return np.clip(values.astype(np.float64), low, high)
    if kind == "bucket":
        return np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right").astype(np.int64)
    compare = COMPARISONS[str(feature.op)]
    return np.asarray(compare(values, feature.value), dtype=np.int64)


def category_codes(
    family: str, feature: FeatureDef, columns: Columns, vocabulary: tuple[str, ...], unknown: dict[str, int]
) -> np.ndarray:
    """The code of each value in ``vocabulary``; a value not in it gets ``len(vocabulary)``, counted in ``unknown``.

    Raises:
        MissingInputError: the feature's column is not in ``columns``.
    """
    import numpy as np

    lookup = {value: code for code, value in enumerate(vocabulary)}
    values = text(column(family, feature, columns, feature.column or feature.name))
    codes = np.fromiter((lookup.get(v, len(vocabulary)) for v in values.tolist()), np.int64, len(values))
    missed = int((codes == len(vocabulary)).sum())
    if missed:
        unknown[feature.name] = unknown.get(feature.name, 0) + missed
    return codes


def check_allowed(family: str, feature: FeatureDef, allowed: Collection[str] | None) -> None:
    """Refuse a ``function`` feature whose module is not in ``allowed`` (None: any) or is never allowed.

    Nothing is imported. A module is allowed when it, or a package it is inside, is in ``allowed``.

    Raises:
        FunctionNotAllowedError: names the feature and the module.
    """
    module_name, _, attribute = str(feature.function).partition(":")
    where = f"family '{family}', feature '{feature.name}'"
    parents = {".".join(module_name.split(".")[:n]) for n in range(1, module_name.count(".") + 2)}
    if parents & NEVER_ALLOWED or not attribute.isidentifier() or attribute.startswith("_"):
        raise FunctionNotAllowedError(
            f"{where}: function '{feature.function}' is never run (a process/code module or a private name)",
            module=module_name,
        )
    if allowed is not None and not parents & set(allowed):
        raise FunctionNotAllowedError(
            f"{where}: function module '{module_name}' is not on the allowed list", module=module_name
        )


def user_function(family: str, feature: FeatureDef, allowed: Collection[str] | None = None) -> Callable[[Columns], Any]:
    """Import the user function a ``function`` feature names, if its module is allowed (see :func:`check_allowed`).

    Raises:
        FunctionNotAllowedError: the module is not allowed (nothing was imported).
        UserFunctionError: the module or the name cannot be imported, or it is not callable.
    """
    check_allowed(family, feature, allowed)
    module_name, _, attribute = str(feature.function).partition(":")
    where = f"family '{family}', feature '{feature.name}'"
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise UserFunctionError(
            f"{where}: cannot import '{feature.function}' ({exc}); install the module or fix the dotted path"
        ) from exc
    if not callable(function):
        raise UserFunctionError(f"{where}: '{feature.function}' is not a function")
    return function


def call_user_function(
    family: str, feature: FeatureDef, columns: Columns, allowed: Collection[str] | None = None
) -> np.ndarray:
    """Run a ``function`` feature on the batch and check what it returned.

    Raises:
        UserFunctionError: it cannot be imported, or returned the wrong shape or non-numbers.
        MissingInputError: one of its inputs is not in ``columns``.
    """
    import numpy as np

    inputs: Mapping[str, np.ndarray] = {name: column(family, feature, columns, name) for name in feature.inputs}
    rows = length(family, columns)
    result = np.asarray(user_function(family, feature, allowed)(inputs))
    where = f"family '{family}', feature '{feature.name}': '{feature.function}'"
    if result.ndim != 1 or len(result) != rows:
        raise UserFunctionError(
            f"{where} returned shape {result.shape} for {rows} rows; return one value per row (a 1-D array)"
        )
    if result.dtype.kind not in "biuf":
        raise UserFunctionError(f"{where} returned {result.dtype} values; return numbers or booleans")
    return result.astype(np.int64 if feature.dtype == "int" else np.float64)
