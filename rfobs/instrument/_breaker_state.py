"""A circuit breaker's state: the record a backend stores, the backends, and the rules that move the record.

`Rules` is the state machine, pure: each method changes a `BreakerRecord` in place and says which transition it
made, with no clock reads, I/O or telemetry, so a backend may run it inside its own transaction (and run it again
on a conflict). `CircuitBreaker` reads the clock, calls the backend and reports what changed.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol, TypeVar

__all__ = [
    "CLOSED",
    "FAILURE",
    "HALF_OPEN",
    "NEUTRAL",
    "OPEN",
    "STATES",
    "SUCCESS",
    "Admission",
    "BreakerBackend",
    "BreakerRecord",
    "MemoryBreakerBackend",
    "Move",
    "Rules",
    "read_state",
]

T = TypeVar("T")

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
Admission = tuple["int | None", float, "Move | None"]
"""(generation admitted in, or None if refused; seconds until a probe is let through, 0 when refused while
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
    """Where breaker state lives. One method: apply a change to a named record atomically.

    `change` mutates the record in place and returns a value, which `transact` returns. It is pure apart from
    that (no I/O, no clock reads), so a store that detects a conflicting writer may re-read the record and call
    it again: a Redis store can WATCH the key, read, apply `change`, and write with MULTI/EXEC. The breaker calls
    `transact` twice per call (admission, outcome) and once per `state` read. The method is synchronous, also under
    asyncio: a networked store should keep it to one round trip, and give records in flight a lifetime so probes
    of a crashed process do not hold their half-open slots for ever.
    """

    def transact(self, name: str, change: Callable[[BreakerRecord], T]) -> T:
        """Apply `change` to the record of breaker `name` (created closed if missing) atomically; return its result."""
        ...


class MemoryBreakerBackend:
    """Breaker records in this process, guarded by one lock. Breakers that share a backend and a name share state."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, BreakerRecord] = {}

    def transact(self, name: str, change: Callable[[BreakerRecord], T]) -> T:
        """Apply `change` to the record of breaker `name` under the lock."""
        with self._lock:
            record = self._records.get(name)
            if record is None:
                record = self._records[name] = BreakerRecord()
            return change(record)


def read_state(record: BreakerRecord) -> str:
    """The record's state (a `transact` change that changes nothing)."""
    return record.state


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
