"""Engine choice: ONNX only when its copy is exact and faster; every other case stays native and says why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge

from modelyard.deploy.serving import engines
from modelyard.training import onnx_export

NAMES = ["a", "b", "c"]


def frame(seed: int, rows: int = 200) -> pd.DataFrame:
    return pd.DataFrame(np.random.default_rng(seed).normal(size=(rows, len(NAMES))), columns=NAMES)


def ridge(seed: int) -> Ridge:
    x = frame(seed)
    return Ridge().fit(x, 5 + x["a"] - 2 * x["b"] * (seed + 1))


def native_of(model: Ridge):  # what the runtime does for a scikit-learn regressor
    return model.predict


def model_dir(tmp_path: Path, model: Ridge, holdout: pd.DataFrame) -> Path:
    """A model folder as training writes it: just the ``extra_files/`` the engine reads."""
    onnx_export.write_serving_extras(model, "sklearn", holdout, tmp_path / engines.EXTRA_FILES_DIR)
    return tmp_path


def example(holdout: pd.DataFrame) -> np.ndarray:
    return holdout.head(3).to_numpy(np.float32)


def test_training_and_serving_agree_on_the_file_names():
    assert (engines.ONNX_FILE, engines.SAMPLE_FILE, engines.REPORT_FILE, engines.INPUT_NAME) == (
        onnx_export.ONNX_FILE,
        onnx_export.SAMPLE_FILE,
        onnx_export.REPORT_FILE,
        onnx_export.INPUT_NAME,
    )


def test_an_exact_copy_is_used_and_reports_parity_and_calibration(tmp_path):
    model, holdout = ridge(0), frame(9)
    predict, report = engines.choose_engine(model_dir(tmp_path, model, holdout), native_of(model), example(holdout))
    assert report.engine == "onnx", report.reason
    assert report.parity_rows == 3 + 200
    assert report.parity_max_abs_diff is not None
    assert report.parity_max_abs_diff < 1e-5
    assert report.missing_values == "native"  # Ridge rejects NaN: so must the served path
    assert "1" in report.calibration_us["onnx"]
    assert "1024" in report.calibration_us["native"]
    matrix = holdout.to_numpy(np.float32)
    assert engines.parity_diff(model.predict(matrix), predict(matrix)) == 0.0


def test_a_copy_that_disagrees_keeps_the_native_model(tmp_path):
    holdout = frame(9)
    folder = model_dir(tmp_path, ridge(1), holdout)  # the ONNX copy of another model
    served = ridge(0)
    predict, report = engines.choose_engine(folder, native_of(served), example(holdout))
    assert report.engine == "native"
    assert "disagrees with the native model" in report.reason
    assert predict is not None
    assert predict.__self__ is served


def test_a_version_without_onnx_copy_stays_native(tmp_path):
    model, holdout = ridge(0), frame(9)
    _, report = engines.choose_engine(tmp_path, native_of(model), example(holdout))
    assert report.engine == "native"
    assert "no ONNX copy stored with this version" in report.reason


def test_a_failed_conversion_at_training_is_the_reason_shown(tmp_path):
    holdout = frame(9).assign(c=pd.Categorical(["x", "y"] * 100))
    written = onnx_export.write_serving_extras(ridge(0), "sklearn", holdout, tmp_path / engines.EXTRA_FILES_DIR)
    assert not any(path.endswith(onnx_export.ONNX_FILE) for path in written)
    _, report = engines.choose_engine(tmp_path, native_of(ridge(0)), example(frame(9)))
    assert report.engine == "native"
    assert report.reason.startswith("ONNX conversion failed at training: non-numeric (e.g. categorical) features")


def test_a_corrupt_onnx_file_stays_native(tmp_path):
    model, holdout = ridge(0), frame(9)
    folder = model_dir(tmp_path, model, holdout)
    (folder / engines.EXTRA_FILES_DIR / engines.ONNX_FILE).write_bytes(b"not an onnx model")
    _, report = engines.choose_engine(folder, native_of(model), example(holdout))
    assert report.engine == "native"
    assert report.reason.startswith("ONNX path failed:")


def test_an_unknown_flavor_is_not_converted():
    with pytest.raises(onnx_export.OnnxExportError, match="no ONNX converter for flavor 'pytorch'"):
        onnx_export.to_onnx(object(), "pytorch", 3)


@pytest.mark.parametrize(
    ("onnx_us", "native_us", "expected"),
    [
        ([10, 12, 20, 90, 400], [300, 300, 310, 320, 330], (8, False)),
        ([10, 12, 20, 90], [300, 300, 310, 320], (8, True)),
        ([400, 12], [300, 300], (None, False)),
    ],
)
def test_the_threshold_is_the_largest_size_up_to_which_onnx_was_never_slower(onnx_us, native_us, expected):
    sizes = [str(2**i) for i in range(len(onnx_us))]
    timings = {"onnx": dict(zip(sizes, onnx_us, strict=True)), "native": dict(zip(sizes, native_us, strict=True))}
    assert engines.crossover(timings) == expected


def test_dispatch_sends_large_and_missing_value_batches_to_native():
    calls: list[str] = []

    def native(x):
        calls.append("native")
        return x[:, 0]

    def onnx(x):
        calls.append("onnx")
        return x[:, 0]

    dispatch = engines.SmallBatchDispatch(native, onnx, max_rows=8, onnx_missing=False)
    dispatch(np.zeros((8, 2), np.float32))
    dispatch(np.zeros((9, 2), np.float32))
    dispatch(np.array([[np.nan, 1.0]], np.float32))
    assert calls == ["onnx", "native", "native"]


def test_missing_value_probes_set_each_feature_and_then_all_to_nan():
    probes = engines.missing_value_probes(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert probes.shape == (4, 3)
    assert np.isnan(probes).sum(axis=1).tolist() == [1, 1, 1, 3]
    assert np.isnan(np.diag(probes[:3])).all()


def test_the_parity_bound_is_absolute_for_small_values_and_relative_for_large_ones():
    assert engines.parity_diff(np.array([0.5]), np.array([0.5 + 9e-7])) == 0.0
    assert engines.parity_diff(np.array([0.5]), np.array([0.5 + 4e-6])) > 0
    assert engines.parity_diff(np.array([1000.0]), np.array([1000.0 + 3e-3])) == 0.0  # 2**-18 of the value
    assert engines.parity_diff(np.array([1.0, 2.0]), np.array([1.0])) is None
    assert engines.parity_diff(np.array([np.nan]), np.array([0.0])) == float("inf")


@pytest.fixture
def fresh_calibrations(monkeypatch):
    monkeypatch.setattr(engines, "_CALIBRATIONS", {})
    monkeypatch.setattr(engines, "_SHAPE_LOCKS", {})


def test_models_of_one_shape_share_one_calibration_and_are_each_checked_for_parity(tmp_path, fresh_calibrations):
    holdout = frame(9)
    first = engines.choose_engine(model_dir(tmp_path / "m0", ridge(0), holdout), native_of(ridge(0)), example(holdout))[
        1
    ]
    second = engines.choose_engine(
        model_dir(tmp_path / "m1", ridge(1), holdout), native_of(ridge(1)), example(holdout)
    )[1]
    assert (first.calibration, second.calibration) == ("measured", "shared")
    assert second.calibration_us == first.calibration_us
    assert second.parity_rows == first.parity_rows == 3 + 200  # parity is never shared
    wrong = engines.choose_engine(model_dir(tmp_path / "m2", ridge(1), holdout), native_of(ridge(0)), example(holdout))[
        1
    ]
    assert wrong.engine == "native"  # a copy of another model fails its own parity check, shape or not
    assert "disagrees with the native model" in wrong.reason


def test_a_model_of_another_shape_is_measured_and_each_can_be_asked_for(tmp_path, fresh_calibrations):
    holdout = frame(9)
    engines.choose_engine(model_dir(tmp_path / "m0", ridge(0), holdout), native_of(ridge(0)), example(holdout))
    wide = pd.DataFrame(np.random.default_rng(3).normal(size=(200, 5)), columns=list("abcde"))
    model = Ridge().fit(wide, wide["a"])
    other = engines.choose_engine(
        model_dir(tmp_path / "w", model, wide), model.predict, wide.head(3).to_numpy(np.float32)
    )
    assert other[1].calibration == "measured"
    shared = engines.choose_engine(model_dir(tmp_path / "m1", ridge(1), holdout), native_of(ridge(1)), example(holdout))
    assert shared[1].calibration == "shared"
    again = engines.choose_engine(
        model_dir(tmp_path / "m2", ridge(1), holdout), native_of(ridge(1)), example(holdout), calibrate_each=True
    )
    assert again[1].calibration == "measured"
