"""Time for the policies (retry, rate limit, breaker): a real clock, or a virtual one that never really waits.

Policies take an optional `clock=`; without one they use `default_clock()`, which is the system clock unless
`rfobs.testing.fast_waits()` is active. The virtual clock advances by exactly what was slept, so a limiter or a
breaker sees consistent time while a test suite runs at full speed.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, cast

from rfobs import _check

__all__ = ["Clock", "SystemClock", "VirtualClock", "check_clock", "default_clock", "set_default_clock"]


class Clock(Protocol):
    """Monotonic time and the two ways of waiting."""

    def monotonic(self) -> float:
        """Seconds on a monotonic clock."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread."""
        ...

    async def asleep(self, seconds: float) -> None:
        """Suspend the calling task."""
        ...


class SystemClock:
    """The real thing: `monotonic` is `time.monotonic`, `sleep` is `time.sleep`, `asleep` is `asyncio.sleep`."""

    # The function itself, not a method calling it: every policy call reads the clock, and the extra frame is a
    # measurable share of a rate limiter's decision.
    monotonic = staticmethod(time.monotonic)

    def sleep(self, seconds: float) -> None:
        """Block for `seconds`."""
        time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        """Suspend for `seconds`."""
        import asyncio  # 20 ms to import: only code that awaits pays for it

        await asyncio.sleep(seconds)


class VirtualClock:
    """A clock that moves only when slept on (or `advance()`d); sleeping returns at once.

    Thread-safe. `asleep` still yields to the event loop once, so other tasks get their turn.

    Attributes:
        slept: Total seconds slept through this clock.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._now = start
        self.slept = 0.0

    def monotonic(self) -> float:
        """The virtual time."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the virtual time forward."""
        with self._lock:
            self._now += max(0.0, seconds)

    def sleep(self, seconds: float) -> None:
        """Advance by `seconds` and return at once."""
        with self._lock:
            self._now += max(0.0, seconds)
            self.slept += max(0.0, seconds)

    async def asleep(self, seconds: float) -> None:
        """Advance by `seconds` and yield to the event loop once."""
        import asyncio

        self.sleep(seconds)
        await asyncio.sleep(0)


_system = SystemClock()
current: Clock = _system
"""The clock policies use when none is given: what `default_clock()` returns. Hot paths read it as
`_clock.current` (a module attribute, never imported by name: `set_default_clock` rebinds it)."""


def default_clock() -> Clock:
    """The clock policies use when none is given."""
    return current


def set_default_clock(clock: Clock | None) -> None:
    """Replace the default clock (None restores the system clock). Used by `rfobs.testing.fast_waits`."""
    global current
    current = clock if clock is not None else _system


def check_clock(owner: str, clock: object) -> Clock | None:
    """`clock` if it is None or has `monotonic`, `sleep` and `asleep` methods.

    Raises:
        ConfigError: Anything else.
    """
    if clock is not None and not all(callable(getattr(clock, m, None)) for m in ("monotonic", "sleep", "asleep")):
        raise _check.bad(owner, "clock", clock, "an rfobs Clock (monotonic, sleep, asleep) or None")
    return cast("Clock | None", clock)
