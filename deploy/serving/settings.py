"""The server's settings: every ``MODELYARD_SERVE_*`` variable, read once when a worker starts.

``modelyard serve`` (or a pod's environment) sets them; ``ServeSettings.from_env`` reads
each one once, checks it and names the variable when it is wrong, and the server passes the
values down from there. Nothing else in the serving runtime reads the environment for them.

=========================================  ===========================================  ==========
Variable                                   What                                         Default
=========================================  ===========================================  ==========
``MODELYARD_SERVE_PLAN``                   the plan file (watched)                      required
``MODELYARD_SERVE_POLL_SECONDS``           how often the plan file is checked           1
``MODELYARD_SERVE_MODEL_CACHE``            where models are downloaded                  temp dir
``MODELYARD_SERVE_ADMIN_TOKEN``            bearer token of the admin API                off
``MODELYARD_SERVE_RETRY_MAX_SECONDS``      longest wait between retries of a plan       15
``MODELYARD_SERVE_LOG_DIR``                the prediction-log directory                 see below
``MODELYARD_SERVE_SHADOW_THREADS``         threads running shadow predictions           2
``MODELYARD_SERVE_LOAD_THREADS``           models loaded at once                        4
``MODELYARD_SERVE_SAMPLE_RATE``            share of requests sampled (no plan section)  0
``MODELYARD_SERVE_SAMPLE_ROTATE_MB``       MB of JSON per sample file                   8
``MODELYARD_SERVE_SAMPLE_ROTATE_SECONDS``  age at which a sample file is rotated        300
``MODELYARD_SERVE_LOG_URL``                object-store prefix sample files ship to     none
``MODELYARD_SERVE_LOG_OPTIONS``            its fsspec options (JSON object)             ``{}``
``MODELYARD_SERVE_CALIBRATE_EACH``         time the engines on every model (``1``)      off
``MODELYARD_SERVE_REQUEST_TIMEOUT``        seconds to send a whole request              10
``MODELYARD_SERVE_MAX_HEADER_BYTES``       largest request line plus headers            65536
``MODELYARD_SERVE_SUPERVISOR_PID``         set by ``serve --workers N`` for its workers none
``MODELYARD_SERVE_ALLOWED_FUNCTION_MODULES`` modules feature-spec functions may import  none
``MODELYARD_SERVE_ALLOW_PICKLE``           load pickled scikit-learn models (``1``)     off
``MODELYARD_SERVE_SAMPLE_MAX_RECORD_KB``   largest sampled request line (else dropped)  64
``MODELYARD_SERVE_SAMPLE_MAX_SPOOL_MB``    prediction-log folder size beyond which      1024
                                           samples are dropped (counted)
``MODELYARD_SERVE_LIMIT_CONCURRENCY``      requests in flight per worker beyond which   1024
                                           new ones get 503 (probes exempt)
=========================================  ===========================================  ==========

The log dir defaults to ``prediction-logs`` under the model cache, else under the user's
state directory. ``MODELYARD_SERVE_KEEP_ALIVE`` is uvicorn's own option: the CLI hands it to
uvicorn. The concurrency limit is the app's (``asgi.InFlight``), not uvicorn's: uvicorn's
answers 503 before the app sees the path, probes included.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import orjson

from modelyard.deploy.serving.errors import ServingError
from modelyard.deploy.serving.plan import PlanError, last_good_path
from modelyard.deploy.serving.protocol import DEFAULT_MAX_HEADER_BYTES, DEFAULT_REQUEST_TIMEOUT_S, TransportLimits
from modelyard.deploy.serving.sampling import (
    DEFAULT_MAX_RECORD_KB,
    DEFAULT_MAX_SPOOL_MB,
    DEFAULT_ROTATE_MB,
    DEFAULT_ROTATE_SECONDS,
    SamplingSettings,
    Shipper,
)
from modelyard.deploy.serving.trust import ALLOW_PICKLE_ENV, ALLOWED_FUNCTION_MODULES_ENV, TrustPolicy, modules_from

PLAN_ENV = "MODELYARD_SERVE_PLAN"
POLL_ENV = "MODELYARD_SERVE_POLL_SECONDS"
CACHE_ENV = "MODELYARD_SERVE_MODEL_CACHE"
TOKEN_ENV = "MODELYARD_SERVE_ADMIN_TOKEN"
RETRY_MAX_ENV = "MODELYARD_SERVE_RETRY_MAX_SECONDS"
LOG_DIR_ENV = "MODELYARD_SERVE_LOG_DIR"
SHADOW_THREADS_ENV = "MODELYARD_SERVE_SHADOW_THREADS"
LOAD_THREADS_ENV = "MODELYARD_SERVE_LOAD_THREADS"
SAMPLE_RATE_ENV = "MODELYARD_SERVE_SAMPLE_RATE"
SAMPLE_ROTATE_MB_ENV = "MODELYARD_SERVE_SAMPLE_ROTATE_MB"
SAMPLE_ROTATE_SECONDS_ENV = "MODELYARD_SERVE_SAMPLE_ROTATE_SECONDS"
LOG_URL_ENV = "MODELYARD_SERVE_LOG_URL"
LOG_OPTIONS_ENV = "MODELYARD_SERVE_LOG_OPTIONS"
CALIBRATE_EACH_ENV = "MODELYARD_SERVE_CALIBRATE_EACH"
REQUEST_TIMEOUT_ENV = "MODELYARD_SERVE_REQUEST_TIMEOUT"
MAX_HEADER_BYTES_ENV = "MODELYARD_SERVE_MAX_HEADER_BYTES"
SUPERVISOR_ENV = "MODELYARD_SERVE_SUPERVISOR_PID"
SAMPLE_MAX_RECORD_KB_ENV = "MODELYARD_SERVE_SAMPLE_MAX_RECORD_KB"
SAMPLE_MAX_SPOOL_MB_ENV = "MODELYARD_SERVE_SAMPLE_MAX_SPOOL_MB"
LIMIT_CONCURRENCY_ENV = "MODELYARD_SERVE_LIMIT_CONCURRENCY"
DEFAULT_LIMIT_CONCURRENCY = 1024
DEFAULT_LOAD_THREADS = 4  # downloads wait on the network; more threads than cores still overlap them


class SamplingError(PlanError):
    """A prediction-log setting of the server's environment is out of range."""


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """Read once at server start, from the environment the CLI prepared (see the module's table)."""

    plan_path: Path
    poll_seconds: float = 1.0
    model_cache: Path | None = None
    admin_token: str | None = None  # None: the admin API is off
    log_dir: Path = Path("prediction-logs")
    shadow_threads: int = 2
    load_threads: int = DEFAULT_LOAD_THREADS
    retry_initial_seconds: float = 0.5
    retry_max_seconds: float = 15.0
    first_plan_wait_seconds: float = 0.0
    # The prediction log of a plan without a ``prediction_log`` section (rate 0: none).
    sampling: SamplingSettings = dataclasses.field(default_factory=SamplingSettings)
    # Where rotated sample files are shipped (log_dir is then a spool); hands out one per plan folder.
    shipper: Shipper | None = None
    calibrate_each: bool = False
    transport: TransportLimits = dataclasses.field(default_factory=TransportLimits)
    supervisor_pid: int | None = None  # the ``serve --workers N`` process this worker exits with
    trust: TrustPolicy = dataclasses.field(default_factory=TrustPolicy)  # what a model artifact may run
    limit_concurrency: int = DEFAULT_LIMIT_CONCURRENCY  # requests in flight beyond which new ones get 503

    @property
    def last_good_path(self) -> Path:
        return last_good_path(self.plan_path)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServeSettings:
        """Read and check every variable once (``env`` defaults to the process environment).

        Raises:
            PlanError: no plan file is named.
            SamplingError: a sampling or shipping variable is out of range or unusable (named).
            ServingError: the load-thread count is not a positive integer (named).
        """
        env = os.environ if env is None else env
        path = env.get(PLAN_ENV)
        if not path:
            raise PlanError(f"no plan: set {PLAN_ENV} or run `modelyard serve --plan PLAN`")
        cache = Path(env[CACHE_ENV]) if env.get(CACHE_ENV) else None
        log_dir = env.get(LOG_DIR_ENV)
        folder = Path(log_dir) if log_dir else default_log_dir(cache, env)
        shipper = shipper_from_env(env, folder.resolve())  # a bad URL, options or missing package stops the start
        return cls(
            plan_path=Path(path),
            poll_seconds=float(env.get(POLL_ENV, "1.0")),
            model_cache=cache,
            admin_token=env.get(TOKEN_ENV) or None,
            retry_max_seconds=float(env.get(RETRY_MAX_ENV, "15")),
            log_dir=folder,
            shadow_threads=max(1, int(env.get(SHADOW_THREADS_ENV, "2"))),
            load_threads=_positive_int(env, LOAD_THREADS_ENV, DEFAULT_LOAD_THREADS),
            sampling=sampling_from_env(env),
            shipper=shipper,
            calibrate_each=env.get(CALIBRATE_EACH_ENV, "").strip().lower() in ("1", "true", "yes"),
            transport=TransportLimits(
                request_timeout_seconds=float(env.get(REQUEST_TIMEOUT_ENV) or DEFAULT_REQUEST_TIMEOUT_S),
                max_header_bytes=int(env.get(MAX_HEADER_BYTES_ENV) or DEFAULT_MAX_HEADER_BYTES),
            ),
            supervisor_pid=_pid(env.get(SUPERVISOR_ENV, "")),
            trust=TrustPolicy(
                allowed_function_modules=modules_from(env.get(ALLOWED_FUNCTION_MODULES_ENV, "")),
                allow_pickle=_flag(env, ALLOW_PICKLE_ENV),
            ),
            limit_concurrency=_positive_int(env, LIMIT_CONCURRENCY_ENV, DEFAULT_LIMIT_CONCURRENCY),
        )


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ServingError(f"{name}={raw!r} is not a positive integer", field=name)
    return int(raw)


def _flag(env: Mapping[str, str], name: str) -> bool:
    """A ``1``/``true``/``yes`` switch; anything else but empty/``0``/``false``/``no`` is refused (named).

    Raises:
        ServingError: the value is not a yes or a no.
    """
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ServingError(f"{name}={raw!r}: set 1 or 0", field=name)


def _pid(raw: str) -> int | None:
    return int(raw) if raw.isdigit() else None


def default_log_dir(model_cache: Path | None, env: Mapping[str, str]) -> Path:
    """``prediction-logs`` under the model cache, else under the user's state directory."""
    if model_cache is not None:
        return model_cache / "prediction-logs"
    state = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "modelyard" / "prediction-logs"


def sampling_from_env(env: Mapping[str, str]) -> SamplingSettings:
    """The server's default prediction-log settings.

    Raises:
        SamplingError: a variable is not a number in its range (names the variable).
    """
    values = {
        "sample_rate": (SAMPLE_RATE_ENV, 0.0, 0.0, 1.0),
        "rotate_mb": (SAMPLE_ROTATE_MB_ENV, DEFAULT_ROTATE_MB, 0.001, 1024.0),
        "rotate_seconds": (SAMPLE_ROTATE_SECONDS_ENV, DEFAULT_ROTATE_SECONDS, 1.0, 86400.0),
        "max_record_kb": (SAMPLE_MAX_RECORD_KB_ENV, DEFAULT_MAX_RECORD_KB, 1.0, 65536.0),
        "max_spool_mb": (SAMPLE_MAX_SPOOL_MB_ENV, DEFAULT_MAX_SPOOL_MB, 1.0, 1048576.0),
    }
    out: dict[str, float] = {}
    for key, (name, default, low, high) in values.items():
        text = env.get(name) or str(default)
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:
            raise SamplingError(f"{name}={text!r}: must be a number from {low:g} to {high:g}")
        out[key] = value
    return SamplingSettings(
        out["sample_rate"],
        out["rotate_mb"],
        out["rotate_seconds"],
        max_record_kb=out["max_record_kb"],
        max_spool_mb=out["max_spool_mb"],
    )


def shipper_from_env(env: Mapping[str, str], log_dir: Path) -> Shipper | None:
    """The :class:`Shipper` for ``MODELYARD_SERVE_LOG_URL``, or None when it is unset.

    Raises:
        SamplingError: the options are not a JSON object, or the URL's file system is not installed
            (names the variable and the package to install).
    """
    url = (env.get(LOG_URL_ENV) or "").strip()
    if not url:
        return None
    try:
        options = orjson.loads(env.get(LOG_OPTIONS_ENV) or "{}")
    except orjson.JSONDecodeError as exc:
        raise SamplingError(f"{LOG_OPTIONS_ENV}: not JSON ({exc}); give the fsspec options as a JSON object") from exc
    if not isinstance(options, dict):
        raise SamplingError(f"{LOG_OPTIONS_ENV}: must be a JSON object of fsspec options, not {type(options).__name__}")
    from modelyard.core import storage

    try:
        target = storage.storage_path(url, options)
    except ImportError as exc:
        raise SamplingError(
            f"{LOG_URL_ENV}={url}: shipping samples needs universal-pathlib and the store's fsspec package "
            f"({exc.name}); install them into the server's environment (pip install universal-pathlib s3fs)"
        ) from exc
    except storage.StorageError as exc:
        raise SamplingError(f"{LOG_URL_ENV}: {exc}") from exc
    return Shipper(log_dir, target)
