"""`RedisBreakerBackend` in one process against a real Redis: the scripts mirror `Rules`, probes, keys, scripts."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Generator
from typing import Any

import pytest
import redis

from rfobs.exceptions import CircuitOpen, ConfigError
from rfobs.fleet import RedisBreakerBackend, RedisStore
from rfobs.instrument import CircuitBreaker
from rfobs.instrument._clock import VirtualClock
from rfobs.testing import Capture

pytestmark = pytest.mark.timeout(60)

TRANSITIONS = "researchflow_agents.circuit_breaker_state_transitions"


@pytest.fixture
def store(redis_url: str, key_prefix: str) -> Generator[RedisStore]:
    store = RedisStore(redis_url, key_prefix=key_prefix, timeout=2.0)
    yield store
    store.close()


def run(breaker: CircuitBreaker, error: BaseException | None = None) -> str:
    """One call through `breaker` that raises `error` (or succeeds); what happened."""

    def call() -> str:
        if error is not None:
            raise error
        return "ok"

    try:
        return breaker.call(call)
    except CircuitOpen as refused:
        return f"refused {refused.state}"
    except Exception as raised:
        return type(raised).__name__


def scan(client: redis.Redis, pattern: str) -> list[str]:
    """The keys matching `pattern`, sorted."""
    keys: list[bytes] = list(client.scan_iter(match=pattern))  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
    return sorted(key.decode() for key in keys)


def test_the_scripts_make_the_same_decisions_as_the_memory_rules(store: RedisStore, capture: Capture) -> None:
    options: dict[str, Any] = {
        "failure_threshold": 3,
        "failure_ratio": 0.5,
        "window": 6,
        "minimum_calls": 4,
        "reset_timeout": 0,
        "half_open_max_calls": 1,
        "success_threshold": 2,
        "ignore": KeyError,
    }
    on_redis = CircuitBreaker("mirror", backend=RedisBreakerBackend(store), **options)
    in_memory = CircuitBreaker("mirror-memory", clock=VirtualClock(), **options)
    errors = [None, None, ConnectionError(), KeyError()]
    rng = random.Random(14)
    for step in range(400):
        error = rng.choice(errors)
        assert (run(on_redis, error), on_redis.state) == (run(in_memory, error), in_memory.state), step
    redis_moves = {
        (p["attributes"]["from_state"], p["attributes"]["to_state"]): p["value"]
        for p in capture.metric(TRANSITIONS)
        if p["attributes"]["breaker"] == "mirror"
    }
    memory_moves = {
        (p["attributes"]["from_state"], p["attributes"]["to_state"]): p["value"]
        for p in capture.metric(TRANSITIONS)
        if p["attributes"]["breaker"] == "mirror-memory"
    }
    assert redis_moves == memory_moves
    assert set(redis_moves) == {
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("half_open", "closed"),
    }


def test_the_ratio_window_opens_on_redis_as_in_memory(store: RedisStore) -> None:
    breaker = CircuitBreaker(
        "ratio",
        failure_threshold=None,
        failure_ratio=0.5,
        window=4,
        minimum_calls=4,
        backend=RedisBreakerBackend(store),
    )
    boom = ConnectionError()
    assert [run(breaker, boom) for _ in range(3)] == ["ConnectionError"] * 3
    assert [run(breaker) for _ in range(4)] == ["ok"] * 4
    assert (run(breaker, boom), breaker.state) == ("ConnectionError", "closed")  # [S, S, S, F]: 25%
    assert (run(breaker, boom), breaker.state) == ("ConnectionError", "open")  # [S, S, F, F]: 50%


def test_an_open_breaker_refuses_with_the_time_left_on_the_servers_clock(store: RedisStore) -> None:
    breaker = CircuitBreaker("pause", failure_threshold=1, reset_timeout=10, backend=RedisBreakerBackend(store))
    run(breaker, ConnectionError())
    with pytest.raises(CircuitOpen) as refused:
        breaker.call(lambda: None)
    assert refused.value.state == "open"
    assert 9.0 < refused.value.retry_after <= 10.0


def test_a_new_breaker_writes_nothing_and_sees_the_shared_state(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    first_store = RedisStore(redis_url, key_prefix=key_prefix, timeout=2.0)
    first = CircuitBreaker("kept", failure_threshold=1, reset_timeout=30, backend=RedisBreakerBackend(first_store))
    run(first, ConnectionError())
    key = f"{key_prefix}:cb:{{kept}}"
    before = redis_client.hgetall(key)
    # As a process starting now would: its own store, backend and breaker. Nothing is written, nothing reset.
    late_store = RedisStore(redis_url, key_prefix=key_prefix, timeout=2.0)
    late = CircuitBreaker("kept", failure_threshold=1, reset_timeout=30, backend=RedisBreakerBackend(late_store))
    assert late.state == "open"
    assert run(late) == "refused open"
    assert redis_client.hgetall(key) == before
    # Breakers with other names on the same Redis are not affected (pybreaker#88).
    other = CircuitBreaker("other", failure_threshold=1, backend=RedisBreakerBackend(late_store))
    assert (other.state, run(other)) == ("closed", "ok")
    first_store.close()
    late_store.close()


def test_half_open_admits_exactly_the_probes_configured_and_a_lost_probes_lease_expires(
    store: RedisStore, redis_client: redis.Redis, key_prefix: str
) -> None:
    breaker = CircuitBreaker(
        "probes",
        failure_threshold=1,
        reset_timeout=0,
        half_open_max_calls=2,
        backend=RedisBreakerBackend(store, probe_lease=0.5),
    )
    run(breaker, ConnectionError())
    with contextlib.ExitStack() as held:
        held.enter_context(breaker)  # probe 1, moves open -> half-open
        held.enter_context(breaker)  # probe 2
        assert run(breaker) == "refused half_open"
        assert redis_client.zcard(f"{key_prefix}:cb:{{probes}}:probes") == 2
        # The two probes never finish (their worker hangs or died): their leases run out.
        time.sleep(0.6)
        assert breaker.state == "half_open"
        assert run(breaker) == "ok"  # a new probe gets a slot, and its success closes the breaker
        assert breaker.state == "closed"
    assert breaker.state == "closed"  # the lost probes' late outcomes belong to an older generation: not counted
    pttl = redis_client.pttl(f"{key_prefix}:cb:{{probes}}")
    assert 0 < pttl <= 3600_000


def test_an_expired_probe_finishing_late_still_counts_in_its_generation(store: RedisStore) -> None:
    breaker = CircuitBreaker(
        "late", failure_threshold=1, reset_timeout=0, backend=RedisBreakerBackend(store, probe_lease=0.2)
    )
    run(breaker, ConnectionError())
    with pytest.raises(ConnectionError), breaker:
        time.sleep(0.3)  # past its lease: the slot was freed, but the answer is still news of the dependency
        raise ConnectionError
    assert breaker.state == "open"


def test_keys_expire_when_idle_and_every_key_has_a_ttl(
    store: RedisStore, redis_client: redis.Redis, key_prefix: str
) -> None:
    backend = RedisBreakerBackend(store, idle_ttl=0.4, probe_lease=0.2)
    breaker = CircuitBreaker("idle", failure_threshold=1, reset_timeout=0.1, backend=backend)
    assert run(breaker) == "ok"
    run(breaker, ConnectionError())
    time.sleep(0.15)
    with breaker:  # a probe in flight: both keys exist
        keys = scan(redis_client, f"{key_prefix}:*")
        assert keys == [f"{key_prefix}:cb:{{idle}}", f"{key_prefix}:cb:{{idle}}:probes"]
        assert all(0 < redis_client.pttl(k) <= 500 for k in keys)
    assert breaker.state == "closed"
    time.sleep(0.7)
    assert scan(redis_client, f"{key_prefix}:*") == []
    assert breaker.state == "closed"  # a missing record is a closed breaker


def test_script_flush_mid_run_reloads_the_scripts_and_keeps_the_state(
    store: RedisStore, redis_client: redis.Redis
) -> None:
    breaker = CircuitBreaker("flushed", failure_threshold=2, reset_timeout=30, backend=RedisBreakerBackend(store))
    assert run(breaker, ConnectionError()) == "ConnectionError"
    redis_client.script_flush()
    assert run(breaker, ConnectionError()) == "ConnectionError"
    assert breaker.state == "open"
    redis_client.script_flush()
    assert breaker.state == "open"
    assert run(breaker) == "refused open"


async def test_the_asyncio_path_shares_state_and_bounds_concurrent_probes(store: RedisStore) -> None:
    breaker = CircuitBreaker(
        "async", failure_threshold=2, reset_timeout=0, half_open_max_calls=2, backend=RedisBreakerBackend(store)
    )
    sync_twin = CircuitBreaker("async", failure_threshold=2, backend=RedisBreakerBackend(store))

    async def fail() -> None:
        raise ConnectionError

    for _ in range(2):
        with pytest.raises(ConnectionError):
            await breaker.acall(fail)
    assert sync_twin.state == "open"
    gate, all_refused = asyncio.Event(), asyncio.Event()
    refused: list[str] = []

    async def probe() -> str:
        try:
            async with breaker:
                await gate.wait()
        except CircuitOpen as error:
            refused.append(error.state)
            if len(refused) == 18:
                all_refused.set()
            return f"refused {error.state}"
        return "ok"

    tasks = [asyncio.create_task(probe()) for _ in range(20)]
    await asyncio.wait_for(all_refused.wait(), 10)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert sorted(results) == ["ok"] * 2 + ["refused half_open"] * 18
    assert sync_twin.state == "closed"
    await store.aclose()


def test_bad_backend_arguments_fail_with_a_clear_message(store: RedisStore) -> None:
    with pytest.raises(ConfigError, match=r"RedisBreakerBackend\(on_failure='open'\): expected 'local' or 'fail_open'"):
        RedisBreakerBackend(store, on_failure="open")  # pyright: ignore[reportArgumentType]
    with pytest.raises(ConfigError, match=r"RedisBreakerBackend\(probe_lease=0\)"):
        RedisBreakerBackend(store, probe_lease=0)
    with pytest.raises(
        ConfigError, match=r"RedisBreakerBackend\(store='redis://x'\): expected a rfobs.fleet.RedisStore"
    ):
        RedisBreakerBackend("redis://x")  # pyright: ignore[reportArgumentType]
