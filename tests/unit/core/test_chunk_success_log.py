"""A chunk's successes in the task state store: batched writes, read back in order by the next try."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.core.chunks import PairOutcome, SuccessLog

pytestmark = pytest.mark.unit


class Store:
    """Airflow's task state store as a chunk sees it: ``get`` (None when missing) and ``set``, each counted."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.calls: list[tuple[str, str]] = []

    def get(self, key: str, default: Any = None) -> Any:
        self.calls.append(("get", key))
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.calls.append(("set", key))
        self.values[key] = value


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ok(region: str) -> PairOutcome:
    return PairOutcome("pickup_eta", region, "registered", detail=f"v1 of {region}", event_uri=f"uri/{region}")


def test_a_first_try_reads_one_key_and_writes_once_a_period_not_once_a_pair() -> None:
    store, clock = Store(), Clock()
    log = SuccessLog(store, every=5.0, clock=clock)
    assert log.earlier() == {}
    for i in range(20):
        clock.now = i  # one pair a second
        log.add(ok(f"r{i:02d}"))
    log.flush()
    gets = [key for op, key in store.calls if op == "get"]
    sets = [key for op, key in store.calls if op == "set"]
    assert gets == ["done:0"]
    assert sets == ["done:0", "done:1", "done:2", "done:3"]  # at 5, 10 and 15 s, then the end
    assert sum(len(store.values[key]) for key in sets) == 20


def test_the_next_try_gets_every_success_back_and_writes_after_them() -> None:
    store, clock = Store(), Clock()
    first = SuccessLog(store, every=5.0, clock=clock)
    first.earlier()
    for i in range(7):
        clock.now = 2.0 * i
        first.add(ok(f"r{i}"))
    first.flush()

    retry = SuccessLog(store, every=5.0, clock=clock)
    done = retry.earlier()
    assert set(done) == {("pickup_eta", f"r{i}") for i in range(7)}
    assert done[("pickup_eta", "r3")] == ok("r3")  # the whole outcome: its event and detail are announced again
    written = set(store.values)
    retry.add(ok("r7"))
    retry.flush()
    (new_key,) = set(store.values) - written  # nothing an earlier try wrote is overwritten
    assert store.values[new_key][0]["region"] == "r7"
    assert set(SuccessLog(store).earlier()) == {("pickup_eta", f"r{i}") for i in range(8)}


def test_successes_of_a_try_that_died_before_its_period_ended_are_redone() -> None:
    store, clock = Store(), Clock()
    died = SuccessLog(store, every=5.0, clock=clock)
    died.earlier()
    died.add(ok("r0"))  # 0 s: not written yet
    clock.now = 6.0
    died.add(ok("r1"))  # the period passed: both written
    clock.now = 7.0
    died.add(ok("r2"))  # pending when the process dies (no flush)
    assert set(SuccessLog(store).earlier()) == {("pickup_eta", "r0"), ("pickup_eta", "r1")}


def test_a_flush_with_nothing_pending_writes_nothing() -> None:
    store = Store()
    log = SuccessLog(store)
    log.earlier()
    log.flush()
    assert [op for op, _ in store.calls] == ["get"]
