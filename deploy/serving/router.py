"""Pick the variant that answers a request: time-window rules first, then a weighted split.

Rules are evaluated in the region's time zone, in plan order; the first that holds wins.
Otherwise the routing key (e.g. ``customer_id``) is hashed into one of 10,000 buckets and
the buckets are cut by the variants' cumulative weights, so a customer always lands on
the same variant while the weights stay the same, and raising the last variant's weight
(a canary) only moves customers *into* it. Without a key the bucket is random.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import random
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass

from modelyard.deploy.serving.plan import Service

BUCKETS = 10_000
Clock = Callable[[], dt.datetime]


def system_clock() -> dt.datetime:
    """The current time, UTC."""
    return dt.datetime.now(dt.UTC)


def fixed_clock(at: dt.datetime) -> Clock:
    """A clock stuck at ``at`` (plans' ``clock_override``, for tests and drills)."""
    return lambda: at


@dataclass(frozen=True)
class Route:
    """Which variant serves a request, and why (``rule:<name>``, ``weight`` or ``random``)."""

    variant: str
    reason: str


def bucket_of(key: str, salt: str) -> int:
    """The stable bucket (0..9999) of a routing key; the same in every process and run."""
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


class ServiceRouter:
    """Routes the requests of one (family, region) service."""

    def __init__(self, service: Service, clock: Clock = system_clock) -> None:
        self.service = service
        self._clock = clock
        self._zone = zoneinfo.ZoneInfo(service.timezone)
        self._salt = f"{service.family}/{service.region}"
        weighted = [v for v in service.variants if v.weight > 0]
        self._names = [v.name for v in weighted]
        # Routes are immutable: built once, not per request.
        self._random = [Route(name, "random") for name in self._names]
        self._weighted = [Route(name, "weight") for name in self._names]
        self._rule_routes = [Route(rule.variant, f"rule:{rule.name}") for rule in service.rules]
        self._edges: list[int] = []
        edge = 0
        for variant in weighted:
            edge += variant.weight * BUCKETS // 100
            self._edges.append(edge)

    def route(self, key: str | None) -> Route:
        """Choose the variant for a request with routing key ``key`` (``None``: random)."""
        if self.service.rules:
            local = self._clock().astimezone(self._zone)
            for rule, route in zip(self.service.rules, self._rule_routes, strict=True):
                if rule.matches(local):
                    return route
        if key is None:
            return self._random[self._pick(random.randrange(BUCKETS))]
        return self._weighted[self._pick(bucket_of(key, self._salt))]

    def _pick(self, bucket: int) -> int:
        return bisect.bisect_right(self._edges, bucket)
