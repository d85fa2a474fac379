"""`RateLimiter` and `@rate_limit`: token bucket or sliding window, global or per key, waiting or rejecting, adaptive.

A limiter is an object first: `await limiter.acquire()`, `limiter.acquire_sync()`, `async with limiter:`,
`with limiter:`, or a decorator (sync and async functions, through `wrap_policy`). Each decision is counted in
`rate_limit_requests_total{limiter, decision=allowed|delayed|rejected}`; a wait or a refusal also leaves a
`rate_limit` event on the current span. A per-key limit never puts the key in a metric label.

Waiting callers reserve their slot when they arrive and sleep once until it (see `backends`), so they are
admitted in arrival order without polling, and an async wait never blocks the event loop.
"""

from __future__ import annotations

import inspect
import math
import threading
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, ParamSpec, Self, TypeVar, cast, overload

from opentelemetry import trace

from rfobs.exceptions import ConfigError, RateLimited
from rfobs.instrument import _telemetry as t
from rfobs.instrument._clock import Clock, default_clock
from rfobs.instrument._wrap import wrap_policy
from rfobs.instrument.backends import Limit, MemoryBackend, RateLimitBackend, SlidingWindow, TokenBucket

__all__ = ["Adaptive", "RateLimiter", "rate_limit", "rate_limit_api_calls", "rate_limit_per_user"]

P = ParamSpec("P")
R = TypeVar("R")
Decorator = Callable[[Callable[P, R]], Callable[P, R]]
KeyFunc = Callable[[tuple[Any, ...], dict[str, Any]], Hashable]
"""Computes a call's key from its positional and keyword arguments."""
Algorithm = Literal["token_bucket", "sliding_window"]
Mode = Literal["wait", "reject"]
_Acquire = Callable[[Limit, Hashable, float, float, float], float]

_ALGORITHMS: Final = ("token_bucket", "sliding_window")
_MODES: Final = ("wait", "reject")


def _number(owner: str, argument: str, value: object, allowed: str, ok: Callable[[float], bool]) -> float:
    try:
        number = math.nan if isinstance(value, bool) or not isinstance(value, (int, float)) else float(value)
    except OverflowError:  # an int beyond a float's range
        number = math.nan
    if not ok(number):
        raise ConfigError(f"{owner}({argument}={value!r}): expected {allowed}")
    return number


def _finite_positive(x: float) -> bool:
    return 0 < x < math.inf


@dataclass(frozen=True, slots=True)
class Adaptive:
    """How an adaptive limiter moves its rate: additive increase, multiplicative decrease (AIMD).

    Samples (`RateLimiter.record`) are judged in consecutive batches of `window`. A batch whose `percentile`
    latency exceeds `target_latency`, or whose error rate exceeds `max_error_rate`, multiplies the rate by
    `decrease` (not below `min_factor` of the configured rate); a healthy batch adds `increase` of the configured
    rate back, up to all of it. `RateLimiter.backoff()` (a 429 or `Retry-After` seen by `@retry`) also decreases.
    A changed rate applies from each key's next call on (a bucket refills its idle gap at the rate in force then).

    Attributes:
        target_latency: Seconds; None judges by error rate only.
        percentile: Which latency percentile is compared with the target (0.9 is p90).
        max_error_rate: The error share a batch may have and still count as healthy.
        window: Samples per batch.
        decrease: The factor applied on an unhealthy batch or a backoff.
        increase: The share of the configured rate restored per healthy batch.
        min_factor: The floor, as a share of the configured rate.
    """

    target_latency: float | None = None
    percentile: float = 0.9
    max_error_rate: float = 0.1
    window: int = 20
    decrease: float = 0.5
    increase: float = 0.1
    min_factor: float = 0.1

    def __post_init__(self) -> None:
        if self.target_latency is not None:
            _number("Adaptive", "target_latency", self.target_latency, "seconds > 0, or None", _finite_positive)
        _number("Adaptive", "percentile", self.percentile, "a number in (0, 1]", lambda x: 0 < x <= 1)
        _number("Adaptive", "max_error_rate", self.max_error_rate, "a number in [0, 1)", lambda x: 0 <= x < 1)
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ConfigError(f"Adaptive(window={self.window!r}): expected an int >= 1 (samples per batch)")
        _number("Adaptive", "decrease", self.decrease, "a number in (0, 1)", lambda x: 0 < x < 1)
        _number("Adaptive", "increase", self.increase, "a number in (0, 1]", lambda x: 0 < x <= 1)
        _number("Adaptive", "min_factor", self.min_factor, "a number in (0, 1]", lambda x: 0 < x <= 1)


class RateLimiter:
    """Limits how often (and how much) work goes through, globally or per key; thread-safe and task-safe.

    `rate` units are admitted per `per` seconds. With `algorithm="token_bucket"` (default) up to `burst` units
    go at once after a quiet spell (default: `rate`, one period's worth) and the bucket refills evenly. With
    `algorithm="sliding_window"` no interval of `per` seconds ever admits more than `rate` units (exact: a log
    of admission times). Each call takes `cost` units (default 1), so one limiter can hold a tokens-per-minute
    budget while another holds requests-per-minute.

    In `mode="wait"` a call over the limit sleeps until its reserved slot (refused with `RateLimited` if that is
    more than `max_wait` seconds away); in `mode="reject"` it raises `RateLimited(name, retry_after)` at once.

    Args:
        rate: Units admitted per `per` seconds (> 0).
        per: The period in seconds (the window, for a sliding window).
        burst: Token bucket capacity (>= 1); not for a sliding window.
        algorithm: "token_bucket" or "sliding_window".
        name: The `limiter` metric label and the name in `RateLimited`.
        key: Per-key limits when decorating: the name of an argument of the decorated function (such as
            "user_id") or a function of `(args, kwargs)`. Each key gets its own budget; keys never reach metrics.
        mode: "wait" or "reject".
        max_wait: In wait mode, the longest wait accepted, in seconds (None: no limit).
        adaptive: True or an `Adaptive` to lower the rate when latency or errors rise and restore it after.
        backend: Where the state lives (default: a new `MemoryBackend` of this limiter's own).
        clock: Time source; default `default_clock()` resolved per call (so `rfobs.testing` can fake time).

    Raises:
        ConfigError: An argument is out of range or unknown.
    """

    def __init__(
        self,
        rate: float,
        per: float = 1.0,
        *,
        burst: float | None = None,
        algorithm: Algorithm = "token_bucket",
        name: str = "rate_limiter",
        key: str | KeyFunc | None = None,
        mode: Mode = "wait",
        max_wait: float | None = None,
        adaptive: bool | Adaptive = False,
        backend: RateLimitBackend | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._config: dict[str, Any] = {
            "rate": rate, "per": per, "burst": burst, "algorithm": algorithm, "name": name, "key": key,
            "mode": mode, "max_wait": max_wait, "adaptive": adaptive, "backend": backend, "clock": clock,
        }  # fmt: skip
        owner = "RateLimiter"
        rate = _number(owner, "rate", rate, "a number > 0 (units admitted per `per` seconds)", _finite_positive)
        per = _number(owner, "per", per, "seconds > 0", _finite_positive)
        if algorithm not in _ALGORITHMS:
            raise ConfigError(f"{owner}(algorithm={algorithm!r}): expected 'token_bucket' or 'sliding_window'")
        if mode not in _MODES:
            raise ConfigError(f"{owner}(mode={mode!r}): expected 'wait' or 'reject'")
        if not isinstance(name, str) or not name.strip():  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ConfigError(f"{owner}(name={name!r}): expected a non-empty string (the metric label)")
        if key is not None and not isinstance(key, str) and not callable(key):
            raise ConfigError(f"{owner}(key={key!r}): expected an argument name, a function of (args, kwargs), or None")
        if algorithm == "sliding_window":
            if burst is not None:
                raise ConfigError(
                    f"{owner}(burst={burst!r}): burst applies to algorithm='token_bucket'; a sliding window "
                    "admits up to `rate` at once"
                )
            if rate < 1:
                raise ConfigError(
                    f"{owner}(rate={rate!r}): a sliding window admits at least 1 per window; for fewer, lengthen `per`"
                )
            limit: Limit = SlidingWindow(rate, per)
        else:
            capacity = max(1.0, rate) if burst is None else _number(owner, "burst", burst, "a number >= 1", _at_least_1)
            limit = TokenBucket(rate / per, capacity)
        if max_wait is not None:
            if mode == "reject":
                raise ConfigError(f"{owner}(max_wait={max_wait!r}): max_wait applies to mode='wait' only")
            max_wait = _number(owner, "max_wait", max_wait, "seconds >= 0, or None for no limit", lambda x: x >= 0)
        if not isinstance(adaptive, (bool, Adaptive)):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ConfigError(f"{owner}(adaptive={adaptive!r}): expected True, False or an Adaptive(...)")
        self._name = name.strip()
        self._key = key
        self._mode: Mode = mode
        self._limit = self._effective = limit
        self._max_cost = limit.max_cost
        self._max_wait = 0.0 if mode == "reject" else (math.inf if max_wait is None else max_wait)
        self._own: MemoryBackend | None = None
        if backend is None:
            backend = self._own = MemoryBackend(lock=False)
        self._backend = backend
        self._clock = clock
        self._lock = threading.Lock()
        self._paused_until = -math.inf
        self._adaptive = Adaptive() if adaptive is True else (adaptive or None)
        self._samples: list[float] = []
        self._errors = 0
        self._factor = 1.0
        self._allowed = (("limiter", self._name), ("decision", "allowed"))
        self._delayed = (("limiter", self._name), ("decision", "delayed"))
        self._rejected = (("limiter", self._name), ("decision", "rejected"))
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
        return self._factor

    @property
    def adaptive(self) -> Adaptive | None:
        """The adaptive settings, or None for a fixed rate."""
        return self._adaptive

    @property
    def backend(self) -> RateLimitBackend:
        """Where the state lives."""
        return self._backend

    @property
    def clock(self) -> Clock:
        """The clock used now: the one given, or the current default."""
        return default_clock() if self._clock is None else self._clock

    def copy(self, **changes: Any) -> RateLimiter:
        """A new limiter with the same settings except `changes` (and its own state unless a backend was given)."""
        return RateLimiter(**{**self._config, **changes})

    # Acquiring ------------------------------------------------------------------------------------------------

    async def acquire(self, cost: float = 1, *, key: Hashable = None) -> float:
        """Wait (without blocking the event loop) until `cost` units for `key` may go; return the seconds waited.

        Raises:
            RateLimited: In reject mode when over the limit, or in wait mode when the wait exceeds `max_wait`.
            ConfigError: `cost` is not in (0, capacity].
        """
        clock = default_clock() if self._clock is None else self._clock
        now = clock.monotonic()
        slot = self._name if key is None else (self._name, key)
        own = self._own
        if own is None or not 0 < cost <= self._max_cost or now < self._paused_until:
            wait = self._take_slowly(slot, cost, now)
        else:
            # `_take`'s fast path, inlined: this is the call benchmarked against aiolimiter.
            instruments = t.current()
            lock = self._lock
            lock.acquire()
            try:
                wait = own.acquire_unlocked(self._effective, slot, cost, now, self._max_wait)
                if wait == 0.0 and instruments is not None and self._tally_for is instruments:
                    self._tally[0] += 1
                    return 0.0
            finally:
                lock.release()
            wait = self._settle(wait, instruments)
        if wait:
            try:
                await clock.asleep(wait)
            except BaseException:
                self._refund(slot, cost, now + wait)
                raise
        return wait

    def acquire_sync(self, cost: float = 1, *, key: Hashable = None) -> float:
        """Block the calling thread until `cost` units for `key` may go; return the seconds waited.

        Raises:
            RateLimited: In reject mode when over the limit, or in wait mode when the wait exceeds `max_wait`.
            ConfigError: `cost` is not in (0, capacity].
        """
        clock = default_clock() if self._clock is None else self._clock
        now = clock.monotonic()
        slot = self._name if key is None else (self._name, key)
        wait = self._take(slot, cost, now)
        if wait:
            try:
                clock.sleep(wait)
            except BaseException:
                self._refund(slot, cost, now + wait)
                raise
        return wait

    def _take(self, slot: Hashable, cost: float, now: float) -> float:
        """Decide, count the decision, and annotate the span: 0.0, a wait, or raise `RateLimited`."""
        own = self._own
        if own is None or not 0 < cost <= self._max_cost or now < self._paused_until:
            return self._take_slowly(slot, cost, now)
        # The fast path: our own backend, so one lock covers the decision and its count. Explicit acquire and
        # release cost half of `with` on CPython 3.11.
        instruments = t.current()
        lock = self._lock
        lock.acquire()
        try:
            wait = own.acquire_unlocked(self._effective, slot, cost, now, self._max_wait)
            if wait == 0.0 and instruments is not None and self._tally_for is instruments:
                self._tally[0] += 1
                return 0.0
        finally:
            lock.release()
        return self._settle(wait, instruments)

    def _take_slowly(self, slot: Hashable, cost: float, now: float) -> float:
        if not 0 < cost <= self._max_cost:
            raise self._bad_cost("acquire", cost)
        acquire = self._backend.acquire
        if self._own is not None:
            # Our own backend has no lock of its own.
            with self._lock:
                wait = self._ask(acquire, slot, cost, now)
        else:
            # A shared backend (Redis) locks itself; holding ours across its round trip would serialize callers.
            wait = self._ask(acquire, slot, cost, now)
        return self._settle(wait, t.current())

    def _ask(self, acquire: _Acquire, slot: Hashable, cost: float, now: float) -> float:
        paused = self._paused_until
        if now >= paused:
            return acquire(self._effective, slot, cost, now, self._max_wait)
        extra = paused - now
        if extra > self._max_wait:
            return -extra
        wait = acquire(self._effective, slot, cost, paused, self._max_wait - extra)
        return wait - extra if wait < 0 else wait + extra

    def _settle(self, wait: float, instruments: t.Instruments | None) -> float:
        """Count a decision made off the fast path, annotate the span, and raise on a refusal."""
        if instruments is not None:
            with self._lock:
                tally = self._tally if self._tally_for is instruments else self._bind(instruments)
                tally[0 if wait == 0.0 else 1 if wait > 0 else 2] += 1
            if wait != 0.0:
                self._annotate(wait)
        if wait < 0:
            raise RateLimited(self._name, -wait)
        return wait

    def _refund(self, slot: Hashable, cost: float, at: float) -> None:
        if self._own is not None:
            with self._lock:
                self._own.refund(self._effective, slot, cost, at)
        else:
            self._backend.refund(self._effective, slot, cost, at)

    def _bind(self, instruments: t.Instruments) -> list[int]:
        """Start counting for a newly installed SDK: a tally it reads at collection time (call under the lock)."""
        tally = [0, 0, 0]
        labels = (self._allowed, self._delayed, self._rejected)

        def read() -> list[tuple[t.Labels, int]]:
            return [(labels[i], n) for i, n in enumerate(tally) if n]

        instruments.rate_limit_counts.add_source(read)
        self._tally, self._tally_for = tally, instruments
        return tally

    def _annotate(self, wait: float) -> None:
        span = trace.get_current_span()
        if not span.is_recording():
            return
        if wait > 0:
            span.add_event(
                t.RATE_LIMIT_EVENT,
                {t.RATE_LIMIT_NAME: self._name, t.RATE_LIMIT_DECISION: "delayed", t.RATE_LIMIT_WAIT: wait},
            )
            # Several waits under one span (retried attempts, say) add up.
            attributes: Mapping[str, object] = getattr(span, "attributes", None) or {}
            earlier = attributes.get(t.RATE_LIMIT_WAIT)
            span.set_attribute(t.RATE_LIMIT_WAIT, earlier + wait if isinstance(earlier, float) else wait)
        else:
            span.add_event(
                t.RATE_LIMIT_EVENT,
                {
                    t.RATE_LIMIT_NAME: self._name,
                    t.RATE_LIMIT_DECISION: "rejected",
                    t.RATE_LIMIT_WAIT: 0.0,
                    t.RATE_LIMIT_RETRY_AFTER: -wait,
                },
            )

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

    def slot(self, cost: float = 1, *, key: Hashable = None) -> _Slot:
        """A one-use `with` / `async with` block taking `cost` units for `key`.

        Unlike `with limiter:`, it also reports the block's latency and outcome to `record()` (adaptive mode).
        """
        return _Slot(self, cost, key)

    # Adaptive mode --------------------------------------------------------------------------------------------

    def record(self, latency_s: float, ok: bool = True) -> None:
        """Feed one observed call (its latency in seconds and whether it succeeded) to adaptive mode.

        The decorator and `slot()` call this for you. Does nothing unless the limiter is adaptive.
        """
        settings = self._adaptive
        if settings is None:
            return
        with self._lock:
            self._samples.append(latency_s)
            if not ok:
                self._errors += 1
            count = len(self._samples)
            if count < settings.window:
                return
            samples, errors = sorted(self._samples), self._errors
            self._samples.clear()
            self._errors = 0
            high = samples[max(0, math.ceil(settings.percentile * count) - 1)]
            slow = settings.target_latency is not None and high > settings.target_latency
            if slow or errors / count > settings.max_error_rate:
                self._set_factor(max(settings.min_factor, self._factor * settings.decrease))
            elif self._factor < 1.0:
                self._set_factor(min(1.0, self._factor + settings.increase))

    def backoff(self, retry_after: float | None = None) -> None:
        """Tell the limiter the service pushed back (HTTP 429, `Retry-After`): pause admissions and slow down.

        Admissions pause for `retry_after` seconds (when given); an adaptive limiter also cuts its rate as for an
        unhealthy batch. `@retry` calls this when it sees a 429 or a `Retry-After` hint.
        """
        if retry_after is not None and 0 < retry_after < math.inf:
            until = self.clock.monotonic() + retry_after
            with self._lock:
                self._paused_until = max(self._paused_until, until)
        settings = self._adaptive
        if settings is not None:
            with self._lock:
                self._samples.clear()
                self._errors = 0
                self._set_factor(max(settings.min_factor, self._factor * settings.decrease))

    def _set_factor(self, factor: float) -> None:
        self._factor = factor
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
        if not _number("@rate_limit", "cost", cost, "a number > 0", _finite_positive) <= self._max_cost:
            raise self._bad_cost("@rate_limit", cost)
        key_of = _key_getter(func, self._key if key is None else key)
        return wrap_policy(func, _Bound(self, key_of, cost), "rate_limit")


def _at_least_1(x: float) -> bool:
    return 1 <= x < math.inf


class _Slot:
    __slots__ = ("_cost", "_key", "_limiter", "_start")

    def __init__(self, limiter: RateLimiter, cost: float, key: Hashable) -> None:
        self._limiter, self._cost, self._key = limiter, cost, key
        self._start = 0.0

    def __enter__(self) -> Self:
        self._limiter.acquire_sync(self._cost, key=self._key)
        self._start = self._limiter.clock.monotonic()
        return self

    async def __aenter__(self) -> Self:
        await self._limiter.acquire(self._cost, key=self._key)
        self._start = self._limiter.clock.monotonic()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None or issubclass(kind, Exception):
            self._limiter.record(self._limiter.clock.monotonic() - self._start, ok=kind is None)

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(kind, error, tb)


class _Bound:
    """One decorated function's view of a limiter: how to find its key, and what a call costs."""

    __slots__ = ("cost", "key_of", "limiter")

    def __init__(self, limiter: RateLimiter, key_of: KeyFunc | None, cost: float) -> None:
        self.limiter, self.key_of, self.cost = limiter, key_of, cost

    def call(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        key = None if self.key_of is None else self.key_of(args, kwargs)
        if self.limiter.adaptive is None:
            self.limiter.acquire_sync(self.cost, key=key)
            return func(*args, **kwargs)
        with _Slot(self.limiter, self.cost, key):
            return func(*args, **kwargs)

    async def acall(self, func: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        key = None if self.key_of is None else self.key_of(args, kwargs)
        if self.limiter.adaptive is None:
            await self.limiter.acquire(self.cost, key=key)
            return await func(*args, **kwargs)
        async with _Slot(self.limiter, self.cost, key):
            return await func(*args, **kwargs)


def _key_getter(func: Callable[..., Any], key: str | KeyFunc | None) -> KeyFunc | None:
    """Turn `key=` into a function of (args, kwargs), resolving an argument name against `func`'s signature."""
    if key is None or not isinstance(key, str):
        return key
    target: Callable[..., Any] = func
    if isinstance(func, (classmethod, staticmethod)):
        target = cast("classmethod[Any, ..., Any] | staticmethod[..., Any]", func).__func__
    qualname = getattr(target, "__qualname__", repr(target))
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError) as error:
        raise ConfigError(f"@rate_limit(key={key!r}): cannot read the signature of {qualname} ({error})") from None
    parameter = parameters.get(key)
    if parameter is None or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
        names = ", ".join(n for n, p in parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
        raise ConfigError(
            f"@rate_limit(key={key!r}): {qualname}() has no argument {key!r} (its arguments: {names or 'none'}); "
            "name one of them, or pass a function of (args, kwargs)"
        )
    default = None if parameter.default is parameter.empty else parameter.default
    positional = parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
    index = list(parameters).index(key) if positional else -1
    by_keyword = parameter.kind is not parameter.POSITIONAL_ONLY

    def key_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        if 0 <= index < len(args):
            return args[index]
        return kwargs.get(key, default) if by_keyword else default

    return key_of


@overload
def rate_limit(rate: RateLimiter, /, *, key: str | KeyFunc | None = None, cost: float = 1) -> Decorator[P, R]: ...
@overload
def rate_limit(
    rate: float,
    per: float = 1.0,
    *,
    burst: float | None = None,
    algorithm: Algorithm = "token_bucket",
    name: str | None = None,
    key: str | KeyFunc | None = None,
    mode: Mode = "wait",
    max_wait: float | None = None,
    adaptive: bool | Adaptive = False,
    cost: float = 1,
    backend: RateLimitBackend | None = None,
    clock: Clock | None = None,
) -> Decorator[P, R]: ...
def rate_limit(
    rate: float | RateLimiter,
    per: float = 1.0,
    *,
    burst: float | None = None,
    algorithm: Algorithm = "token_bucket",
    name: str | None = None,
    key: str | KeyFunc | None = None,
    mode: Mode = "wait",
    max_wait: float | None = None,
    adaptive: bool | Adaptive = False,
    cost: float = 1,
    backend: RateLimitBackend | None = None,
    clock: Clock | None = None,
) -> Decorator[P, R]:
    """Rate-limit a function: build a `RateLimiter` from the arguments (see there), or use the one given.

    Built from arguments, each decorated function gets its own limiter, named after the function unless `name`
    is given. To share one budget between functions, create a `RateLimiter` and pass it (or decorate with it).

    Args:
        rate: Units per `per` seconds, or an existing `RateLimiter`.
        per: The period in seconds.
        burst: Token bucket capacity.
        algorithm: "token_bucket" or "sliding_window".
        name: The limiter's name (metric label); defaults to the function's name.
        key: Per-key limits: an argument name such as "user_id", or a function of (args, kwargs).
        mode: "wait" or "reject".
        max_wait: In wait mode, the longest wait accepted (seconds).
        adaptive: True or an `Adaptive` for latency- and error-driven rate control.
        cost: Units each call takes.
        backend: Where the state lives.
        clock: Time source (tests).

    Raises:
        ConfigError: An argument is invalid, or (when decorating) `key` names an argument the function lacks.

    Example:
        >>> @rate_limit(60, per=60, key="user_id", mode="reject")
        ... def answer(user_id: str, question: str) -> str:
        ...     return "42"
    """
    if isinstance(rate, RateLimiter):
        limiter, named = rate, True
    else:
        settings: dict[str, Any] = {"burst": burst, "algorithm": algorithm, "key": key, "mode": mode}
        settings |= {"max_wait": max_wait, "adaptive": adaptive, "backend": backend, "clock": clock}
        limiter = RateLimiter(rate, per, name=name or "rate_limiter", **settings)
        named = name is not None
    if not _number("@rate_limit", "cost", cost, "a number > 0", _finite_positive) <= limiter.limit.max_cost:
        raise limiter._bad_cost("@rate_limit", cost)  # pyright: ignore[reportPrivateUsage]

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        bound = limiter if named else limiter.copy(name=getattr(func, "__name__", None) or "rate_limiter")
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
