"""Automatic pipelining: concurrent calls share round trips, each still its own script with its own reply.

Round trips are read from Redis itself: `total_reads_processed` (INFO stats) counts the reads the server made from
its clients' sockets, so calls that arrive in one write count once. Each test that counts uses its own Redis.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from rfobs.fleet import RedisStore, Script, StoreUnavailable
from tests.e2e.redis_server import DelayProxy, RedisHandle, redis_server

pytestmark = pytest.mark.timeout(60)

ECHO = Script("echo", "return ARGV[1]")
HGET = Script("hget", "return redis.call('HGET', KEYS[1], 'x')")
OWN_READS = 2
THREADS = 16
CALLS = 50  # per thread or task


@pytest.fixture
def own_redis() -> Iterator[RedisHandle]:
    with redis_server() as handle:
        yield handle


class ServerCounts:
    """EVALSHA calls and socket reads Redis made, from INFO (its own view of the traffic).

    Each look reads two INFO commands, counted in the second look's figures: `OWN_READS` to take off a difference.
    """

    def __init__(self, url: str) -> None:
        self._client: Any = redis.Redis.from_url(url)  # pyright: ignore[reportUnknownMemberType]

    def __call__(self) -> tuple[int, int]:
        commands: dict[str, Any] = self._client.info("commandstats")
        stats: dict[str, Any] = self._client.info("stats")
        return int(commands.get("cmdstat_evalsha", {}).get("calls", 0)), int(stats["total_reads_processed"])


def in_threads(work: Callable[[int], None], count: int = THREADS) -> None:
    threads = [threading.Thread(target=work, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)


def test_threads_share_round_trips_and_each_gets_its_own_reply(own_redis: RedisHandle) -> None:
    store = RedisStore(own_redis.url, timeout=1.0)
    store.run(ECHO, [], ["warm"])  # loads the script
    counts = ServerCounts(own_redis.url)
    wrong: list[tuple[str, object]] = []
    evalsha_before, reads_before = counts()

    def work(index: int) -> None:
        for call in range(CALLS):
            expected = f"{index}-{call}"
            reply = store.run(ECHO, [], [expected])
            if reply != expected.encode():
                wrong.append((expected, reply))

    in_threads(work)
    evalsha_after, reads_after = counts()
    assert wrong == []
    assert evalsha_after - evalsha_before == THREADS * CALLS  # one script per call, none merged or repeated
    reads = reads_after - reads_before - OWN_READS
    assert reads < THREADS * CALLS * 0.8, f"{reads} reads for {THREADS * CALLS} calls: no pipelining"
    store.close()


def test_one_caller_sends_each_call_alone(own_redis: RedisHandle) -> None:
    store = RedisStore(own_redis.url, timeout=1.0)
    store.run(ECHO, [], ["warm"])
    counts = ServerCounts(own_redis.url)
    evalsha_before, reads_before = counts()
    for call in range(CALLS):
        assert store.run(ECHO, [], [str(call)]) == str(call).encode()
    evalsha_after, reads_after = counts()
    assert (evalsha_after - evalsha_before, reads_after - reads_before - OWN_READS) == (CALLS, CALLS)
    store.close()


def test_tasks_of_one_loop_share_round_trips(own_redis: RedisHandle) -> None:
    store = RedisStore(own_redis.url, timeout=1.0)
    counts = ServerCounts(own_redis.url)

    async def main() -> tuple[list[Any], int, int]:
        await store.arun(ECHO, [], ["warm"])
        evalsha_before, reads_before = counts()
        replies = await asyncio.gather(*(store.arun(ECHO, [], [str(n)]) for n in range(THREADS * CALLS)))
        evalsha_after, reads_after = counts()
        return replies, evalsha_after - evalsha_before, reads_after - reads_before - OWN_READS

    replies, evalsha, reads = asyncio.run(main())
    assert replies == [str(n).encode() for n in range(THREADS * CALLS)]
    assert evalsha == THREADS * CALLS
    assert reads < THREADS * CALLS / 10, f"{reads} reads for {THREADS * CALLS} calls at once"


def test_a_script_flushed_mid_run_is_loaded_again_for_the_whole_batch(store: RedisStore, client: redis.Redis) -> None:
    failures: list[BaseException] = []
    flushed = threading.Event()

    def work(index: int) -> None:
        for call in range(CALLS):
            if index == 0 and call == CALLS // 2:
                client.script_flush()
                flushed.set()
            try:
                assert store.run(ECHO, [], [f"{index}-{call}"]) == f"{index}-{call}".encode()
            except BaseException as error:
                failures.append(error)

    in_threads(work)
    assert flushed.is_set()
    assert failures == []
    assert store.guard.state == "closed"


def test_one_calls_error_in_a_batch_leaves_the_others_their_replies(
    store: RedisStore, client: redis.Redis, prefix: str
) -> None:
    key = f"{prefix}:plain"
    client.set(key, "a string, not a hash", px=60_000)
    reasons: list[str] = []
    wrong: list[object] = []

    def work(index: int) -> None:
        for call in range(CALLS):
            if index % 4 == 0:
                try:
                    store.run(HGET, [key], [])
                except StoreUnavailable as error:
                    reasons.append(error.reason)
            elif (reply := store.run(ECHO, [], [f"{index}-{call}"])) != f"{index}-{call}".encode():
                wrong.append(reply)

    in_threads(work)
    assert wrong == []
    assert reasons == ["error"] * (CALLS * THREADS // 4)
    assert store.guard.state == "closed"  # a script's own error is not Redis failing


def test_tasks_cancelled_while_queued_leave_the_rest_served(store: RedisStore) -> None:
    async def main() -> tuple[list[Any], Any]:
        tasks = [asyncio.create_task(store.arun(ECHO, [], [str(n)])) for n in range(200)]
        await asyncio.sleep(0)  # the first is on the wire, the others queued
        for task in tasks[1::3]:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return results, await store.arun(ECHO, [], ["after"])

    results, after = asyncio.run(main())
    served = [result for index, result in enumerate(results) if index % 3 != 1]
    assert served == [str(n).encode() for n in range(200) if n % 3 != 1]
    assert all(isinstance(result, asyncio.CancelledError) for result in results[1::3])
    assert after == b"after"


def test_calls_queued_behind_a_batch_redis_cannot_serve_fail_with_it_without_waiting_again(
    redis_handle: RedisHandle,
) -> None:
    with DelayProxy(redis_handle.port, delay=0.0) as proxy:
        store = RedisStore(proxy.url("redis"), timeout=0.5, connect_timeout=0.5, retry_after=30)
        store.run(ECHO, [], ["warm"])
        proxy.delay = 3.0  # every reply far past the timeout
        took: list[float] = []
        reasons: list[str] = []
        lock = threading.Lock()

        def work(index: int) -> None:
            began = time.monotonic()
            try:
                store.run(ECHO, [], [str(index)])
            except StoreUnavailable as error:
                with lock:
                    reasons.append(error.reason)
            with lock:
                took.append(time.monotonic() - began)

        in_threads(work)
        assert len(reasons) == THREADS  # every call failed, none hung
        assert set(reasons) <= {"timeout", "guard_open"}, reasons
        # The batch on the wire waits the timeout once; the calls queued behind it fail with it, not after another
        # (which would take them to 1.0 s or more).
        assert max(took) < 0.5 + 0.4, sorted(took)
        assert store.guard.state == "open"
        store.close()
