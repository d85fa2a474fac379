"""The pipeliners' hand-offs with a sender of the test's own: who sends what, and that nothing is left waiting.

Whatever interrupts the thread or task holding the queue (KeyboardInterrupt, cancellation), the next call must
still be served: a pipeliner whose queue nobody sends stalls every later decision of the process.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from rfobs.fleet._errors import StoreUnavailable, Uncounted
from rfobs.fleet._pipelining import AsyncPipeliner, Call, SyncPipeliner

pytestmark = pytest.mark.timeout(30)


def call(value: str) -> Call:
    return Call(None, [], [value])


class Sender:
    """Replies each call's own argument; the first batch waits for `release` when `hold` is set."""

    def __init__(self, *, hold: bool = False, fail_first: StoreUnavailable | None = None) -> None:
        self.batches: list[list[str]] = []
        self.release = threading.Event()
        self.started = threading.Event()
        self._hold = hold
        self._fail_first = fail_first

    def __call__(self, batch: list[Call]) -> StoreUnavailable | None:
        first = not self.batches
        self.batches.append([str(c.args[0]) for c in batch])
        self.started.set()
        if first and self._hold:
            assert self.release.wait(10)
        if first and self._fail_first is not None:
            for c in batch:
                c.error = self._fail_first
            return self._fail_first
        for c in batch:
            c.reply = c.args[0]
        return None


def queue_behind(pipeliner: SyncPipeliner, sender: Sender, values: list[str]) -> tuple[list[Any], list[Any]]:
    """Run "first" (held on the wire) and then `values` from threads; their replies or errors, in order."""
    replies: list[Any] = [None] * (len(values) + 1)
    errors: list[Any] = [None] * (len(values) + 1)

    def one(index: int, value: str) -> None:
        try:
            replies[index] = pipeliner.run(call(value))
        except BaseException as error:
            errors[index] = error

    first = threading.Thread(target=one, args=(0, "first"))
    first.start()
    assert sender.started.wait(5)
    others = [threading.Thread(target=one, args=(index + 1, value)) for index, value in enumerate(values)]
    for thread in others:
        thread.start()
    deadline = time.monotonic() + 5
    while len(pipeliner._pending) < len(values) and time.monotonic() < deadline:  # pyright: ignore[reportPrivateUsage]
        time.sleep(0.001)
    sender.release.set()
    for thread in (first, *others):
        thread.join(10)
    return replies, errors


def test_the_calls_queued_behind_a_batch_leave_together_when_it_returns() -> None:
    sender = Sender(hold=True)
    pipeliner = SyncPipeliner(sender, wait_limit=5)
    values = [f"v{n}" for n in range(6)]
    replies, errors = queue_behind(pipeliner, sender, values)
    assert errors == [None] * 7
    assert replies == ["first", *values]
    assert sender.batches[0] == ["first"]
    assert sorted(sender.batches[1]) == sorted(values)  # one batch, in whatever order the threads queued
    assert len(sender.batches) == 2


def test_calls_queued_behind_a_failed_batch_fail_with_it_without_being_sent() -> None:
    sender = Sender(hold=True, fail_first=StoreUnavailable("timeout"))
    pipeliner = SyncPipeliner(sender, wait_limit=5)
    _, errors = queue_behind(pipeliner, sender, ["a", "b", "c"])
    assert isinstance(errors[0], StoreUnavailable)
    assert all(isinstance(error, Uncounted) and error.unavailable.reason == "timeout" for error in errors[1:])
    assert sender.batches == [["first"]]
    assert pipeliner.run(call("next")) == "next"  # the wire is free again


def test_a_leader_interrupted_on_the_wire_hands_the_queue_on() -> None:
    calls = 0

    def interrupted_once(batch: list[Call]) -> StoreUnavailable | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyboardInterrupt
        for c in batch:
            c.reply = c.args[0]
        return None

    pipeliner = SyncPipeliner(interrupted_once, wait_limit=5)
    with pytest.raises(KeyboardInterrupt):
        pipeliner.run(call("first"))
    began = time.monotonic()
    assert pipeliner.run(call("next")) == "next"
    assert time.monotonic() - began < 1  # not queued behind a sender that is gone


def test_a_call_queued_behind_a_stuck_batch_gives_up_after_the_wait_limit() -> None:
    sender = Sender(hold=True)
    pipeliner = SyncPipeliner(sender, wait_limit=0.1)
    first = threading.Thread(target=pipeliner.run, args=(call("first"),))
    first.start()
    assert sender.started.wait(5)
    began = time.monotonic()
    with pytest.raises(Uncounted) as caught:
        pipeliner.run(call("late"))
    assert caught.value.unavailable.reason == "timeout"
    assert 0.09 < time.monotonic() - began < 1
    sender.release.set()
    first.join(5)
    assert pipeliner.run(call("after")) == "after"


class AsyncSender:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()

    async def __call__(self, batch: list[Call]) -> StoreUnavailable | None:
        first = not self.batches
        self.batches.append([str(c.args[0]) for c in batch])
        if first:
            await self.release.wait()
        for c in batch:
            c.reply = c.args[0]
        return None


def test_tasks_queued_behind_a_batch_leave_together() -> None:
    async def main() -> tuple[list[Any], list[list[str]]]:
        sender = AsyncSender()
        pipeliner = AsyncPipeliner(sender, wait_limit=5)
        tasks = [asyncio.create_task(pipeliner.run(call(f"v{n}"))) for n in range(10)]
        await asyncio.sleep(0.01)
        sender.release.set()
        return await asyncio.gather(*tasks), sender.batches

    replies, batches = asyncio.run(main())
    assert replies == [f"v{n}" for n in range(10)]
    assert batches == [["v0"], [f"v{n}" for n in range(1, 10)]]


def test_a_flush_task_cancelled_before_it_ran_leaves_the_pipeliner_serving() -> None:
    async def main() -> tuple[list[Any], Any, float]:
        sender = AsyncSender()
        pipeliner = AsyncPipeliner(sender, wait_limit=5)

        async def lead_then_cancel_the_flush() -> Any:
            reply = await pipeliner.run(call("first"))
            for task in list(pipeliner._flushing):  # pyright: ignore[reportPrivateUsage]
                task.cancel()  # as a shutdown sweep of stray tasks would, before the task's first step
            return reply

        leader = asyncio.create_task(lead_then_cancel_the_flush())
        await asyncio.sleep(0.01)
        queued = [asyncio.create_task(pipeliner.run(call(f"q{n}"))) for n in range(3)]
        await asyncio.sleep(0.01)
        sender.release.set()
        await leader
        results = await asyncio.gather(*queued, return_exceptions=True)
        began = time.monotonic()
        after = await pipeliner.run(call("after"))
        return results, after, time.monotonic() - began

    results, after, took = asyncio.run(main())
    assert all(isinstance(result, Uncounted) for result in results), results
    assert after == "after"
    assert took < 1  # not waiting behind a flush that never ran
