"""A Redis breaker while Redis hangs or dies: each fault policy, every call bounded by the client timeout, recovery."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Generator
from typing import Any

import pytest
from opentelemetry import trace

from rfobs.exceptions import CircuitOpen
from rfobs.fleet import RedisBreakerBackend, RedisStore
from rfobs.fleet.breaker import BreakerFaultPolicy
from rfobs.instrument import CircuitBreaker
from rfobs.testing import Capture
from tests.e2e.redis_server import RedisHandle, redis_server
from tests.fleet.conftest import keys_without_ttl

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 0.05
BOUND = TIMEOUT + 0.25  # the client timeout, plus room for a shared, busy machine
FALLBACKS = "researchflow_agents.circuit_breaker_fallbacks"


@pytest.fixture
def own_redis() -> Generator[RedisHandle]:
    """A Redis of this test's own, which it may stop (SIGSTOP: it hangs) or kill."""
    with redis_server() as handle:
        try:
            yield handle
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(handle.pid, signal.SIGCONT)


def make_store(handle: RedisHandle) -> RedisStore:
    return RedisStore(handle.url, timeout=TIMEOUT, connect_timeout=TIMEOUT, retry_after=0.3, key_prefix="faults")


class Dependency:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        raise ConnectionError


def timed(breaker: CircuitBreaker, dependency: Dependency) -> tuple[str, float]:
    started = time.perf_counter()
    outcome = "ok"
    try:
        breaker.call(dependency)
    except CircuitOpen as refused:
        outcome = f"refused {refused.state}"
    except ConnectionError:
        outcome = "ConnectionError"
    return outcome, time.perf_counter() - started


def fallback_events(capture: Capture, span_name: str) -> list[dict[str, Any]]:
    return [
        event["attributes"]
        for span in capture.spans()
        if span["name"] == span_name
        for event in span["events"]
        if event["name"] == "circuit_breaker.fallback"
    ]


@pytest.mark.parametrize(
    ("policy", "outcomes", "state", "dependency_calls"),
    [
        ("local", ["ConnectionError", "ConnectionError", "refused open", "refused open"], "open", 2),
        ("fail_open", ["ConnectionError"] * 4, "closed", 4),
        ("fail_closed", ["refused open"] * 4, "open", 0),
    ],
)
def test_each_fault_policy_while_redis_hangs_and_recovery_when_it_answers_again(
    capture: Capture,
    own_redis: RedisHandle,
    policy: BreakerFaultPolicy,
    outcomes: list[str],
    state: str,
    dependency_calls: int,
) -> None:
    store = make_store(own_redis)
    breaker = CircuitBreaker(
        "dep", failure_threshold=2, reset_timeout=30, backend=RedisBreakerBackend(store, on_failure=policy)
    )
    assert breaker.state == "closed"  # connected, scripts loaded
    os.kill(own_redis.pid, signal.SIGSTOP)
    dependency = Dependency()
    with trace.get_tracer("test").start_as_current_span("outage"):
        results = [timed(breaker, dependency) for _ in range(4)]
    assert [outcome for outcome, _ in results] == outcomes
    assert max(seconds for _, seconds in results) < BOUND, results
    assert dependency.calls == dependency_calls
    assert breaker.state == state  # what the policy decides by while Redis is away
    assert [
        (e["rfobs.circuit_breaker.policy"], e["rfobs.circuit_breaker.fallback_reason"])
        for e in fallback_events(capture, "outage")
    ] == [
        (policy, "timeout"),
        (policy, "guard_open"),
        (policy, "guard_open"),
        (policy, "guard_open"),
    ]
    fallbacks = [(p["attributes"], p["value"]) for p in capture.metric(FALLBACKS)]
    assert fallbacks == [({"breaker": "dep", "policy": policy}, 4)]
    # Redis answers again: after the store's pause the shared state decides, which never saw the outage's calls.
    os.kill(own_redis.pid, signal.SIGCONT)
    time.sleep(0.35)
    assert breaker.call(lambda: "ok") == "ok"
    assert breaker.state == "closed"
    assert [(p["attributes"], p["value"]) for p in capture.metric(FALLBACKS)] == fallbacks
    assert keys_without_ttl(own_redis.url, "faults") == []
    store.close()


async def test_the_asyncio_path_falls_back_within_the_timeout(capture: Capture, own_redis: RedisHandle) -> None:
    store = make_store(own_redis)
    breaker = CircuitBreaker("dep", failure_threshold=1, backend=RedisBreakerBackend(store))

    async def ok() -> str:
        return "ok"

    async def fail() -> None:
        raise ConnectionError

    assert await breaker.acall(ok) == "ok"
    os.kill(own_redis.pid, signal.SIGSTOP)
    started = time.perf_counter()
    with pytest.raises(ConnectionError):
        await breaker.acall(fail)
    with pytest.raises(CircuitOpen):  # the local breaker opened
        await breaker.acall(ok)
    assert time.perf_counter() - started < BOUND
    os.kill(own_redis.pid, signal.SIGCONT)
    await asyncio.sleep(0.35)
    assert await breaker.acall(ok) == "ok"  # Redis's state: never opened
    assert [(p["attributes"], p["value"]) for p in capture.metric(FALLBACKS)] == [
        ({"breaker": "dep", "policy": "local"}, 2)
    ]
    await store.aclose()
    store.close()


def test_a_dead_redis_costs_at_most_one_timeout_then_next_to_nothing(own_redis: RedisHandle) -> None:
    store = make_store(own_redis)
    breaker = CircuitBreaker("dep", failure_threshold=3, backend=RedisBreakerBackend(store, on_failure="fail_open"))
    assert breaker.state == "closed"
    os.kill(own_redis.pid, signal.SIGKILL)
    dependency = Dependency()
    first = timed(breaker, dependency)
    rest = [timed(breaker, dependency) for _ in range(50)]
    assert first[0] == "ConnectionError" and first[1] < BOUND
    assert {outcome for outcome, _ in rest} == {"ConnectionError"}
    assert sum(seconds for _, seconds in rest) < 0.25  # the store's guard answers without the network
    store.close()
