"""ONNX copies of trained models, stored with the model version for the serving fast path (ADR 0002).

Conversion happens here, at training, so a serving pod needs only ``onnxruntime``: the
converters (onnxmltools for xgboost, skl2onnx for scikit-learn) stay in the ``[train]``
extra. Next to the model, in its ``extra_files/`` folder, training stores:

* ``model.onnx``: the converted model (float32 input named ``input``, one column per
  signature feature, in signature order), when the conversion succeeds;
* ``parity_sample.npy`` (with the ONNX copy): up to :data:`PARITY_SAMPLE_ROWS` holdout
  rows (float64, NaNs kept), on which the server checks the ONNX copy against the
  native model before using it;
* ``onnx.json``: what happened (``converted`` or ``failed`` with the reason, the
  converter and versions), which ``/readyz`` shows when the server stays native.

A failed conversion never fails training: the version is served natively, and says why.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.core.errors import ModelyardError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

ONNX_FILE = "model.onnx"
SAMPLE_FILE = "parity_sample.npy"
REPORT_FILE = "onnx.json"
INPUT_NAME = "input"
PARITY_SAMPLE_ROWS = 256


class OnnxExportError(ModelyardError, RuntimeError):
    """The model cannot be converted to ONNX; the message says why (it is then served natively)."""


def to_onnx(model: Any, flavor: str, n_features: int) -> bytes:
    """Convert a fitted xgboost or scikit-learn model to a serialized ONNX model.

    Classifiers output ``label`` and ``probabilities`` (a plain tensor, no ZipMap);
    regressors output ``variable``.

    Raises:
        OnnxExportError: the flavor is unknown or the converter rejects the model.
    """
    try:
        if flavor == "xgboost":
            from onnxmltools.convert import convert_xgboost
            from onnxmltools.convert.common.data_types import FloatTensorType as XgbFloat

            initial = [(INPUT_NAME, XgbFloat([None, n_features]))]
            onx = convert_xgboost(_positional_features(model), initial_types=initial)
        elif flavor == "sklearn":
            from skl2onnx import convert_sklearn
            from skl2onnx.common.data_types import FloatTensorType

            onx = convert_sklearn(
                model,
                initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
                options={"zipmap": False} if hasattr(model, "predict_proba") else None,
            )
        else:
            raise OnnxExportError(f"no ONNX converter for flavor '{flavor}'")
    except OnnxExportError:
        raise
    except Exception as exc:  # converters raise anything from RuntimeError to KeyError
        raise OnnxExportError(f"{type(exc).__name__}: {exc}") from exc
    return bytes(onx.SerializeToString())


def _positional_features(model: Any) -> Any:
    """A copy of an xgboost model whose trees name features ``f0..fN`` (the converter's requirement)."""
    import copy

    clone = copy.deepcopy(model)
    clone.get_booster().feature_names = None
    return clone


def parity_sample(frame: pd.DataFrame, rows: int = PARITY_SAMPLE_ROWS) -> np.ndarray:
    """Up to ``rows`` evenly spaced rows of ``frame`` as a float64 matrix (NaNs kept)."""
    import numpy as np

    step = max(1, len(frame) // rows)
    return np.asarray(frame.iloc[::step].head(rows), dtype=np.float64)


def write_serving_extras(model: Any, flavor: str, holdout: pd.DataFrame, folder: Path) -> list[str]:
    """Write ``model.onnx`` (when convertible), ``parity_sample.npy`` and ``onnx.json`` into ``folder``.

    ``holdout`` is the model input (signature columns, in order). Returns the written
    paths, for ``log_model(extra_files=...)``.
    """
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / REPORT_FILE]
    report: dict[str, Any] = {"flavor": flavor, "input": INPUT_NAME, "features": [str(c) for c in holdout.columns]}
    report["versions"] = _versions(["onnx", "onnxmltools" if flavor == "xgboost" else "skl2onnx"])
    try:
        _require_numeric(holdout)
        onnx = to_onnx(model, flavor, holdout.shape[1])
    except OnnxExportError as exc:
        report |= {"status": "failed", "reason": str(exc)}
    else:
        (folder / ONNX_FILE).write_bytes(onnx)
        np.save(folder / SAMPLE_FILE, parity_sample(holdout))
        written += [folder / ONNX_FILE, folder / SAMPLE_FILE]
        report["status"] = "converted"
    written[0].write_text(json.dumps(report, indent=2))
    return [str(path) for path in written]


def _require_numeric(frame: pd.DataFrame) -> None:
    import pandas as pd

    other = [str(c) for c, dtype in frame.dtypes.items() if not pd.api.types.is_numeric_dtype(dtype)]
    if other:
        raise OnnxExportError(
            f"non-numeric (e.g. categorical) features {other}: the ONNX input is one float matrix; served natively"
        )


def _versions(packages: Sequence[str]) -> dict[str, str]:
    found = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found
