"""Automatic pipelining: script calls made while another is on the wire leave together, in one round trip.

A sequential caller is bound by the round trip to Redis, whatever the client does. Concurrent callers need not
be: while one batch of calls is on the wire, the calls that arrive queue, and the moment it returns they leave
together as one pipeline (a "group commit", as ioredis's `enableAutoPipelining` does per event-loop tick). Each
call is still exactly one `EVALSHA` at Redis, so every decision stays one atomic script; a lone caller pays one
lock and sends its call alone, as before.

One `SyncPipeliner` per store serves threads: the caller that finds the wire free sends, and hands the queue to
the first queued caller when its batch returns. One `AsyncPipeliner` per event loop serves tasks: the queue leaves
in a task of its own. A queued call waits at most `wait_limit` for its batch to leave and `wait_limit` for it to
return; when a batch fails because Redis cannot serve, the calls queued behind it fail at once with the same
reason instead of trying again.
"""

from __future__ import annotations

import asyncio
import threading
from _thread import LockType, allocate_lock
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Final

from rfobs.fleet._errors import StoreUnavailable, Uncounted

__all__ = ["AsyncPipeliner", "Call", "SyncPipeliner"]

_UNSET: Final[Any] = object()


class Call:
    """One script call: what to send and, once it came back, its reply or error."""

    __slots__ = ("args", "batch", "error", "future", "keys", "ready", "reply", "script")

    def __init__(self, script: Any, keys: Sequence[str], args: Sequence[str | int | float]) -> None:
        self.script = script
        self.keys = keys
        self.args = args
        self.reply: Any = _UNSET
        self.error: BaseException | None = None
        # A queued thread's signal, held until its call is done or it must send the queue: a bare lock, released
        # once (a tenth of the cost of a threading.Event, which a decision pays twice).
        self.ready: LockType | None = None
        self.batch: list[Call] | None = None  # the queue handed to this call's thread to send
        self.future: asyncio.Future[None] | None = None

    @property
    def done(self) -> bool:
        return self.error is not None or self.reply is not _UNSET

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.reply


# Sends a batch: gives every call its reply or error, and returns the failure that says Redis cannot serve (which
# the calls queued behind the batch then share), or None.
SyncSender = Callable[[list[Call]], StoreUnavailable | None]
AsyncSender = Callable[[list[Call]], Awaitable[StoreUnavailable | None]]


def _interrupted() -> Uncounted:
    return Uncounted(StoreUnavailable("interrupted", "the call sending this batch was interrupted"))


def _queued_too_long() -> Uncounted:
    return Uncounted(StoreUnavailable("timeout", "queued behind a batch that did not return in time"))


class SyncPipeliner:
    """Group commit for threads: one batch on the wire at a time, the queue leaves when it returns."""

    def __init__(self, send: SyncSender, wait_limit: float) -> None:
        self._send = send
        self._wait_limit = wait_limit
        self._lock = threading.Lock()
        self._pending: list[Call] = []
        self._busy = False

    def run(self, call: Call) -> Any:
        """Send `call` (alone, or with the calls queued meanwhile) and return its reply, or raise its error."""
        batch: list[Call] | None = None
        failure: StoreUnavailable | None = None
        try:
            with self._lock:
                if self._busy:
                    call.ready = allocate_lock()
                    call.ready.acquire()
                    self._pending.append(call)
                else:
                    batch = [call]
                    self._busy = True
            if batch is None:
                self._follow(call)
                batch = call.batch
            if batch is not None:
                failure = self._send(batch)
        finally:
            # Whatever happens here (KeyboardInterrupt included), a thread that holds the queue hands it on.
            if (batch := batch or call.batch) is not None:
                self._finish(batch, failure)
        return call.outcome()

    def _follow(self, call: Call) -> None:
        """Wait until `call` is done or handed the queue to send (`call.batch`)."""
        ready = call.ready
        assert ready is not None
        try:
            if not ready.acquire(timeout=self._wait_limit):
                with self._lock:
                    if call in self._pending:  # nobody took it: the batch ahead is stuck
                        self._pending.remove(call)
                        raise _queued_too_long()
                # Taken: it is on the wire in a batch, or is being handed the queue this instant.
                if not ready.acquire(timeout=self._wait_limit) and call.batch is None:
                    raise _queued_too_long()  # the batch's late reply is dropped with `call`
        except BaseException:
            with self._lock:
                if call in self._pending:
                    self._pending.remove(call)
            raise  # `run` hands on a queue this call was given meanwhile

    def _finish(self, batch: list[Call], failure: StoreUnavailable | None) -> None:
        """Close `batch` (calls without an outcome were interrupted) and hand the queue on, or fail it with `failure`.

        `batch[0]` is the calling thread's own call: every other call in it, and the queue's first (or the whole
        queue when it fails), is woken exactly once.
        """
        for call in batch:
            call.batch = None
            if not call.done:
                call.error = _interrupted()
        with self._lock:
            queued, self._pending = self._pending, []
            if not queued or failure is not None:
                self._busy = False
            else:
                queued[0].batch = queued  # its thread sends the queue next
        if failure is not None:
            _fail_behind(queued, failure)
        for call in (*batch[1:], *(queued if failure is not None else queued[:1])):
            if call.ready is not None:
                call.ready.release()


class AsyncPipeliner:
    """Group commit for one event loop's tasks: the queue leaves in a task of its own when the wire is free."""

    def __init__(self, send: AsyncSender, wait_limit: float) -> None:
        self._send = send
        self._wait_limit = wait_limit
        self._pending: list[Call] = []
        self._busy = False
        self._flushing: set[asyncio.Task[None]] = set()  # referenced until done: the loop keeps weak references

    async def run(self, call: Call) -> Any:
        """`SyncPipeliner.run` for a task."""
        if not self._busy:
            self._busy = True
            failure: StoreUnavailable | None = None
            try:
                failure = await self._send([call])
            finally:
                if not call.done:
                    call.error = _interrupted()
                self._hand_on(failure)
            return call.outcome()
        call.future = future = asyncio.get_running_loop().create_future()
        self._pending.append(call)
        try:
            async with asyncio.timeout(2 * self._wait_limit):
                await future
        except TimeoutError:
            raise _queued_too_long() from None
        finally:
            if call in self._pending:
                self._pending.remove(call)
        return call.outcome()

    def _hand_on(self, failure: StoreUnavailable | None) -> None:
        queued, self._pending = self._pending, []
        if not queued:
            self._busy = False
        elif failure is not None:
            self._busy = False
            _fail_behind(queued, failure)
            for call in queued:
                _wake(call)
        else:
            task = asyncio.get_running_loop().create_task(self._flush(queued))
            self._flushing.add(task)
            task.add_done_callback(partial(self._flushed, queued))

    def _flushed(self, batch: list[Call], task: asyncio.Task[None]) -> None:
        self._flushing.discard(task)
        if all(call.done for call in batch):
            return
        # Cancelled before its first step, so its `finally` never ran: nobody sends; fail its calls and the queue.
        for call in batch:
            if not call.done:
                call.error = _interrupted()
            _wake(call)
        self._hand_on(StoreUnavailable("interrupted", "the task sending this batch was cancelled"))

    async def _flush(self, batch: list[Call]) -> None:
        failure: StoreUnavailable | None = None
        try:
            failure = await self._send(batch)
        finally:
            for call in batch:
                if not call.done:
                    call.error = _interrupted()
                _wake(call)
            self._hand_on(failure)


def _fail_behind(queued: list[Call], failure: StoreUnavailable) -> None:
    """The calls queued behind a batch Redis could not serve fail with its reason, without trying (nor counting)."""
    for call in queued:
        call.error = Uncounted(StoreUnavailable(failure.reason, "the batch ahead of this call failed"))


def _wake(call: Call) -> None:
    if call.future is not None and not call.future.done():
        call.future.set_result(None)
