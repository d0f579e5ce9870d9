"""Which engine answers a model call: the native model, or its ONNX copy for small batches (ADR 0002).

A model call on one row costs ~300 µs in xgboost's ``inplace_predict`` (and milliseconds
in a scikit-learn forest) whatever the row count up to a few dozen rows; ONNX Runtime
with one thread answers it in ~10-40 µs. Training stores an ONNX copy of each model and a
holdout sample in the version's ``extra_files/`` (``modelyard.training.onnx_export``);
this module decides, per model at load, whether and up to which batch size to use it:

1. **Parity**: the ONNX copy must reproduce the native predictions on the input example
   and the stored holdout sample within ``PARITY_ATOL + PARITY_RTOL * |native|``. Rows
   with missing values (the sample's NaNs, plus one probe row per feature set to NaN)
   are checked on their own: if only they disagree (or the native model rejects NaN),
   batches holding a NaN go to the native model, the rest to ONNX.
2. **Calibration**: both engines are timed on the input example replicated to
   1, 2, 4, ... :data:`CALIBRATION_MAX_ROWS` rows (best of a few runs); ONNX answers
   batches up to the largest size below which it was never slower. That costs ~0.2 s of
   CPU a model, so it is done once per model *shape* in a process (flavor, feature count,
   ONNX size within ~9%): the 500 models of one family in a pod share one measurement,
   each still checked for parity on its own. ``MODELYARD_SERVE_CALIBRATE_EACH=1`` times
   every model.

Any failure (no ONNX copy, no ``onnxruntime``, a session that does not load, a parity
miss) keeps the native path, and the reason is in ``/readyz`` and the
``modelyard_model_engine`` metric.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("modelyard.serving.engines")

Engine = Literal["native", "onnx"]
Predict = Callable[["np.ndarray"], "np.ndarray"]
# The files training writes next to the model (modelyard.training.onnx_export; the pod must not import training).
EXTRA_FILES_DIR = "extra_files"
ONNX_FILE = "model.onnx"
SAMPLE_FILE = "parity_sample.npy"
REPORT_FILE = "onnx.json"
INPUT_NAME = "input"
# Both engines compute in float32 (tree leaves are summed in float32 by xgboost and by ONNX
# Runtime, in a different order): 1e-6 absolute, plus 32 float32 ulps (2**-18) of the value.
PARITY_ATOL = 1e-6
PARITY_RTOL = 2.0**-18
CALIBRATION_MAX_ROWS = 1024
CALIBRATION_BUDGET_S = 0.01  # per engine and batch size: enough runs for a stable minimum, bounded load time
CALIBRATION_MIN_RUNS = 3
CALIBRATION_RETRIES = 2
# Calibrations by model shape, for this process; a lock per shape so concurrent loads measure once.
_CALIBRATIONS: dict[tuple[Any, ...], dict[str, dict[str, float]]] = {}
_SHAPE_LOCKS: dict[tuple[Any, ...], threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


class OnnxUnavailable(Exception):
    """The ONNX path cannot be used for this model; the message is the reason shown in ``/readyz``."""


@dataclasses.dataclass
class EngineReport:
    """What ``/readyz`` shows about a model's engine choice."""

    engine: Engine = "native"
    reason: str = "native model"
    onnx_max_rows: int | None = None
    missing_values: Engine = "native"
    parity_max_abs_diff: float | None = None
    parity_rows: int = 0
    calibration_us: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    calibration: str = "measured"  # or "shared" (measured on an earlier model of the same shape)
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class SmallBatchDispatch:
    """Send batches of up to ``max_rows`` rows to ONNX, larger ones (and NaN ones, if so decided) to native."""

    def __init__(self, native: Predict, onnx: Predict, max_rows: int | None, onnx_missing: bool) -> None:
        self.native = native
        self.onnx = onnx
        self.max_rows = max_rows if max_rows is not None else 2**62
        self.onnx_missing = onnx_missing

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        import numpy as np

        if len(matrix) > self.max_rows or (not self.onnx_missing and np.isnan(matrix).any()):
            return self.native(matrix)
        return self.onnx(matrix)


def choose_engine(
    model_dir: Path, native: Predict, example: np.ndarray, *, calibrate_each: bool = False
) -> tuple[Predict, EngineReport]:
    """The predict function to serve with, and why: ONNX for small batches when it is exact and faster.

    Args:
        model_dir: the downloaded model folder (with ``extra_files/`` from training).
        native: the native predict function (float32 matrix in, predictions out).
        example: the input example as a float32 matrix.
        calibrate_each: time this model even when one of its shape was timed (the server's
            ``MODELYARD_SERVE_CALIBRATE_EACH``).

    Never raises: every problem keeps ``native`` and is named in the report.
    """
    started = time.perf_counter()
    try:
        onnx = load_onnx(model_dir)
        sample = _load_sample(model_dir, example.shape[1])
        onnx_fn, report, clean = _check_parity(native, onnx, example, sample)
        report.calibration_us, report.calibration = shared_calibration(
            shape_of(model_dir, example),
            lambda: calibrate(native, onnx_fn, clean[: max(1, len(example))]),
            each=calibrate_each,
        )
        report.seconds = round(time.perf_counter() - started, 4)
        return _decide(native, onnx_fn, report)
    except OnnxUnavailable as exc:
        return native, EngineReport(reason=str(exc))
    except Exception as exc:  # a broken ONNX copy must never stop a model from serving
        log.warning("ONNX path failed, serving natively", exc_info=True)
        return native, EngineReport(reason=f"ONNX path failed: {type(exc).__name__}: {exc}")


def load_onnx(model_dir: Path) -> Any:
    """An ONNX Runtime session on the model's ONNX copy, tuned for one small batch at a time.

    Raises:
        OnnxUnavailable: no ONNX copy (with training's reason when it recorded one), or no onnxruntime.
    """
    folder = model_dir / EXTRA_FILES_DIR
    path = folder / ONNX_FILE
    if not path.exists():
        raise OnnxUnavailable(_missing_reason(folder / REPORT_FILE))
    try:
        import onnxruntime as ort
    except ImportError:
        raise OnnxUnavailable("onnxruntime is not installed (pip install 'modelyard[serving]')") from None
    options = ort.SessionOptions()
    # One request at a time per worker: threads only add hand-off latency on a 1-row call.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _missing_reason(report_path: Path) -> str:
    if not report_path.exists():
        return "no ONNX copy stored with this version (trained before the ONNX export, or not by modelyard)"
    report = json.loads(report_path.read_text())
    return f"ONNX conversion failed at training: {report.get('reason', 'no reason recorded')}"


def onnx_predictor(session: Any, like: np.ndarray) -> Predict:
    """A predict function on ``session`` shaped like the native output ``like`` (class-1 column, dtype)."""
    import numpy as np

    names = [o.name for o in session.get_outputs()]
    output = "probabilities" if "probabilities" in names else names[0]
    dtype = like.dtype
    binary = like.ndim == 1
    run = _bound_run(session)
    outputs = [output]

    def predict(matrix: np.ndarray) -> np.ndarray:
        result = run(outputs, {INPUT_NAME: matrix}, None)[0]
        if output == "probabilities":
            result = result[:, 1] if binary else result
        else:
            result = result.reshape(len(matrix)) if binary else result
        return np.ascontiguousarray(result, dtype=dtype)  # a column view would not serialize

    return predict


def _bound_run(session: Any) -> Callable[[list[str], dict[str, Any], Any], Any]:
    """The session's compiled ``run``, without the Python wrapper's per-call checks (~0.6 µs of a ~5 µs row).

    The wrapper checks that every input is fed (this module always feeds the one input), that no
    graph capture is on and no OrtValue crosses sessions (not used here), and falls back from a
    failing GPU provider (only the CPU provider is used). Without ``_sess`` (a future onnxruntime,
    a stand-in session), the public ``run``.
    """
    inner = getattr(session, "_sess", None)
    run = getattr(inner, "run", None)
    return run if callable(run) else session.run


def _load_sample(model_dir: Path, n_features: int) -> np.ndarray:
    import numpy as np

    path = model_dir / EXTRA_FILES_DIR / SAMPLE_FILE
    if not path.exists():
        raise OnnxUnavailable("no holdout sample stored with this version: parity cannot be checked")
    sample = np.load(path, allow_pickle=False)
    if sample.ndim != 2 or sample.shape[1] != n_features:
        raise OnnxUnavailable(f"holdout sample has shape {sample.shape}, the signature {n_features} features")
    return np.asarray(sample, dtype=np.float32)


def missing_value_probes(clean: np.ndarray) -> np.ndarray:
    """One row per feature with that feature NaN (from the first clean row), and one all-NaN row."""
    import numpy as np

    n_features = clean.shape[1]
    probes = np.repeat(clean[:1], n_features + 1, axis=0)
    probes[np.arange(n_features), np.arange(n_features)] = np.nan
    probes[-1] = np.nan
    return probes


def _check_parity(
    native: Predict, session: Any, example: np.ndarray, sample: np.ndarray
) -> tuple[Predict, EngineReport, np.ndarray]:
    import numpy as np

    rows = np.concatenate([example, sample])
    has_nan = np.isnan(rows).any(axis=1)
    clean = rows[~has_nan]
    if len(clean) == 0:
        raise OnnxUnavailable("the input example and holdout sample have no row without missing values")
    expected = native(clean)
    onnx = onnx_predictor(session, expected)
    got = onnx(clean)
    diff = parity_diff(expected, got)
    if diff is None or diff > 0:
        shown = "a different output shape" if diff is None else f"{diff:.3g} beyond the bound"
        raise OnnxUnavailable(f"ONNX copy disagrees with the native model on {len(clean)} clean rows ({shown})")
    report = EngineReport(engine="onnx", parity_max_abs_diff=max_abs_diff(expected, got), parity_rows=len(clean))
    report.missing_values, report.reason = _missing_parity(
        native, onnx, np.concatenate([rows[has_nan], missing_value_probes(clean)])
    )
    return onnx, report, clean


def _missing_parity(native: Predict, onnx: Predict, rows: np.ndarray) -> tuple[Engine, str]:
    try:
        expected = native(rows)
    except Exception as exc:  # e.g. scikit-learn linear models reject NaN: keep rejecting it the same way
        return "native", f"ONNX matches; rows with missing values go native (it rejects them: {type(exc).__name__})"
    diff = parity_diff(expected, onnx(rows))
    if diff is None or diff > 0:
        return "native", f"ONNX matches except on missing values ({len(rows)} rows): those rows go native"
    return "onnx", "ONNX matches the native model, missing values included"


def parity_diff(expected: np.ndarray, got: np.ndarray) -> float | None:
    """How far beyond the parity bound ``got`` is (0.0 within it); None when the shapes differ."""
    import numpy as np

    if expected.shape != got.shape:
        return None
    a, b = np.asarray(expected, dtype=np.float64), np.asarray(got, dtype=np.float64)
    same_nan = np.isnan(a) == np.isnan(b)
    if not same_nan.all():
        return float("inf")
    excess = np.abs(a - b) - (PARITY_ATOL + PARITY_RTOL * np.abs(a))
    excess = excess[~np.isnan(excess)]
    return float(max(0.0, excess.max())) if excess.size else 0.0


def max_abs_diff(expected: np.ndarray, got: np.ndarray) -> float:
    import numpy as np

    diff = np.abs(np.asarray(expected, dtype=np.float64) - np.asarray(got, dtype=np.float64))
    return float(np.nanmax(diff)) if diff.size else 0.0


def shape_of(model_dir: Path, example: np.ndarray) -> tuple[Any, ...]:
    """What the engines' speeds depend on: the flavor, the feature count and the ONNX graph's size (~9% bins)."""
    folder = model_dir / EXTRA_FILES_DIR
    try:
        flavor = json.loads((folder / REPORT_FILE).read_text()).get("flavor")
    except (OSError, ValueError):
        flavor = None
    size = (folder / ONNX_FILE).stat().st_size
    return (flavor, int(example.shape[1]), round(math.log2(max(size, 1)) * 8))


def shared_calibration(
    shape: tuple[Any, ...], measure: Callable[[], dict[str, dict[str, float]]], *, each: bool = False
) -> tuple[dict[str, dict[str, float]], str]:
    """The calibration of ``shape``: measured once per process (``measure``), then shared; and which it was.

    With ``each``, every model is measured and nothing is shared.
    """
    if each:
        return measure(), "measured"
    with _LOCKS_GUARD:
        lock = _SHAPE_LOCKS.setdefault(shape, threading.Lock())
    with lock:  # concurrent loads of one shape: the first measures, the others wait for it
        known = _CALIBRATIONS.get(shape)
        if known is not None:
            return known, "shared"
        measured = _CALIBRATIONS[shape] = measure()
        return measured, "measured"


def calibrate(native: Predict, onnx: Predict, example: np.ndarray) -> dict[str, dict[str, float]]:
    """Best-of-n microseconds per call of each engine on the example replicated to 1, 2, 4, ... rows."""
    import numpy as np

    timings: dict[str, dict[str, float]] = {"native": {}, "onnx": {}}  # str keys: /readyz is JSON
    size = 1
    while size <= CALIBRATION_MAX_ROWS:
        matrix = np.ascontiguousarray(np.resize(example, (size, example.shape[1])))
        best = {"native": _best_time(native, matrix), "onnx": _best_time(onnx, matrix)}
        for _ in range(CALIBRATION_RETRIES):
            if best["onnx"] <= best["native"]:
                break
            # A loaded machine preempts single runs: before ONNX loses at a size, time both again.
            best = {name: min(best[name], _best_time(fn, matrix)) for name, fn in (("native", native), ("onnx", onnx))}
        for name in best:
            timings[name][str(size)] = round(best[name] * 1e6, 1)
        size *= 2
    return timings


def _best_time(fn: Predict, matrix: np.ndarray) -> float:
    fn(matrix)  # first call allocates
    best, spent, runs = float("inf"), 0.0, 0
    while runs < CALIBRATION_MIN_RUNS or spent < CALIBRATION_BUDGET_S:
        started = time.perf_counter()
        fn(matrix)
        took = time.perf_counter() - started
        best, spent, runs = min(best, took), spent + took, runs + 1
        if runs >= 200:
            break
    return best


def crossover(timings: dict[str, dict[str, float]]) -> tuple[int | None, bool]:
    """(largest batch size up to which ONNX was never slower, whether it won at every size measured)."""
    largest = None
    for size in sorted(timings["onnx"], key=int):
        if timings["onnx"][size] > timings["native"][size]:
            return largest, False
        largest = int(size)
    return largest, True


def _decide(native: Predict, onnx: Predict, report: EngineReport) -> tuple[Predict, EngineReport]:
    largest, everywhere = crossover(report.calibration_us)
    if largest is None:
        report.engine, report.reason = "native", "ONNX matches but is not faster on 1 row: serving natively"
        return native, report
    # Never past the sizes measured: native (xgboost's inplace_predict) scales better with rows than a
    # one-thread ONNX session, so a 100,000-row batch (batch scoring) is faster natively.
    report.onnx_max_rows = largest
    limit = (
        f"every batch size measured (1..{largest}); larger batches natively"
        if everywhere
        else f"batches of up to {largest} rows"
    )
    report.reason = f"{report.reason}; ONNX for {limit}"
    dispatch = SmallBatchDispatch(native, onnx, report.onnx_max_rows, report.missing_values == "onnx")
    return dispatch, report
