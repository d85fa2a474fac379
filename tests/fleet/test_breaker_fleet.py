"""One breaker shared by several processes through a real Redis: opened by one, open in all; probes fleet-wide."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import threading
import time
from collections.abc import Generator
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import pytest
import redis

pytestmark = pytest.mark.timeout(120)

BREAKER: dict[str, Any] = {
    "failure_threshold": 3,
    "reset_timeout": 1.0,
    "half_open_max_calls": 2,
    "success_threshold": 2,
}


def worker(
    conn: Connection, url: str, prefix: str, breaker_options: dict[str, Any], backend_options: dict[str, Any]
) -> None:
    """A fleet process: one breaker named "shared" on Redis, driven by commands from the test."""
    from rfobs.exceptions import CircuitOpen
    from rfobs.fleet import RedisBreakerBackend, RedisStore
    from rfobs.instrument import CircuitBreaker

    store = RedisStore(url, key_prefix=prefix, timeout=2.0)
    breaker = CircuitBreaker("shared", backend=RedisBreakerBackend(store, **backend_options), **breaker_options)

    def call(kind: str, hold: float) -> str:
        def dependency() -> str:
            time.sleep(hold)
            if kind == "fail":
                raise ConnectionError
            return "ok"

        try:
            return breaker.call(dependency)
        except CircuitOpen as refused:
            return f"refused {refused.state}"
        except ConnectionError:
            return "ConnectionError"

    async def acall(hold: float) -> str:
        async def dependency() -> str:
            await asyncio.sleep(hold)
            return "ok"

        try:
            return await breaker.acall(dependency)
        except CircuitOpen as refused:
            return f"refused {refused.state}"

    def burst(start_at: float, callers: int, hold: float, mode: str) -> list[str]:
        time.sleep(max(0.0, start_at - time.time()))
        if mode == "asyncio":

            async def all_tasks() -> list[str]:
                results = await asyncio.gather(*(acall(hold) for _ in range(callers)))
                await store.aclose()
                return results

            return asyncio.run(all_tasks())
        results: list[str] = []
        threads = [threading.Thread(target=lambda: results.append(call("ok", hold))) for _ in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        return results

    conn.send("ready")
    while True:
        command, *args = conn.recv()
        if command == "call":
            conn.send(call(*args))
        elif command == "state":
            conn.send(breaker.state)
        elif command == "burst":
            conn.send(burst(*args))
        else:
            store.close()
            conn.send("bye")
            return


class Fleet:
    """Worker processes (spawned, so nothing is inherited) and the pipes that drive them."""

    def __init__(self, url: str, prefix: str, breaker: dict[str, Any], backend: dict[str, Any] | None = None) -> None:
        self._args = (url, prefix, breaker, backend or {})
        self._context = multiprocessing.get_context("spawn")
        self.processes: list[BaseProcess] = []
        self.pipes: list[Connection] = []

    def start(self) -> int:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(target=worker, args=(theirs, *self._args), daemon=True)
        process.start()
        self.processes.append(process)
        self.pipes.append(ours)
        assert self.receive(len(self.pipes) - 1, 60) == "ready"
        return len(self.pipes) - 1

    def send(self, index: int, *command: Any) -> None:
        self.pipes[index].send(command)

    def receive(self, index: int, timeout: float = 20) -> Any:
        if not self.pipes[index].poll(timeout):
            raise AssertionError(f"worker {index} did not answer within {timeout}s")
        return self.pipes[index].recv()

    def ask(self, index: int, *command: Any) -> Any:
        self.send(index, *command)
        return self.receive(index)

    def states(self) -> list[str]:
        return [self.ask(i, "state") for i, process in enumerate(self.processes) if process.is_alive()]

    def stop(self) -> None:
        for index, process in enumerate(self.processes):
            if process.is_alive():
                with contextlib.suppress(AssertionError, OSError):
                    self.ask(index, "stop")
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)


@pytest.fixture
def fleet_factory(redis_url: str, key_prefix: str) -> Generator[Any]:
    fleets: list[Fleet] = []

    def make(breaker: dict[str, Any], backend: dict[str, Any] | None = None) -> Fleet:
        fleet = Fleet(redis_url, key_prefix, breaker, backend)
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop()


def test_three_processes_share_one_breaker_open_probes_and_close(fleet_factory: Any) -> None:
    fleet: Fleet = fleet_factory(BREAKER)
    for _ in range(3):
        fleet.start()
    # Failures in one worker open the breaker in all of them, at their next call.
    assert [fleet.ask(0, "call", "fail", 0.0) for _ in range(3)] == ["ConnectionError"] * 3
    assert fleet.states() == ["open"] * 3
    assert [fleet.ask(i, "call", "ok", 0.0) for i in (1, 2)] == ["refused open"] * 2
    # A process started while the breaker is open sees it open, and its start resets nothing.
    late = fleet.start()
    assert (fleet.ask(late, "state"), fleet.ask(late, "call", "ok", 0.0)) == ("open", "refused open")
    assert fleet.ask(late, "stop") == "bye"
    time.sleep(1.05)  # the reset timeout passes
    # 24 callers at once, in 3 processes (threads in two, asyncio tasks in the third): exactly 2 probes run.
    start_at = time.time() + 0.5
    for index, mode in enumerate(("threads", "threads", "asyncio")):
        fleet.send(index, "burst", start_at, 8, 1.5, mode)
    results = [outcome for index in range(3) for outcome in fleet.receive(index, 30)]
    assert sorted(results) == ["ok"] * 2 + ["refused half_open"] * 22
    # The two probe successes closed it (success_threshold=2), and every worker sees it closed.
    assert fleet.states() == ["closed"] * 3
    assert [fleet.ask(i, "call", "ok", 0.0) for i in range(3)] == ["ok"] * 3


def test_a_crashed_workers_probe_frees_its_slot_when_its_lease_expires(
    fleet_factory: Any, redis_client: redis.Redis, key_prefix: str
) -> None:
    fleet: Fleet = fleet_factory(
        {"failure_threshold": 1, "reset_timeout": 0.3, "half_open_max_calls": 1}, {"probe_lease": 1.0}
    )
    crashing, survivor = fleet.start(), fleet.start()
    assert fleet.ask(crashing, "call", "fail", 0.0) == "ConnectionError"
    time.sleep(0.35)
    fleet.send(crashing, "call", "ok", 60.0)  # the probe hangs
    probes = f"{key_prefix}:cb:{{shared}}:probes"
    deadline = time.monotonic() + 10
    while redis_client.zcard(probes) != 1:
        assert time.monotonic() < deadline, "the probe was never admitted"
        time.sleep(0.01)
    admitted_at = time.monotonic()
    assert fleet.ask(survivor, "call", "ok", 0.0) == "refused half_open"
    fleet.processes[crashing].kill()
    fleet.processes[crashing].join(5)
    within_lease = fleet.ask(survivor, "call", "ok", 0.0)
    if time.monotonic() - admitted_at < 0.9:  # (a slow machine may already be past the lease)
        assert within_lease == "refused half_open"  # the dead worker's lease still holds the slot
    time.sleep(max(0.0, admitted_at + 1.1 - time.monotonic()))
    assert fleet.ask(survivor, "call", "ok", 0.0) == "ok"
    assert fleet.ask(survivor, "state") == "closed"
