"""The server's settings: every MODELYARD_SERVE_* variable read once into one object, named when wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.deploy.serving.errors import ServingError
from modelyard.deploy.serving.plan import PlanError
from modelyard.deploy.serving.protocol import TransportLimits
from modelyard.deploy.serving.sampling import SamplingSettings
from modelyard.deploy.serving.settings import SamplingError, ServeSettings, sampling_from_env, shipper_from_env
from modelyard.deploy.serving.trust import TrustPolicy


def test_every_variable_lands_in_its_field(tmp_path: Path):
    env = {
        "MODELYARD_SERVE_PLAN": str(tmp_path / "plan.json"),
        "MODELYARD_SERVE_POLL_SECONDS": "0.5",
        "MODELYARD_SERVE_MODEL_CACHE": str(tmp_path / "cache"),
        "MODELYARD_SERVE_ADMIN_TOKEN": "s3cret",
        "MODELYARD_SERVE_RETRY_MAX_SECONDS": "3",
        "MODELYARD_SERVE_LOG_DIR": str(tmp_path / "logs"),
        "MODELYARD_SERVE_SHADOW_THREADS": "0",  # at least one
        "MODELYARD_SERVE_LOAD_THREADS": "8",
        "MODELYARD_SERVE_SAMPLE_RATE": "0.1",
        "MODELYARD_SERVE_SAMPLE_ROTATE_MB": "2",
        "MODELYARD_SERVE_SAMPLE_ROTATE_SECONDS": "60",
        "MODELYARD_SERVE_LOG_URL": "memory://settings-test/samples",
        "MODELYARD_SERVE_LOG_OPTIONS": "{}",
        "MODELYARD_SERVE_CALIBRATE_EACH": "yes",
        "MODELYARD_SERVE_REQUEST_TIMEOUT": "2.5",
        "MODELYARD_SERVE_MAX_HEADER_BYTES": "4096",
        "MODELYARD_SERVE_SUPERVISOR_PID": "4242",
        "MODELYARD_SERVE_ALLOWED_FUNCTION_MODULES": " acme.features, acme_extra ,",
        "MODELYARD_SERVE_ALLOW_PICKLE": "1",
        "MODELYARD_SERVE_SAMPLE_MAX_RECORD_KB": "8",
        "MODELYARD_SERVE_SAMPLE_MAX_SPOOL_MB": "50",
        "MODELYARD_SERVE_LIMIT_CONCURRENCY": "16",
    }
    settings = ServeSettings.from_env(env)
    assert settings.shipper is not None
    assert settings.shipper.spool == (tmp_path / "logs").resolve()
    assert str(settings.shipper.target).startswith("memory://")
    assert settings == ServeSettings(
        plan_path=tmp_path / "plan.json",
        poll_seconds=0.5,
        model_cache=tmp_path / "cache",
        admin_token="s3cret",
        log_dir=tmp_path / "logs",
        shadow_threads=1,
        load_threads=8,
        retry_max_seconds=3.0,
        sampling=SamplingSettings(0.1, 2.0, 60.0, max_record_kb=8.0, max_spool_mb=50.0),
        shipper=settings.shipper,
        calibrate_each=True,
        transport=TransportLimits(request_timeout_seconds=2.5, max_header_bytes=4096),
        supervisor_pid=4242,
        trust=TrustPolicy(frozenset({"acme.features", "acme_extra"}), allow_pickle=True),
        limit_concurrency=16,
    )
    assert settings.last_good_path == tmp_path / "plan.json.last-good"


def test_only_the_plan_is_required(tmp_path: Path):
    settings = ServeSettings.from_env({"MODELYARD_SERVE_PLAN": "plan.json", "XDG_STATE_HOME": str(tmp_path)})
    assert settings == ServeSettings(
        plan_path=Path("plan.json"), log_dir=tmp_path / "modelyard" / "prediction-logs"
    )  # the defaults: no admin API, no sampling, no shipping, native calibration shared, 10 s / 64 KiB
    assert settings.transport == TransportLimits(10.0, 64 * 1024)
    # Nothing from a model artifact runs by default: no feature functions, no pickles.
    assert settings.trust == TrustPolicy(frozenset(), allow_pickle=False)
    cached = ServeSettings.from_env({"MODELYARD_SERVE_PLAN": "p", "MODELYARD_SERVE_MODEL_CACHE": str(tmp_path)})
    assert cached.log_dir == tmp_path / "prediction-logs"
    with pytest.raises(PlanError, match="no plan: set MODELYARD_SERVE_PLAN"):
        ServeSettings.from_env({})


def test_a_bad_load_threads_setting_is_named(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MODELYARD_SERVE_PLAN", "plan.json")
    monkeypatch.setenv("MODELYARD_SERVE_LOAD_THREADS", "zero")
    with pytest.raises(ServingError, match="MODELYARD_SERVE_LOAD_THREADS='zero' is not a positive integer"):
        ServeSettings.from_env()
    monkeypatch.setenv("MODELYARD_SERVE_LOAD_THREADS", "8")
    assert ServeSettings.from_env().load_threads == 8


def test_a_pickle_switch_that_is_neither_yes_nor_no_is_named():
    env = {"MODELYARD_SERVE_PLAN": "p", "MODELYARD_SERVE_ALLOW_PICKLE": "maybe"}
    with pytest.raises(ServingError, match="MODELYARD_SERVE_ALLOW_PICKLE='maybe': set 1 or 0"):
        ServeSettings.from_env(env)


def test_sampling_settings_are_checked_and_named():
    settings = sampling_from_env({"MODELYARD_SERVE_SAMPLE_RATE": "0.1", "MODELYARD_SERVE_SAMPLE_ROTATE_SECONDS": "60"})
    assert settings == SamplingSettings(0.1, 8.0, 60.0)
    with pytest.raises(SamplingError, match="MODELYARD_SERVE_SAMPLE_RATE='2': must be a number from 0 to 1"):
        sampling_from_env({"MODELYARD_SERVE_SAMPLE_RATE": "2"})
    with pytest.raises(SamplingError, match="MODELYARD_SERVE_SAMPLE_ROTATE_MB='lots'"):
        sampling_from_env({"MODELYARD_SERVE_SAMPLE_ROTATE_MB": "lots"})


def test_shipping_settings_are_checked_and_named(tmp_path):
    assert shipper_from_env({}, tmp_path) is None
    with pytest.raises(SamplingError, match="MODELYARD_SERVE_LOG_OPTIONS: not JSON"):
        shipper_from_env({"MODELYARD_SERVE_LOG_URL": "memory://x", "MODELYARD_SERVE_LOG_OPTIONS": "{nope"}, tmp_path)
    with pytest.raises(SamplingError, match="MODELYARD_SERVE_LOG_OPTIONS: must be a JSON object"):
        shipper_from_env({"MODELYARD_SERVE_LOG_URL": "memory://x", "MODELYARD_SERVE_LOG_OPTIONS": "[1]"}, tmp_path)
    with pytest.raises(SamplingError, match=r"MODELYARD_SERVE_LOG_URL: storage.root nosuchfs://b/x: no file system"):
        shipper_from_env({"MODELYARD_SERVE_LOG_URL": "nosuchfs://b/x"}, tmp_path)


def test_a_bad_shipping_setting_stops_the_start(tmp_path):
    env = {
        "MODELYARD_SERVE_PLAN": "p",
        "MODELYARD_SERVE_LOG_DIR": str(tmp_path),
        "MODELYARD_SERVE_LOG_URL": "nosuchfs://b",
    }
    with pytest.raises(SamplingError, match="MODELYARD_SERVE_LOG_URL"):
        ServeSettings.from_env(env)
