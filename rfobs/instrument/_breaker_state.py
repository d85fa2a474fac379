"""A circuit breaker's state: the record a backend stores, the backends, and the rules that move the record.

`Rules` is the state machine, pure: each method changes a `BreakerRecord` in place and says which transition it
made, with no clock reads, I/O or telemetry. `BreakerBackend` is four explicit operations (enter, settle, reset,
state) that a store implements atomically: `MemoryBreakerBackend` runs `Rules` under its lock, and a networked
store runs a script that mirrors `Rules` (`rfobs.fleet.RedisBreakerBackend`). `CircuitBreaker` reads the clock,
calls the backend and reports what changed.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

__all__ = [
    "CLOSED",
    "FAILURE",
    "HALF_OPEN",
    "NEUTRAL",
    "OPEN",
    "STATES",
    "SUCCESS",
    "Admission",
    "AsyncBreakerBackend",
    "BreakerBackend",
    "BreakerRecord",
    "MemoryBreakerBackend",
    "Move",
    "Rules",
    "Ticket",
]

CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"
STATES: Final = (CLOSED, HALF_OPEN, OPEN)

# How a finished call counts.
SUCCESS: Final = 0
FAILURE: Final = 1
NEUTRAL: Final = 2

Move = tuple[str, str]
"""A transition: (from state, to state)."""
Ticket = int | str
"""What `enter` hands an admitted call and `settle` takes back: opaque to the breaker (the memory backend's is the
generation the call was admitted in; a networked store's may also name the call's probe lease)."""
Admission = tuple["Ticket | None", float, "Move | None"]
"""(the admitted call's ticket, or None if refused; seconds until a probe is let through, 0 when refused while
half-open; the transition made on the way)."""


@dataclass(slots=True)
class BreakerRecord:
    """The shared state of one breaker, as a backend stores it.

    Attributes:
        state: "closed", "open" or "half_open".
        generation: Bumped at every transition; a call admitted in an earlier generation is not counted.
        opened_at: Clock time of the last move to open.
        consecutive_failures: Failures in a row while closed.
        recent: Outcomes of the latest calls while closed, oldest first (True = failure); kept only when a
            failure ratio is configured.
        recent_failures: How many of `recent` are failures.
        probes: Probe calls in flight while half-open.
        probe_successes: Successful probes since the move to half-open.
    """

    state: str = CLOSED
    generation: int = 0
    opened_at: float = 0.0
    consecutive_failures: int = 0
    recent: deque[bool] = field(default_factory=lambda: deque[bool]())
    recent_failures: int = 0
    probes: int = 0
    probe_successes: int = 0


class BreakerBackend(Protocol):
    """Where breaker state lives: the four operations a breaker makes, each atomic on the record of breaker `name`.

    A missing record is a closed breaker with nothing counted; a backend never writes one just because a breaker
    was created (a new process must not reset shared state). `rules` is the breaker's `Rules` (the thresholds;
    `classify` stays in the caller) and `now` its clock, which a store with a clock of its own may ignore. The
    breaker calls `enter` and `settle` once per call, `reset` on `CircuitBreaker.reset()` and `state` when the
    state is read (the gauge, `CircuitBreaker.state`). A backend that also has the `AsyncBreakerBackend` methods
    is awaited in the breaker's async paths.
    """

    def enter(self, name: str, rules: Rules, now: float) -> Admission:
        """Admit a call or refuse it (an open breaker whose pause has passed moves to half-open first)."""
        ...

    def settle(self, name: str, rules: Rules, ticket: Ticket, outcome: int, now: float) -> Move | None:
        """Count the outcome (`SUCCESS`, `FAILURE`, `NEUTRAL`) of the call admitted with `ticket`."""
        ...

    def reset(self, name: str, rules: Rules, now: float) -> Move | None:
        """Close the breaker and forget what was counted."""
        ...

    def state(self, name: str, rules: Rules, now: float) -> str:
        """The stored state: "closed", "open" or "half_open"."""
        ...


class AsyncBreakerBackend(Protocol):
    """The optional awaitable operations of a `BreakerBackend` (same meaning), for stores reached over a network."""

    async def enter_async(self, name: str, rules: Rules, now: float) -> Admission:
        """`BreakerBackend.enter`, awaited."""
        ...

    async def settle_async(self, name: str, rules: Rules, ticket: Ticket, outcome: int, now: float) -> Move | None:
        """`BreakerBackend.settle`, awaited."""
        ...


class MemoryBreakerBackend:
    """Breaker records in this process, guarded by one lock. Breakers that share a backend and a name share state."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, BreakerRecord] = {}

    def enter(self, name: str, rules: Rules, now: float) -> Admission:
        """`Rules.enter` on the record of breaker `name`, under the lock."""
        with self._lock:
            return rules.enter(self._record(name), now)

    def settle(self, name: str, rules: Rules, ticket: Ticket, outcome: int, now: float) -> Move | None:
        """`Rules.settle` on the record of breaker `name`, under the lock (a ticket not issued here is ignored)."""
        if not isinstance(ticket, int):
            return None
        with self._lock:
            return rules.settle(self._record(name), ticket, outcome, now)

    def reset(self, name: str, rules: Rules, now: float) -> Move | None:
        """`Rules.reset` on the record of breaker `name`, under the lock."""
        with self._lock:
            return rules.reset(self._record(name), now)

    def state(self, name: str, rules: Rules, now: float) -> str:
        """The record's state (a missing record is closed and is not created)."""
        record = self._records.get(name)
        return CLOSED if record is None else record.state

    def _record(self, name: str) -> BreakerRecord:
        record = self._records.get(name)
        if record is None:
            record = self._records[name] = BreakerRecord()
        return record


class Rules:
    """How outcomes count and how counts move a breaker's record (the arguments are `CircuitBreaker`'s, checked).

    Immutable; one instance serves any number of threads, each with the record its backend hands it.
    """

    __slots__ = (
        "failure_predicate", "failure_ratio", "failure_threshold", "failure_types", "half_open_max_calls", "ignore",
        "minimum_calls", "reset_timeout", "success_threshold", "window",
    )  # fmt: skip

    def __init__(
        self,
        *,
        failure_threshold: int | None,
        failure_ratio: float | None,
        window: int,
        minimum_calls: int,
        reset_timeout: float,
        half_open_max_calls: int,
        success_threshold: int,
        failure_types: tuple[type[BaseException], ...],
        failure_predicate: Callable[[BaseException], bool] | None,
        ignore: tuple[type[BaseException], ...],
    ) -> None:
        self.failure_threshold, self.failure_ratio = failure_threshold, failure_ratio
        self.window, self.minimum_calls, self.reset_timeout = window, minimum_calls, reset_timeout
        self.half_open_max_calls, self.success_threshold = half_open_max_calls, success_threshold
        self.failure_types, self.failure_predicate, self.ignore = failure_types, failure_predicate, ignore

    def classify(self, error: BaseException) -> int:
        """How a call that raised `error` counts: `FAILURE`, `SUCCESS` or `NEUTRAL` (the predicate may raise)."""
        if not isinstance(error, Exception) or isinstance(error, self.ignore):
            return NEUTRAL
        if self.failure_predicate is None:
            return FAILURE if isinstance(error, self.failure_types) else SUCCESS
        return FAILURE if self.failure_predicate(error) else SUCCESS

    def enter(self, record: BreakerRecord, now: float) -> Admission:
        """Admit a call, or refuse it; an open breaker whose pause has passed moves to half-open first."""
        if record.state == CLOSED:
            return record.generation, 0.0, None
        moved: Move | None = None
        if record.state == OPEN:
            remaining = record.opened_at + self.reset_timeout - now
            if remaining > 0:
                return None, remaining, None
            moved = self.move(record, HALF_OPEN, now)
        if record.probes >= self.half_open_max_calls:
            return None, 0.0, moved
        record.probes += 1
        return record.generation, 0.0, moved

    def settle(self, record: BreakerRecord, generation: int, outcome: int, now: float) -> Move | None:
        """Count the outcome of a call admitted in `generation`; the transition it causes, if any."""
        if record.generation != generation:
            return None  # admitted before the last transition: its outcome says nothing about the current state
        if record.state == HALF_OPEN:
            record.probes -= 1
            if outcome == FAILURE:
                return self.move(record, OPEN, now)
            if outcome == SUCCESS:
                record.probe_successes += 1
                if record.probe_successes >= self.success_threshold:
                    return self.move(record, CLOSED, now)
            return None
        if outcome == NEUTRAL:
            return None
        failed = outcome == FAILURE
        record.consecutive_failures = record.consecutive_failures + 1 if failed else 0
        if self.failure_ratio is not None:
            recent = record.recent
            recent.append(failed)
            record.recent_failures += failed
            if len(recent) > self.window:
                record.recent_failures -= recent.popleft()
            if (
                failed
                and len(recent) >= self.minimum_calls
                and record.recent_failures >= self.failure_ratio * len(recent)
            ):
                return self.move(record, OPEN, now)
        if failed and self.failure_threshold is not None and record.consecutive_failures >= self.failure_threshold:
            return self.move(record, OPEN, now)
        return None

    @staticmethod
    def reset(record: BreakerRecord, now: float) -> Move | None:
        """Close the breaker and forget the failures counted so far."""
        if record.state != CLOSED:
            return Rules.move(record, CLOSED, now)
        record.consecutive_failures = record.recent_failures = 0
        record.recent.clear()
        return None

    @staticmethod
    def move(record: BreakerRecord, to: str, now: float) -> Move:
        """Put the record in state `to`, starting a new generation with nothing counted."""
        moved = (record.state, to)
        record.state = to
        record.generation += 1
        if to == OPEN:
            record.opened_at = now
        record.consecutive_failures = 0
        record.recent.clear()
        record.recent_failures = 0
        record.probes = 0
        record.probe_successes = 0
        return moved
