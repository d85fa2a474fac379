"""The worker threads that run sync calls under `Timeout`, and the cap on those abandoned at a deadline.

Python cannot stop a thread: at the deadline the caller stops waiting and the worker runs on, *abandoned*,
until its call returns. Abandoned workers are counted until then. While `max_abandoned_threads()` of them are
still running, `Timeout` refuses new sync calls instead of starting yet another thread that would most likely
hang too, so a dependency that never answers cannot pile up threads without bound. `rfobs.init()` sets the
cap from the `timeouts.max_abandoned_threads` setting.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any, Final, cast

from opentelemetry.metrics import CallbackOptions, Observation

from rfobs import _state
from rfobs.exceptions import ConfigError

__all__ = [
    "DEFAULT_MAX_ABANDONED_THREADS",
    "Worker",
    "abandoned_threads",
    "max_abandoned_threads",
    "observe",
    "refusal",
    "set_max_abandoned_threads",
]

DEFAULT_MAX_ABANDONED_THREADS: Final = 64
SETTING: Final = "timeouts.max_abandoned_threads"

_lock = threading.Lock()
_limit = DEFAULT_MAX_ABANDONED_THREADS
_abandoned = 0


def set_max_abandoned_threads(limit: int | None) -> None:
    """Set the cap on abandoned worker threads (None restores the default, 64). `rfobs.init()` calls this.

    Raises:
        ConfigError: `limit` is not an integer >= 1.
    """
    global _limit
    value = cast("object", DEFAULT_MAX_ABANDONED_THREADS if limit is None else limit)  # callers may pass anything
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{SETTING} = {value!r}: expected an integer >= 1")
    _limit = value


_state.on_reset(lambda: set_max_abandoned_threads(None))


def max_abandoned_threads() -> int:
    """The cap on abandoned worker threads in effect."""
    return _limit


def abandoned_threads() -> int:
    """Worker threads still running a call whose caller gave up at the deadline."""
    return _abandoned


def refusal() -> str | None:
    """Why a new sync call must not start a worker thread now, or None when it may."""
    running, limit = _abandoned, _limit
    if running < limit:
        return None
    return (
        f"refused without starting a thread: {running} worker threads of earlier timed-out calls are still "
        f"running ({SETTING} = {limit})"
    )


def observe(_options: CallbackOptions) -> Iterable[Observation]:
    """Observable-gauge callback: the abandoned worker threads still running."""
    return [Observation(_abandoned)]


class Worker:
    """One sync call run in its own daemon thread; the caller reads the outcome once `done` is set."""

    __slots__ = ("_abandoned", "_args", "_context", "_func", "_kwargs", "done", "error", "result")

    def __init__(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._func, self._args, self._kwargs = func, args, kwargs
        # The caller's contextvars (and with them the OpenTelemetry context) go with the call.
        self._context = contextvars.copy_context()
        self._abandoned = False
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def start(self, name: str) -> None:
        """Run the call in a new daemon thread."""
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def abandon(self) -> None:
        """The caller stops waiting: count this worker until its call returns (unless it just did)."""
        global _abandoned
        with _lock:
            if not self.done.is_set():
                self._abandoned = True
                _abandoned += 1

    def _run(self) -> None:
        global _abandoned
        try:
            self.result = self._context.run(self._func, *self._args, **self._kwargs)
        except BaseException as error:  # handed to the caller, who re-raises it
            self.error = error
        finally:
            # Under the lock, so that `abandon` either sees the call done or is undone here.
            with _lock:
                self.done.set()
                if self._abandoned:
                    _abandoned -= 1
                    self.result = self.error = None  # nobody reads them: free what the call returned


def _after_fork_in_child() -> None:
    global _lock, _abandoned
    _lock = threading.Lock()  # another thread may have held it at the fork
    _abandoned = 0  # the abandoned threads stayed in the parent


os.register_at_fork(after_in_child=_after_fork_in_child)
