"""`RedisStore`: what its guard holds against Redis, and what it does not; secrets; clients per event loop."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import redis

import rfobs
from rfobs.fleet import RedisStore, Script, StoreUnavailable

pytestmark = pytest.mark.timeout(60)

NOW = Script("now", "return redis.call('TIME')[1]")
HGET = Script("hget", "return redis.call('HGET', KEYS[1], 'x')")


def test_a_reply_after_the_callers_deadline_does_not_open_the_guard(store: RedisStore) -> None:
    @rfobs.timeout(0.05)
    def late_then_redis() -> None:
        time.sleep(0.15)  # the caller stops waiting; this worker thread goes on past the deadline
        store.run(NOW, [], [])

    with pytest.raises(rfobs.TimeoutExceeded):
        late_then_redis()
    time.sleep(0.25)  # the abandoned worker has made its Redis call by now
    assert store.guard.state == "closed"
    assert store.run(NOW, [], [])


def test_more_calls_in_flight_than_connections_wait_for_one_instead_of_failing(redis_url: str, prefix: str) -> None:
    store = RedisStore(redis_url, max_connections=2, timeout=0.5, key_prefix=prefix)
    failures: list[str] = []

    def work() -> None:
        for _ in range(100):
            try:
                store.run(NOW, [], [])
            except StoreUnavailable as error:
                failures.append(error.reason)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []
    assert store.guard.state == "closed"
    store.close()


def test_a_scripts_own_error_is_reported_but_not_held_against_redis(
    store: RedisStore, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:plain"
    client.set(key, "a string, not a hash", px=60_000)
    with pytest.raises(StoreUnavailable) as caught:
        store.run(HGET, [key], [])
    assert caught.value.reason == "error"
    assert store.guard.state == "closed"  # other limiters and breakers on this store go on using Redis
    assert store.run(NOW, [], [])


def test_a_password_anywhere_in_the_url_is_never_shown() -> None:
    for url in ("redis://:hunter2@127.0.0.1:1/0", "redis://127.0.0.1:1/0?password=hunter2"):
        store = RedisStore(url, timeout=0.05, connect_timeout=0.05)
        shown = f"{store!r} {store.shown_url} {store.guard.name}"
        assert "hunter2" not in shown, shown
        with pytest.raises(StoreUnavailable) as caught:
            store.run(NOW, [], [])
        assert "hunter2" not in str(caught.value)
    assert RedisStore("redis://127.0.0.1:1/0").guard.name == "rfobs.redis"  # a short, bounded metric label


def test_clients_of_event_loops_that_ended_are_let_go(store: RedisStore) -> None:
    async def once() -> object:
        return await store.arun(NOW, [], [])

    for _ in range(5):
        assert asyncio.run(once())
    held = store._async  # pyright: ignore[reportPrivateUsage]
    assert len(held) <= 1  # only the last loop's client, dropped when the next loop comes


def test_keys_of_a_global_limit_and_of_a_keyed_one_never_collide(store: RedisStore) -> None:
    assert store.key("rl", "a:b") != store.key("rl", "a", "b")
    assert store.key("rl", "arxiv", "user-1").endswith(":rl:{arxiv:'user-1'}")
