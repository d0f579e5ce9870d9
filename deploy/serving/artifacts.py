"""What a downloaded model folder holds, read without pandas: the MLmodel file and the feature spec.

``MLmodel`` gives the flavours, the input signature and the input example (the warm-up
batch); ``extra_files/feature_spec.json`` (else the run artifact the version's
``feature_spec`` tag names) is the fitted feature spec with which the version takes raw
fields (see ``features``).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.deploy.serving.engines import EXTRA_FILES_DIR
from modelyard.deploy.serving.errors import ModelLoadFailed
from modelyard.deploy.serving.features import read_spec
from modelyard.deploy.serving.registry import download_run_artifact
from modelyard.deploy.serving.schema import Feature, InputSchema
from modelyard.deploy.serving.trust import ALLOWED_FUNCTION_MODULES_ENV, FunctionNotAllowed, inside_model_dir

if TYPE_CHECKING:
    from modelyard.core.featurespec import FittedSpec

log = logging.getLogger("modelyard.serving.runtime")  # the runtime's logger, as before the split

SPEC_FILE = "feature_spec.json"  # in the version's extra_files/ (training.mlflow_log.FEATURE_SPEC_ARTIFACT)


@dataclasses.dataclass(frozen=True)
class ModelMeta:
    """What the runtime needs from an MLmodel file: flavours, input signature, input example.

    Read from the YAML itself: ``mlflow.models.Model`` imports pandas (through its signature
    module), which the ``[serving]`` extra leaves out.
    """

    flavors: dict[str, Any]
    inputs: list[dict[str, Any]] | None
    saved_input_example_info: dict[str, Any] | None
    run_id: str | None = None


def read_mlmodel(path: Path) -> ModelMeta:
    """The ``MLmodel`` file of a downloaded model directory."""
    import orjson
    import yaml

    raw = yaml.safe_load((path / "MLmodel").read_text()) or {}
    inputs = (raw.get("signature") or {}).get("inputs")
    return ModelMeta(
        flavors=dict(raw.get("flavors") or {}),
        inputs=list(orjson.loads(inputs)) if inputs else None,
        saved_input_example_info=raw.get("saved_input_example_info"),
        run_id=raw.get("run_id"),
    )


# The flavour keys whose values are files or folders inside the model's folder.
_PATH_KEYS = ("data", "pickled_model", "model_path", "code")  # model_code_path: where it was logged from


def check_paths(uri: str, path: Path, meta: ModelMeta) -> None:
    """Every file the ``MLmodel`` names, and the files training ships, must be inside the model's folder.

    Raises:
        OutsideModelDir: one of them is absolute, climbs out with ``..`` or is a symlink out (named).
    """
    for flavor, fields in meta.flavors.items():
        for key in _PATH_KEYS:
            if isinstance(fields, dict) and fields.get(key) is not None:
                inside_model_dir(uri, path, fields[key], f"{flavor} '{key}'")
    example = meta.saved_input_example_info or {}
    if "artifact_path" in example:
        inside_model_dir(uri, path, example["artifact_path"], "input example")
    extra = path / EXTRA_FILES_DIR
    if extra.is_symlink() or extra.exists():
        for file in [extra, *extra.rglob("*")]:
            inside_model_dir(uri, path, str(file.relative_to(path)), "extra file")


def fitted_spec(
    uri: str, path: Path, meta: ModelMeta, spec_tag: str | None, allowed_function_modules: frozenset[str]
) -> FittedSpec | None:
    """The version's fitted spec: shipped in ``extra_files/``, else the run artifact its tag names, else none.

    Its ``function`` features may only name ``allowed_function_modules`` (the operator's list, never
    the artifact's); a spec naming another module fails the load before anything is imported.

    Raises:
        FunctionNotAllowed: a ``function`` feature names a module the operator did not allow.
        ModelLoadFailed: the spec cannot be downloaded or read, or names a function the pod cannot import.
    """
    from modelyard.core.featurespec import FeatureSpecError, FunctionNotAllowedError

    local = path / EXTRA_FILES_DIR / SPEC_FILE
    try:
        if not local.exists():
            if spec_tag is None:
                return None
            local = download_run_artifact(uri, meta.run_id, spec_tag, path)
        fitted = read_spec(local, allowed_function_modules)
        fitted.spec.check_functions()  # a user function the pod cannot import fails the load, named
    except FunctionNotAllowedError as exc:
        raise FunctionNotAllowed(
            f"{uri}: {exc}; allowed by {ALLOWED_FUNCTION_MODULES_ENV} (chart: serving.allowedFunctionModules): "
            f"{', '.join(sorted(allowed_function_modules)) or 'none'}"
        ) from exc
    except FeatureSpecError as exc:
        raise ModelLoadFailed(f"{uri}: {exc}") from exc
    return fitted


def schema_from(meta: ModelMeta, uri: str) -> InputSchema:
    """The input schema of the model's signature (raises ``ModelLoadFailed`` without a column signature)."""
    if meta.inputs is None:
        raise ModelLoadFailed(f"{uri} has no input signature: log it with signature=infer_signature(X, y)")
    features = []
    for spec in meta.inputs:
        if "name" not in spec:
            raise ModelLoadFailed(f"{uri}: the signature has an unnamed input; log a column-based signature")
        features.append(Feature(spec["name"], str(spec.get("type", "double")), bool(spec.get("required", True))))
    return InputSchema(features)


def example_records(meta: ModelMeta, path: Path, schema: InputSchema) -> list[dict[str, Any]]:
    """The input example as records (the warm-up batch); zeros when the model has none or it is unreadable."""
    import orjson

    split = _split_frame_example(meta, path)
    if split is not None:
        return split
    if meta.saved_input_example_info is None:
        return [{f.name: _zero(f.kind) for f in schema.features}]
    try:
        from mlflow.models import Model  # other example formats: MLflow's reader (needs pandas)

        example: Any = Model.load(str(path)).load_input_example(str(path))
    except Exception as exc:
        log.warning("input example unreadable, warming up on zeros", extra={"uri": str(path), "error": str(exc)})
        example = None
    if example is None:
        return [{f.name: _zero(f.kind) for f in schema.features}]
    if hasattr(example, "to_json"):
        return list(orjson.loads(example.to_json(orient="records")))
    if isinstance(example, dict):
        return [example]
    return list(example)


def _split_frame_example(meta: ModelMeta, path: Path) -> list[dict[str, Any]] | None:
    """A DataFrame input example (MLflow's ``split`` JSON) as records, read without pandas."""
    import orjson

    info = meta.saved_input_example_info or {}
    if info.get("type") != "dataframe" or info.get("pandas_orient", "split") != "split" or "params" in info:
        return None
    try:
        raw = orjson.loads((path / info["artifact_path"]).read_bytes())  # confined by check_paths
        return [dict(zip(raw["columns"], row, strict=True)) for row in raw["data"]]
    except (OSError, KeyError, TypeError, ValueError):
        return None  # let MLflow's own reader try


def _zero(kind: str) -> Any:
    return {"double": 0.0, "float": 0.0, "long": 0, "integer": 0, "boolean": False}.get(kind, "")
