"""The admin API: ``GET /admin/plan`` (the active plan) and ``PUT /admin/plan`` (validate, swap, persist).

It is on only when the server has a token (``MODELYARD_SERVE_ADMIN_TOKEN``) and admits only
``Authorization: Bearer <token>``. A PUT plan is validated (including where its prediction log
would write) before any model loads; it is written to the plan file only once it is active.
``?wait=1`` answers with the swap's result in this worker, else 202 while it loads.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from pathlib import Path

from modelyard.deploy.serving.asgi import Response, Scope, allow, header, json_response, query
from modelyard.deploy.serving.errors import RequestError
from modelyard.deploy.serving.manager import PlanManager
from modelyard.deploy.serving.plan import Plan, PlanError, parse_plan_text
from modelyard.deploy.serving.plan_log import check_log_target
from modelyard.deploy.serving.settings import TOKEN_ENV


class AdminApi:
    """Answers ``/admin/plan`` for the plan manager of ``manager()``.

    Args:
        token: the server's admin token (None: the admin API is off).
        log_dir: the server's prediction-log directory (a PUT plan's log must stay inside).
        manager: the plan manager (raises a 503 while the server starts).
    """

    def __init__(self, token: str | None, log_dir: Path, manager: Callable[[], PlanManager]) -> None:
        self._token = token
        self._log_dir = log_dir
        self._manager = manager

    async def plan(self, method: str, body: bytes, scope: Scope) -> Response:
        """``GET``: the active plan. ``PUT``: validate, swap, then write the plan file. Both need the token."""
        allow(method, "/admin/plan", "GET", "PUT")  # the methods are public (the OpenAPI document lists them)
        check_admin_token(self._token, header(scope, b"authorization"))
        manager = self._manager()
        if method == "GET":
            return _active_plan(manager)
        plan = await asyncio.to_thread(self._plan_of, body)
        if manager.active is not None and manager.active.digest == plan.digest():
            return json_response(200, {"status": "active", "digest": plan.digest(), "unchanged": True})
        manager.claim(plan.digest())
        # The plan file is written by the manager once the plan is active: a rejected plan never lands there.
        if query(scope).get("wait") in ("1", "true", "yes"):
            result = await manager.apply_claimed(plan, persist=body)
            return json_response({"active": 200, "rejected": 409}.get(result["status"], 503), result)
        manager.schedule(plan, persist=body)
        return json_response(202, {"status": "loading", "digest": plan.digest()})

    def _plan_of(self, body: bytes) -> Plan:
        """Validate a PUT body as a plan this server may apply (parsing a large plan is CPU work: run in a thread)."""
        try:
            plan = parse_plan_text(body, "request body")
            if plan.prediction_log is not None and plan.prediction_log.path is not None:
                check_log_target(self._log_dir, plan.prediction_log.path)
        except PlanError as exc:
            raise RequestError(str(exc), field="plan", status=422, code="invalid_plan") from None
        return plan


def _active_plan(manager: PlanManager) -> Response:
    active = manager.active
    return json_response(
        200,
        {
            "digest": active.digest if active else None,
            "plan": active.plan.model_dump(mode="json") if active else None,
            "loading": manager.loading,
            "last_rejected": manager.outcomes.last_rejected,
        },
    )


def check_admin_token(token: str | None, authorization: str | None) -> None:
    """Admit an admin request only with ``Authorization: Bearer <token>``, and only when a token is configured.

    Raises:
        RequestError: 403 when the admin API is off (no token configured), 401 when the
            header is missing or carries another token (compared in constant time).
    """
    if not token:
        raise RequestError(
            f"the admin API is off: start the server with {TOKEN_ENV} set to enable it "
            "(without it, plans come only from the plan file)",
            status=403,
            code="admin_disabled",
        )
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise RequestError(
            "admin endpoints need 'Authorization: Bearer <token>' with the server's token",
            status=401,
            code="unauthorized",
        )
