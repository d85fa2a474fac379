# pyright: strict
"""Faults of a real Redis: killed by PID and restarted on the same port, `SCRIPT FLUSH`, slow replies (through
`DelayProxy`), and a full Redis (`maxmemory` with `noeviction`); what the store and each fault policy do."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from redis.exceptions import OutOfMemoryError

from rfobs.exceptions import CircuitOpen, RateLimited
from rfobs.fleet import RedisStore, Script, StoreUnavailable
from rfobs.fleet.breaker import RedisBreakerBackend
from rfobs.fleet.limiter import RedisRateLimitBackend
from rfobs.instrument import CircuitBreaker, RateLimiter
from tests.e2e.redis_server import DelayProxy, RedisHandle, redis_server
from tests.e2e.servers import free_port, wait_until
from tests.fleet.conftest import keys_without_ttl

pytestmark = pytest.mark.timeout(60)

# A script that writes, as every fleet script does, with a TTL on what it writes.
PROBE = Script("fault_probe", "local n = redis.call('INCR', KEYS[1]) redis.call('PEXPIRE', KEYS[1], 60000) return n")
TIMEOUT = 0.1  # the store's command and connect timeout in these tests
SLACK = 0.15  # scheduling on a shared 2-core machine


def new_store(url: str, **options: Any) -> RedisStore:
    settings: dict[str, Any] = {"timeout": TIMEOUT, "connect_timeout": TIMEOUT, "retry_after": 0.5}
    return RedisStore(url, key_prefix=f"f{uuid.uuid4().hex[:10]}", **(settings | options))


def timed(call: Callable[[], object]) -> tuple[float, BaseException | None]:
    started = time.perf_counter()
    try:
        call()
    except (StoreUnavailable, RateLimited, CircuitOpen) as error:
        return time.perf_counter() - started, error
    return time.perf_counter() - started, None


def probe(store: RedisStore) -> int:
    return int(store.run(PROBE, [store.key("t", "probe")], []))


def reason(store: RedisStore) -> str:
    with pytest.raises(StoreUnavailable) as caught:
        probe(store)
    return caught.value.reason


def test_redis_killed_costs_one_timeout_then_nothing_and_is_used_again_once_restarted() -> None:
    with redis_server() as first:
        store = new_store(first.url)
        assert [probe(store) for _ in range(3)] == [1, 2, 3]
        first.kill()
        cost, error = timed(lambda: probe(store))
        assert isinstance(error, StoreUnavailable) and error.reason in ("connection", "timeout")
        assert cost < 2 * TIMEOUT + SLACK  # at most a connect and a read timeout, never a hang
        started = time.perf_counter()
        for _ in range(500):
            assert reason(store) == "guard_open"
        assert time.perf_counter() - started < 0.25  # 500 calls answered without the network
        with redis_server(port=first.port) as second:
            assert second.port == first.port
            # The same store, no restart of anything: the guard's probe after retry_after finds Redis back,
            # an empty one (so the count starts again) without the script (loaded again on NOSCRIPT).
            assert wait_until(lambda: probe(store), 5, retry_on=(StoreUnavailable,)) == 1
            assert store.guard.state == "closed" and probe(store) == 2
            assert keys_without_ttl(second.url, store.key_prefix) == []
        store.close()


def test_the_fault_policies_of_the_limiter_with_redis_down() -> None:
    dead = new_store(f"redis://127.0.0.1:{free_port()}/0")
    opened = RateLimiter(1, per=60, burst=1, mode="reject", name="open", backend=RedisRateLimitBackend(dead))
    assert [timed(opened.acquire_sync)[1] for _ in range(5)] == [None] * 5  # fail_open: all admitted (counted)
    closed = RedisRateLimitBackend(dead, on_failure="fail_closed")
    shut = RateLimiter(100, mode="reject", name="closed", backend=closed)
    cost, error = timed(shut.acquire_sync)
    assert isinstance(error, RateLimited) and error.retry_after == pytest.approx(0.5, abs=0.01)
    assert cost < 2 * TIMEOUT + SLACK
    local = RedisRateLimitBackend(dead, on_failure="local", local_share=0.5)
    window = RateLimiter(4, per=60, algorithm="sliding_window", mode="reject", name="local", backend=local)
    outcomes = [timed(window.acquire_sync)[1] for _ in range(6)]
    assert [o is None for o in outcomes] == [True, True, False, False, False, False]  # half of 4 per minute


def test_the_fault_policies_of_the_breaker_with_redis_down() -> None:
    dead = new_store(f"redis://127.0.0.1:{free_port()}/0")

    def fail() -> None:
        raise ConnectionError("the dependency is down")

    local = CircuitBreaker("dep", failure_threshold=2, reset_timeout=30, backend=RedisBreakerBackend(dead))
    for _ in range(2):
        with pytest.raises(ConnectionError):
            local.call(fail)
    assert local.state == "open"  # local: the in-process breaker still protects the dependency
    with pytest.raises(CircuitOpen):
        local.call(lambda: None)
    opened = CircuitBreaker("dep", failure_threshold=1, backend=RedisBreakerBackend(dead, on_failure="fail_open"))
    assert [opened.call(lambda: 7) for _ in range(3)] == [7, 7, 7]
    shut = CircuitBreaker("dep", backend=RedisBreakerBackend(dead, on_failure="fail_closed"))
    cost, error = timed(lambda: shut.call(lambda: None))
    assert isinstance(error, CircuitOpen) and cost < 2 * TIMEOUT + SLACK


def test_a_limiter_keeps_its_limit_across_a_redis_restart_without_restarting_the_process() -> None:
    with redis_server() as first:
        store = new_store(first.url)
        limiter = RateLimiter(2, per=60, burst=2, mode="reject", name="restart", backend=RedisRateLimitBackend(store))
        assert [timed(limiter.acquire_sync)[1] is None for _ in range(3)] == [True, True, False]
        first.kill()
        assert timed(limiter.acquire_sync)[1] is None  # fail_open while Redis is away
        with redis_server(port=first.port) as second:
            time.sleep(store.retry_after + 0.05)
            # Back on Redis (a fresh one: a full bucket again), limiting again.
            assert [timed(limiter.acquire_sync)[1] is None for _ in range(3)] == [True, True, False]
            assert store.guard.state == "closed"
            assert keys_without_ttl(second.url, store.key_prefix) == []
        store.close()


def test_script_flush_mid_run_reloads_the_script_without_a_failure(redis_handle: RedisHandle) -> None:
    store = new_store(redis_handle.url, timeout=0.5)
    client = redis.Redis.from_url(redis_handle.url)  # pyright: ignore[reportUnknownMemberType]
    try:
        assert probe(store) == 1
        assert client.script_exists(PROBE.sha) == [True]
        client.script_flush()
        assert client.script_exists(PROBE.sha) == [False]
        assert probe(store) == 2 and store.guard.state == "closed"
        assert client.script_exists(PROBE.sha) == [True]
    finally:
        client.close()
        store.close()
    assert keys_without_ttl(redis_handle.url, store.key_prefix) == []


def test_slow_redis_costs_a_call_the_timeout_then_the_guard_answers(redis_handle: RedisHandle) -> None:
    with DelayProxy(redis_handle.port, delay=0.0) as proxy:
        store = new_store(proxy.url(), timeout=0.05, retry_after=0.3)
        assert probe(store) == 1
        proxy.delay = 1.0  # every reply a second late: far past the 50 ms timeout
        cost, error = timed(lambda: probe(store))
        assert isinstance(error, StoreUnavailable) and error.reason == "timeout"
        assert cost < 0.05 + SLACK
        cost, error = timed(lambda: probe(store))
        assert isinstance(error, StoreUnavailable) and error.reason == "guard_open" and cost < 0.01
        proxy.delay = 0.0
        # The timed-out connection was dropped; the guard's probe call uses a new one and closes the guard.
        assert wait_until(lambda: probe(store), 5, retry_on=(StoreUnavailable,)) >= 2
        assert store.guard.state == "closed"
        store.close()
    assert keys_without_ttl(redis_handle.url, store.key_prefix) == []


def test_slow_redis_bounds_async_calls_too(redis_handle: RedisHandle) -> None:
    async def scenario() -> tuple[float, str, int]:
        with DelayProxy(redis_handle.port, delay=1.0) as proxy:
            store = new_store(proxy.url(), timeout=0.05, retry_after=0.2)
            key = store.key("t", "probe")
            started = time.perf_counter()
            with pytest.raises(StoreUnavailable) as caught:
                await store.arun(PROBE, [key], [])
            cost = time.perf_counter() - started
            proxy.delay = 0.0
            await asyncio.sleep(0.25)
            value = int(await store.arun(PROBE, [key], []))
            await store.aclose()
            return cost, caught.value.reason, value

    cost, why, value = asyncio.run(scenario())
    assert why in ("timeout", "connection") and cost < 0.05 + TIMEOUT + SLACK
    assert value >= 1


def test_a_full_redis_is_unavailable_oom_and_the_policy_applies() -> None:
    with redis_server(extra_args=("--maxmemory", "1mb", "--maxmemory-policy", "noeviction")) as full:
        client = redis.Redis.from_url(full.url)  # pyright: ignore[reportUnknownMemberType]
        try:
            with pytest.raises(OutOfMemoryError):  # full: (Redis itself uses about 1 MB)
                for index in range(1000):
                    client.set(f"fill:{index}", "x" * 10_000, px=60_000)
        finally:
            client.close()
        store = new_store(full.url, timeout=0.5)
        assert reason(store) == "oom"
        store.guard.reset()
        shut = RateLimiter(
            100, mode="reject", name="full", backend=RedisRateLimitBackend(store, on_failure="fail_closed")
        )
        assert isinstance(timed(shut.acquire_sync)[1], RateLimited)
        store.guard.reset()
        opened = RateLimiter(1, per=60, burst=1, mode="reject", name="full2", backend=RedisRateLimitBackend(store))
        assert [timed(opened.acquire_sync)[1] for _ in range(3)] == [None] * 3
        store.close()
