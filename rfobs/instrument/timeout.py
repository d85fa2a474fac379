"""Deadlines: `Timeout`, `@timeout`, `timeout_after`; real cancellation for coroutines, a worker thread for sync code.

Coroutines run inside an `asyncio.timeout` scope, so cancellation and its bookkeeping (`Task.uncancel`, a cancel
from outside winning over the deadline) are asyncio's own. The scope is entered without a deadline of its own:
one timer per event loop and limit watches every pending call with that limit and expires the scope of the
calls that overrun (`Timeout.reschedule`). A call that finishes in time therefore schedules and cancels no
timer handle of its own, which keeps the per-call cost below `asyncio.timeout()`'s and stops cancelled handles
piling up in the loop's heap while no iteration of the loop runs to purge them.

A plain function cannot be interrupted from outside in Python. `@timeout` runs it in a new daemon thread
per call and waits up to the limit; on expiry the caller gets `TimeoutExceeded` at once while the thread runs on
to completion and its result (or exception) is discarded. The caller's `contextvars` (and with them the
OpenTelemetry context) are copied into the thread, so spans started there nest under the caller's span.
Threads left running past their deadline are counted and capped (`_workers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from time import perf_counter
from types import TracebackType
from typing import Any, Final, ParamSpec, TypeVar

from opentelemetry import trace

from rfobs import _check
from rfobs.exceptions import ConfigError, TimeoutExceeded
from rfobs.instrument import _deadline, _workers
from rfobs.instrument import _telemetry as t
from rfobs.instrument._wrap import wrap_policy

__all__ = ["Timeout", "timeout", "timeout_after", "timeout_api_call"]

P = ParamSpec("P")
R = TypeVar("R")
Decorator = Callable[[Callable[P, R]], Callable[P, R]]

_UNNAMED: Final = "timeout"
MAX_SECONDS: Final = 365 * 86_400.0
"""The longest limit (a year): waits far beyond it overflow `threading.Event.wait`."""


def _check_seconds(seconds: object, where: str) -> float:
    if callable(seconds):
        raise ConfigError(
            f"{where}(seconds={seconds!r}) needs a limit in seconds, not a function: did you mean {where}(30)?"
        )
    return _check.number(where, "seconds", seconds, gt=0, le=MAX_SECONDS, what="a finite number of seconds")


def _check_name(name: object, where: str) -> str | None:
    if name is None:
        return None
    return _check.text(where, "name", name, "a non-empty string naming the operation, or None")


class Timeout:
    """A time limit for a call: an object to use directly, as a decorator or as `async with`.

    Coroutine functions are cancelled at the deadline (their `finally` blocks run) and the caller gets
    `TimeoutExceeded`, chained from asyncio's `TimeoutError`. A cancellation from outside (the caller's task
    cancelled) propagates as `CancelledError`, never as `TimeoutExceeded`. Plain functions run in a new daemon
    thread per call: at the deadline the caller gets `TimeoutExceeded`, but the thread is *not* stopped (Python
    cannot stop a thread); it runs to completion and its result or exception is discarded. A sync function
    called on an event loop's thread blocks that loop until it finishes or the limit passes.

    Abandoned threads are capped: while `timeouts.max_abandoned_threads` (default 64) threads of calls that
    timed out are still running, a sync call is refused at once with `TimeoutExceeded` (its `reason` says so)
    instead of starting another thread, so a dependency that never answers cannot exhaust the process's
    threads. A refusal is an ordinary `TimeoutExceeded`: `@retry` retries it after its backoff, by which time
    threads may have returned. The gauge `timeout_abandoned_threads` shows how many are running. Calls in
    flight when the cap is reached may still time out, so at most the cap plus the calls running at that
    moment are ever abandoned.

    On expiry the current span gets status ERROR and a `timeout` event (operation, limit). Every call that
    finishes or expires is measured in `timeout_operation_duration_seconds{operation, outcome}`: `timed_out` at
    the deadline, `completed` for any finish before it, including a finish by raising an exception. A call
    cancelled from outside is not measured.

    The object holds no per-call state: one instance may serve any number of threads and tasks at once.

    Args:
        seconds: The limit, a finite number > 0 and at most a year.
        name: The operation's name (a metric label: keep it bounded). As a decorator, defaults to the
            function's name; used directly without a name, the operation is called "timeout".

    Raises:
        ConfigError: `seconds` is not a finite number > 0 and at most a year, or `name` is empty.

    Example:
        >>> fetch_limit = Timeout(2.5, "fetch")
        >>> async def fetch() -> None:
        ...     async with fetch_limit:
        ...         await asyncio.sleep(0)
    """

    __slots__ = ("_call", "_completed", "_event", "_name", "_operation", "_seconds", "_timed_out")

    def __init__(self, seconds: float, name: str | None = None) -> None:
        self._seconds = _check_seconds(seconds, "Timeout")
        self._name = _check_name(name, "Timeout")
        operation = self._name or _UNNAMED
        self._operation = operation
        self._call = f"@timeout {operation}"  # names the call in the warning when no SDK is installed
        # Built once: the per-call path only passes these along.
        self._completed = {"operation": operation, "outcome": "completed"}
        self._timed_out = {"operation": operation, "outcome": "timed_out"}
        self._event = {t.TIMEOUT_OPERATION: operation, t.TIMEOUT_LIMIT: self._seconds}

    @property
    def seconds(self) -> float:
        """The limit in seconds."""
        return self._seconds

    @property
    def name(self) -> str | None:
        """The operation's name, if one was given."""
        return self._name

    def __repr__(self) -> str:
        return f"Timeout({self._seconds:g}, name={self._name!r})"

    def copy(self, *, seconds: float | None = None, name: str | None = None) -> Timeout:
        """A new `Timeout` with some settings changed (None keeps the current value)."""
        return Timeout(self._seconds if seconds is None else seconds, self._name if name is None else name)

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Decorate `func`; an unnamed `Timeout` takes the function's name as the operation."""
        policy = self
        if self._name is None:
            target = getattr(func, "__func__", func)  # classmethod / staticmethod
            policy = self.copy(name=getattr(target, "__name__", None) or _UNNAMED)
        return wrap_policy(func, policy, "timeout")

    def call(self, func: Callable[..., Any], args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        """Run the plain function `func(*args, **kwargs)` in a worker thread and wait at most `seconds`.

        Raises:
            TimeoutExceeded: The limit passed first (the worker thread keeps running; its outcome is discarded),
                or the call was refused without starting because `timeouts.max_abandoned_threads` abandoned
                threads are still running (then `reason` says so).
        """
        if (refused := _workers.refusal()) is not None:
            raise TimeoutExceeded(self._operation, self._seconds, reason=refused)
        instruments = t.current(self._call)
        start = perf_counter()
        token = _deadline.enter(self._seconds)  # copied into the worker with the rest of the context
        try:
            worker = _workers.Worker(func, args, kwargs or {})
        finally:
            _deadline.leave(token)
        worker.start(f"rfobs-timeout-{self._operation}")
        if not worker.done.wait(self._seconds):
            worker.abandon()
            self._expired(instruments, start)
            raise TimeoutExceeded(self._operation, self._seconds)
        self._finished(instruments, start)
        error = worker.error
        if error is not None:
            try:
                raise error
            finally:
                del error, worker  # break the traceback -> frame -> worker cycle
        return worker.result

    async def acall(
        self, func: Callable[..., Awaitable[Any]], args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        """Await `func(*args, **kwargs)`, cancelling it at the deadline.

        Raises:
            TimeoutExceeded: The deadline passed; the awaited call was cancelled and has finished unwinding.
            asyncio.CancelledError: The calling task was cancelled from outside.
        """
        loop = asyncio.get_running_loop()
        scope = asyncio.timeout_at(None)
        instruments = t.current(self._call)
        start = perf_counter()
        try:
            async with scope:
                when = loop.time() + self._seconds
                entry = _deadlines(loop, self._seconds).watch(scope, when)
                token = _deadline.enter_at(when)
                try:
                    result = await func(*args, **(kwargs or {}))
                finally:
                    _deadline.leave(token)
                    entry.finish()
        except TimeoutError as error:
            if scope.expired():
                self._expired(instruments, start)
                raise TimeoutExceeded(self._operation, self._seconds) from error
            self._finished(instruments, start)
            raise
        except Exception:
            self._finished(instruments, start)
            raise
        self._finished(instruments, start)
        return result

    async def __aenter__(self) -> Timeout:
        scope = _Scope(self)
        await scope.__aenter__()
        _entered.set((*_entered.get(), scope))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack = _entered.get()
        _entered.set(stack[:-1])
        await stack[-1].__aexit__(exc_type, exc, tb)

    def _finished(self, instruments: t.Instruments | None, start: float) -> None:
        if instruments is not None:
            instruments.timeout_duration.record(perf_counter() - start, self._completed)

    def _expired(self, instruments: t.Instruments | None, start: float) -> None:
        if instruments is None:
            return
        instruments.timeout_duration.record(perf_counter() - start, self._timed_out)
        # An event, not an ERROR status: a retry around this timeout may still succeed. If the TimeoutExceeded
        # escapes, the span that owns the call (`@task`, `@api_call`, a `with` span) records it as the error.
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(t.TIMEOUT_EVENT, self._event)


class _Scope:
    """One `async with` use of a `Timeout`."""

    __slots__ = ("_entry", "_instruments", "_scope", "_start", "_timeout")

    def __init__(self, timeout: Timeout) -> None:
        self._timeout = timeout
        self._scope = asyncio.timeout_at(None)
        self._entry: _Entry | None = None
        self._instruments: t.Instruments | None = None
        self._start = 0.0

    async def __aenter__(self) -> None:
        loop = asyncio.get_running_loop()
        seconds = self._timeout.seconds
        await self._scope.__aenter__()
        self._entry = _deadlines(loop, seconds).watch(self._scope, loop.time() + seconds)
        self._instruments = t.current(self._timeout._call)  # pyright: ignore[reportPrivateUsage]
        self._start = perf_counter()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._entry is not None:
            self._entry.finish()
        timeout = self._timeout
        try:
            await self._scope.__aexit__(exc_type, exc, tb)
        except TimeoutError as error:
            timeout._expired(self._instruments, self._start)  # pyright: ignore[reportPrivateUsage]
            raise TimeoutExceeded(timeout._operation, timeout.seconds) from error  # pyright: ignore[reportPrivateUsage]
        if isinstance(exc, TimeoutError) and self._scope.expired():  # the body turned the cancellation into its own
            timeout._expired(self._instruments, self._start)  # pyright: ignore[reportPrivateUsage]
            raise TimeoutExceeded(timeout._operation, timeout.seconds) from exc  # pyright: ignore[reportPrivateUsage]
        if exc is None or isinstance(exc, Exception):
            timeout._finished(self._instruments, self._start)  # pyright: ignore[reportPrivateUsage]


_entered: ContextVar[tuple[_Scope, ...]] = ContextVar("rfobs_timeout_scopes", default=())
"""The `async with timeout:` scopes open in this task, innermost last (the object itself holds no call state)."""


def timeout_after(seconds: float, name: str) -> AbstractAsyncContextManager[None]:
    """An async context manager that cancels its block after `seconds` and raises `TimeoutExceeded`.

    Args:
        seconds: The limit, a finite number > 0.
        name: The operation's name (a metric label: keep it bounded).

    Raises:
        ConfigError: Bad `seconds` or `name`.

    Example:
        >>> async def summarize() -> None:
        ...     async with timeout_after(10, "summarize"):
        ...         await asyncio.sleep(0)
    """
    seconds = _check_seconds(seconds, "timeout_after")
    if _check_name(name, "timeout_after") is None:
        raise ConfigError("timeout_after(name=None): expected a non-empty string naming the operation")
    return _Scope(Timeout(seconds, name))


def timeout(seconds: float, name: str | None = None) -> Decorator[P, R]:
    """Limit each call of the decorated function to `seconds`; see `Timeout` for the exact semantics.

    Args:
        seconds: The limit, a finite number > 0.
        name: The operation's name (a metric label); defaults to the function's name.

    Raises:
        ConfigError: Bad `seconds` or `name` (at decoration time).

    Example:
        >>> @timeout(5.0)
        ... async def search(query: str) -> list[str]:
        ...     return [query]
    """
    policy = Timeout(_check_seconds(seconds, "@timeout"), _check_name(name, "@timeout"))

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        return policy(func)

    return decorate


def timeout_api_call(seconds: float) -> Decorator[P, R]:
    """Seed-compatible name: `@timeout_api_call(30)` is `@timeout(30)`."""
    return timeout(seconds)


class _Entry:
    __slots__ = ("deadline", "owner", "scope")

    def __init__(self, deadline: float, scope: asyncio.Timeout, owner: _Deadlines) -> None:
        self.deadline = deadline
        self.scope: asyncio.Timeout | None = scope
        """None once the call has left its scope."""
        self.owner = owner

    def finish(self) -> None:
        """The call left its scope before the deadline."""
        self.scope = None
        self.owner.finished += 1


class _Deadlines:
    """The pending calls with one limit on one event loop, behind a single timer.

    All calls share the limit, so deadlines arrive in ascending order and a deque replaces a heap. A finished
    call only clears its entry; entries are dropped from the front when the next call arrives or the timer fires.
    """

    __slots__ = ("_entries", "_handle", "_loop", "finished")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._entries: deque[_Entry] = deque()
        self._handle: asyncio.TimerHandle | None = None
        self.finished = 0
        """Finished entries still queued (behind a call that is still running)."""

    def watch(self, scope: asyncio.Timeout, deadline: float) -> _Entry:
        entries = self._entries
        while entries and entries[0].scope is None:
            entries.popleft()
            self.finished -= 1
        if self.finished > 64 and self.finished * 2 > len(entries):
            # A long-running call at the front holds finished ones behind it: compact, amortised O(1) per call.
            self._entries = entries = deque(entry for entry in entries if entry.scope is not None)
            self.finished = 0
        entry = _Entry(deadline, scope, self)
        entries.append(entry)
        if self._handle is None:
            self._handle = self._loop.call_at(deadline, self._fire)
        return entry

    def _fire(self) -> None:
        self._handle = None
        now = self._loop.time()
        entries = self._entries
        while entries:
            entry = entries[0]
            scope = entry.scope
            if scope is not None and entry.deadline > now:
                self._handle = self._loop.call_at(entry.deadline, self._fire)
                return
            entries.popleft()
            if scope is None:
                self.finished -= 1
            else:
                # The deadline passed: asyncio cancels the task on the next iteration. A scope abandoned without
                # exiting (its task destroyed) may refuse; that must not stop the others from expiring.
                with contextlib.suppress(RuntimeError):
                    scope.reschedule(now)


_registry_lock = threading.Lock()
_registries: dict[asyncio.AbstractEventLoop, dict[float, _Deadlines]] = {}
_last: tuple[asyncio.AbstractEventLoop | None, dict[float, _Deadlines]] = (None, {})


def _deadlines(loop: asyncio.AbstractEventLoop, seconds: float) -> _Deadlines:
    global _last
    cached_loop, queues = _last
    if cached_loop is not loop:
        with _registry_lock:
            found = _registries.get(loop)
            if found is None:
                for closed in [old for old in _registries if old.is_closed()]:
                    del _registries[closed]
                found = _registries[loop] = {}
            queues = found
        _last = (loop, queues)
    queue = queues.get(seconds)
    if queue is None:
        queue = queues[seconds] = _Deadlines(loop)
    return queue
