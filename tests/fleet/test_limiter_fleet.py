"""Fleet accuracy: one Redis limit shared by worker processes and by threads admits the limit, and no more."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rfobs.fleet import RedisRateLimitBackend, RedisStore
from rfobs.instrument.ratelimit import RateLimiter

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]
SECONDS = 5.0


def worker(url: str, prefix: str, start: float, stop: float, tasks: int, burst: float, max_cost: int) -> float:
    """One worker process: `tasks` asyncio tasks on one 100-units-per-second limit from `start` to `stop`.

    Returns the units admitted with `acquire()` returning inside [start, stop] (wall clock, shared by the host).
    """

    async def main() -> float:
        store = RedisStore(url, key_prefix=prefix, timeout=0.5, connect_timeout=2.0)
        backend = RedisRateLimitBackend(store, on_failure="fail_closed")  # a fallback would fail the test
        limiter = RateLimiter(100, burst=burst, name="fleet", backend=backend)
        admitted = 0.0
        rng = random.Random()
        # Open the pool's connections and load the script first: the test measures the limit, not start-up.
        warm = RateLimiter(10_000, name="warm-up", backend=backend)
        await asyncio.gather(*(warm.acquire() for _ in range(tasks)))

        async def task() -> None:
            nonlocal admitted
            await asyncio.sleep(max(0.0, start - time.time()))
            while time.time() < stop:
                cost = rng.randint(1, max_cost)
                await limiter.acquire(cost)
                if time.time() <= stop:
                    admitted += cost

        await asyncio.gather(*(task() for _ in range(tasks)))
        await store.aclose()
        return admitted

    return asyncio.run(main())


def run_workers(url: str, prefix: str, burst: float, max_cost: int) -> float:
    start = time.time() + 4.0  # time for the interpreters to start on a loaded machine
    stop = start + SECONDS
    code = (
        "import json, sys; from tests.fleet.test_limiter_fleet import worker; "
        "print(json.dumps(worker(*json.loads(sys.argv[1]))))"
    )
    argv = json.dumps([url, prefix, start, stop, 25, burst, max_cost])
    procs = [
        subprocess.Popen([sys.executable, "-c", code, argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    totals: list[float] = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err.decode()[-2000:]
            totals.append(float(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return sum(totals)


def test_four_processes_share_one_100_per_second_limit(redis_url: str, key_prefix: str) -> None:
    admitted = run_workers(redis_url, key_prefix, burst=1, max_cost=1)
    assert 0.95 * 100 * SECONDS <= admitted <= 100 * SECONDS + 1


def test_four_processes_share_one_tokens_per_minute_limit_with_random_costs(redis_url: str, key_prefix: str) -> None:
    # 6000 tokens per minute, calls costing 1 to 50 tokens; the bucket holds one largest call.
    admitted = run_workers(redis_url, key_prefix, burst=50, max_cost=50)
    assert 0.95 * 100 * SECONDS <= admitted <= 100 * SECONDS + 50


def test_eight_threads_share_one_limit(store: RedisStore) -> None:
    limiter = RateLimiter(100, burst=1, name="threads", backend=RedisRateLimitBackend(store, on_failure="fail_closed"))
    start = time.monotonic() + 0.2
    stop = start + 3.0
    counts = [0] * 8

    def run(index: int) -> None:
        time.sleep(start - time.monotonic())
        while time.monotonic() < stop:
            limiter.acquire_sync()
            if time.monotonic() <= stop:
                counts[index] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert 0.95 * 300 <= sum(counts) <= 301
    assert min(counts) > 0  # every thread gets its turn
