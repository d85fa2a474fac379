"""Circuit breaker: stop calling a dependency that keeps failing, and probe it again after a pause.

States: closed (calls go through and are counted), open (calls are refused with `CircuitOpen` at once) and
half-open (a bounded number of probe calls go through; enough successes close the breaker, a failure reopens
it). The state lives behind `BreakerBackend`, a one-method protocol ("apply this change to breaker X's record
atomically"), so a Redis store can share one breaker between processes later; `MemoryBreakerBackend` keeps it
in this process. The state machine itself runs in Python, in `CircuitBreaker`, whatever the store.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Final, ParamSpec, TypedDict, TypeVar, Unpack, cast, overload

from opentelemetry import trace

from rfobs import _check
from rfobs.exceptions import CircuitOpen, ConfigError
from rfobs.instrument import _deadline
from rfobs.instrument import _telemetry as t
from rfobs.instrument._breaker_state import (
    CLOSED,
    FAILURE,
    HALF_OPEN,
    OPEN,
    STATES,
    SUCCESS,
    BreakerBackend,
    BreakerRecord,
    MemoryBreakerBackend,
    Move,
    Rules,
    read_state,
)
from rfobs.instrument._clock import Clock, check_clock, default_clock
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
Decorator = Callable[[Callable[P, R]], Callable[P, R]]

logger = logging.getLogger("rfobs.breaker")

_GAUGE: Final = {CLOSED: 0.0, HALF_OPEN: 1.0, OPEN: 2.0}

Failures = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
"""Exception classes that count as failures, or a predicate that says whether an exception does."""


class BreakerOptions(TypedDict, total=False):
    """The keyword arguments of `CircuitBreaker`, `@circuit_breaker` and `CircuitBreaker.copy` (see the class)."""

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


def _checked(owner: str, options: BreakerOptions) -> tuple[Rules, Clock | None, BreakerBackend | None]:
    """The state machine `options` describe (every default filled in), and the clock and backend given.

    Raises:
        ConfigError: An unknown option, or a value out of range, named with `owner` (`CircuitBreaker`,
            `@circuit_breaker`).
    """
    _check.options(owner, options, BreakerOptions.__annotations__)
    threshold = options.get("failure_threshold", 5)
    if threshold is not None:
        threshold = _check.integer(owner, "failure_threshold", threshold, ge=1, allowed="an integer >= 1 or None")
    ratio = options.get("failure_ratio")
    if ratio is not None:
        ratio = _check.number(owner, "failure_ratio", ratio, gt=0, le=1, allowed="a number in (0, 1], or None")
    if threshold is None and ratio is None:
        raise ConfigError(f"{owner}(failure_threshold=None, failure_ratio=None): set one, or it never opens")
    window = _check.integer(owner, "window", options.get("window", 20), ge=1)
    minimum_calls = _check.integer(owner, "minimum_calls", options.get("minimum_calls", 10), ge=1)
    if minimum_calls > window:
        raise _check.bad(owner, "minimum_calls", minimum_calls, f"at most window={window!r}")
    reset_timeout = options.get("reset_timeout", 30.0)
    failures = options.get("counts_as_failure", (Exception,))
    is_predicate = callable(failures) and not isinstance(failures, type)
    exceptions = "an exception class or a tuple of them"
    failure_types = (
        () if is_predicate else _check.exception_types(owner, "counts_as_failure", failures, allowed=exceptions)
    )
    rules = Rules(
        failure_threshold=threshold,
        failure_ratio=ratio,
        window=window,
        minimum_calls=minimum_calls,
        reset_timeout=_check.number(owner, "reset_timeout", reset_timeout, ge=0, what="a finite number of seconds"),
        half_open_max_calls=_check.integer(owner, "half_open_max_calls", options.get("half_open_max_calls", 1), ge=1),
        success_threshold=_check.integer(owner, "success_threshold", options.get("success_threshold", 1), ge=1),
        failure_types=failure_types,
        failure_predicate=cast("Callable[[BaseException], bool]", failures) if is_predicate else None,
        ignore=_check.exception_types(owner, "ignore", options.get("ignore", ()), allowed=exceptions),
    )
    return rules, check_clock(owner, options.get("clock")), _check_backend(owner, options.get("backend"))


def _check_name(owner: str, name: object) -> str:
    return _check.text(owner, "name", name, "a non-empty string naming the breaker")


def _check_backend(owner: str, backend: object) -> BreakerBackend | None:
    if backend is not None and not callable(getattr(backend, "transact", None)):
        raise _check.bad(owner, "backend", backend, "a BreakerBackend (with transact) or None")
    return cast("BreakerBackend | None", backend)


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
        owner = "CircuitBreaker"
        self._name = _check_name(owner, name)
        self._rules, self._clock, backend = _checked(owner, options)
        self._backend: BreakerBackend = backend or MemoryBreakerBackend()
        self._options: BreakerOptions = options  # a fresh dict per call
        # Labels and event attributes for every possible transition, built once.
        pairs = [(a, b) for a in STATES for b in STATES if a != b]
        self._labels = {(a, b): (("breaker", self._name), ("from_state", a), ("to_state", b)) for a, b in pairs}
        self._events = {(a, b): {t.BREAKER_NAME: self._name, t.BREAKER_FROM: a, t.BREAKER_TO: b} for a, b in pairs}
        t.register_breaker(self)
        t.current()  # builds the instruments, and so the state gauge, if an SDK is installed already

    @property
    def name(self) -> str:
        """The breaker's name."""
        return self._name

    @property
    def state(self) -> str:
        """The stored state: "closed", "open" or "half_open"."""
        return self._backend.transact(self._name, read_state)

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

        moved = self._backend.transact(self._name, lambda record: Rules.reset(record, now))
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

    # -- admission and outcome ----------------------------------------------------------------------------------

    def _admit(self) -> int:
        now = (self._clock or default_clock()).monotonic()
        rules = self._rules
        generation, retry_after, moved = self._backend.transact(self._name, lambda record: rules.enter(record, now))
        if moved is not None:
            self._report(moved)
        if generation is None:
            state = OPEN if retry_after > 0 else HALF_OPEN
            self._refused(state, retry_after)
            raise CircuitOpen(self._name, retry_after, state)
        return generation

    def _settle(self, generation: int, error: BaseException | None) -> None:
        if (error is None or not isinstance(error, Exception)) and _deadline.expired():
            # Inside a timeout that has passed: cancelled at the deadline (async), or finishing late in the
            # timeout's worker thread (sync). The dependency did not answer in time: a failure.
            outcome = FAILURE
        else:
            outcome = SUCCESS if error is None else self._classify(error)
        now = (self._clock or default_clock()).monotonic()
        rules = self._rules
        moved = self._backend.transact(self._name, lambda record: rules.settle(record, generation, outcome, now))
        if moved is not None:
            self._report(moved)

    def _classify(self, error: BaseException) -> int:
        try:
            return self._rules.classify(error)
        except Exception:
            logger.exception("circuit breaker %r: counts_as_failure raised; counting the call as a failure", self._name)
            return FAILURE

    # -- telemetry -----------------------------------------------------------------------------------------------

    def _report(self, moved: Move) -> None:
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
    fixed_name = None if name is None else _check_name(where, name)
    _checked(where, options)  # fails now, at decoration, naming the decorator

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        return CircuitBreaker(fixed_name or _function_name(func), **options)(func)

    return decorate


def _function_name(func: Callable[..., Any]) -> str:
    target = getattr(func, "__func__", func)  # classmethod / staticmethod
    return getattr(target, "__name__", None) or "circuit_breaker"
