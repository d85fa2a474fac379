from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import random
import re
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from tenacity import (
    Future,
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_fixed,
)

import rfobs
from rfobs.exceptions import CircuitOpen, ConfigError, RateLimited, TimeoutExceeded
from rfobs.instrument import _telemetry as t
from rfobs.instrument._clock import VirtualClock, default_clock, set_default_clock
from rfobs.instrument.retry import (
    Backoff,
    RetryPolicy,
    default_retryable,
    retry,
    retry_after_hint,
    retry_api_call,
)
from rfobs.testing import Capture

METRIC = "researchflow_agents.retry_attempts"
OK = {"code": "UNSET", "description": None}


class RecordingClock(VirtualClock):
    """A virtual clock that also remembers each sleep."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(float(seconds))
        super().sleep(seconds)


class HTTPError(Exception):
    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.headers = headers or {}


class Response:
    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status_code
        self.headers = headers or {}


class ResponseError(Exception):
    """Shaped like httpx.HTTPStatusError: the status lives on `.response`."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"server said {response.status_code}")
        self.response = response


class Flaky:
    """Fails with the given errors in turn, then returns "ok"; counts its calls."""

    def __init__(self, *errors: BaseException, clock: VirtualClock | None = None, takes: float = 0.0) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.clock = clock
        self.takes = takes

    def __call__(self) -> str:
        self.calls += 1
        if self.clock is not None:
            self.clock.advance(self.takes)
        if self.errors:
            raise self.errors.pop(0)
        return "ok"

    async def acall(self) -> str:
        await asyncio.sleep(0)
        return self()


def make_state(attempt: int, error: BaseException | None = None) -> RetryCallState:
    state = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    if error is not None:
        state.outcome = Future.construct(attempt, error, has_exception=True)
    return state


def points(capture: Capture) -> dict[str, int]:
    return {p["attributes"]["outcome"]: p["value"] for p in capture.metric(METRIC)}


# ------------------------------------------------------------------------------------------- strategy maths


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("exponential", [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]),
        ("linear", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        ("fixed", [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
        ("fibonacci", [1.0, 1.0, 2.0, 3.0, 5.0, 8.0]),
    ],
)
def test_backoff_delay_per_strategy_is_capped_at_max_delay(strategy: Any, expected: list[float]) -> None:
    wait = Backoff(strategy, base_delay=1.0, max_delay=10.0, jitter="none")
    assert [wait(make_state(n)) for n in range(1, 7)] == expected
    assert [Backoff(strategy, 0.5, 4.0)(make_state(n)) for n in range(1, 7)] == [min(4.0, d / 2) for d in expected]


def test_backoff_stays_capped_for_huge_attempt_numbers() -> None:
    for strategy in ("exponential", "linear", "fibonacci"):
        assert Backoff(strategy, 0.25, 30.0)(make_state(100_000)) == 30.0
    assert Backoff("exponential", 0.0, 0.0)(make_state(5)) == 0.0


def test_full_jitter_draws_from_zero_to_the_delay() -> None:
    wait = Backoff("exponential", 1.0, 60.0, "full", rng=random.Random(7))
    expected = random.Random(7)
    assert [wait(make_state(n)) for n in (1, 2, 3)] == [d * expected.random() for d in (1.0, 2.0, 4.0)]
    samples = [Backoff("exponential", 1.0, 60.0, "full")(make_state(3)) for _ in range(2000)]
    assert 0.0 <= min(samples) < 0.2 and 3.8 < max(samples) < 4.0


def test_equal_jitter_draws_from_half_the_delay_to_the_delay() -> None:
    wait = Backoff("linear", 2.0, 60.0, "equal", rng=random.Random(3))
    expected = random.Random(3)
    assert [wait(make_state(n)) for n in (1, 2)] == [d / 2 + d / 2 * expected.random() for d in (2.0, 4.0)]
    samples = [Backoff("fixed", 4.0, 60.0, "equal")(make_state(1)) for _ in range(2000)]
    assert 2.0 <= min(samples) < 2.2 and 3.8 < max(samples) < 4.0


def test_policy_wait_is_raised_to_a_retry_after_hint_even_past_max_delay() -> None:
    policy = RetryPolicy(strategy="fixed", base_delay=2.0, max_delay=5.0, jitter="none")
    assert policy.wait(make_state(1, ConnectionError())) == 2.0
    assert policy.wait(make_state(1, RateLimited("api", 1.0))) == 2.0
    assert policy.wait(make_state(1, RateLimited("api", 30.0))) == 30.0
    assert policy.wait(make_state(2, HTTPError(429, {"Retry-After": "12"}))) == 12.0


# ------------------------------------------------------------------------------------------- classification


class TimeoutException(Exception):  # httpx's base of its timeouts
    pass


class ReadTimeout(TimeoutException):
    pass


class APIConnectionError(Exception):  # openai / anthropic
    pass


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (TimeoutError(), True),
        (TimeoutExceeded("search", 1.0), True),
        (RateLimited("api", 1.0), True),
        (ConnectionResetError(), True),
        (ConnectionRefusedError(), True),
        (BrokenPipeError(), True),
        (OSError(errno.ENETUNREACH, "network is unreachable"), True),
        (OSError(errno.ETIMEDOUT, "timed out"), True),
        (socket.gaierror(socket.EAI_AGAIN, "temporary failure in name resolution"), True),
        (socket.gaierror(socket.EAI_NONAME, "name or service not known"), False),
        (FileNotFoundError(errno.ENOENT, "missing"), False),
        (PermissionError(errno.EACCES, "denied"), False),
        (HTTPError(429), True),
        (HTTPError(500), True),
        (HTTPError(503), True),
        (HTTPError(400), False),
        (HTTPError(401), False),
        (HTTPError(404), False),
        (ResponseError(Response(502)), True),
        (ResponseError(Response(422)), False),
        (ReadTimeout(), True),
        (APIConnectionError(), True),
        (ValueError(), False),
        (TypeError(), False),
        (KeyError("k"), False),
        (AssertionError(), False),
        (RuntimeError(), False),
        (CircuitOpen("db", 5.0), False),
        (asyncio.CancelledError(), False),
        (KeyboardInterrupt(), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_default_classification(error: BaseException, retryable: bool) -> None:
    assert default_retryable(error) is retryable


def test_an_http_status_named_status_counts_too() -> None:
    error = Exception("aiohttp style")
    error.status = 503  # pyright: ignore[reportAttributeAccessIssue]
    assert default_retryable(error)
    error.status = 403  # pyright: ignore[reportAttributeAccessIssue]
    assert not default_retryable(error)


def test_retry_after_hint_forms() -> None:
    assert retry_after_hint(RateLimited("api", 2.5)) == 2.5
    assert retry_after_hint(HTTPError(429, {"Retry-After": "7"})) == 7.0
    assert retry_after_hint(HTTPError(429, {"retry-after": " 3.5 "})) == 3.5
    assert retry_after_hint(HTTPError(429, {"retry-after-ms": "1500", "Retry-After": "2"})) == 1.5
    assert retry_after_hint(ResponseError(Response(503, {"Retry-After": "9"}))) == 9.0
    assert retry_after_hint(HTTPError(503, {"Retry-After": "-4"})) is None  # hostile: no hint (issue #9)
    in_30s = retry_after_hint(HTTPError(503, {"Retry-After": formatdate(time.time() + 30, usegmt=True)}))
    assert in_30s is not None and 28.5 <= in_30s <= 30.0
    assert retry_after_hint(HTTPError(503, {"Retry-After": formatdate(time.time() - 60, usegmt=True)})) == 0.0
    assert retry_after_hint(HTTPError(503, {"Retry-After": "soon"})) is None
    assert retry_after_hint(HTTPError(503, {"Retry-After": "nan"})) is None
    assert retry_after_hint(HTTPError(503)) is None
    assert retry_after_hint(ValueError()) is None


# --------------------------------------------------------------------------------------- through the decorator


@pytest.mark.parametrize(
    ("strategy", "sleeps"),
    [
        ("exponential", [0.5, 1.0, 2.0, 3.0]),
        ("linear", [0.5, 1.0, 1.5, 2.0]),
        ("fixed", [0.5, 0.5, 0.5, 0.5]),
        ("fibonacci", [0.5, 0.5, 1.0, 1.5]),
    ],
)
def test_attempts_and_exact_delays_per_strategy(strategy: Any, sleeps: list[float]) -> None:
    clock = RecordingClock()
    flaky = Flaky(*(ConnectionError(i) for i in range(4)))
    fetch = retry(max_attempts=5, strategy=strategy, base_delay=0.5, max_delay=3.0, jitter="none", clock=clock)(flaky)
    assert fetch() == "ok"
    assert flaky.calls == 5
    assert clock.sleeps == sleeps
    assert clock.monotonic() == sum(sleeps)


def test_exhausted_reraises_the_last_error_unchanged() -> None:
    errors = [TimeoutError("first"), TimeoutError("second"), TimeoutError("third")]
    clock = RecordingClock()

    @retry(max_attempts=3, strategy="fixed", base_delay=1.0, jitter="none", clock=clock)
    def fetch() -> None:
        raise errors.pop(0)

    last = errors[-1]
    with pytest.raises(TimeoutError) as caught:
        fetch()
    assert caught.value is last
    assert str(caught.value) == "third"
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    assert clock.sleeps == [1.0, 1.0]
    # The traceback ends where the function raised, not inside tenacity.
    assert traceback.extract_tb(caught.value.__traceback__)[-1].name == "fetch"
    assert not any("tenacity" in frame.filename for frame in traceback.extract_tb(caught.value.__traceback__))


def test_a_non_retryable_error_is_raised_at_once() -> None:
    clock = RecordingClock()
    error = ValueError("bad input")
    flaky = Flaky(error, clock=clock)
    with pytest.raises(ValueError) as caught:
        retry(clock=clock)(flaky)()
    assert caught.value is error
    assert flaky.calls == 1 and clock.sleeps == []
    assert not any("tenacity" in frame.filename for frame in traceback.extract_tb(caught.value.__traceback__))


def test_retry_on_and_retry_if_widen_the_defaults() -> None:
    clock = RecordingClock()
    flaky = Flaky(LookupError(), ConnectionError(), clock=clock)
    assert retry(retry_on=LookupError, jitter="none", clock=clock)(flaky)() == "ok"
    assert flaky.calls == 3

    flaky = Flaky(RuntimeError("transient: busy"), RuntimeError("transient: busy"), clock=clock)
    policy = RetryPolicy(retry_if=lambda e: "transient" in str(e), jitter="none", clock=clock)
    assert policy(flaky)() == "ok"
    assert flaky.calls == 3

    flaky = Flaky(RuntimeError("fatal"), clock=clock)
    with pytest.raises(RuntimeError, match="fatal"):
        policy(flaky)()
    assert flaky.calls == 1


def test_non_retryable_and_an_open_breaker_always_win() -> None:
    clock = RecordingClock()
    flaky = Flaky(ConnectionRefusedError(), clock=clock)
    with pytest.raises(ConnectionRefusedError):
        retry(non_retryable=(ConnectionRefusedError,), clock=clock)(flaky)()
    assert flaky.calls == 1

    flaky = Flaky(CircuitOpen("db", 1.0), clock=clock)
    with pytest.raises(CircuitOpen):
        retry(retry_on=(Exception,), retry_if=lambda e: True, clock=clock)(flaky)()
    assert flaky.calls == 1
    assert clock.sleeps == []


def test_max_total_time_counts_from_the_start_of_the_first_attempt() -> None:
    # Each attempt takes 1 s of virtual time; the waits are 1 s. Attempts start at 0, 2 and 4.
    clock = RecordingClock()
    flaky = Flaky(*(TimeoutError(i) for i in range(9)), clock=clock, takes=1.0)
    policy = RetryPolicy(max_attempts=10, strategy="fixed", base_delay=1.0, jitter="none", clock=clock)
    with pytest.raises(TimeoutError):
        policy.copy(max_total_time=4.0)(flaky)()
    assert flaky.calls == 3  # a 4th attempt would start at 6 > 4
    assert clock.sleeps == [1.0, 1.0]

    flaky = Flaky(*(TimeoutError(i) for i in range(9)), clock=clock, takes=1.0)
    with pytest.raises(TimeoutError):
        policy.copy(max_total_time=3.5)(flaky)()
    assert flaky.calls == 2  # measured from the first failure instead, a 3rd attempt would have fitted


def test_retry_after_attribute_is_honoured_past_max_delay() -> None:
    clock = RecordingClock()
    flaky = Flaky(RateLimited("api", 7.5), clock=clock)
    assert retry(strategy="fixed", base_delay=0.1, max_delay=1.0, jitter="none", clock=clock)(flaky)() == "ok"
    assert clock.sleeps == [7.5]


def test_retry_after_header_is_honoured() -> None:
    clock = RecordingClock()
    flaky = Flaky(ResponseError(Response(503, {"Retry-After": "4"})), HTTPError(429, {"Retry-After": "0"}), clock=clock)
    assert retry(strategy="fixed", base_delay=0.5, max_delay=1.0, jitter="none", clock=clock)(flaky)() == "ok"
    assert clock.sleeps == [4.0, 0.5]


def test_a_retry_after_beyond_max_total_time_gives_up_without_sleeping(capture: Capture) -> None:
    clock = RecordingClock()
    error = HTTPError(429, {"Retry-After": "30"})
    flaky = Flaky(error, clock=clock)
    with pytest.raises(HTTPError) as caught:
        retry(max_total_time=10.0, name="quota", clock=clock)(flaky)()
    assert caught.value is error
    assert flaky.calls == 1 and clock.sleeps == []
    assert points(capture) == {"exhausted": 1}


class Limiter:
    def __init__(self) -> None:
        self.backoffs: list[float | None] = []

    def backoff(self, retry_after: float | None) -> None:
        self.backoffs.append(retry_after)


def test_the_limiter_is_told_about_429s_and_retry_after_hints() -> None:
    clock, limiter = RecordingClock(), Limiter()
    errors = (HTTPError(429), HTTPError(503, {"Retry-After": "2"}), HTTPError(503), RateLimited("own", 1.0))
    flaky = Flaky(*errors, clock=clock)
    policy = RetryPolicy(max_attempts=5, strategy="fixed", base_delay=0.0, max_delay=0.0, limiter=limiter, clock=clock)
    assert policy(flaky)() == "ok"
    assert limiter.backoffs == [None, 2.0]  # not for a plain 503, nor for rfobs's own RateLimited


def test_a_failing_limiter_does_not_break_the_call(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def backoff(self, retry_after: float | None) -> None:
            raise RuntimeError("limiter bug")

    flaky = Flaky(HTTPError(429), clock=RecordingClock())
    with caplog.at_level(logging.WARNING, logger="rfobs"):
        assert retry(limiter=Broken(), clock=RecordingClock())(flaky)() == "ok"
    assert [r.getMessage().split(" raised")[0].endswith(".backoff(None)") for r in caplog.records] == [True]


async def test_async_retries_sleep_through_the_clock() -> None:
    clock = RecordingClock()
    flaky = Flaky(TimeoutError(), ConnectionError(), clock=clock)

    @retry(max_attempts=3, strategy="exponential", base_delay=1.0, jitter="none", clock=clock)
    async def fetch(x: int) -> str:
        return f"{await flaky.acall()}-{x}"

    assert inspect.iscoroutinefunction(fetch)
    assert await fetch(1) == "ok-1"
    assert flaky.calls == 3 and clock.sleeps == [1.0, 2.0]

    errors = [HTTPError(502), HTTPError(503)]

    @retry(max_attempts=2, jitter="none", clock=clock)
    async def broken() -> None:
        await asyncio.sleep(0)
        raise errors.pop(0)

    last = errors[-1]
    with pytest.raises(HTTPError) as caught:
        await broken()
    assert caught.value is last


async def test_concurrent_async_calls_keep_their_own_attempts(capture: Capture) -> None:
    clock = RecordingClock()
    flakies = [Flaky(*(ConnectionError() for _ in range(n)), clock=clock) for n in (0, 1, 2, 3)]

    @retry(max_attempts=4, name="fan_out", jitter="none", base_delay=0.0, clock=clock)
    async def fetch(i: int) -> str:
        return await flakies[i].acall()

    assert await asyncio.gather(*(fetch(i) for i in range(4))) == ["ok"] * 4
    assert [f.calls for f in flakies] == [1, 2, 3, 4]
    assert points(capture) == {"success": 4, "exhausted": 0, "retry": 6}


def test_threads_share_one_policy_safely(capture: Capture) -> None:
    clock = RecordingClock()
    local = threading.local()

    @retry(max_attempts=3, name="threaded", jitter="none", base_delay=0.0, clock=clock)
    def fetch() -> str:
        local.calls = getattr(local, "calls", 0) + 1
        if local.calls == 1:
            raise ConnectionError
        return "ok"

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert points(capture) == {"retry": 8, "exhausted": 0, "success": 8}


class Client:
    def __init__(self) -> None:
        self.flaky = Flaky(ConnectionError())

    @retry(jitter="none", base_delay=0.0, max_delay=0.0)
    def fetch(self, path: str) -> str:
        return f"{self.flaky()}:{path}"

    @retry(jitter="none", base_delay=0.0, max_delay=0.0)
    @classmethod
    def build(cls, flaky: Flaky) -> str:
        return flaky()

    @staticmethod
    @retry(jitter="none", base_delay=0.0, max_delay=0.0)
    def ping(flaky: Flaky) -> str:
        return flaky()


def test_methods_classmethods_and_staticmethods(capture: Capture) -> None:
    client = Client()
    assert client.fetch("/a") == "ok:/a" and client.flaky.calls == 2
    flaky = Flaky(TimeoutError())
    assert Client.build(flaky) == "ok" and flaky.calls == 2
    flaky = Flaky(TimeoutError())
    assert Client.ping(flaky) == "ok" and flaky.calls == 2
    assert {(p["attributes"]["operation"], p["attributes"]["outcome"]): p["value"] for p in capture.metric(METRIC)} == {
        ("Client.fetch", "retry"): 1,
        ("Client.fetch", "success"): 1,
        ("Client.fetch", "exhausted"): 0,
        ("Client.build", "retry"): 1,
        ("Client.build", "success"): 1,
        ("Client.build", "exhausted"): 0,
        ("Client.ping", "retry"): 1,
        ("Client.ping", "success"): 1,
        ("Client.ping", "exhausted"): 0,
    }
    assert inspect.signature(Client.fetch) == inspect.signature(Client.__dict__["fetch"].__wrapped__)


def test_tenacity_strategy_objects_are_accepted_as_they_are() -> None:
    clock = RecordingClock()
    flaky = Flaky(KeyError("a"), KeyError("b"), KeyError("c"), clock=clock)
    policy = RetryPolicy(
        stop=stop_after_attempt(4), wait=wait_fixed(2), retry=retry_if_exception_type(LookupError), clock=clock
    )
    assert policy(flaky)() == "ok"  # KeyError is not retried by default; the tenacity object says otherwise
    assert flaky.calls == 4 and clock.sleeps == [2.0, 2.0, 2.0]

    flaky = Flaky(ConnectionError(), clock=clock)
    with pytest.raises(ConnectionError):
        policy(flaky)()  # the tenacity retry= object replaces the defaults
    assert flaky.calls == 1

    flaky = Flaky(CircuitOpen("db", 1.0), clock=clock)
    with pytest.raises(CircuitOpen):
        RetryPolicy(retry=retry_if_exception_type(Exception), clock=clock)(flaky)()
    assert flaky.calls == 1


def test_a_tenacity_time_based_stop_measures_from_the_first_attempt() -> None:
    # tenacity's stop_after_delay reads its own (real) clock; the first attempt ran before tenacity was entered.
    calls: list[float] = []

    def slow_then_fine() -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            time.sleep(0.05)
            raise ConnectionError("slow failure")
        return "ok"

    with pytest.raises(ConnectionError, match="slow failure"):
        retry(stop=stop_after_delay(0.04), wait=wait_fixed(0))(slow_then_fine)()
    assert len(calls) == 1


def test_a_tenacity_retry_on_results_is_honoured() -> None:
    clock = RecordingClock()
    results = iter([None, None, "done"])
    policy = RetryPolicy(retry=retry_if_result(lambda r: r is None), wait=wait_fixed(1), clock=clock)
    assert policy(lambda: next(results))() == "done"
    assert clock.sleeps == [1.0, 1.0]

    with pytest.raises(RetryError):
        policy.copy(stop=stop_after_attempt(2))(lambda: None)()


async def test_a_tenacity_retry_object_works_for_coroutines() -> None:
    clock = RecordingClock()
    flaky = Flaky(KeyError(), clock=clock)
    policy = RetryPolicy(retry=retry_if_exception_type(KeyError), wait=wait_fixed(3), clock=clock)
    assert await policy(flaky.acall)() == "ok"
    assert clock.sleeps == [3.0]


def test_a_policy_runs_calls_directly() -> None:
    clock = RecordingClock()
    flaky = Flaky(ConnectionError(), clock=clock)
    policy = RetryPolicy(jitter="none", clock=clock)
    assert policy.call(flaky, (), {}) == "ok"
    assert flaky.calls == 2 and clock.sleeps == [1.0]


async def test_a_policy_awaits_calls_directly(capture: Capture) -> None:
    clock = RecordingClock()
    flaky = Flaky(ConnectionError(), clock=clock)
    assert await RetryPolicy(jitter="none", clock=clock).acall(flaky.acall, (), {}) == "ok"
    assert capture.metric(METRIC) == [
        {"attributes": {"operation": "Flaky.acall", "outcome": "retry"}, "value": 1},
        {"attributes": {"operation": "Flaky.acall", "outcome": "exhausted"}, "value": 0},
        {"attributes": {"operation": "Flaky.acall", "outcome": "success"}, "value": 1},
    ]


@pytest.fixture
def virtual_default_clock() -> Iterator[RecordingClock]:
    previous = default_clock()
    clock = RecordingClock()
    set_default_clock(clock)
    yield clock
    set_default_clock(previous)


@retry
def decorated_before_the_clock_changed(flaky: Flaky) -> str:
    return flaky()


def test_bare_retry_uses_the_default_clock_at_call_time(virtual_default_clock: RecordingClock) -> None:
    flaky = Flaky(ConnectionError(), ConnectionError(), ConnectionError())
    with pytest.raises(ConnectionError):
        decorated_before_the_clock_changed(flaky)
    assert flaky.calls == 3  # 3 attempts by default
    assert len(virtual_default_clock.sleeps) == 2
    assert 0.0 <= virtual_default_clock.sleeps[0] < 1.0 and 0.0 <= virtual_default_clock.sleeps[1] < 2.0


def test_retry_api_call_is_exponential_with_full_jitter(virtual_default_clock: RecordingClock) -> None:
    policy = retry_api_call(4, base_delay=2.0, max_delay=5.0)
    assert (policy.max_attempts, policy.strategy, policy.jitter) == (4, "exponential", "full")
    assert (policy.base_delay, policy.max_delay) == (2.0, 5.0)
    flaky = Flaky(TimeoutError(), TimeoutError(), TimeoutError())
    assert policy(flaky)() == "ok"
    first, second, third = virtual_default_clock.sleeps
    assert 0.0 <= first < 2.0 and 0.0 <= second < 4.0 and 0.0 <= third < 5.0


def test_copy_changes_only_what_it_is_given() -> None:
    policy = RetryPolicy(max_attempts=4, strategy="linear", base_delay=0.5, jitter="none", name="op")
    variant = policy.copy(max_attempts=6)
    assert (variant.max_attempts, variant.strategy, variant.base_delay, variant.name) == (6, "linear", 0.5, "op")
    assert policy.max_attempts == 4
    with pytest.raises(ConfigError, match="max_attempts=0"):
        policy.copy(max_attempts=0)


def test_signature_and_coroutine_function_are_preserved() -> None:
    def fetch(url: str, *, timeout: float = 1.0) -> str:
        return url

    async def afetch(url: str) -> str:
        return url

    assert inspect.signature(retry(fetch)) == inspect.signature(fetch)
    assert retry(fetch).__name__ == "fetch"
    assert inspect.iscoroutinefunction(retry(afetch))
    assert not inspect.iscoroutinefunction(retry(fetch))


# ----------------------------------------------------------------------------------------------- telemetry


def test_each_retry_is_an_event_on_the_enclosing_span(capture: Capture) -> None:
    clock = RecordingClock()
    flaky = Flaky(ConnectionResetError(), HTTPError(503), clock=clock)
    fetch = retry(name="arxiv.search", strategy="exponential", base_delay=0.5, jitter="none", clock=clock)(flaky)
    with capture.tracer_provider.get_tracer("test").start_as_current_span("agent step"):
        assert fetch() == "ok"
    assert capture.spans() == [
        {"name": "agent step", "trace_id": 1, "span_id": 1, "parent_id": None, "kind": "INTERNAL", "status": OK,
         "attributes": {"rfobs.retry.attempts": 3, "rfobs.retry.outcome": "success"},
         "events": [
             {"name": "retry", "attributes": {"rfobs.retry.operation": "arxiv.search", "rfobs.retry.attempt": 1,
                                              "rfobs.retry.delay_s": 0.5, "exception.type": "ConnectionResetError"}},
             {"name": "retry", "attributes": {"rfobs.retry.operation": "arxiv.search", "rfobs.retry.attempt": 2,
                                              "rfobs.retry.delay_s": 1.0,
                                              "exception.type": "tests.instrument.test_retry.HTTPError"}},
         ]},
    ]  # fmt: skip
    assert capture.metric(METRIC) == [
        {"attributes": {"operation": "arxiv.search", "outcome": "retry"}, "value": 2},
        {"attributes": {"operation": "arxiv.search", "outcome": "exhausted"}, "value": 0},
        {"attributes": {"operation": "arxiv.search", "outcome": "success"}, "value": 1},
    ]


def test_exhausted_and_non_retryable_outcomes_are_counted_once_per_call(capture: Capture) -> None:
    clock = RecordingClock()
    policy = RetryPolicy(name="lookup", max_attempts=2, jitter="none", clock=clock)
    tracer = capture.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("exhausted"), pytest.raises(TimeoutError):
        policy(Flaky(TimeoutError(), TimeoutError()))()
    with tracer.start_as_current_span("non_retryable"), pytest.raises(ValueError):
        policy(Flaky(ConnectionError(), ValueError()))()
    with tracer.start_as_current_span("first_try_success"):
        policy(Flaky())()
    with tracer.start_as_current_span("first_try_failure"), pytest.raises(KeyError):
        policy(Flaky(KeyError()))()
    exhausted, non_retryable, success, failure = capture.spans()
    assert exhausted["attributes"] == {"rfobs.retry.attempts": 2, "rfobs.retry.outcome": "exhausted"}
    assert [e["attributes"]["rfobs.retry.attempt"] for e in exhausted["events"]] == [1]
    assert non_retryable["attributes"] == {"rfobs.retry.attempts": 2, "rfobs.retry.outcome": "non_retryable"}
    assert len(non_retryable["events"]) == 1
    assert success["attributes"] == {} and success["events"] == []
    assert failure["attributes"] == {"rfobs.retry.attempts": 1, "rfobs.retry.outcome": "non_retryable"}
    assert failure["events"] == []
    assert points(capture) == {"retry": 2, "exhausted": 1, "non_retryable": 2, "success": 1}


async def test_cancellation_is_not_retried_and_not_counted_as_a_failure(capture: Capture) -> None:
    @retry(name="cancelled", retry_on=(Exception,))
    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await cancelled()
    assert points(capture) == {}


async def test_cancellation_during_the_backoff_sleep_counts_only_the_retry(capture: Capture) -> None:
    @retry(name="cancelme", base_delay=10, jitter="none")
    async def flaky() -> None:
        raise ConnectionError("reset")

    task = asyncio.create_task(flaky())
    await asyncio.sleep(0.05)  # the first attempt failed; the task now sleeps before the second
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert points(capture) == {"retry": 1, "exhausted": 0}  # the zero series of the first outcome, no count


def test_composes_with_task_into_one_span(capture: Capture) -> None:
    clock = RecordingClock()
    flaky = Flaky(TimeoutError(), clock=clock)

    @rfobs.task("researcher", "search")
    @retry(name="search", jitter="none", clock=clock)
    def search() -> str:
        return flaky()

    assert search() == "ok"
    (span,) = capture.spans()
    assert span["name"] == "researcher.search" and span["status"] == OK
    assert span["attributes"]["rfobs.retry.attempts"] == 2
    assert span["events"] == [
        {
            "name": "retry",
            "attributes": {
                "rfobs.retry.operation": "search",
                "rfobs.retry.attempt": 1,
                "rfobs.retry.delay_s": 1.0,
                "exception.type": "TimeoutError",
            },
        }
    ]


def test_the_operation_defaults_to_the_qualified_name_inside_its_enclosing_function(capture: Capture) -> None:
    @retry(jitter="none", clock=RecordingClock())
    def fetch() -> str:
        return "ok"

    fetch()
    assert capture.metric(METRIC) == [
        {
            "attributes": {
                "operation": "fetch",
                "outcome": "success",
            },
            "value": 1,
        },
        {"attributes": {"operation": "fetch", "outcome": "exhausted"}, "value": 0},
    ]


def test_without_an_sdk_nothing_is_recorded_and_retries_still_happen(clean_globals: None) -> None:
    assert t.current() is None
    clock = RecordingClock()
    flaky = Flaky(ConnectionError(), TimeoutError(), clock=clock)
    assert retry(max_attempts=3, jitter="none", clock=clock)(flaky)() == "ok"
    assert flaky.calls == 3 and clock.sleeps == [1.0, 2.0]


BEFORE_INIT = """
import urllib.request

import rfobs
from rfobs.instrument.retry import retry
from rfobs.testing import fast_waits_enabled

failures = [ConnectionError(), ConnectionError()]

@retry(name="early", jitter="none")
def early() -> str:
    if failures:
        raise failures.pop()
    return "ok"

with fast_waits_enabled():
    assert early() == "ok"  # no SDK yet: retried, not counted
    telemetry = rfobs.init(metrics__prometheus_port=0, logging__enabled=False, tracing__exporter="none")
    failures.append(ConnectionError())
    assert early() == "ok"
with urllib.request.urlopen(telemetry.metrics_url) as response:
    print("\\n".join(line for line in response.read().decode().splitlines() if "retry_attempts_total{" in line))
telemetry.shutdown()
"""


def test_calls_before_init_are_retried_but_not_counted(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", BEFORE_INIT], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    found = sorted(
        (re.findall(r'(operation|outcome)="(\w+)"', line), line.rsplit(" ", 1)[1])
        for line in result.stdout.splitlines()
    )
    assert found == [
        ([("operation", "early"), ("outcome", "exhausted")], "0.0"),
        ([("operation", "early"), ("outcome", "retry")], "1.0"),
        ([("operation", "early"), ("outcome", "success")], "1.0"),
    ]


# ---------------------------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": 0}, r"max_attempts=0\): expected an integer >= 1"),
        ({"max_attempts": 2.5}, r"max_attempts=2\.5\)"),
        ({"max_attempts": True}, r"max_attempts=True\)"),
        ({"base_delay": -1.0}, r"base_delay=-1\.0\): expected a finite number of seconds >= 0"),
        ({"base_delay": float("nan")}, r"base_delay=nan\)"),
        ({"max_delay": float("inf")}, r"max_delay=inf\)"),
        ({"base_delay": 5.0, "max_delay": 2.0}, r"base_delay=5\.0, max_delay=2\.0\): expected a number of seconds >="),
        ({"strategy": "expo"}, r"strategy='expo'\): expected one of 'exponential', 'linear', 'fixed', 'fibonacci'"),
        ({"jitter": "half"}, r"jitter='half'\): expected one of 'none', 'full', 'equal'"),
        ({"max_total_time": 0}, r"max_total_time=0\): expected a finite number of seconds > 0"),
        ({"max_total_time": -3.0}, r"max_total_time=-3\.0\)"),
        ({"retry_on": (int,)}, r"retry_on=\(<class 'int'>,\)\): expected a Exception subclass"),
        ({"retry_on": ValueError()}, r"retry_on=ValueError\(\)\)"),
        ({"retry_on": KeyboardInterrupt}, r"retry_on=<class 'KeyboardInterrupt'>\)"),
        ({"non_retryable": "ValueError"}, r"non_retryable='ValueError'\)"),
        ({"retry_if": 3}, r"retry_if=3\): expected a callable"),
        ({"wait": 2}, r"wait=2\): expected a callable"),
        ({"name": " "}, r"name=' '\): expected a non-empty string"),
        ({"limiter": object()}, r"limiter=<object object at .*>\): expected an object with a backoff"),
        ({"clock": "system"}, r"clock='system'\): expected an rfobs Clock"),
    ],
    ids=lambda value: str(value)[:40],
)
def test_bad_arguments_raise_config_error_at_construction(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=r"^RetryPolicy\(" + message):
        RetryPolicy(**options)
    with pytest.raises(ValueError, match=message):  # ConfigError is a ValueError
        retry(**options)


def test_an_unknown_option_is_named_with_a_suggestion() -> None:
    with pytest.raises(
        ConfigError, match=r"^RetryPolicy\(max_attemps=...\): unknown option; did you mean max_attempts=\?"
    ):
        RetryPolicy(max_attemps=3)  # pyright: ignore[reportCallIssue]


def test_bad_backoff_arguments_and_misuse_fail_early() -> None:
    with pytest.raises(ConfigError, match=r"^Backoff\(strategy='random'\)"):
        Backoff("random")  # pyright: ignore[reportArgumentType]

    def stream() -> Iterator[int]:
        yield 1

    with pytest.raises(ConfigError, match="@retry cannot wrap the generator function"):
        retry(stream)
    policy = RetryPolicy()
    with pytest.raises(ConfigError, match="a RetryPolicy is a decorator itself"):
        retry(policy)


class BackendDropped(ConnectionError):
    """A user exception outside builtins: its qualified name is module + class."""


def test_retry_events_exception_events_and_error_type_name_an_exception_alike(capture: Capture) -> None:
    clock = RecordingClock()

    @rfobs.task("researcher", "fetch")
    @retry(max_attempts=2, base_delay=0.5, jitter="none", name="fetch", clock=clock)
    def fetch() -> None:
        raise BackendDropped("dropped")

    with pytest.raises(BackendDropped):
        fetch()
    (span,) = capture.spans()
    retry_event, exception_event = span["events"]
    qualified = "tests.instrument.test_retry.BackendDropped"
    assert retry_event["attributes"]["exception.type"] == qualified
    assert exception_event["name"] == "exception" and exception_event["attributes"]["exception.type"] == qualified
    assert span["attributes"]["error.type"] == qualified
