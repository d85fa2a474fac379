"""Circuit breaker: stop calling a dependency that keeps failing, and probe it again after a pause.

States: closed (calls go through and are counted), open (calls are refused with `CircuitOpen` at once) and
half-open (a bounded number of probe calls go through; enough successes close the breaker, a failure reopens
it). The state lives behind `BreakerBackend`, a one-method protocol ("apply this change to breaker X's record
atomically"), so a Redis store can share one breaker between processes later; `MemoryBreakerBackend` keeps it
in this process. The state machine itself runs in Python, in `CircuitBreaker`, whatever the store.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, ParamSpec, Protocol, TypedDict, TypeVar, Unpack, cast, overload

from opentelemetry import trace

from rfobs.exceptions import CircuitOpen, ConfigError
from rfobs.instrument import _deadline
from rfobs.instrument import _telemetry as t
from rfobs.instrument._clock import Clock, default_clock
from rfobs.instrument._wrap import wrap_policy

__all__ = [
    "BreakerBackend",
    "BreakerOptions",
    "BreakerRecord",
    "CircuitBreaker",
    "MemoryBreakerBackend",
    "circuit_breaker",
]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
Decorator = Callable[[Callable[P, R]], Callable[P, R]]

logger = logging.getLogger("rfobs.breaker")

CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"
_GAUGE: Final = {CLOSED: 0.0, HALF_OPEN: 1.0, OPEN: 2.0}
_STATES: Final = (CLOSED, HALF_OPEN, OPEN)

# How a finished call counts.
_SUCCESS: Final = 0
_FAILURE: Final = 1
_NEUTRAL: Final = 2

Failures = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
"""Exception classes that count as failures, or a predicate that says whether an exception does."""


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


class BreakerOptions(TypedDict, total=False):
    """The keyword arguments of `CircuitBreaker` and `@circuit_breaker` (documented on `CircuitBreaker`)."""

    failure_threshold: int | None
    failure_ratio: float | None
    window: int
    minimum_calls: int
    reset_timeout: float
    half_open_max_calls: int
    success_threshold: int
    counts_as_failure: Failures
    ignore: type[BaseException] | tuple[type[BaseException], ...]
    clock: Clock | None
    backend: BreakerBackend | None


@dataclass(frozen=True, slots=True)
class _Options:
    failure_threshold: int | None
    failure_ratio: float | None
    window: int
    minimum_calls: int
    reset_timeout: float
    half_open_max_calls: int
    success_threshold: int
    failure_types: tuple[type[BaseException], ...]
    failure_predicate: Callable[[BaseException], bool] | None
    ignore: tuple[type[BaseException], ...]


def _count(where: str, argument: str, value: object, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}({argument}={value!r}): expected an integer >= 1{' or None' if allow_none else ''}")
    return value


def _exception_types(where: str, argument: str, value: object) -> tuple[type[BaseException], ...]:
    items = cast("tuple[object, ...]", value) if isinstance(value, tuple) else (value,)
    found: list[type[BaseException]] = []
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise ConfigError(f"{where}({argument}={value!r}): expected an exception class or a tuple of them")
        found.append(item)
    return tuple(found)


def _validate(where: str, options: BreakerOptions) -> _Options:
    unknown = set(options) - set(BreakerOptions.__annotations__)
    if unknown:
        raise ConfigError(f"{where}: unknown argument(s) {sorted(unknown)}; allowed: {sorted(_DEFAULTS)}")
    o: dict[str, Any] = {**_DEFAULTS, **options}
    threshold = _count(where, "failure_threshold", o["failure_threshold"], allow_none=True)
    ratio = o["failure_ratio"]
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1):
        raise ConfigError(f"{where}(failure_ratio={ratio!r}): expected a number in (0, 1], or None")  # NaN too
    if threshold is None and ratio is None:
        raise ConfigError(f"{where}(failure_threshold=None, failure_ratio=None): set one, or it never opens")
    window = _count(where, "window", o["window"]) or 1
    minimum_calls = _count(where, "minimum_calls", o["minimum_calls"]) or 1
    if minimum_calls > window:
        raise ConfigError(f"{where}(minimum_calls={minimum_calls!r}): expected at most window={window!r}")
    reset = o["reset_timeout"]
    try:
        seconds = math.nan if isinstance(reset, bool) or not isinstance(reset, (int, float)) else float(reset)
    except OverflowError:  # an int beyond a float's range
        seconds = math.nan
    if not 0 <= seconds < math.inf:  # NaN fails too
        raise ConfigError(f"{where}(reset_timeout={reset!r}): expected a finite number of seconds >= 0")
    failures = o["counts_as_failure"]
    is_predicate = callable(failures) and not isinstance(failures, type)
    predicate = cast("Callable[[BaseException], bool]", failures) if is_predicate else None
    return _Options(
        failure_threshold=threshold,
        failure_ratio=None if ratio is None else float(ratio),
        window=window,
        minimum_calls=minimum_calls,
        reset_timeout=seconds,
        half_open_max_calls=_count(where, "half_open_max_calls", o["half_open_max_calls"]) or 1,
        success_threshold=_count(where, "success_threshold", o["success_threshold"]) or 1,
        failure_types=() if predicate is not None else _exception_types(where, "counts_as_failure", failures),
        failure_predicate=predicate,
        ignore=_exception_types(where, "ignore", o["ignore"]),
    )


_DEFAULTS: Final[BreakerOptions] = {
    "failure_threshold": 5,
    "failure_ratio": None,
    "window": 20,
    "minimum_calls": 10,
    "reset_timeout": 30.0,
    "half_open_max_calls": 1,
    "success_threshold": 1,
    "counts_as_failure": (Exception,),
    "ignore": (),
    "clock": None,
    "backend": None,
}


def _check_breaker_name(where: str, name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}(name={name!r}): expected a non-empty string naming the breaker")
    return name.strip()


_Move = tuple[str, str]
_Admission = tuple["int | None", float, "_Move | None"]
"""(generation admitted in, or None if refused; seconds until a probe is let through, 0 when refused while
half-open; the transition made on the way)."""


class CircuitBreaker:
    """A circuit breaker: an object to use directly, as a decorator, or as `with` / `async with`.

    Closed, it counts outcomes and opens after `failure_threshold` failures in a row, or when at least
    `minimum_calls` of the latest `window` calls were made and `failure_ratio` of them failed. Open, it refuses
    every call with `CircuitOpen` (carrying the seconds left) without running it. When `reset_timeout` has
    passed on the clock, the next call moves it to half-open: up to `half_open_max_calls` probe calls run at
    once (others are refused at once), `success_threshold` probe successes close it and a probe failure
    reopens it. The open to half-open move happens when a call arrives, so the state gauge shows open until then.

    An exception counts as a failure when it is an instance of `counts_as_failure` (or the predicate returns
    True); any other exception counts as a success (the dependency answered). Exceptions in `ignore`, and
    `BaseException`s that are not `Exception`s (cancellation, KeyboardInterrupt), do not count at all. A result
    that arrives after the breaker changed state since the call was admitted is not counted either.

    Telemetry: each transition adds to `circuit_breaker_state_transitions_total{breaker, from_state, to_state}`
    and puts a `circuit_breaker.transition` event on the current span; a refused call puts a
    `circuit_breaker.rejected` event (breaker, state, retry-after) on the current span; the
    `circuit_breaker_state` gauge reads the state (0 closed, 1 half-open, 2 open) at each collection.

    Thread-safe and usable from asyncio (the state changes under the backend's lock, never across an await).

    Args:
        name: The breaker's name (a metric label; breakers sharing a backend and a name share state).
        failure_threshold: Consecutive failures that open the breaker; None to rely on the ratio alone.
        failure_ratio: Failure share over the window that opens the breaker, in (0, 1]; None to disable.
        window: How many recent calls the ratio looks at.
        minimum_calls: Calls the window must hold before the ratio applies (at most `window`).
        reset_timeout: Seconds open before a probe is let through.
        half_open_max_calls: Probe calls allowed in flight at once while half-open.
        success_threshold: Probe successes needed to close.
        counts_as_failure: Exception classes that count as failures, or a predicate on the exception.
        ignore: Exception classes that count neither way (they win over `counts_as_failure`).
        clock: Time source; defaults to `rfobs`'s default clock, read at each call.
        backend: Where the state lives; defaults to a private `MemoryBreakerBackend`.

    Raises:
        ConfigError: An argument is out of range.

    Example:
        >>> arxiv = CircuitBreaker("arxiv", failure_threshold=3, reset_timeout=10)
        >>> @arxiv
        ... def search(query: str) -> list[str]:
        ...     return [query]
    """

    def __init__(self, name: str, **options: Unpack[BreakerOptions]) -> None:
        self._name = _check_breaker_name("CircuitBreaker", name)
        self._setup(_validate("CircuitBreaker", options), options)

    def _setup(self, validated: _Options, options: BreakerOptions) -> None:
        self._o = validated
        self._options = options
        self._clock = options.get("clock")
        self._backend: BreakerBackend = options.get("backend") or MemoryBreakerBackend()
        name = self._name
        # Labels and event attributes for every possible transition, built once.
        pairs = [(a, b) for a in _STATES for b in _STATES if a != b]
        self._labels = {(a, b): (("breaker", name), ("from_state", a), ("to_state", b)) for a, b in pairs}
        self._events = {(a, b): {t.BREAKER_NAME: name, t.BREAKER_FROM: a, t.BREAKER_TO: b} for a, b in pairs}
        t.register_breaker(self)
        t.current()  # builds the instruments, and so the state gauge, if an SDK is installed already

    @property
    def name(self) -> str:
        """The breaker's name."""
        return self._name

    @property
    def state(self) -> str:
        """The stored state: "closed", "open" or "half_open"."""
        return self._backend.transact(self._name, _read_state)

    def state_value(self) -> float:
        """The state as the gauge reports it: 0 closed, 1 half-open, 2 open."""
        return _GAUGE.get(self.state, 0.0)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self._name!r})"

    def copy(self, name: str | None = None, **changes: Unpack[BreakerOptions]) -> CircuitBreaker:
        """A new breaker with some arguments changed; it has its own state unless it shares a backend and name."""
        return CircuitBreaker(name or self._name, **{**self._options, **changes})

    def reset(self) -> None:
        """Close the breaker now (an operator's override), forgetting the failures counted so far."""
        now = (self._clock or default_clock()).monotonic()

        def change(record: BreakerRecord) -> _Move | None:
            if record.state != CLOSED:
                return self._move(record, CLOSED, now)
            record.consecutive_failures = record.recent_failures = 0
            record.recent.clear()
            return None

        moved = self._backend.transact(self._name, change)
        if moved is not None:
            self._report(moved)

    # -- running calls -------------------------------------------------------------------------------------------

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Decorate `func`: every call goes through this breaker."""
        return wrap_policy(func, self, "circuit_breaker")

    def call(self, func: Callable[..., Any], args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        """Run `func(*args, **kwargs)` through the breaker.

        Raises:
            CircuitOpen: The breaker is open (or half-open with all probe slots taken); `func` was not called.
        """
        generation = self._admit()
        try:
            result = func(*args, **(kwargs or {}))
        except BaseException as error:
            self._settle(generation, error)
            raise
        self._settle(generation, None)
        return result

    async def acall(
        self, func: Callable[..., Awaitable[Any]], args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        """Await `func(*args, **kwargs)` through the breaker.

        Raises:
            CircuitOpen: The breaker is open (or half-open with all probe slots taken); `func` was not called.
        """
        generation = self._admit()
        try:
            result = await func(*args, **(kwargs or {}))
        except BaseException as error:
            self._settle(generation, error)
            raise
        self._settle(generation, None)
        return result

    def __enter__(self) -> CircuitBreaker:
        generation = self._admit()
        _entered.set((*_entered.get(), (self, generation)))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack = _entered.get()
        index = max(i for i, (breaker, _) in enumerate(stack) if breaker is self)
        _entered.set(stack[:index] + stack[index + 1 :])
        self._settle(stack[index][1], exc)

    async def __aenter__(self) -> CircuitBreaker:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- the state machine ---------------------------------------------------------------------------------------

    def _admit(self) -> int:
        now = (self._clock or default_clock()).monotonic()
        generation, retry_after, moved = self._backend.transact(self._name, lambda record: self._enter(record, now))
        if moved is not None:
            self._report(moved)
        if generation is None:
            self._refused(OPEN if retry_after > 0 else HALF_OPEN, retry_after)
            raise CircuitOpen(self._name, retry_after)
        return generation

    def _enter(self, record: BreakerRecord, now: float) -> _Admission:
        if record.state == CLOSED:
            return record.generation, 0.0, None
        moved: _Move | None = None
        if record.state == OPEN:
            remaining = record.opened_at + self._o.reset_timeout - now
            if remaining > 0:
                return None, remaining, None
            moved = self._move(record, HALF_OPEN, now)
        if record.probes >= self._o.half_open_max_calls:
            return None, 0.0, moved
        record.probes += 1
        return record.generation, 0.0, moved

    def _settle(self, generation: int, error: BaseException | None) -> None:
        if (error is None or not isinstance(error, Exception)) and _deadline.expired():
            # Inside a timeout that has passed: cancelled at the deadline (async), or finishing late in the
            # timeout's worker thread (sync). The dependency did not answer in time: a failure.
            outcome = _FAILURE
        else:
            outcome = _SUCCESS if error is None else self._classify(error)
        now = (self._clock or default_clock()).monotonic()
        moved = self._backend.transact(self._name, lambda record: self._record(record, generation, outcome, now))
        if moved is not None:
            self._report(moved)

    def _classify(self, error: BaseException) -> int:
        options = self._o
        if not isinstance(error, Exception) or isinstance(error, options.ignore):
            return _NEUTRAL
        if options.failure_predicate is None:
            return _FAILURE if isinstance(error, options.failure_types) else _SUCCESS
        try:
            return _FAILURE if options.failure_predicate(error) else _SUCCESS
        except Exception:
            logger.exception("circuit breaker %r: counts_as_failure raised; counting the call as a failure", self._name)
            return _FAILURE

    def _record(self, record: BreakerRecord, generation: int, outcome: int, now: float) -> _Move | None:
        if record.generation != generation:
            return None  # admitted before the last transition: its outcome says nothing about the current state
        options = self._o
        if record.state == HALF_OPEN:
            record.probes -= 1
            if outcome == _FAILURE:
                return self._move(record, OPEN, now)
            if outcome == _SUCCESS:
                record.probe_successes += 1
                if record.probe_successes >= options.success_threshold:
                    return self._move(record, CLOSED, now)
            return None
        if outcome == _NEUTRAL:
            return None
        failed = outcome == _FAILURE
        record.consecutive_failures = record.consecutive_failures + 1 if failed else 0
        if options.failure_ratio is not None:
            recent = record.recent
            recent.append(failed)
            record.recent_failures += failed
            if len(recent) > options.window:
                record.recent_failures -= recent.popleft()
            if (
                failed
                and len(recent) >= options.minimum_calls
                and record.recent_failures >= options.failure_ratio * len(recent)
            ):
                return self._move(record, OPEN, now)
        if (
            failed
            and options.failure_threshold is not None
            and record.consecutive_failures >= options.failure_threshold
        ):
            return self._move(record, OPEN, now)
        return None

    @staticmethod
    def _move(record: BreakerRecord, to: str, now: float) -> _Move:
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

    # -- telemetry -----------------------------------------------------------------------------------------------

    def _report(self, moved: _Move) -> None:
        if moved[1] == OPEN:
            logger.warning("circuit breaker %r opened (was %s)", self._name, moved[0])
        else:
            logger.info("circuit breaker %r: %s -> %s", self._name, moved[0], moved[1])
        instruments = t.current()
        if instruments is None:
            return
        instruments.breaker_transitions.add(self._labels[moved])
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(t.BREAKER_EVENT, self._events[moved])

    def _refused(self, state: str, retry_after: float) -> None:
        if t.current() is None:
            return
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(
                t.BREAKER_REJECTED_EVENT,
                {t.BREAKER_NAME: self._name, t.BREAKER_STATE: state, t.BREAKER_RETRY_AFTER: retry_after},
            )


def _read_state(record: BreakerRecord) -> str:
    return record.state


_entered: ContextVar[tuple[tuple[CircuitBreaker, int], ...]] = ContextVar("rfobs_breaker_calls", default=())
"""The `with breaker:` blocks open in this context with the generation each was admitted in, innermost last."""


@overload
def circuit_breaker(name: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def circuit_breaker(name: str | None = None, **options: Unpack[BreakerOptions]) -> Decorator[P, R]: ...
def circuit_breaker(
    name: str | Callable[P, R] | None = None, **options: Unpack[BreakerOptions]
) -> Decorator[P, R] | Callable[P, R]:
    """Put the decorated function behind a new `CircuitBreaker` (see there for the arguments and semantics).

    Bare (`@circuit_breaker`) or without a name, the breaker is named after the function. To share one breaker
    between functions, create a `CircuitBreaker` and decorate with it (`@arxiv_breaker`).

    Raises:
        ConfigError: An argument is out of range (at decoration time).

    Example:
        >>> @circuit_breaker("arxiv", failure_threshold=3, reset_timeout=10)
        ... def search(query: str) -> list[str]:
        ...     return [query]
    """
    if callable(name):
        if options:
            raise ConfigError(
                f"@circuit_breaker(name={name!r}, ...): expected a name; bare @circuit_breaker takes none"
            )
        return CircuitBreaker(_function_name(name))(name)
    where = "@circuit_breaker"
    fixed_name = None if name is None else _check_breaker_name(where, name)
    validated = _validate(where, options)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        breaker = CircuitBreaker.__new__(CircuitBreaker)
        breaker._name = fixed_name or _function_name(func)  # pyright: ignore[reportPrivateUsage]
        breaker._setup(validated, options)  # pyright: ignore[reportPrivateUsage]
        return breaker(func)

    return decorate


def _function_name(func: Callable[..., Any]) -> str:
    target = getattr(func, "__func__", func)  # classmethod / staticmethod
    return getattr(target, "__name__", None) or "circuit_breaker"
