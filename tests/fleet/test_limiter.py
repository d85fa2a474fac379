"""The Redis rate-limit backend against a real redis-server: decisions, keys, scripts, faults and telemetry."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import time
from typing import Any, cast

import pytest
import redis
from redis.crc import key_slot

from rfobs import _state
from rfobs.exceptions import RateLimited
from rfobs.fleet import RedisRateLimitBackend, RedisStore
from rfobs.instrument._clock import SystemClock
from rfobs.instrument.ratelimit import RateLimiter, rate_limit_per_user
from rfobs.testing import Capture
from tests.e2e.redis_server import redis_server
from tests.e2e.servers import free_port
from tests.instrument.test_ratelimit import hammer_for, windows_over

pytestmark = pytest.mark.timeout(60)
METRIC = "researchflow_agents.rate_limit_requests"


def command_calls(client: redis.Redis, command: str) -> int:
    stats: dict[str, Any] = client.info("commandstats")  # pyright: ignore[reportUnknownMemberType]
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def keys_like(client: redis.Redis, pattern: str) -> list[str]:
    """The keys matching `pattern`, sorted."""
    return sorted(cast("list[str]", list(client.scan_iter(pattern))))  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]


# Decisions -----------------------------------------------------------------------------------------------------------


def test_gcra_admits_the_burst_then_answers_relative_waits(store: RedisStore, client: redis.Redis) -> None:
    limiter = RateLimiter(10, burst=3, name="gcra", mode="reject", backend=RedisRateLimitBackend(store))
    for _ in range(3):
        assert limiter.acquire_sync() == 0.0
    with pytest.raises(RateLimited) as caught:
        limiter.acquire_sync()
    assert 0.08 < caught.value.retry_after <= 0.1  # one token is 0.1 s away, less the time since the burst
    key = store.key("rl:tb", "gcra")
    assert key.startswith(f"{store.key_prefix}:rl:tb:") and "gcra" in key
    assert 0 < client.pttl(key) <= 301  # idle again once the three tokens are back


def test_one_round_trip_per_decision(store: RedisStore, client: redis.Redis) -> None:
    backend = RedisRateLimitBackend(store)
    bucket = RateLimiter(1000, name="rt.bucket", mode="reject", backend=backend)
    window = RateLimiter(1000, algorithm="sliding_window", name="rt.window", mode="reject", backend=backend)
    bucket.acquire_sync()
    window.acquire_sync()  # scripts loaded
    before = {c: command_calls(client, c) for c in ("evalsha", "eval", "script|load")}
    for _ in range(25):
        bucket.acquire_sync()
        window.acquire_sync()
    after = {c: command_calls(client, c) for c in before}
    assert {c: after[c] - before[c] for c in before} == {"evalsha": 50, "eval": 0, "script|load": 0}


def test_a_script_flush_mid_run_reloads_the_script_and_keeps_deciding(
    store: RedisStore, client: redis.Redis, capture: Capture
) -> None:
    limiter = RateLimiter(100, name="flushed", mode="reject", backend=RedisRateLimitBackend(store))
    assert limiter.acquire_sync() == 0.0
    client.script_flush()
    assert limiter.acquire_sync() == 0.0
    assert client.script_exists(*(s.sha for s in _scripts())) == [True, False, False]
    assert capture.metric(METRIC) == [
        {"attributes": {"limiter": "flushed", "decision": "allowed"}, "value": 2},
        {"attributes": {"limiter": "flushed", "decision": "rejected"}, "value": 0},
    ]


def _scripts() -> list[Any]:
    from rfobs.fleet._limiter_scripts import GCRA, GCRA_REFUND, SLIDING_WINDOW

    return [GCRA, GCRA_REFUND, SLIDING_WINDOW]


def test_cost_weighted_tokens_per_minute(store: RedisStore) -> None:
    tokens = RateLimiter(
        6000, per=60, burst=1000, name="llm.tokens", mode="reject", backend=RedisRateLimitBackend(store)
    )
    assert tokens.acquire_sync(cost=600) == 0.0
    assert tokens.acquire_sync(cost=400) == 0.0
    with pytest.raises(RateLimited) as caught:
        tokens.acquire_sync(cost=300)  # 300 tokens at 100/s
    assert 2.9 < caught.value.retry_after <= 3.0


def test_per_key_limits_follow_the_process_default_backend(store: RedisStore, client: redis.Redis) -> None:
    @rate_limit_per_user(2)  # decorated before init(): the default backend is found per call
    def answer(question: str, user_id: str) -> str:
        return f"{user_id}: {question}"

    _state.activate(_state.ActiveState(limiter_backend=RedisRateLimitBackend(store)))
    try:
        assert [answer("q", "alice"), answer("q", user_id="alice")] == ["alice: q", "alice: q"]
        with pytest.raises(RateLimited):
            answer("q", "alice")
        assert answer("q", "bob") == "bob: q"
        assert client.zcard(store.key("rl:sw", "answer", "alice")) == 2
        assert client.zcard(store.key("rl:sw", "answer", "bob")) == 1
    finally:
        _state.deactivate()
    assert answer("q", "alice") == "alice: q"  # back in memory: a budget of its own


def test_adaptive_mode_sends_the_lowered_limit(store: RedisStore) -> None:
    limiter = RateLimiter(
        10, burst=1, name="adaptive", mode="reject", adaptive=True, backend=RedisRateLimitBackend(store)
    )
    limiter.backoff()  # halves the rate: 5/s
    assert limiter.acquire_sync() == 0.0
    with pytest.raises(RateLimited) as caught:
        limiter.acquire_sync()
    assert 0.18 < caught.value.retry_after <= 0.2


async def test_gcra_waiters_go_in_arrival_order_after_one_sleep_each(store: RedisStore) -> None:
    class CountingClock(SystemClock):
        sleeps = 0

        async def asleep(self, seconds: float) -> None:
            CountingClock.sleeps += 1
            await super().asleep(seconds)

    limiter = RateLimiter(20, burst=1, name="fifo", clock=CountingClock(), backend=RedisRateLimitBackend(store))
    order: list[int] = []
    waits: list[float] = []

    async def waiter(i: int) -> None:
        waits.append(await limiter.acquire())
        order.append(i)

    tasks: list[asyncio.Task[None]] = []
    for i in range(8):
        tasks.append(asyncio.create_task(waiter(i)))
        await asyncio.sleep(0.01)  # arrivals 10 ms apart, slots 50 ms apart
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    await store.aclose()
    assert order == list(range(8))
    assert CountingClock.sleeps == 7  # one sleep per delayed waiter: no polling
    steps = [b - a for a, b in itertools.pairwise(waits)]
    assert all(0.035 < step < 0.045 for step in steps[1:]), steps  # 50 ms per slot, 10 ms later arrival


async def test_a_cancelled_waiter_gives_its_reservation_back(store: RedisStore) -> None:
    limiter = RateLimiter(10, burst=1, name="refund", backend=RedisRateLimitBackend(store))
    assert await limiter.acquire() == 0.0
    waiting = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.02)  # it reserved the slot 0.1 s after the first and sleeps
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # The reservation is back: the next slot is the cancelled one's (< 0.08 s away), not the one after it (~0.18).
    assert await limiter.acquire() < 0.085
    await store.aclose()


def test_keys_expire_when_idle(store: RedisStore, client: redis.Redis) -> None:
    backend = RedisRateLimitBackend(store)
    RateLimiter(100, burst=1, name="idle.bucket", backend=backend).acquire_sync()
    RateLimiter(5, per=0.2, algorithm="sliding_window", name="idle.window", backend=backend).acquire_sync()
    keys = keys_like(client, f"{store.key_prefix}:*")
    window = store.key("rl:sw", "idle.window")
    assert keys == sorted([store.key("rl:tb", "idle.bucket"), window, window + ":m"])
    assert all(client.pttl(key) > 0 for key in keys)
    time.sleep(0.6)  # the window (0.2 s) plus the margin (the store's 0.25 s timeout)
    assert client.exists(*keys) == 0


def test_an_algorithm_change_under_the_same_name_keeps_deciding_on_redis(
    store: RedisStore, client: redis.Redis, capture: Capture
) -> None:
    # A rolling deploy: old workers run a sliding window, new ones a token bucket of the same name (and back).
    # Each algorithm has keys of its own, so neither meets the other's type (WRONGTYPE) and nothing falls back.
    backend = RedisRateLimitBackend(store, on_failure="fail_closed")
    for name, sliding_first in (("deploy.a", True), ("deploy.b", False)):
        window = RateLimiter(2, per=10, algorithm="sliding_window", name=name, mode="reject", backend=backend)
        bucket = RateLimiter(2, per=10, burst=2, name=name, mode="reject", backend=backend)
        old, new = (window, bucket) if sliding_first else (bucket, window)
        assert [old.acquire_sync(), new.acquire_sync(), new.acquire_sync(), old.acquire_sync()] == [0.0] * 4
        for limiter in (old, new):
            with pytest.raises(RateLimited) as caught:
                limiter.acquire_sync()
            assert 4.5 < caught.value.retry_after <= 10.5  # the limit's own wait, not the store's retry_after (1 s)
    assert keys_like(client, f"{store.key_prefix}:*") == sorted(
        [
            *(store.key("rl:sw", name) for name in ("deploy.a", "deploy.b")),
            *(store.key("rl:sw", name) + ":m" for name in ("deploy.a", "deploy.b")),
            *(store.key("rl:tb", name) for name in ("deploy.a", "deploy.b")),
        ]
    )
    assert sorted(capture.metric(METRIC), key=lambda p: (p["attributes"]["limiter"], p["attributes"]["decision"])) == [
        {"attributes": {"limiter": name, "decision": decision}, "value": value}
        for name in ("deploy.a", "deploy.b")
        for decision, value in (("allowed", 4), ("rejected", 2))
    ]


def test_a_sliding_window_keeps_its_two_keys_in_one_cluster_slot(store: RedisStore, client: redis.Redis) -> None:
    limiter = RateLimiter(5, algorithm="sliding_window", name="slot", backend=RedisRateLimitBackend(store))
    for user in ("alice", "b}ob", "x" * 300):  # plain, a brace (hashed), too long (hashed)
        limiter.acquire_sync(key=user)
    keys = keys_like(client, f"{store.key_prefix}:rl:sw:*")
    assert len(keys) == 6
    for key in keys:
        if not key.endswith(":m"):
            assert key + ":m" in keys
            assert key_slot(key.encode()) == key_slot((key + ":m").encode())


# Sliding window bookkeeping -----------------------------------------------------------------------------------------


def _window_state(client: redis.Redis, key: str) -> tuple[float | None, float | None, int, int]:
    """The sum of the costs in the window's sorted set, the `total` of its hash, and both keys' PTTL, atomically."""
    pipe: Any = client.pipeline(transaction=True)  # pyright: ignore[reportUnknownMemberType]
    pipe.zrange(key, 0, -1)
    pipe.hget(key + ":m", "total")
    pipe.pttl(key)
    pipe.pttl(key + ":m")
    members, total, zset_ttl, hash_ttl = pipe.execute()
    costs = sum(float(member.rpartition(":")[2]) for member in members) if members else None
    return costs, None if total is None else float(total), zset_ttl, hash_ttl


def test_an_expired_window_forgets_its_total(store: RedisStore, client: redis.Redis) -> None:
    # The review's reproduction: once the sorted set expired, its hash still said total=4, so an empty window
    # refused a cost of 7 and told a cost of 10 to wait.
    limiter = RateLimiter(
        10, per=0.5, algorithm="sliding_window", name="stale", mode="reject", backend=RedisRateLimitBackend(store)
    )
    window = 0.5 + store.timeout  # an admission counts for the window plus the store's timeout: 0.75 s
    key = store.key("rl:sw", "stale")
    start = time.monotonic()

    def at(offset: float) -> None:
        time.sleep(max(0.0, start + offset - time.monotonic()))

    assert limiter.acquire_sync(cost=4) == 0.0
    at(window / 2)
    assert limiter.acquire_sync(cost=4) == 0.0
    at(window + 0.1)  # the first 4 left the window, the second are still in it
    with pytest.raises(RateLimited):
        limiter.acquire_sync(cost=7)
    costs, total, zset_ttl, hash_ttl = _window_state(client, key)
    assert (costs, total) == (4.0, 4.0)
    assert 0 < hash_ttl <= zset_ttl + 1  # the hash never outlives the admissions it counts
    at(window * 1.5 + 0.15)  # the second 4 left too (and the sorted set expired); the 7's call was < 1 window ago
    assert limiter.acquire_sync(cost=7) == 0.0
    assert _window_state(client, key)[:2] == (7.0, 7.0)


def test_random_costs_keep_the_total_equal_to_the_window(store: RedisStore, client: redis.Redis) -> None:
    # Costs that are not 1 and gaps around the window's length: after every decision the hash's total is the sum
    # of the costs still in the sorted set, and the hash expires no later than the set.
    rng = random.Random(14)
    limiter = RateLimiter(
        10, per=0.1, algorithm="sliding_window", name="random", mode="reject", backend=RedisRateLimitBackend(store)
    )
    window = 0.1 + store.timeout
    key = store.key("rl:sw", "random")
    admitted = refused = 0
    for _ in range(60):
        cost = rng.choice([0.5, 1.5, 2.25, 3, 4, 6.75, 10])
        try:
            limiter.acquire_sync(cost=cost)
            admitted += 1
        except RateLimited:
            refused += 1
        costs, total, zset_ttl, hash_ttl = _window_state(client, key)
        if costs is None:
            assert total is None  # nothing in the window: no count left behind either
        else:
            assert total == pytest.approx(costs, abs=1e-9)
            assert zset_ttl > 0 and 0 < hash_ttl <= zset_ttl + 1
            assert costs <= 10
        time.sleep(rng.uniform(0.0, window * 0.8))
    assert admitted > 10 and refused > 10


# Exactness ----------------------------------------------------------------------------------------------------------


async def test_a_redis_sliding_window_never_holds_more_than_its_limit_where_acquire_returns(store: RedisStore) -> None:
    # The test against Redis: 50 tasks for 3 s on 100/s, each admission timed when acquire() returns.
    limiter = RateLimiter(100, per=1.0, algorithm="sliding_window", name="exact", backend=RedisRateLimitBackend(store))
    admitted = await hammer_for(3.0, limiter.acquire)
    await store.aclose()
    assert windows_over(admitted, 1.0, 100) == []
    assert windows_over([-t for t in admitted], 1.0, 100) == []
    # A window is 1 s plus the 0.25 s timeout: 100 at once, then 100 per 1.25 s.
    assert len(admitted) >= 300


# Faults -------------------------------------------------------------------------------------------------------------


def _dead_store(**options: Any) -> RedisStore:
    return RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.05, **options)


def test_fail_open_admits_counts_and_marks_the_span(capture: Capture) -> None:
    from opentelemetry import trace

    limiter = RateLimiter(1, burst=1, name="open", mode="reject", backend=RedisRateLimitBackend(_dead_store()))
    with trace.get_tracer("t").start_as_current_span("call"):
        assert [limiter.acquire_sync() for _ in range(3)] == [0.0, 0.0, 0.0]

    def fallback(reason: str) -> dict[str, Any]:
        attributes = {"rfobs.rate_limit.limiter": "open", "rfobs.rate_limit.policy": "fail_open"}
        return {"name": "rate_limit.fallback", "attributes": {**attributes, "rfobs.rate_limit.reason": reason}}

    # The store's own guard opens on the first failure (its events are the store's); the calls after it never
    # reach the network.
    events = [e for e in capture.spans()[0]["events"] if e["name"].startswith("rate_limit")]
    assert events == [fallback("connection"), fallback("guard_open"), fallback("guard_open")]
    assert sorted(capture.metric(METRIC), key=lambda p: p["attributes"]["decision"]) == [
        {"attributes": {"limiter": "open", "decision": "allowed"}, "value": 3},
        {"attributes": {"limiter": "open", "decision": "fallback"}, "value": 3},
        {"attributes": {"limiter": "open", "decision": "rejected"}, "value": 0},
    ]


def test_fail_closed_refuses_with_the_store_retry_after(capture: Capture) -> None:
    backend = RedisRateLimitBackend(_dead_store(retry_after=2.0), on_failure="fail_closed")
    limiter = RateLimiter(100, name="closed", backend=backend)
    with pytest.raises(RateLimited) as caught:
        limiter.acquire_sync()
    assert caught.value.retry_after == 2.0
    assert sorted(capture.metric(METRIC), key=lambda p: p["attributes"]["decision"]) == [
        {"attributes": {"limiter": "closed", "decision": "fallback"}, "value": 1},
        {"attributes": {"limiter": "closed", "decision": "rejected"}, "value": 1},
    ]


async def test_local_applies_the_local_share_in_process() -> None:
    backend = RedisRateLimitBackend(_dead_store(), on_failure="local", local_share=0.5)
    limiter = RateLimiter(10, burst=1, name="local", mode="reject", backend=backend)
    assert await limiter.acquire() == 0.0
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire()
    assert 0.18 < caught.value.retry_after <= 0.2  # 5/s: half of the fleet's 10/s


def test_a_redis_stopped_mid_run_costs_one_timeout_then_nearly_nothing(capture: Capture) -> None:
    with redis_server() as handle:
        store = RedisStore(handle.url, timeout=0.1, retry_after=30.0)
        limiter = RateLimiter(1000, name="stopped", backend=RedisRateLimitBackend(store, on_failure="fail_open"))
        assert limiter.acquire_sync() == 0.0
        os.kill(handle.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=handle.port, socket_connect_timeout=0.1).ping()  # pyright: ignore[reportUnknownMemberType]
            except redis.ConnectionError:
                break
            time.sleep(0.05)
        durations: list[float] = []
        for _ in range(200):
            start = time.perf_counter()
            assert limiter.acquire_sync() == 0.0
            durations.append(time.perf_counter() - start)
        store.close()
    assert durations[0] < 0.1 + 0.05  # at most the client timeout
    assert sum(durations[1:]) < 0.05  # the store's guard answers without the network
    fallbacks = [p for p in capture.metric(METRIC) if p["attributes"]["decision"] == "fallback"]
    assert fallbacks == [{"attributes": {"limiter": "stopped", "decision": "fallback"}, "value": 200}]
