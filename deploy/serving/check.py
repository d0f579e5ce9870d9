"""Is a serving endpoint up with a given plan? ``python -m modelyard.deploy.serving.check --url U --plan P``.

The chart's ``helm test`` pod runs it against the release's Service with the release's plan mounted
(the serving image holds it); an operator can run it from anywhere that reaches a server. It checks,
one line each:

1. ``GET /readyz`` answers ready;
2. the plan the server serves is the plan file's (the same digest): a Service whose pods did not
   roll, or another release's Service, answers another one;
3. every (family, region) of the plan answers ``GET /v1/models/{family}/{region}``.

Exit 0 when all hold, 1 at the first that does not (the line says what was found), 2 when the plan
file cannot be read. Standard library HTTP only: it runs in the lean serving image.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from modelyard.deploy.serving.plan import PlanError, load_plan


class CheckFailed(Exception):
    """One check did not hold; the message says what was found."""


def _get(url: str, timeout: float) -> tuple[int, Any]:
    """Status and JSON body of ``GET url`` (an HTTP error status is an answer, not an exception)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CheckFailed(f"GET {url}: no answer ({reason})") from None
    try:
        return status, json.loads(body)
    except ValueError:
        raise CheckFailed(f"GET {url}: {status} with a body that is not JSON") from None


def check(url: str, plan_path: str, timeout: float = 10.0) -> list[str]:
    """The checks' lines, all passed.

    Raises:
        CheckFailed: the first check that did not hold.
        PlanError: the plan file cannot be read or is not a plan.
    """
    plan = load_plan(plan_path)
    base = url.rstrip("/")
    status, ready = _get(f"{base}/readyz", timeout)
    if status != 200 or not isinstance(ready, dict) or ready.get("ready") is not True:
        progress = ready.get("progress") if isinstance(ready, dict) else None
        raise CheckFailed(f"GET {base}/readyz: {status}, not ready ({progress or 'no progress given'})")
    expected = plan.digest()
    served = (ready.get("plan") or {}).get("active_digest")
    if served != expected:
        raise CheckFailed(
            f"{base} serves plan {served}, not {expected} (the plan in {plan_path}): its pods have not "
            "rolled to this plan, or the URL is another release's"
        )
    lines = [f"ok   {base}/readyz: ready ({ready.get('progress')})", f"ok   plan {expected} is the one served"]
    for service in plan.services:
        path = f"/v1/models/{urllib.parse.quote(service.family)}/{urllib.parse.quote(service.region)}"
        status, _ = _get(f"{base}{path}", timeout)
        if status != 200:
            raise CheckFailed(f"GET {base}{path}: {status}, expected 200")
        lines.append(f"ok   {service.family}/{service.region} answers {path}")
    return lines


def main(argv: list[str] | None = None) -> int:
    prog = "python -m modelyard.deploy.serving.check"
    parser = argparse.ArgumentParser(prog=prog, description="Is a serving endpoint up with a given plan?")
    parser.add_argument("--url", required=True, help="The server or its Service, e.g. http://serving.ns.svc:80")
    parser.add_argument("--plan", required=True, help="The plan file the server should serve")
    parser.add_argument("--timeout", type=float, default=10.0, help="Seconds per request (default 10)")
    args = parser.parse_args(argv)
    try:
        lines = check(args.url, args.plan, args.timeout)
    except PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except CheckFailed as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
