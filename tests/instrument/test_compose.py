"""The seed's stack, `@task` ▸ `@retry` ▸ `@timeout` ▸ `@rate_limit` ▸ `@circuit_breaker`, gives one coherent trace."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import rfobs
from rfobs.instrument import CircuitBreaker, RateLimiter, RetryPolicy
from rfobs.instrument._clock import VirtualClock
from rfobs.testing import Capture


def points(capture: Capture, name: str) -> dict[tuple[Any, ...], Any]:
    return {tuple(sorted(p["attributes"].items())): p.get("value", p.get("count")) for p in capture.metric(name)}


def test_the_one_line_stack_retries_inside_one_task_span(capture: Capture, fast_waits: VirtualClock) -> None:
    calls = 0

    @rfobs.task(
        "researcher",
        "search",
        retry=RetryPolicy(max_attempts=3, base_delay=0.5, jitter="none", name="search"),
        timeout=5.0,
        rate_limit=RateLimiter(100, name="arxiv"),
        breaker=CircuitBreaker("arxiv", failure_threshold=5),
    )
    async def search(query: str) -> list[str]:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("connection reset")
        return [query]

    assert asyncio.run(search("rag")) == ["rag"]
    (span,) = capture.spans()
    assert span["name"] == "researcher.search"
    assert span["status"] == {"code": "UNSET", "description": None}
    retries = [e for e in span["events"] if e["name"] == "retry"]
    assert [(e["attributes"]["rfobs.retry.attempt"], e["attributes"]["rfobs.retry.delay_s"]) for e in retries] == [
        (1, 0.5),
        (2, 1.0),
    ]
    assert fast_waits.slept == pytest.approx(1.5)
    assert points(capture, "researchflow_agents.retry_attempts") == {
        (("operation", "search"), ("outcome", "retry")): 2,
        (("operation", "search"), ("outcome", "success")): 1,
        (("operation", "search"), ("outcome", "exhausted")): 0,
    }
    assert points(capture, "researchflow_agents.rate_limit_requests") == {
        (("decision", "allowed"), ("limiter", "arxiv")): 3,
        (("decision", "rejected"), ("limiter", "arxiv")): 0,
    }
    assert points(capture, "researchflow_agents.timeout_operation_duration") == {
        (("operation", "search"), ("outcome", "completed")): 3
    }
    assert points(capture, "researchflow_agents.agent_tasks") == {
        (("agent", "researcher"), ("status", "success"), ("task", "search")): 1,
        (("agent", "researcher"), ("status", "error"), ("task", "search")): 0,
    }
    assert points(capture, "researchflow_agents.circuit_breaker_state_transitions") == {}


def test_hand_stacked_decorators_and_an_open_breaker_is_not_retried(capture: Capture, fast_waits: VirtualClock) -> None:
    breaker = CircuitBreaker("scholar", failure_threshold=2, reset_timeout=60)

    @rfobs.task("researcher", "lookup")
    @rfobs.retry(max_attempts=5, base_delay=0.1, jitter="none", name="lookup")
    @rfobs.timeout(2.0)
    @rfobs.rate_limit(50, name="scholar")
    @breaker
    def lookup() -> None:
        raise ConnectionError("scholar is down")

    with pytest.raises(rfobs.CircuitOpen):
        lookup()
    (span,) = capture.spans()
    assert span["status"]["code"] == "ERROR"
    assert span["attributes"]["error.type"] == "rfobs.exceptions.CircuitOpen"
    event_names = [e["name"] for e in span["events"]]
    # Two real failures open the breaker; the third attempt is refused fast and not retried.
    assert event_names.count("retry") == 2
    assert "circuit_breaker.transition" in event_names
    assert points(capture, "researchflow_agents.retry_attempts") == {
        (("operation", "lookup"), ("outcome", "retry")): 2,
        (("operation", "lookup"), ("outcome", "non_retryable")): 1,
        (("operation", "lookup"), ("outcome", "exhausted")): 0,
    }
    assert points(capture, "researchflow_agents.circuit_breaker_state_transitions") == {
        (("breaker", "scholar"), ("from_state", "closed"), ("to_state", "open")): 1
    }
    assert {
        p["attributes"]["breaker"]: p["value"] for p in capture.metric("researchflow_agents.circuit_breaker_state")
    }["scholar"] == 2


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("retry", "three", r"@task\(retry='three'\)"),
        ("timeout", "soon", r"@task\(timeout='soon'\)"),
        ("rate_limit", "fast", r"@task\(rate_limit='fast'\)"),
        ("breaker", 3, r"@task\(breaker=3\)"),
        ("timeout", -1, r"seconds=-1"),
    ],
)
def test_bad_stack_arguments_fail_at_decoration(argument: str, value: Any, message: str) -> None:
    with pytest.raises(rfobs.ConfigError, match=message):
        rfobs.task("researcher", **{argument: value})


def test_a_hanging_dependency_opens_the_breaker_inside_a_timeout() -> None:
    breaker = CircuitBreaker("hangs", failure_threshold=3, reset_timeout=60)

    @rfobs.task("researcher", "hang", timeout=0.02, breaker=breaker)
    async def hang() -> None:
        await asyncio.sleep(10)

    async def call_until_refused() -> int:
        for attempt in range(10):
            try:
                await hang()
            except rfobs.TimeoutExceeded:
                continue
            except rfobs.CircuitOpen:
                return attempt
        return -1

    assert asyncio.run(call_until_refused()) == 3  # three timeouts count as failures; the fourth is refused
    assert breaker.state == "open"


def test_a_sync_call_finishing_after_its_timeout_counts_as_a_breaker_failure() -> None:
    import threading
    import time

    breaker = CircuitBreaker("slow", failure_threshold=2, reset_timeout=60)
    finished = threading.Event()

    @rfobs.task("researcher", "slow", timeout=0.02, breaker=breaker)
    def slow() -> None:
        time.sleep(0.1)
        finished.set()

    for _ in range(2):
        finished.clear()
        with pytest.raises(rfobs.TimeoutExceeded):
            slow()
        assert finished.wait(2)  # the worker thread ran to completion, late
    # The breaker hears of the late end from the worker thread, just after `finished`: wait for it, bounded.
    deadline = time.monotonic() + 5
    while breaker.state != "open" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert breaker.state == "open"


def test_a_rate_given_as_a_number_is_a_limiter_of_each_function_named_after_it(capture: Capture) -> None:
    stack = rfobs.task("researcher", rate_limit=1000)

    @stack
    def first() -> None:
        pass

    @stack
    def second() -> None:
        pass

    first()
    second()
    second()
    assert points(capture, "researchflow_agents.rate_limit_requests") == {
        (("decision", "allowed"), ("limiter", "researcher.first")): 1,
        (("decision", "rejected"), ("limiter", "researcher.first")): 0,
        (("decision", "allowed"), ("limiter", "researcher.second")): 2,
        (("decision", "rejected"), ("limiter", "researcher.second")): 0,
    }
