"""The local target: one ``modelyard serve`` process on this machine, hot-swapped over HTTP.

``LocalTarget.apply(plan)``:

1. start the serving process (detached, pid file under ``<storage.local_dir>/run/``: this
   host's own folder, which is ``storage.root`` when that is local) with the
   plan when nothing serves yet; otherwise ``PUT /admin/plan?wait=1``: the server loads
   and warms the new models while the old plan keeps answering, then swaps;
2. wait until ``/readyz`` reports the plan digest active and every model ready (a
   rejected plan is an error carrying the server's reason);
3. smoke-test one prediction per (family, region), built from the served versions' own
   features (``kube_smoke.smoke_record``, never today's config), and check that the server
   runs exactly the plan's versions.

The same plan digest already live is a no-op (no swap, no smoke-test of a changed plan).

The server's admin API is off without a token, so the target keeps one of its own
(``<run_dir>/admin-token``, mode 0600, made once with ``secrets.token_urlsafe``), starts
the process with it and sends it on every ``/admin/plan`` request. Where several hosts
deploy to one server (Celery workers that share no disk), ``MODELYARD_SERVE_ADMIN_TOKEN``
in their environment is that token instead, so whichever worker runs the deploy can swap
the plan. The server loads the plan's models from the MLflow registry, never from a
shared folder.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.core.contracts.prediction_log import PROBE_HEADER
from modelyard.deploy.rollout.kube_smoke import smoke_record
from modelyard.deploy.rollout.planner import service_versions, version_of
from modelyard.deploy.rollout.processes import ManagedProcess, start_detached
from modelyard.deploy.rollout.strategies import TargetError
from modelyard.deploy.serving.plan import Plan, PlanError, dump_plan, parse_plan
from modelyard.deploy.serving.trust import ALLOWED_FUNCTION_MODULES_ENV
from modelyard.pipeline.online import serving_env as online_serving_env

if TYPE_CHECKING:
    import httpx

    from modelyard.core.config import Config

PROCESS_NAME = "serving"
TOKEN_ENV = "MODELYARD_SERVE_ADMIN_TOKEN"
READY_TIMEOUT_SECONDS = 300.0
POLL_SECONDS = 0.25


@dataclass
class LocalTarget:
    """The local serving process at ``host:port``, its plan file and pid file under ``run_dir``."""

    host: str
    port: int
    run_dir: Path
    tracking_uri: str
    families: dict[str, list[str]]  # today's declared features: not used to exercise a served version
    ready_timeout: float = READY_TIMEOUT_SECONDS
    name: str = "local"
    # The server's prediction log (MODELYARD_SERVE_LOG_DIR, ..._SAMPLE_*): what the monitoring stage reads.
    sampling_env: dict[str, str] = field(default_factory=dict)
    trust_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Config, tracking_uri: str, *, port: int) -> LocalTarget:
        """The target of ``deploy.local`` on ``port`` (the request's, resolved from ``deploy.local.port``)."""
        return cls(
            host=config.deploy.local.host,
            port=port,
            run_dir=config.storage.local_dir / "run",
            tracking_uri=tracking_uri,
            families={f.name: list(f.features) for f in config.families},
            sampling_env=sampling_env(config),
            trust_env=trust_env(config, os.environ) | online_serving_env(config),  # + online store (ADR 0019)
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def plan_file(self) -> Path:
        return self.run_dir / "plan.json"

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess(PROCESS_NAME, self.run_dir)

    @property
    def token_file(self) -> Path:
        return self.run_dir / "admin-token"

    def admin_token(self) -> str:
        """The bearer token of the server: ``MODELYARD_SERVE_ADMIN_TOKEN``, else read or made once (owner-only file)."""
        shared = os.environ.get(TOKEN_ENV, "").strip()
        if shared:
            return shared
        try:
            token = self.token_file.read_text().strip()
        except FileNotFoundError:
            token = ""
        if token:
            return token
        self.run_dir.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token)
        os.chmod(self.token_file, 0o600)  # an existing file keeps its mode through O_CREAT
        return token

    # -- reading

    def live(self) -> Plan | None:
        """The plan the process serves now, or None when nothing answers (or nothing is active).

        Raises:
            TargetError: a server answers but refuses this token (or has its admin API off): it
                may well serve a plan, so "nothing live" would be a wrong diff and a wrong deploy.
        """
        try:
            response = self._request("GET", "/admin/plan", headers=self._admin_headers())
        except TargetError:
            return None
        if response.status_code in (401, 403):
            raise self._token_refused(
                response, "run the command with the environment and storage.local the server was started with"
            )
        if response.status_code != 200:
            return None
        body = response.json()
        if not body.get("plan"):
            return None
        try:
            return parse_plan(body["plan"], f"{self.url}/admin/plan")
        except PlanError as exc:
            raise TargetError(f"the serving process at {self.url} reports an unreadable plan: {exc}") from exc

    def metrics_text(self) -> str:
        """The server's Prometheus exposition."""
        return self._get("/metrics").text

    def live_digest(self) -> str | None:
        """The digest of the plan the process serves (its public ``/readyz``); None when nothing answers."""
        try:
            return self._active_plan_digest()
        except TargetError:
            return None

    # -- applying

    def apply(self, plan: Plan) -> bool:
        """Make ``plan`` live and verified; True if it was not live already.

        Raises:
            TargetError: the process cannot start, rejects the plan, does not become ready in
                time, or fails the smoke test; the message carries the server's reason.
        """
        plan_digest = plan.digest()
        if not self._alive():
            self._start(plan)
        elif self._active_plan_digest() != plan_digest:
            self._put(plan)
        else:
            self.smoke(plan)
            return False
        self.wait_active(plan_digest)
        self.smoke(plan)
        return True

    def _start(self, plan: Plan) -> None:
        from modelyard.core.storage import write_bytes_atomic

        write_bytes_atomic(self.plan_file, dump_plan(plan, "json"))
        command = [
            sys.executable, "-c", "from modelyard.deploy.cli import main; main()", "serve",
            "--plan", str(self.plan_file), "--host", self.host, "--port", str(self.port),
        ]  # fmt: skip
        # The registry is the tracking server: an inherited MLFLOW_REGISTRY_URI (mlflow.set_registry_uri
        # exports one) must not send the server to another registry.
        env = {
            **os.environ, "MLFLOW_TRACKING_URI": self.tracking_uri, "MLFLOW_REGISTRY_URI": self.tracking_uri,
            "OMP_NUM_THREADS": "1", TOKEN_ENV: self.admin_token(), **self.sampling_env, **self.trust_env,
        }  # fmt: skip
        pid = start_detached(self.process, command, env)
        self.process.record(pid, self.url)

    def _put(self, plan: Plan) -> None:
        response = self._request(
            "PUT", "/admin/plan?wait=1", content=dump_plan(plan, "json"), timeout=None, headers=self._admin_headers()
        )
        body = _json(response)
        if response.status_code in (401, 403):
            raise self._token_refused(
                response, "it was not started by this target: run `modelyard down` (or stop it) and deploy again"
            )
        if response.status_code == 409 or body.get("status") == "rejected":
            raise TargetError(
                f"{_rejection(plan.digest(), body.get('model_uri'), body.get('error', body))}; "
                "the previous plan keeps serving"
            )
        if response.status_code >= 400:
            raise TargetError(f"PUT {self.url}/admin/plan answered {response.status_code}: {body}")

    def _token_refused(self, response: httpx.Response, advice: str) -> TargetError:
        """The error for a 401/403 of the admin API: the server's reason, where this token came from."""
        body = _json(response)
        return TargetError(
            f"the serving process at {self.url} refused this command's admin token "
            f"({response.status_code}: {body.get('message', body)}); the token comes from {TOKEN_ENV}, "
            f"else {self.token_file}: {advice}"
        )

    def wait_active(self, plan_digest: str) -> dict[str, Any]:
        """Poll ``/readyz`` until ``plan_digest`` is active and every model ready; the readiness detail.

        Raises:
            TargetError: the plan was rejected, the process died, or the timeout passed.
        """
        deadline = time.monotonic() + self.ready_timeout
        detail: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                detail = _json(self._request("GET", "/readyz"))
            except TargetError:
                self._check_process()
                time.sleep(POLL_SECONDS)
                continue
            plan_state = detail.get("plan", {})
            if detail.get("ready") and plan_state.get("active_digest") == plan_digest:
                return detail
            rejected = plan_state.get("last_rejected") or {}
            if rejected.get("digest") == plan_digest:
                raise TargetError(_rejection(plan_digest, rejected.get("model_uri"), rejected.get("error")))
            time.sleep(POLL_SECONDS)
        raise TargetError(
            f"plan {plan_digest[:19]} not active and ready at {self.url} after {self.ready_timeout:.0f}s "
            f"(last /readyz: {detail or 'no answer'}); see {self.process.log_file}"
        )

    def smoke(self, plan: Plan) -> dict[str, str]:
        """One prediction per service; its version must be one of the service's; every plan model ready.

        Returns:
            ``family/region`` -> the version that answered.

        Raises:
            TargetError: naming the service and what came back.
        """
        detail = _json(self._request("GET", "/readyz"))
        _check_models(plan, detail.get("models", {}))
        answered = {}
        for service in plan.services:
            key = f"{service.family}/{service.region}"
            served = self._request("GET", f"/v1/models/{service.family}/{service.region}")
            if served.status_code != 200:
                raise TargetError(f"smoke test of {key}: GET /v1/models answered {served.status_code}: {_json(served)}")
            record = smoke_record(_json(served))
            path = f"/v1/predict/{service.family}/{service.region}"
            response = self._request("POST", path, json=record, headers={PROBE_HEADER: "smoke"})
            body = _json(response)
            if response.status_code != 200:
                raise TargetError(f"smoke test of {key} failed: HTTP {response.status_code}: {body}")
            expected = set(service_versions(service).values())
            if str(body.get("version")) not in expected:
                raise TargetError(
                    f"smoke test of {key}: version {body.get('version')} answered, expected one of {sorted(expected)}"
                )
            answered[key] = str(body["version"])
        return answered

    # -- process and HTTP

    def _alive(self) -> bool:
        try:
            return self._request("GET", "/healthz").status_code == 200
        except TargetError:
            return False

    def _check_process(self) -> None:
        pid = self.process.pid()
        if pid is None or _exited(pid):
            self.process.pid_file.unlink(missing_ok=True)
            raise TargetError(f"the serving process exited; last log lines:\n{self._log_tail()}")

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.process.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _active_plan_digest(self) -> str | None:
        body = _json(self._request("GET", "/readyz"))  # public: no token needed to compare digests
        active = body.get("plan", {}).get("active_digest")
        return str(active) if active else None

    def _admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token()}"}

    def _get(self, path: str, *, admin: bool = False) -> httpx.Response:
        response = self._request("GET", path, headers=self._admin_headers() if admin else None)
        if response.status_code != 200:
            raise TargetError(f"GET {self.url}{path} answered {response.status_code}")
        return response

    def _request(self, method: str, path: str, timeout: float | None = 30.0, **kwargs: Any) -> httpx.Response:
        import httpx

        try:
            return httpx.request(method, f"{self.url}{path}", timeout=timeout, **kwargs)
        except httpx.HTTPError as exc:
            raise TargetError(f"{method} {self.url}{path}: {type(exc).__name__}: {exc}") from exc

    def stop(self) -> bool:
        """Stop the serving process this target started (True if one was running)."""
        return self.process.stop()


def _exited(pid: int) -> bool:
    """Whether our child ``pid`` has exited (reaping it); False for processes that are not our children."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done != 0


def _rejection(digest: str, model_uri: str | None, error: Any) -> str:
    """The server's reason for rejecting a plan, naming the model once (its load errors start with the URI)."""
    text = str(error)
    named = f"{model_uri}: " if model_uri and not text.startswith(str(model_uri)) else ""
    return f"the serving process rejected plan {digest[:19]}: {named}{text}"


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"raw": response.text[:500]}
    return body if isinstance(body, dict) else {"body": body}


def _check_models(plan: Plan, models: dict[str, Any]) -> None:
    """Every model of the plan is loaded, ready, and at the version its pinned URI names."""
    for uri in plan.model_uris():
        status = models.get(uri)
        if status is None or status.get("state") != "ready":
            raise TargetError(f"model {uri} is not ready on the serving process: {status}")
        if str(status.get("version")) != version_of(uri) and "@" not in uri:
            raise TargetError(f"model {uri} serves version {status.get('version')}, expected {version_of(uri)}")


def trust_env(config: Config, environ: Mapping[str, str]) -> dict[str, str]:
    """The function modules the local server may run: those the operator's own config declares.

    The local target is started by the operator from their config, so the modules of its declared
    ``function`` features are theirs to allow (ADR 0013's trust rule: never taken from an artifact).
    An allow-list already in the environment wins.
    """
    if ALLOWED_FUNCTION_MODULES_ENV in environ:
        return {}
    modules = sorted(
        {
            str(f.function).partition(":")[0]
            for family in config.families
            for f in [*family.feature_decls, *family.slice_features]
            if f.function
        }
    )
    return {ALLOWED_FUNCTION_MODULES_ENV: ",".join(modules)} if modules else {}


def sampling_env(config: Config) -> dict[str, str]:
    """The serving process's prediction-log settings: ``<storage.root>/monitoring/samples`` and the config's rate.

    On a local root the server writes there. On an object-store root it writes to a spool in
    this host's own folder and ships each rotated file to the samples prefix of the root
    (``MODELYARD_SERVE_LOG_URL``, with the root's fsspec options, ``${VAR}`` unexpanded: the
    server reads them from the environment it inherits, as it does the credentials).
    """
    monitoring = config.monitoring
    rates = {
        "MODELYARD_SERVE_SAMPLE_RATE": str(monitoring.sample_rate),
        "MODELYARD_SERVE_SAMPLE_ROTATE_MB": str(monitoring.rotate_mb),
        "MODELYARD_SERVE_SAMPLE_ROTATE_SECONDS": str(monitoring.rotate_seconds),
    }
    if config.storage.is_local:
        return {"MODELYARD_SERVE_LOG_DIR": str(config.storage.samples_dir.resolve()), **rates}
    return {
        "MODELYARD_SERVE_LOG_DIR": str(config.storage.local_dir / "prediction-spool"),
        "MODELYARD_SERVE_LOG_URL": str(config.storage.samples_dir),
        "MODELYARD_SERVE_LOG_OPTIONS": json.dumps(config.storage.options),
        **rates,
    }
