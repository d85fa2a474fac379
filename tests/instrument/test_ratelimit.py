from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import pytest
from opentelemetry import metrics, trace

import rfobs
from rfobs.exceptions import ConfigError, RateLimited
from rfobs.instrument._clock import SystemClock, VirtualClock
from rfobs.instrument.backends import MemoryBackend, SlidingWindow, TokenBucket
from rfobs.instrument.ratelimit import (
    Adaptive,
    RateLimiter,
    rate_limit,
    rate_limit_api_calls,
    rate_limit_per_user,
)
from rfobs.testing import Capture

METRIC = "researchflow_agents.rate_limit_requests"
OK = {"code": "UNSET", "description": None}


def decisions(limiter: str, allowed: int = 0, delayed: int = 0, rejected: int = 0) -> list[dict[str, Any]]:
    """The decision points of `limiter`: those counted, and `rejected` at 0 once it decided anything."""
    counts = {"allowed": allowed, "delayed": delayed, "rejected": rejected}
    decided = any(counts.values())
    return [
        {"attributes": {"limiter": limiter, "decision": decision}, "value": n}
        for decision, n in counts.items()
        if n or (decided and decision == "rejected")
    ]


class ReadingClock(SystemClock):
    """The system clock, remembering per thread and per task the last time it was read.

    A limiter reads the clock once per decision, so after `acquire()` returns `w`, `last_read() + w` is the time
    it admitted the call at, whatever the scheduler did after.
    """

    def __init__(self) -> None:
        self._read: ContextVar[float] = ContextVar("read")

    def monotonic(self) -> float:
        now = time.monotonic()
        self._read.set(now)
        return now

    def last_read(self) -> float:
        return self._read.get()


# Exact arithmetic on a virtual clock ------------------------------------------------------------------------------


def test_token_bucket_admits_the_burst_then_one_per_refill() -> None:
    clock = VirtualClock()
    limiter = RateLimiter(2, burst=3, clock=clock)
    assert [limiter.acquire_sync() for _ in range(6)] == [0.0, 0.0, 0.0, 0.5, 0.5, 0.5]
    assert clock.monotonic() == 1.5


def test_sliding_window_admits_the_limit_per_window_and_the_next_when_the_oldest_leaves() -> None:
    clock = VirtualClock()
    limiter = RateLimiter(3, per=1.0, algorithm="sliding_window", clock=clock)
    waits = [limiter.acquire_sync() for _ in range(7)]
    assert waits == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    assert clock.monotonic() == 2.0


def test_reject_mode_raises_with_the_time_until_the_next_slot() -> None:
    clock = VirtualClock()
    limiter = RateLimiter(1, burst=1, name="search", mode="reject", clock=clock)
    limiter.acquire_sync()
    clock.advance(0.25)
    with pytest.raises(RateLimited) as caught:
        limiter.acquire_sync()
    assert (caught.value.limiter, caught.value.retry_after) == ("search", 0.75)
    assert str(caught.value) == "rate limit 'search' exceeded; retry after 0.75s"
    clock.advance(0.75)
    assert limiter.acquire_sync() == 0.0  # the refusal took nothing


def test_wait_mode_refuses_a_wait_longer_than_max_wait_and_accepts_a_shorter_one() -> None:
    clock = VirtualClock()
    limiter = RateLimiter(1, burst=1, max_wait=0.5, clock=clock)
    limiter.acquire_sync()
    with pytest.raises(RateLimited) as caught:
        limiter.acquire_sync()
    assert caught.value.retry_after == 1.0
    clock.advance(0.6)
    assert limiter.acquire_sync() == pytest.approx(0.4)
    assert clock.slept == pytest.approx(0.4)


def test_cost_draws_a_tokens_per_minute_budget_next_to_a_requests_per_minute_one() -> None:
    clock = VirtualClock()
    requests = RateLimiter(60, per=60, name="llm.requests", clock=clock)
    tokens = RateLimiter(1000, per=60, name="llm.tokens", clock=clock)
    assert requests.acquire_sync() == 0.0 and tokens.acquire_sync(cost=600) == 0.0
    assert requests.acquire_sync() == 0.0
    # 400 tokens left; 600 more need 200 refilled at 1000/60 per second.
    assert tokens.acquire_sync(cost=600) == pytest.approx(12.0)
    with pytest.raises(ConfigError, match=r"acquire\(cost=1001\) on rate limiter 'llm.tokens'"):
        tokens.acquire_sync(cost=1001)
    with pytest.raises(ConfigError, match=r"cost=0\)"):
        tokens.acquire_sync(cost=0)


def test_sliding_window_weighs_costs() -> None:
    clock = VirtualClock()
    limiter = RateLimiter(10, per=1.0, algorithm="sliding_window", clock=clock)
    assert limiter.acquire_sync(cost=6) == 0.0
    clock.advance(0.5)
    assert limiter.acquire_sync(cost=4) == 0.0
    assert limiter.acquire_sync(cost=3) == pytest.approx(0.5)  # the 6 leave at t=1.0


async def test_async_acquire_and_context_managers_share_one_budget() -> None:
    clock = VirtualClock()
    limiter = RateLimiter(1, burst=2, clock=clock)
    async with limiter:
        pass
    with limiter:
        pass
    assert await limiter.acquire() == 1.0
    assert clock.slept == 1.0


async def test_per_key_budgets_are_isolated() -> None:
    clock = VirtualClock()

    @rate_limit(2, per=60, algorithm="sliding_window", key="user_id", mode="reject", clock=clock)
    async def answer(question: str, user_id: str = "anonymous") -> str:
        return f"{user_id}: {question}"

    assert [await answer("q", "alice"), await answer("q", user_id="alice")] == ["alice: q", "alice: q"]
    with pytest.raises(RateLimited):
        await answer("q", user_id="alice")
    assert await answer("q", "bob") == "bob: q"
    assert await answer("q") == "anonymous: q"  # the default is a key too
    assert await answer("q", "bob") == "bob: q"
    with pytest.raises(RateLimited):
        await answer("q", "bob")


def test_key_function_receives_args_and_kwargs() -> None:
    clock = VirtualClock()
    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def tenant(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        seen.append((args, kwargs))
        return str(kwargs["request"]["tenant"])

    limiter = RateLimiter(1, burst=1, mode="reject", key=tenant, clock=clock)

    @limiter
    def handle(*, request: dict[str, str]) -> str:
        return request["tenant"]

    assert handle(request={"tenant": "a"}) == "a"
    assert handle(request={"tenant": "b"}) == "b"
    with pytest.raises(RateLimited):
        handle(request={"tenant": "a"})
    assert seen[0] == ((), {"request": {"tenant": "a"}})


# Concurrency, in real time ----------------------------------------------------------------------------------------


def windows_over(times: list[float], length: float, limit: int) -> list[tuple[float, int]]:
    """Every window [t, t + length) starting at an admission that holds more than `limit` admissions."""
    times = sorted(times)
    over: list[tuple[float, int]] = []
    end = 0
    for start, at in enumerate(times):
        while end < len(times) and times[end] < at + length:
            end += 1
        if end - start > limit:
            over.append((at, end - start))
    return over


async def test_fifty_tasks_hammering_a_100_per_second_token_bucket_for_3_seconds() -> None:
    # Burst 10, so any 1 s window holds at most 100 + 10. Each admission is taken at the time the limiter decided
    # on (its clock reading plus the wait it returned), not when the task woke up: wake-ups trail by the event
    # loop's latency, which a loaded machine stretches without limit. Only float rounding separates two decisions
    # a window apart (1 us of slack).
    clock = ReadingClock()
    burst = 10
    limiter = RateLimiter(100, burst=burst, name="hammered", clock=clock)
    admitted: list[float] = []
    stop = time.monotonic() + 3.0

    async def worker() -> None:
        while time.monotonic() < stop:
            wait = await limiter.acquire()
            admitted.append(clock.last_read() + wait)

    await asyncio.gather(*(worker() for _ in range(50)))
    span = max(admitted) - min(admitted)
    assert windows_over(admitted, 1.0 - 1e-6, 100 + burst) == []
    assert len(admitted) <= burst + 100 * span + 1
    assert len(admitted) >= 0.95 * (burst + 100 * span)  # kept busy, not starved


async def hammer_for(seconds: float, acquire: Callable[[], Awaitable[object]], tasks: int = 50) -> list[float]:
    """`tasks` tasks calling `acquire()` for `seconds`; the `time.monotonic()` right after each call returned."""
    admitted: list[float] = []
    stop = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < stop:
            await acquire()
            admitted.append(time.monotonic())

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(tasks))), seconds + 30)
    return admitted


@pytest.mark.timeout(60)
async def test_a_sliding_window_never_holds_more_than_its_limit_measured_where_acquire_returns() -> None:
    # The test: 50 tasks for 3 s against 100/s, each admission timed when acquire() returns to its task,
    # every admission taken as a window start and as a window end. The log without reservations is exact there;
    # the log that reserved future slots let 114 and 131 through in one second (late wake-ups bunch up).
    limiter = RateLimiter(100, per=1.0, algorithm="sliding_window", name="exact")
    admitted = await hammer_for(3.0, limiter.acquire)
    assert windows_over(admitted, 1.0, 100) == []
    assert windows_over([-t for t in admitted], 1.0, 100) == []
    assert len(admitted) >= 300  # kept busy: 100 at once, then 100 as each second ends
    assert len(admitted) <= 400


async def test_waiters_are_admitted_in_arrival_order_after_one_sleep_each() -> None:
    class CountingClock(VirtualClock):
        sleeps = 0

        async def asleep(self, seconds: float) -> None:
            CountingClock.sleeps += 1
            await super().asleep(seconds)

    clock = CountingClock()
    limiter = RateLimiter(50, burst=1, clock=clock)
    order: list[int] = []
    admitted: list[float] = []

    async def waiter(i: int) -> None:
        arrived = clock.monotonic()  # what acquire() reads: nothing runs in between
        wait = await limiter.acquire()
        order.append(i)
        admitted.append(arrived + wait)

    await asyncio.gather(*(waiter(i) for i in range(10)))
    assert order == list(range(10))
    assert CountingClock.sleeps == 9  # one sleep per delayed waiter: no polling
    assert admitted == pytest.approx([i / 50 for i in range(10)])  # each slot 1/50 s after the one before
    assert clock.slept == pytest.approx(9 / 50)


async def test_a_cancelled_waiter_gives_its_slot_back() -> None:
    limiter = RateLimiter(10, burst=1, clock=VirtualClock())
    await limiter.acquire()
    waiting = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)  # the waiter reserves the slot at 0.1 s and sleeps (the virtual clock is there already)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # The refunded token is free at once. Without the refund: 0.1 s more, behind the cancelled waiter's slot.
    assert await limiter.acquire() == 0.0


@pytest.mark.parametrize("algorithm", ["token_bucket", "sliding_window"])
def test_eight_threads_hammering_a_sync_limiter_admit_exactly_the_budget(capture: Capture, algorithm: str) -> None:
    clock = VirtualClock()  # never advanced: the budget of 500 is all there is
    if algorithm == "token_bucket":
        limiter = RateLimiter(500, per=3600, burst=500, name="threads", mode="reject", clock=clock)
    else:
        limiter = RateLimiter(500, per=3600, algorithm="sliding_window", name="threads", mode="reject", clock=clock)
    admitted = [0] * 8
    start = threading.Barrier(8)

    def worker(index: int) -> None:
        start.wait()
        for _ in range(100):
            try:
                limiter.acquire_sync()
            except RateLimited:
                continue
            admitted[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(admitted) == 500
    assert capture.metric(METRIC) == decisions("threads", allowed=500, rejected=300)


def test_eight_threads_waiting_on_a_sync_limiter_are_paced_by_the_rate() -> None:
    clock = ReadingClock()
    limiter = RateLimiter(200, burst=10, clock=clock)
    admitted: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(40):
            wait = limiter.acquire_sync()
            with lock:
                admitted.append(clock.last_read() + wait)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 320
    # 10 at once, then 310 more at 200/s: never sooner (exact, on the limiter's own decisions), and not much
    # later. The upper bound allows a second of the threads being descheduled on a loaded machine (8 threads
    # keep only 40 ms of reservations queued); pacing at half the rate would still take 1.5 s too long.
    span = max(admitted) - min(admitted)
    assert (320 - 10) / 200 - 1e-6 <= span < (320 - 10) / 200 + 1.0


# Adaptive mode --------------------------------------------------------------------------------------------------


def test_adaptive_mode_lowers_the_rate_under_latency_and_restores_it_when_latency_falls() -> None:
    clock = VirtualClock()
    settings = Adaptive(target_latency=0.1, window=5, decrease=0.5, increase=0.25)
    limiter = RateLimiter(10, burst=1, clock=clock, adaptive=settings)
    latency = 0.5

    @limiter
    def call() -> None:
        clock.sleep(latency)  # the injected latency, as the decorator measures it

    factors: list[float] = []
    for _ in range(2):
        for _ in range(5):
            call()
        factors.append(limiter.rate_factor)
    assert factors == [0.5, 0.25]
    assert limiter.effective_limit == TokenBucket(2.5, 1.0)
    limiter.acquire_sync()
    assert limiter.acquire_sync() == pytest.approx(0.4)  # 2.5/s now, not 10/s

    latency = 0.01
    for _ in range(4):
        for _ in range(5):
            call()
        factors.append(limiter.rate_factor)
    assert factors == [0.5, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert limiter.effective_limit == limiter.limit == TokenBucket(10.0, 1.0)
    limiter.acquire_sync()
    assert limiter.acquire_sync() == pytest.approx(0.1)


async def test_adaptive_mode_reacts_to_errors_and_never_drops_below_its_floor() -> None:
    clock = VirtualClock()
    settings = Adaptive(max_error_rate=0.2, window=4, decrease=0.1, min_factor=0.05)
    limiter = RateLimiter(100, per=1.0, algorithm="sliding_window", clock=clock, adaptive=settings)

    @limiter
    async def flaky(fail: bool) -> None:
        if fail:
            raise ConnectionError("reset")

    for fail in (True, False, False, True):  # 50% errors
        with pytest.raises(ConnectionError) if fail else contextlib.nullcontext():
            await flaky(fail)
    assert limiter.rate_factor == pytest.approx(0.1)
    for _ in range(4):
        with pytest.raises(ConnectionError):
            await flaky(True)
    assert limiter.rate_factor == 0.05
    assert limiter.effective_limit == SlidingWindow(5.0, 1.0)
    limiter.record(0.0, ok=True)  # one healthy sample is not a batch
    assert limiter.rate_factor == 0.05


async def test_slot_blocks_take_their_cost_and_feed_adaptive_mode() -> None:
    clock = VirtualClock()
    limiter = RateLimiter(4, burst=4, clock=clock, adaptive=Adaptive(target_latency=0.1, window=2))
    async with limiter.slot(cost=3, key="k"):
        assert limiter.acquire_sync(cost=2, key="k") == 0.25  # 1 token left, 1 more at 4/s
        clock.advance(0.5)  # a slow block
    with limiter.slot(key="j"):
        clock.advance(0.5)
    assert limiter.rate_factor == 0.5
    assert limiter.effective_limit == TokenBucket(2.0, 4.0)
    with pytest.raises(KeyError), limiter.slot(key="j"):
        raise KeyError("a failed block counts as an error sample")
    assert limiter.rate_factor == 0.5  # one sample so far in the next batch


def test_backoff_pauses_admissions_and_cuts_an_adaptive_rate() -> None:
    clock = VirtualClock()
    limiter = RateLimiter(10, burst=10, clock=clock, adaptive=True)
    limiter.backoff(retry_after=2.0)
    assert limiter.rate_factor == 0.5
    assert limiter.acquire_sync() == 2.0  # the pause, then the bucket still has tokens
    assert limiter.acquire_sync() == 0.0
    plain = RateLimiter(10, clock=clock, mode="reject")
    plain.backoff(1.5)
    with pytest.raises(RateLimited) as caught:
        plain.acquire_sync()
    assert caught.value.retry_after == 1.5 and plain.rate_factor == 1.0


# Memory stays bounded -------------------------------------------------------------------------------------------


def test_idle_keys_expire_once_their_state_is_fresh_again() -> None:
    clock = VirtualClock()
    backend = MemoryBackend(sweep_interval=0.1)
    limiter = RateLimiter(1, burst=2, key="user", backend=backend, clock=clock)

    @limiter
    def call(user: int) -> int:
        return user

    for user in range(1000):
        call(user)  # each bucket: 1 token left, full again at t=1.0
    assert len(backend) == 1000
    clock.advance(0.5)
    call(0)  # a sweep runs, but every bucket is still refilling; user 0's is now full at t=2.0
    assert len(backend) == 1000
    clock.advance(1.0)
    call(5000)
    assert len(backend) == 2  # users 1-999 were fresh again and dropped; user 0 and the new one remain


def test_a_full_backend_evicts_the_least_recently_used_key() -> None:
    clock = VirtualClock()
    backend = MemoryBackend(max_keys=3)
    limiter = RateLimiter(1, burst=1, mode="reject", backend=backend, clock=clock)
    for key in ("a", "b", "c", "a", "d"):
        with contextlib.suppress(RateLimited):
            limiter.acquire_sync(key=key)
    assert len(backend) == 3
    limiter.acquire_sync(key="b")  # evicted, so it starts afresh (more lenient, never stricter)
    with pytest.raises(RateLimited):
        limiter.acquire_sync(key="a")


# Telemetry ------------------------------------------------------------------------------------------------------


def test_decisions_are_counted_and_waits_and_refusals_land_on_the_current_span(capture: Capture) -> None:
    clock = VirtualClock()
    limiter = RateLimiter(1, burst=1, name="arxiv", max_wait=5, clock=clock, key="user_id")

    @rfobs.task("researcher", "search")
    @limiter
    def search(user_id: str) -> str:
        return "found"

    assert search("u-1") == "found"  # allowed
    assert search("u-1") == "found"  # delayed 1 s
    limiter.backoff(retry_after=10.0)
    with pytest.raises(RateLimited):
        search("u-2")  # a 10 s pause is over max_wait
    attrs = {"gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": "rfobs",
             "gen_ai.agent.name": "researcher", "openinference.span.kind": "AGENT", "rfobs.agent": "researcher",
             "rfobs.task": "search"}  # fmt: skip
    allowed, delayed, rejected = capture.spans()
    assert allowed == {"name": "researcher.search", "trace_id": 1, "span_id": 1, "parent_id": None,
                       "kind": "INTERNAL", "status": OK, "attributes": attrs, "events": []}  # fmt: skip
    assert delayed["attributes"] == {**attrs, "rfobs.rate_limit.wait_s": 1.0}
    assert delayed["events"] == [
        {
            "name": "rate_limit",
            "attributes": {
                "rfobs.rate_limit.limiter": "arxiv",
                "rfobs.rate_limit.decision": "delayed",
                "rfobs.rate_limit.wait_s": 1.0,
            },
        }
    ]
    assert rejected["status"] == {
        "code": "ERROR",
        "description": "RateLimited: rate limit 'arxiv' exceeded; retry after 10s",
    }
    assert [e["name"] for e in rejected["events"]] == ["rate_limit", "exception"]
    assert rejected["events"][0]["attributes"] == {
        "rfobs.rate_limit.limiter": "arxiv",
        "rfobs.rate_limit.decision": "rejected",
        "rfobs.rate_limit.wait_s": 0.0,
        "rfobs.rate_limit.retry_after_s": 10.0,
    }
    # The key (a user id) never becomes a label.
    assert capture.metric(METRIC) == decisions("arxiv", allowed=1, delayed=1, rejected=1)


async def test_waits_under_one_span_add_up(capture: Capture) -> None:
    clock = VirtualClock()
    limiter = RateLimiter(1, burst=1, name="llm", clock=clock)

    @rfobs.task("researcher", "chat")
    async def chat() -> None:
        for _ in range(3):
            await limiter.acquire()

    await chat()
    (span,) = capture.spans()
    assert span["attributes"]["rfobs.rate_limit.wait_s"] == 2.0
    assert [e["attributes"]["rfobs.rate_limit.wait_s"] for e in span["events"]] == [1.0, 1.0]
    assert capture.metric(METRIC) == decisions("llm", allowed=1, delayed=2)


def test_without_init_nothing_is_emitted_and_nothing_is_carried_over(clean_globals: None) -> None:
    clock = VirtualClock()
    limiter = RateLimiter(1, burst=1, name="offline", clock=clock)
    limiter.acquire_sync()
    assert limiter.acquire_sync() == 1.0
    assert trace.get_current_span().is_recording() is False
    captured = Capture()
    trace.set_tracer_provider(captured.tracer_provider)
    metrics.set_meter_provider(captured.meter_provider)
    try:
        assert captured.metric(METRIC) == []
        clock.advance(1.0)
        limiter.acquire_sync()
        assert captured.metric(METRIC) == decisions("offline", allowed=1)
        assert captured.spans() == []
    finally:
        captured.tracer_provider.shutdown()
        captured.meter_provider.shutdown()


# Decorating -----------------------------------------------------------------------------------------------------


class Client:
    limiter = RateLimiter(1, burst=2, mode="reject", clock=VirtualClock())

    @limiter
    def get(self, path: str) -> str:
        return path

    @classmethod
    @rate_limit(limiter, key="tenant")
    def for_tenant(cls, tenant: str) -> str:
        return tenant

    @staticmethod
    @rate_limit(limiter)
    async def ping() -> str:
        return "pong"


async def test_methods_classmethods_and_staticmethods_share_the_limiter() -> None:
    client = Client()
    assert client.get("/a") == "/a"
    assert Client.for_tenant("t1") == "t1"  # a separate key
    assert await Client.ping() == "pong"
    with pytest.raises(RateLimited):
        client.get("/b")


def test_decorating_keeps_the_signature_and_the_coroutine_nature() -> None:
    async def fetch(url: str, *, retries: int = 1) -> str:
        return url

    def parse(text: str) -> int:
        return len(text)

    limited_fetch = rate_limit(5)(fetch)
    limited_parse = rate_limit(5)(parse)
    assert inspect.iscoroutinefunction(limited_fetch) and not inspect.iscoroutinefunction(limited_parse)
    assert inspect.signature(limited_fetch) == inspect.signature(fetch)
    assert limited_fetch.__name__ == "fetch"


def test_limiters_built_by_the_decorator_are_named_after_the_function(capture: Capture) -> None:
    @rate_limit_api_calls(5)
    def lookup() -> None:
        pass

    @rate_limit_per_user(2)
    def chat(user_id: str) -> None:
        pass

    lookup()
    chat("u")
    chat("u")
    with pytest.raises(RateLimited) as caught:
        chat("u")
    assert caught.value.limiter == "chat"
    assert 59.0 < caught.value.retry_after <= 60.0
    assert capture.metric(METRIC) == [
        *decisions("lookup", allowed=1),
        *decisions("chat", allowed=2, rejected=1),
    ]


def test_copy_makes_a_variant_with_fresh_state() -> None:
    clock = VirtualClock()
    limiter = RateLimiter(1, burst=1, name="a", mode="reject", clock=clock)
    limiter.acquire_sync()
    variant = limiter.copy(name="b")
    assert (variant.name, variant.limit) == ("b", limiter.limit)
    assert variant.acquire_sync() == 0.0
    assert repr(variant) == "RateLimiter('b', TokenBucket(rate=1.0, capacity=1.0), mode='reject')"
    faster = limiter.copy(rate=4, per=2)
    assert (faster.name, faster.limit, faster.clock) == ("a", TokenBucket(rate=2.0, capacity=1.0), clock)
    assert RateLimiter(1).name == RateLimiter(1, name=None).name == "rate_limiter"


# Bad arguments --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RateLimiter(0), r"RateLimiter\(rate=0\): expected a number > 0"),
        (lambda: RateLimiter(-1), r"rate=-1\)"),
        (lambda: RateLimiter(float("nan")), r"rate=nan"),
        (lambda: RateLimiter(10, per=0), r"per=0\): expected seconds > 0"),
        (lambda: RateLimiter(10, burst=0.5), r"burst=0\.5\): expected a number >= 1"),
        (lambda: RateLimiter(10, algorithm="leaky"), r"algorithm='leaky'\): expected"),  # pyright: ignore[reportArgumentType]
        (lambda: RateLimiter(10, mode="queue"), r"mode='queue'\): expected 'wait' or"),  # pyright: ignore[reportArgumentType]
        (lambda: RateLimiter(10, max_wait=-1), r"max_wait=-1\): expected seconds >= 0"),
        (lambda: RateLimiter(10, mode="reject", max_wait=1), r"max_wait applies to mode='wait' only"),
        (lambda: RateLimiter(10, algorithm="sliding_window", burst=5), r"burst applies to algorithm='token_bucket'"),
        (lambda: RateLimiter(0.5, algorithm="sliding_window"), r"at least 1 per window"),
        (lambda: RateLimiter(10, name=""), r"name=''\): expected a non-empty string"),
        (lambda: Adaptive(window=0), r"Adaptive\(window=0\)"),
        (lambda: Adaptive(decrease=1.5), r"Adaptive\(decrease=1\.5\)"),
        (lambda: rate_limit(10, cost=0), r"@rate_limit\(cost=0\): expected a number > 0"),
        (lambda: rate_limit(10, burst=5, cost=6), r"@rate_limit\(cost=6\) on rate limiter 'rate_limiter': .* <= 5"),
        (lambda: RateLimiter(10, brust=5), r"^RateLimiter\(brust=...\): unknown option; did you mean burst=\?"),  # pyright: ignore[reportCallIssue]
        (lambda: RateLimiter(10, clock="system"), r"clock='system'\): expected an rfobs Clock"),  # pyright: ignore[reportArgumentType]
        (lambda: RateLimiter(10, backend={}), r"backend=\{\}\): expected a RateLimitBackend"),  # pyright: ignore[reportArgumentType]
        (lambda: RateLimiter(10, adaptive="yes"), r"adaptive='yes'\): expected True, False or an Adaptive"),  # pyright: ignore[reportArgumentType]
        (lambda: RateLimiter(10, key=3), r"key=3\): expected an argument name, a function"),  # pyright: ignore[reportArgumentType]
        (lambda: MemoryBackend(max_keys=0), r"MemoryBackend\(max_keys=0\): expected an integer >= 1"),
        (lambda: rate_limit(RateLimiter(10), burst=5), r"@rate_limit\(burst=...\): with an existing RateLimiter"),  # pyright: ignore[reportArgumentType]
    ],
)
def test_bad_arguments_raise_config_error_at_construction(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()


def test_a_key_naming_a_missing_argument_fails_at_decoration() -> None:
    def fetch(url: str, *args: Any, retries: int = 0, **kwargs: Any) -> str:
        return url

    decorator = rate_limit(10, key="user_id")
    with pytest.raises(ConfigError) as caught:
        decorator(fetch)
    assert str(caught.value) == (
        "@rate_limit(key='user_id'): test_a_key_naming_a_missing_argument_fails_at_decoration.<locals>.fetch() has "
        "no argument 'user_id' (its arguments: url, retries); name one of them, or pass a function of (args, kwargs)"
    )
    with pytest.raises(ConfigError, match="has no argument 'kwargs'"):
        rate_limit(10, key="kwargs")(fetch)


def test_a_generator_function_cannot_be_rate_limited() -> None:
    def numbers() -> Any:
        yield 1

    with pytest.raises(ConfigError, match="@rate_limit cannot wrap the generator function"):
        rate_limit(10)(numbers)
