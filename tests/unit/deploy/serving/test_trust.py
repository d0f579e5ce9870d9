"""A model folder from the registry runs no code and reads no file unless the operator allowed it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.linear_model import LinearRegression

from modelyard.core.featurespec import Calendar, FeatureDef, FeatureSpec
from modelyard.deploy.serving import runtime
from modelyard.deploy.serving.errors import ModelLoadFailed
from modelyard.deploy.serving.runtime import ModelStatus
from modelyard.deploy.serving.swap_outcomes import public_error
from modelyard.deploy.serving.trust import FunctionNotAllowed, OutsideModelDir, PickleNotAllowed, TrustPolicy

CALENDAR = Calendar("BER", "Europe/Berlin", ())
CALLS: list[int] = []


def double(columns):  # the user function an allowed spec names
    CALLS.append(len(columns["size"]))
    return columns["size"] * 2


def _save(folder: Path, function: str | None = None, fmt: str = "skops") -> Path:
    import mlflow.sklearn
    import pandas as pd

    features: tuple[FeatureDef, ...] = (FeatureDef("size", "column"),)
    if function is not None:
        features += (FeatureDef("double", "function", function=f"{__name__}:double", inputs=("size",)),)
    stored = FeatureSpec("prep", "ts", {"ts": "timestamp", "size": "float"}, features).fit({}, CALENDAR).to_dict()
    if function is not None:  # what anyone who can register a version may write
        stored["features"][1]["function"] = function
    spec_file = folder / "feature_spec.json"
    spec_file.write_text(json.dumps(stored))
    x = np.arange(10.0 * len(features)).reshape(10, len(features))
    model = LinearRegression().fit(x, x.sum(axis=1))
    path = folder / "model"
    mlflow.sklearn.save_model(
        model,
        str(path),
        input_example=pd.DataFrame({"size": [1.0]}),
        extra_files=[str(spec_file)],
        serialization_format=fmt,
        pip_requirements=[],
    )
    return path


def _load(path: Path, trust: TrustPolicy | None = None) -> runtime.ServedModel:
    status = ModelStatus(uri="models:/prep/1", name="prep", version="1")
    return runtime._load_from_dir(status, path, path.parent, trust=trust)


def _edit_mlmodel(path: Path, **sklearn: object) -> None:
    mlmodel = yaml.safe_load((path / "MLmodel").read_text())
    mlmodel["flavors"]["sklearn"].update(sklearn)
    (path / "MLmodel").write_text(yaml.safe_dump(mlmodel))


def test_a_spec_naming_a_process_function_fails_its_load_and_runs_nothing(tmp_path: Path) -> None:
    path = _save(tmp_path, function="subprocess:Popen")
    for trust in (None, TrustPolicy(frozenset({"subprocess"}), allow_pickle=True)):
        with pytest.raises(FunctionNotAllowed, match="'subprocess:Popen' is never run") as refused:
            _load(path, trust)
        assert "MODELYARD_SERVE_ALLOWED_FUNCTION_MODULES" in refused.value.message
        assert refused.value.status == 503


def test_a_user_function_runs_only_when_the_operator_allows_its_module(tmp_path: Path) -> None:
    path = _save(tmp_path, function=f"{__name__}:double")
    with pytest.raises(FunctionNotAllowed, match=f"module '{__name__}' is not on the allowed list") as refused:
        _load(path)
    assert "chart: serving.allowedFunctionModules" in refused.value.message
    assert refused.value.message.endswith("(chart: serving.allowedFunctionModules): none")
    CALLS.clear()
    served = _load(path, TrustPolicy(frozenset({__name__})))
    served.warm_up((1,))
    assert served.prepare([{"size": 3.0}]).tolist() == [[3.0, 6.0]]
    assert CALLS


def test_a_pickled_model_loads_only_when_pickles_are_allowed(tmp_path: Path) -> None:
    path = _save(tmp_path, fmt="cloudpickle")
    with pytest.raises(PickleNotAllowed, match=r"loads no pickles.*MODELYARD_SERVE_ALLOW_PICKLE=1") as refused:
        _load(path)
    assert str(tmp_path) not in refused.value.message
    assert _load(path, TrustPolicy(allow_pickle=True)).status.flavor == "sklearn"


def test_a_skops_model_may_not_ask_to_trust_foreign_types(tmp_path: Path) -> None:
    path = _save(tmp_path)
    _edit_mlmodel(path, skops_trusted_types=["sklearn.tree._tree.Tree", "builtins.eval"])
    with pytest.raises(PickleNotAllowed, match=r"asks to trust 'builtins\.eval'"):
        _load(path)


@pytest.mark.parametrize("where", ["../../etc/passwd", "/etc/hostname", "symlink"])
def test_a_model_file_outside_the_model_folder_is_refused(tmp_path: Path, where: str) -> None:
    path = _save(tmp_path)
    if where == "symlink":
        (path / "link.skops").symlink_to(Path("/etc/hostname"))
        where = "link.skops"
    _edit_mlmodel(path, pickled_model=where)
    with pytest.raises(OutsideModelDir, match=f"sklearn 'pickled_model' '{where}' is not a file inside") as refused:
        _load(path)
    assert str(tmp_path) not in public_error(refused.value)


def test_an_input_example_or_extra_file_outside_the_folder_is_refused(tmp_path: Path) -> None:
    path = _save(tmp_path)
    mlmodel = yaml.safe_load((path / "MLmodel").read_text())
    mlmodel["saved_input_example_info"]["artifact_path"] = "/etc/passwd"
    (path / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    with pytest.raises(OutsideModelDir, match="input example '/etc/passwd'"):
        _load(path)
    (tmp_path / "other").mkdir()
    other = _save(tmp_path / "other")
    (other / "extra_files" / "model.onnx").symlink_to(Path("/etc/hostname"))
    with pytest.raises(OutsideModelDir, match=r"extra file 'extra_files/model\.onnx'"):
        _load(other)


def test_a_load_failure_names_no_cache_path_and_no_library_text(tmp_path: Path) -> None:
    workdir = tmp_path / "modelyard-model-abc"
    typed = runtime._without_paths(ModelLoadFailed(f"m: cannot read {workdir}/model/MLmodel"), "m", workdir)
    assert typed.message == "m: cannot read model/MLmodel"
    foreign = runtime._without_paths(ValueError(f"bad byte 'r' in {workdir}/x"), "models:/m/1", workdir)
    assert isinstance(foreign, ModelLoadFailed)
    assert foreign.message == "models:/m/1: the model cannot be loaded (ValueError); the server log has details"


def test_an_unreadable_model_file_is_reported_without_its_content(tmp_path: Path) -> None:
    path = _save(tmp_path)
    model_file = next(path.glob("model.*"))
    model_file.write_bytes(b"root:x:0:0:secret-content\n")
    with pytest.raises(Exception) as failed:
        _load(path)
    public = runtime._without_paths(failed.value, "models:/prep/1", tmp_path)  # type: ignore[arg-type]
    assert "secret-content" not in public_error(public)
    assert str(tmp_path) not in public_error(public)
