"""Circuit breaker: stop calling a dependency that keeps failing, and probe it again after a pause.

States: closed (calls go through and are counted), open (calls are refused with `CircuitOpen` at once) and
half-open (a bounded number of probe calls go through; enough successes close the breaker, a failure reopens
it). The state lives behind `BreakerBackend` (enter, settle, reset, state: each atomic in the store):
`MemoryBreakerBackend` keeps it in this process, `rfobs.fleet.RedisBreakerBackend` shares it between processes.
Classifying an exception, the clock and the telemetry stay here, whatever the store.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Final, ParamSpec, TypedDict, TypeVar, Unpack, cast, overload

from opentelemetry import trace

from rfobs import _check, _state
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
    AsyncBreakerBackend,
    BreakerBackend,
    BreakerRecord,
    MemoryBreakerBackend,
    Move,
    Rules,
    Ticket,
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


_OPERATIONS: Final = ("enter", "settle", "reset", "state")


def _check_backend(owner: str, backend: object) -> BreakerBackend | None:
    if backend is not None and not all(callable(getattr(backend, op, None)) for op in _OPERATIONS):
        raise _check.bad(owner, "backend", backend, "a BreakerBackend (with enter, settle, reset and state) or None")
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

    Thread-safe and usable from asyncio: the state changes atomically in the backend (under the memory
    backend's lock, never across an await; in one script on Redis), and `acall` and `async with` await a
    backend's `*_async` operations when it has them.

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
        backend: Where the state lives. Without one, the process-wide default that `rfobs.init()` set
            (`breaker.backend = "redis"`), looked up at each call, else a private `MemoryBreakerBackend`.

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
        self._rules, self._clock, self._backend = _checked(owner, options)
        # Without backend=, the default of the active init(), re-read whenever the active state changes.
        self._memory = MemoryBreakerBackend()
        self._seen: _state.ActiveState | None = None
        self._default: BreakerBackend = self._memory
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
        return self._store().state(self._name, self._rules, self._now())

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
        moved = self._store().reset(self._name, self._rules, self._now())
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
        store = self._store()
        ticket = self._admit(store)
        try:
            result = func(*args, **(kwargs or {}))
        except BaseException as error:
            self._settle(store, ticket, error)
            raise
        self._settle(store, ticket, None)
        return result

    async def acall(
        self, func: Callable[..., Awaitable[Any]], args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        """Await `func(*args, **kwargs)` through the breaker.

        Raises:
            CircuitOpen: The breaker is open (or half-open with all probe slots taken); `func` was not called.
        """
        store = self._store()
        if (awaited := _async_ops(store)) is not None:
            ticket = await self._admit_async(awaited)
            try:
                result = await func(*args, **(kwargs or {}))
            except BaseException as error:
                await self._settle_async(awaited, ticket, error)
                raise
            await self._settle_async(awaited, ticket, None)
            return result
        ticket = self._admit(store)
        try:
            result = await func(*args, **(kwargs or {}))
        except BaseException as error:
            self._settle(store, ticket, error)
            raise
        self._settle(store, ticket, None)
        return result

    def __enter__(self) -> CircuitBreaker:
        store = self._store()
        ticket = self._admit(store)
        _entered.set((*_entered.get(), (self, store, ticket)))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _, store, ticket = self._leave()
        self._settle(store, ticket, exc)

    async def __aenter__(self) -> CircuitBreaker:
        store = self._store()
        if (awaited := _async_ops(store)) is not None:
            ticket = await self._admit_async(awaited)
        else:
            ticket = self._admit(store)
        _entered.set((*_entered.get(), (self, store, ticket)))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _, store, ticket = self._leave()
        if (awaited := _async_ops(store)) is not None:
            await self._settle_async(awaited, ticket, exc)
        else:
            self._settle(store, ticket, exc)

    def _leave(self) -> tuple[CircuitBreaker, BreakerBackend, Ticket]:
        """Take this breaker's innermost `with` block off the context's stack; what it was admitted with."""
        stack = _entered.get()
        index = max(i for i, (breaker, _, _) in enumerate(stack) if breaker is self)
        _entered.set(stack[:index] + stack[index + 1 :])
        return stack[index]

    # -- admission and outcome ----------------------------------------------------------------------------------

    def _store(self) -> BreakerBackend:
        """The backend of this call: the one given, else the active `init()`'s default, else the private one."""
        if self._backend is not None:
            return self._backend
        active = _state.current()
        if active is not self._seen:
            self._default = cast("BreakerBackend | None", active.breaker_backend) or self._memory
            self._seen = active
        return self._default

    def _now(self) -> float:
        return (self._clock or default_clock()).monotonic()

    def _admit(self, store: BreakerBackend) -> Ticket:
        return self._admitted(store.enter(self._name, self._rules, self._now()))

    async def _admit_async(self, store: AsyncBreakerBackend) -> Ticket:
        return self._admitted(await store.enter_async(self._name, self._rules, self._now()))

    def _admitted(self, admission: tuple[Ticket | None, float, Move | None]) -> Ticket:
        ticket, retry_after, moved = admission
        if moved is not None:
            self._report(moved)
        if ticket is None:
            state = OPEN if retry_after > 0 else HALF_OPEN
            self._refused(state, retry_after)
            raise CircuitOpen(self._name, retry_after, state)
        return ticket

    def _settle(self, store: BreakerBackend, ticket: Ticket, error: BaseException | None) -> None:
        moved = store.settle(self._name, self._rules, ticket, self._outcome(error), self._now())
        if moved is not None:
            self._report(moved)

    async def _settle_async(self, store: AsyncBreakerBackend, ticket: Ticket, error: BaseException | None) -> None:
        moved = await store.settle_async(self._name, self._rules, ticket, self._outcome(error), self._now())
        if moved is not None:
            self._report(moved)

    def _outcome(self, error: BaseException | None) -> int:
        if (error is None or not isinstance(error, Exception)) and _deadline.expired():
            # Inside a timeout that has passed: cancelled at the deadline (async), or finishing late in the
            # timeout's worker thread (sync). The dependency did not answer in time: a failure.
            return FAILURE
        return SUCCESS if error is None else self._classify(error)

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


_entered: ContextVar[tuple[tuple[CircuitBreaker, BreakerBackend, Ticket], ...]] = ContextVar(
    "rfobs_breaker_calls", default=()
)
"""The `with breaker:` blocks open in this context with the backend and ticket each was admitted with, innermost
last."""


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


def _async_ops(store: BreakerBackend) -> AsyncBreakerBackend | None:
    """`store` if it has awaitable operations (a networked store), else None."""
    return cast("AsyncBreakerBackend", store) if getattr(store, "enter_async", None) is not None else None


def _function_name(func: Callable[..., Any]) -> str:
    target = getattr(func, "__func__", func)  # classmethod / staticmethod
    return getattr(target, "__name__", None) or "circuit_breaker"
