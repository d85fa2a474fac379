"""The innermost `Timeout` deadline of the running call, visible to the policies inside it.

A circuit breaker inside a timeout needs it: at the deadline the breaker sees a cancellation (async) or, for a
sync call left running in its worker thread, a late success. Neither says the dependency is healthy; both mean
it did not answer in time, and the breaker counts them as failures.
"""

from __future__ import annotations

import contextvars
import time

__all__ = ["enter", "enter_at", "expired", "leave", "suspend"]

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("rfobs_deadline", default=None)


def enter(seconds: float) -> contextvars.Token[float | None]:
    """Start a deadline `seconds` from now (never later than an enclosing one)."""
    return enter_at(time.monotonic() + seconds)


def enter_at(deadline: float) -> contextvars.Token[float | None]:
    """Start a deadline at `deadline` on `time.monotonic()`'s clock (asyncio's loop time is the same clock)."""
    outer = _deadline.get()
    return _deadline.set(deadline if outer is None else min(deadline, outer))


def suspend() -> contextvars.Token[float | None]:
    """No deadline until `leave(token)`.

    For rfobs's own guarded work inside a caller's timeout: a Redis call finishing after the caller's deadline
    says nothing about Redis.
    """
    return _deadline.set(None)


def leave(token: contextvars.Token[float | None]) -> None:
    """End the deadline started by `enter`."""
    _deadline.reset(token)


def expired() -> bool:
    """Whether the current call's deadline has passed."""
    deadline = _deadline.get()
    return deadline is not None and time.monotonic() >= deadline
