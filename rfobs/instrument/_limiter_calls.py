"""How calls go through a `RateLimiter`: the key of each call, a decorated function's cost, and `slot()` blocks.

A decorated call, like a `slot()` block, reports its latency and outcome to the limiter when the limiter is
adaptive; a plain `with limiter:` block cannot, as it sees no outcome of its own.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Hashable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, cast

from rfobs.exceptions import ConfigError

if TYPE_CHECKING:
    from rfobs.instrument.ratelimit import RateLimiter

__all__ = ["Bound", "KeyFunc", "Slot", "key_getter"]

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
