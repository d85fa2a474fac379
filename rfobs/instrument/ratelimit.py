"""`RateLimiter` and `@rate_limit`: token bucket or sliding window, global or per key, waiting or rejecting, adaptive.

A limiter is an object first: `await limiter.acquire()`, `limiter.acquire_sync()`, `async with limiter:`,
`with limiter:`, or a decorator (sync and async functions, through `wrap_policy`). Each decision is counted in
`rate_limit_requests_total{limiter, decision=allowed|delayed|rejected}`; a wait or a refusal also leaves a
`rate_limit` event on the current span. A per-key limit never puts the key in a metric label.

Waiting callers of a token bucket reserve their slot when they arrive and sleep once until it (see `backends`),
so they are admitted in arrival order without polling; those of a sliding window sleep until enough of the window
has passed and ask again, so no window ever holds more than the limit. An async wait never blocks the event
loop, and a backend with `acquire_async` (Redis) is awaited.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Hashable
from typing import Final, ParamSpec, Self, TypeVar, Unpack, overload

from rfobs import _check, _state
from rfobs.exceptions import ConfigError, RateLimited
from rfobs.instrument import _clock
from rfobs.instrument import _telemetry as t
from rfobs.instrument._adaptive import Adaptive, RateController
from rfobs.instrument._clock import Clock, check_clock
from rfobs.instrument._limiter_calls import (
    ALGORITHMS,
    MODES,
    Bound,
    KeyFunc,
    Mode,
    RateLimitOptions,
    Route,
    Slot,
    checked_options,
    key_getter,
)
from rfobs.instrument._limiter_telemetry import annotate, decision_labels, tally_for
from rfobs.instrument._wrap import wrap_policy
from rfobs.instrument.backends import (
    Algorithm,
    Limit,
    MemoryBackend,
    RateLimitBackend,
    SlidingWindow,
    check_backend,
    limit_of,
)

__all__ = [
    "Adaptive",
    "RateLimitOptions",
    "RateLimiter",
    "rate_limit",
    "rate_limit_api_calls",
    "rate_limit_per_user",
]

P = ParamSpec("P")
R = TypeVar("R")
Decorator = Callable[[Callable[P, R]], Callable[P, R]]

_UNNAMED: Final = "rate_limiter"
_instruments = t.current  # bound once: the admitted call's path is measured in tens of nanoseconds


class RateLimiter:
    """Limits how often (and how much) work goes through, globally or per key; thread-safe and task-safe.

    `rate` units are admitted per `per` seconds. With `algorithm="token_bucket"` (default) up to `burst` units
    go at once after a quiet spell (default: `rate`, one period's worth) and the bucket refills evenly. With
    `algorithm="sliding_window"` no interval of `per` seconds ever admits more than `rate` units (exact: a log
    of admission times). Each call takes `cost` units (default 1), so one limiter can hold a tokens-per-minute
    budget while another holds requests-per-minute.

    In `mode="wait"` a call over the limit sleeps until its reserved slot (a sliding window: until the window
    has room, then asks again), refused with `RateLimited` once the wait exceeds `max_wait` seconds; in
    `mode="reject"` it raises `RateLimited(name, retry_after)` at once.

    Args:
        rate: Units admitted per `per` seconds (> 0).
        per: The period in seconds (the window, for a sliding window).
        burst: Token bucket capacity (>= 1); not for a sliding window.
        algorithm: "token_bucket" or "sliding_window".
        name: The `limiter` metric label and the name in `RateLimited` (None: "rate_limiter"; `@rate_limit`
            names it after the function).
        key: Per-key limits when decorating: the name of an argument of the decorated function (such as
            "user_id") or a function of `(args, kwargs)`. Each key gets its own budget; keys never reach metrics.
        mode: "wait" or "reject".
        max_wait: In wait mode, the longest wait accepted, in seconds (None: no limit).
        adaptive: True or an `Adaptive` to lower the rate when latency or errors rise and restore it after.
        backend: Where the state lives (default: the process-wide one `rfobs.init()` set, such as Redis when
            `ratelimit.backend` is `redis`, else a `MemoryBackend` of this limiter's own), resolved per call.
        clock: Time source; default `default_clock()` resolved per call (so `rfobs.testing` can fake time).

    Raises:
        ConfigError: An argument is out of range or unknown.
    """

    def __init__(self, rate: float, per: float = 1.0, **options: Unpack[RateLimitOptions]) -> None:
        owner = "RateLimiter"
        _check.options(owner, options, RateLimitOptions.__annotations__)
        rate = _check.number(owner, "rate", rate, gt=0, allowed="a number > 0 (units admitted per `per` seconds)")
        per = _check.number(owner, "per", per, gt=0, allowed="seconds > 0")
        algorithm: Algorithm = _check.one_of(owner, "algorithm", options.get("algorithm", "token_bucket"), ALGORITHMS)
        mode: Mode = _check.one_of(owner, "mode", options.get("mode", "wait"), MODES)
        name, key, max_wait, adaptive = checked_options(owner, mode, options)
        limit = limit_of(owner, rate, per, algorithm, options.get("burst"))
        backend = check_backend(owner, options.get("backend"))
        self._clock = check_clock(owner, options.get("clock"))

        self._options: RateLimitOptions = options  # a fresh dict per call
        self._rate, self._per = rate, per
        self._name = name or _UNNAMED
        self._call_label = f"@rate_limit {self._name}"  # names the call in the warning when no SDK is installed
        self._key = key
        self._mode = mode
        self._limit = self._effective = limit
        self._max_cost = limit.max_cost
        self._max_wait = 0.0 if mode == "reject" else (math.inf if max_wait is None else max_wait)
        self._follow = backend is None
        own = MemoryBackend(lock=False)
        self._route = Route.follow(_state.active, own) if backend is None else Route(None, backend, None)
        self._retries = isinstance(limit, SlidingWindow)  # a sliding window reserves nothing: wait, then ask again
        self._lock = threading.Lock()
        self._paused_until = -math.inf
        self._adaptive = Adaptive() if adaptive is True else (adaptive or None)
        self._controller = None if self._adaptive is None else RateController(self._adaptive)
        self._labels = decision_labels(self._name)
        self._tally: list[int] = []
        self._tally_for: t.Instruments | None = None

    def __repr__(self) -> str:
        return f"RateLimiter({self._name!r}, {self._effective!r}, mode={self._mode!r})"

    @property
    def name(self) -> str:
        """The limiter's name (its metric label)."""
        return self._name

    @property
    def limit(self) -> Limit:
        """The configured limit; the one enforced now is `effective_limit`."""
        return self._limit

    @property
    def effective_limit(self) -> Limit:
        """The limit enforced now: the configured one scaled by `rate_factor`."""
        return self._effective

    @property
    def rate_factor(self) -> float:
        """The share of the configured rate in force (1.0 unless adaptive mode lowered it)."""
        return 1.0 if self._controller is None else self._controller.factor

    @property
    def adaptive(self) -> Adaptive | None:
        """The adaptive settings, or None for a fixed rate."""
        return self._adaptive

    @property
    def backend(self) -> RateLimitBackend:
        """Where the state lives now (a limiter given none follows the process-wide default)."""
        route = self._route
        return (self._reroute() if self._follow and route.state is not _state.active else route).backend

    @property
    def clock(self) -> Clock:
        """The clock used now: the one given, or the current default."""
        return _clock.current if self._clock is None else self._clock

    def copy(
        self, *, rate: float | None = None, per: float | None = None, **changes: Unpack[RateLimitOptions]
    ) -> RateLimiter:
        """A new limiter with the same settings except those given (and its own state unless a backend was given).

        Raises:
            ConfigError: A changed setting is invalid.
        """
        rate = self._rate if rate is None else rate
        return RateLimiter(rate, self._per if per is None else per, **{**self._options, **changes})

    # Acquiring ------------------------------------------------------------------------------------------------

    async def acquire(self, cost: float = 1, *, key: Hashable = None) -> float:
        """Wait (without blocking the event loop) until `cost` units for `key` may go; return the seconds waited.

        Raises:
            RateLimited: In reject mode when over the limit, or in wait mode when the wait exceeds `max_wait`.
            ConfigError: `cost` is not in (0, capacity].
        """
        clock = _clock.current if self._clock is None else self._clock
        now = clock.monotonic()
        route = self._route
        if self._follow and route.state is not _state.active:
            route = self._reroute()
        if route.acquire_async is None:
            wait = self._take(route, key, cost, now)
        else:
            wait = self._settle(await self._adecide(route, key, cost, now, self._max_wait))
        if not wait:
            return 0.0
        if self._retries:
            later = now
            while wait:  # nothing was taken: ask again once the window has moved on
                await clock.asleep(wait)
                later = clock.monotonic()
                wait = self._refused(await self._adecide(route, key, cost, later, self._max_wait - (later - now)))
            return later - now
        try:
            await clock.asleep(wait)
        except BaseException:
            if route.refund_async is None:
                self._refund(route, key, cost, now + wait)
            else:
                await route.refund_async(self._effective, self._slot(key), cost, now + wait)
            raise
        return wait

    def acquire_sync(self, cost: float = 1, *, key: Hashable = None) -> float:
        """Block the calling thread until `cost` units for `key` may go; return the seconds waited.

        Raises:
            RateLimited: In reject mode when over the limit, or in wait mode when the wait exceeds `max_wait`.
            ConfigError: `cost` is not in (0, capacity].
        """
        clock = _clock.current if self._clock is None else self._clock
        now = clock.monotonic()
        route = self._route
        if self._follow and route.state is not _state.active:
            route = self._reroute()
        wait = self._take(route, key, cost, now)
        if not wait:
            return 0.0
        if self._retries:
            later = now
            while wait:
                clock.sleep(wait)
                later = clock.monotonic()
                wait = self._refused(self._decide(route, key, cost, later, self._max_wait - (later - now)))
            return later - now
        try:
            clock.sleep(wait)
        except BaseException:
            self._refund(route, key, cost, now + wait)
            raise
        return wait

    def _reroute(self) -> Route:
        """Follow the process default backend after `init()` or `shutdown()` changed it (inlined check in callers)."""
        own = self._route.own if self._route.own is not None else MemoryBackend(lock=False)
        route = self._route = Route.follow(_state.active, own)
        return route

    def _slot(self, key: Hashable) -> Hashable:
        return self._name if key is None else (self._name, key)

    def _take(self, route: Route, key: Hashable, cost: float, now: float) -> float:
        """Decide, count the decision, and annotate the span: 0.0, a wait, or raise `RateLimited`."""
        own = route.own
        if own is None or not 0 < cost <= self._max_cost or now < self._paused_until:
            return self._settle(self._decide(route, key, cost, now, self._max_wait))
        # The fast path: our own backend, so one lock covers the decision and its count. Explicit acquire and
        # release cost half of `with` on CPython 3.11.
        instruments = _instruments(self._call_label)
        lock = self._lock
        lock.acquire()
        try:
            slot = self._name if key is None else (self._name, key)
            wait = own.acquire_unlocked(self._effective, slot, cost, now, self._max_wait)
            if wait == 0.0 and instruments is not None and self._tally_for is instruments:
                self._tally[0] += 1
                return 0.0
        finally:
            lock.release()
        return self._settle(wait, instruments)

    def _decide(self, route: Route, key: Hashable, cost: float, now: float, max_wait: float) -> float:
        """The backend's answer for one call, the pause of `backoff()` included; nothing counted."""
        extra = self._pause(cost, now, max_wait)
        if extra < 0 or (extra and self._retries):
            return extra
        slot = self._slot(key)
        if route.own is not None:
            with self._lock:  # our own backend has no lock of its own
                wait = route.own.acquire(self._effective, slot, cost, now + extra, max_wait - extra)
        else:
            # A shared backend (Redis) locks itself; holding ours across its round trip would serialize callers.
            wait = route.backend.acquire(self._effective, slot, cost, now + extra, max_wait - extra)
        return wait - extra if wait < 0 else wait + extra

    async def _adecide(self, route: Route, key: Hashable, cost: float, now: float, max_wait: float) -> float:
        """`_decide` awaiting a backend's `acquire_async`."""
        acquire = route.acquire_async
        if acquire is None:
            return self._decide(route, key, cost, now, max_wait)
        extra = self._pause(cost, now, max_wait)
        if extra < 0 or (extra and self._retries):
            return extra
        wait = await acquire(self._effective, self._slot(key), cost, now + extra, max_wait - extra)
        return wait - extra if wait < 0 else wait + extra

    def _pause(self, cost: float, now: float, max_wait: float) -> float:
        """Seconds left of a `backoff()` pause (0.0 when none), or minus them when they exceed `max_wait`."""
        if not 0 < cost <= self._max_cost:
            raise self._bad_cost("acquire", cost)
        extra = self._paused_until - now
        return 0.0 if extra <= 0 else -extra if extra > max_wait else extra

    def _settle(self, wait: float, instruments: t.Instruments | bool | None = True) -> float:
        """Count a decision made off the fast path, annotate the span, and raise on a refusal."""
        if instruments is True:
            instruments = t.current(self._call_label)
        if isinstance(instruments, t.Instruments):
            with self._lock:
                tally = self._tally if self._tally_for is instruments else self._bind(instruments)
                tally[0 if wait == 0.0 else 1 if wait > 0 else 2] += 1
            if wait != 0.0:
                annotate(self._name, wait)
        if wait < 0:
            raise RateLimited(self._name, -wait)
        return wait

    def _refused(self, wait: float) -> float:
        """A sliding window's answer on asking again: its delay was counted already; a refusal is counted now."""
        return self._settle(wait) if wait < 0 else wait

    def _refund(self, route: Route, key: Hashable, cost: float, at: float) -> None:
        if route.own is not None:
            with self._lock:
                route.own.refund(self._effective, self._slot(key), cost, at)
        else:
            route.backend.refund(self._effective, self._slot(key), cost, at)

    def _bind(self, instruments: t.Instruments) -> list[int]:
        """Start counting for a newly installed SDK (call under the lock)."""
        self._tally, self._tally_for = tally_for(instruments, self._labels), instruments
        return self._tally

    def _check_cost(self, where: str, cost: object) -> float:
        """`cost` if one call may take it: a number > 0 and at most the capacity."""
        units = _check.number(where, "cost", cost, gt=0)
        if units > self._max_cost:
            raise self._bad_cost(where, cost)
        return units

    def _bad_cost(self, where: str, cost: object) -> ConfigError:
        return ConfigError(
            f"{where}(cost={cost!r}) on rate limiter {self._name!r}: expected a number > 0 and <= {self._max_cost:g} "
            "(the limiter's capacity: its burst, or its limit per window)"
        )

    def __enter__(self) -> Self:
        self.acquire_sync()
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    async def __aenter__(self) -> Self:
        await self.acquire()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None

    def slot(self, cost: float = 1, *, key: Hashable = None) -> Slot:
        """A one-use `with` / `async with` block taking `cost` units for `key`.

        Unlike `with limiter:`, it also reports the block's latency and outcome to `record()` (adaptive mode).
        """
        return Slot(self, cost, key)

    # Adaptive mode --------------------------------------------------------------------------------------------

    def record(self, latency_s: float, ok: bool = True) -> None:
        """Feed one observed call (its latency in seconds and whether it succeeded) to adaptive mode.

        The decorator and `slot()` call this for you. Does nothing unless the limiter is adaptive.
        """
        controller = self._controller
        if controller is None:
            return
        with self._lock:
            factor = controller.record(latency_s, ok)
            if factor is not None:
                self._set_factor(factor)

    def backoff(self, retry_after: float | None = None) -> None:
        """Tell the limiter the service pushed back (HTTP 429, `Retry-After`): pause admissions and slow down.

        Admissions pause for `retry_after` seconds (when given); an adaptive limiter also cuts its rate as for an
        unhealthy batch. `@retry` calls this when it sees a 429 or a `Retry-After` hint.
        """
        if retry_after is not None and 0 < retry_after < math.inf:
            until = self.clock.monotonic() + retry_after
            with self._lock:
                self._paused_until = max(self._paused_until, until)
        controller = self._controller
        if controller is not None:
            with self._lock:
                self._set_factor(controller.push_back())

    def _set_factor(self, factor: float) -> None:
        self._effective = self._limit if factor >= 1.0 else self._limit.scaled(factor)

    # Decorating -----------------------------------------------------------------------------------------------

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Use the limiter as a decorator: `@limiter` (its own `key`, cost 1)."""
        return self.decorate(func)

    def decorate(self, func: Callable[P, R], *, key: str | KeyFunc | None = None, cost: float = 1) -> Callable[P, R]:
        """Rate-limit every call of `func` (sync or async) by this limiter.

        Args:
            func: The function, method, classmethod or staticmethod.
            key: Overrides the limiter's `key` for this function.
            cost: Units each call takes.

        Raises:
            ConfigError: `key` names an argument `func` does not have, or `cost` is out of range.
        """
        cost = self._check_cost("@rate_limit", cost)
        key_of = key_getter(func, self._key if key is None else key)
        return wrap_policy(func, Bound(self, key_of, cost), "rate_limit")


@overload
def rate_limit(rate: RateLimiter, /, *, key: str | KeyFunc | None = None, cost: float = 1) -> Decorator[P, R]: ...
@overload
def rate_limit(
    rate: float, per: float = 1.0, *, cost: float = 1, **options: Unpack[RateLimitOptions]
) -> Decorator[P, R]: ...
def rate_limit(
    rate: float | RateLimiter, per: float = 1.0, *, cost: float = 1, **options: Unpack[RateLimitOptions]
) -> Decorator[P, R]:
    """Rate-limit a function: build a `RateLimiter` from the arguments (see there), or use the one given.

    Built from arguments, each decorated function gets its own limiter, named after the function unless `name`
    is given. To share one budget between functions, create a `RateLimiter` and pass it (or decorate with it).

    Args:
        rate: Units per `per` seconds, or an existing `RateLimiter`.
        per: The period in seconds.
        cost: Units each call takes.
        **options: The `RateLimiter` options (`burst`, `algorithm`, `name`, `key`, `mode`, `max_wait`,
            `adaptive`, `backend`, `clock`); with an existing limiter, only `key`.

    Raises:
        ConfigError: An argument is invalid, or (when decorating) `key` names an argument the function lacks.

    Example:
        >>> @rate_limit(60, per=60, key="user_id", mode="reject")
        ... def answer(user_id: str, question: str) -> str:
        ...     return "42"
    """
    key = options.get("key")
    if isinstance(rate, RateLimiter):
        if extra := sorted(options.keys() - {"key"}):
            raise ConfigError(f"@rate_limit({extra[0]}=...): with an existing RateLimiter, only key= and cost= apply")
        limiter, named = rate, True
    else:
        limiter, named = RateLimiter(rate, per, **options), options.get("name") is not None
    limiter._check_cost("@rate_limit", cost)  # pyright: ignore[reportPrivateUsage]

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        bound = limiter if named else limiter.copy(name=getattr(func, "__name__", None) or _UNNAMED)
        return bound.decorate(func, key=key, cost=cost)

    return decorate


def rate_limit_api_calls(requests_per_second: float) -> Decorator[P, R]:
    """Seed-compatible shortcut: a token bucket of `requests_per_second` (burst of one second's worth), waiting."""
    return rate_limit(requests_per_second, 1.0)


def rate_limit_per_user(requests_per_minute: float, key: str | KeyFunc = "user_id") -> Decorator[P, R]:
    """Seed-compatible shortcut: at most `requests_per_minute` per user in any 60 s (sliding window), rejecting.

    Over the limit a call raises `RateLimited` with the seconds until that user's next slot.
    """
    return rate_limit(requests_per_minute, 60.0, algorithm="sliding_window", key=key, mode="reject")
