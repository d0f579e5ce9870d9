"""What a model version from the registry may make the server do: the operator decides, never the artifact.

Anyone who can register a model version writes its folder: the ``MLmodel`` file, the model
file and ``feature_spec.json``. So the server runs no code from it unless the operator allowed
it (:class:`TrustPolicy`, from ``MODELYARD_SERVE_ALLOWED_FUNCTION_MODULES`` and
``MODELYARD_SERVE_ALLOW_PICKLE``), and reads no file outside the model's folder
(:func:`inside_model_dir`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from modelyard.deploy.serving.errors import ModelLoadFailed

ALLOWED_FUNCTION_MODULES_ENV = "MODELYARD_SERVE_ALLOWED_FUNCTION_MODULES"
ALLOW_PICKLE_ENV = "MODELYARD_SERVE_ALLOW_PICKLE"
MAX_SHOWN_PATH = 80


@dataclasses.dataclass(frozen=True)
class TrustPolicy:
    """What a loaded model may run: none of it by default.

    Args:
        allowed_function_modules: the modules a feature spec's ``function`` features may import
            (a module allows its submodules); empty: a spec with a ``function`` feature fails its load.
        allow_pickle: load scikit-learn models stored as pickle/cloudpickle (runs code at load);
            off: skops only.
    """

    allowed_function_modules: frozenset[str] = frozenset()
    allow_pickle: bool = False


class FunctionNotAllowed(ModelLoadFailed):
    """A version's feature spec names a function module the operator did not allow."""

    code = "function_not_allowed"


class PickleNotAllowed(ModelLoadFailed):
    """A version's model file is a pickle and the operator did not allow pickles."""

    code = "pickle_not_allowed"


class OutsideModelDir(ModelLoadFailed):
    """A version's ``MLmodel`` names a file outside its own folder."""

    code = "path_outside_model"


def modules_from(text: str) -> frozenset[str]:
    """The comma-separated module names of ``MODELYARD_SERVE_ALLOWED_FUNCTION_MODULES``."""
    return frozenset(name.strip() for name in text.split(",") if name.strip())


def inside_model_dir(uri: str, model_dir: Path, relative: object, what: str) -> Path:
    """``model_dir / relative``, refused when it leaves the folder (``..``, an absolute path, a symlink out).

    The message names the artifact's own path only (cut short), never where the server keeps models.

    Raises:
        OutsideModelDir: the path is not a relative path inside ``model_dir``.
    """
    text = str(relative)
    shown = text if len(text) <= MAX_SHOWN_PATH else text[: MAX_SHOWN_PATH - 1] + "…"
    refused = OutsideModelDir(
        f"{uri}: the MLmodel's {what} '{shown}' is not a file inside the model's folder; re-log the model"
    )
    if not isinstance(relative, str) or not text or "\x00" in text or Path(text).is_absolute():
        raise refused
    base = model_dir.resolve()
    resolved = (base / text).resolve()
    if resolved == base or not resolved.is_relative_to(base):
        raise refused
    return resolved
