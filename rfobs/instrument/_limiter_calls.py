"""How calls go through a `RateLimiter`: the backend of each call, its key, a function's cost, and `slot()` blocks.

A decorated call, like a `slot()` block, reports its latency and outcome to the limiter when the limiter is
adaptive; a plain `with limiter:` block cannot, as it sees no outcome of its own. A limiter given no backend
follows the process-wide default (`rfobs._state.current().limiter_backend`, set by `rfobs.init()`), found again
only when the active state changes: one identity check per call.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Hashable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self, TypedDict, cast

from rfobs import _check, _state
from rfobs.exceptions import ConfigError
from rfobs.instrument._adaptive import Adaptive
from rfobs.instrument._clock import Clock
from rfobs.instrument.backends import Algorithm, Limit, MemoryBackend, RateLimitBackend

if TYPE_CHECKING:
    from rfobs.instrument.ratelimit import RateLimiter

__all__ = [
    "ALGORITHMS",
    "MODES",
    "Bound",
    "KeyFunc",
    "Mode",
    "RateLimitOptions",
    "Route",
    "Slot",
    "checked_options",
    "key_getter",
]

Mode = Literal["wait", "reject"]
ALGORITHMS: Final[tuple[Algorithm, ...]] = ("token_bucket", "sliding_window")
MODES: Final[tuple[Mode, ...]] = ("wait", "reject")

AsyncAcquire = Callable[[Limit, Hashable, float, float, float], Awaitable[float]]
AsyncRefund = Callable[[Limit, Hashable, float, float], Awaitable[None]]


class RateLimitOptions(TypedDict, total=False):
    """The keyword arguments of `RateLimiter`, `@rate_limit` and `RateLimiter.copy` (see `RateLimiter`)."""

    burst: float | None
    algorithm: Algorithm
    name: str | None
    key: str | KeyFunc | None
    mode: Mode
    max_wait: float | None
    adaptive: bool | Adaptive
    backend: RateLimitBackend | None
    clock: Clock | None


def checked_options(
    owner: str, mode: str, options: Mapping[str, Any]
) -> tuple[str | None, str | KeyFunc | None, float | None, bool | Adaptive]:
    """A `RateLimiter`'s `name`, `key`, `max_wait` and `adaptive` options, checked.

    Raises:
        ConfigError: One is invalid, or `max_wait` is given in reject mode.
    """
    name = options.get("name")
    if name is not None:
        name = _check.text(owner, "name", name, "a non-empty string (the metric label), or None")
    key = options.get("key")
    if key is not None and not isinstance(key, str):
        _check.function(owner, "key", key, "an argument name, a function of (args, kwargs), or None")
    max_wait = options.get("max_wait")
    if max_wait is not None:
        if mode == "reject":
            raise ConfigError(f"{owner}(max_wait={max_wait!r}): max_wait applies to mode='wait' only")
        max_wait = _check.number(
            owner, "max_wait", max_wait, ge=0, finite=False, allowed="seconds >= 0, or None for no limit"
        )
    adaptive: object = options.get("adaptive", False)
    if not isinstance(adaptive, bool | Adaptive):
        raise _check.bad(owner, "adaptive", adaptive, "True, False or an Adaptive(...)")
    return name, cast("str | KeyFunc | None", key), max_wait, adaptive


class Route:
    """Where one limiter's calls go now: its own memory store, or a shared backend (and its async methods).

    Attributes:
        state: The `_state.current()` this route was found for (None: a backend given explicitly, never re-routed).
        own: The limiter's own `MemoryBackend` when calls go there (one lock covers decision and count), else None.
        backend: The backend calls go to.
        acquire_async: The backend's `acquire_async`, or None when it has none.
        refund_async: The backend's `refund_async`, or None.
    """

    __slots__ = ("acquire_async", "backend", "own", "refund_async", "state")

    def __init__(self, state: _state.ActiveState | None, backend: RateLimitBackend, own: MemoryBackend | None) -> None:
        self.state, self.backend, self.own = state, backend, own
        self.acquire_async: AsyncAcquire | None = _coroutine_method(backend, "acquire_async")
        self.refund_async: AsyncRefund | None = _coroutine_method(backend, "refund_async")

    @classmethod
    def follow(cls, state: _state.ActiveState, own: MemoryBackend) -> Route:
        """The route of a limiter given no backend: the process-wide default of `state`, or `own`."""
        shared = cast("RateLimitBackend | None", state.limiter_backend)
        return cls(state, own, own) if shared is None else cls(state, shared, None)


def _coroutine_method(backend: object, name: str) -> Any:
    method = getattr(backend, name, None)
    return method if inspect.iscoroutinefunction(method) else None


KeyFunc = Callable[[tuple[Any, ...], dict[str, Any]], Hashable]
"""Computes a call's key from its positional and keyword arguments."""


class Slot:
    """A one-use `with` / `async with` block that takes `cost` units for `key` and reports the block's outcome."""

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
        # Cancellation and exits say nothing about the service's health.
        if kind is None or issubclass(kind, Exception):
            self._limiter.record(self._limiter.clock.monotonic() - self._start, ok=kind is None)

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(kind, error, tb)


class Bound:
    """One decorated function's view of a limiter: how to find its key, and what a call costs."""

    __slots__ = ("cost", "key_of", "limiter")

    def __init__(self, limiter: RateLimiter, key_of: KeyFunc | None, cost: float) -> None:
        self.limiter, self.key_of, self.cost = limiter, key_of, cost

    def call(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Take the call's units (waiting or refused as the limiter says), then run it."""
        key = None if self.key_of is None else self.key_of(args, kwargs)
        if self.limiter.adaptive is None:
            self.limiter.acquire_sync(self.cost, key=key)
            return func(*args, **kwargs)
        with Slot(self.limiter, self.cost, key):
            return func(*args, **kwargs)

    async def acall(self, func: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Take the call's units without blocking the event loop, then await it."""
        key = None if self.key_of is None else self.key_of(args, kwargs)
        if self.limiter.adaptive is None:
            await self.limiter.acquire(self.cost, key=key)
            return await func(*args, **kwargs)
        async with Slot(self.limiter, self.cost, key):
            return await func(*args, **kwargs)


def key_getter(func: Callable[..., Any], key: str | KeyFunc | None) -> KeyFunc | None:
    """Turn `key=` into a function of (args, kwargs), resolving an argument name against `func`'s signature.

    Raises:
        ConfigError: `key` names no argument of `func` (or `*args` / `**kwargs`), or the signature is unreadable.
    """
    if key is None or not isinstance(key, str):
        return key
    target: Callable[..., Any] = func
    if isinstance(func, classmethod | staticmethod):
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
