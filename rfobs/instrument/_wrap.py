"""The one decorator core: turns a `begin(args, kwargs) -> Call` description into a wrapper for any callable.

The callable's kind (coroutine function, async generator, generator, plain) is decided once, at decoration.
For generators the span stays open across the whole iteration but is the *current* span only while the
generator's own code runs: each step attaches and detaches the context around it. A context attached at
one `yield` and detached at another would fail ("Failed to detach context") whenever the consumer switches
tasks or closes the stream early.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Generator
from typing import Any, Protocol, TypeVar, cast

from opentelemetry import context as otel_context
from opentelemetry.trace import Span, set_span_in_context

__all__ = ["Begin", "Call", "Policy", "is_coroutine_callable", "wrap", "wrap_policy"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


class Call(Protocol):
    """One in-progress call: its span, and how to finish it."""

    span: Span

    def finish(self, result: object, error: BaseException | None) -> None:
        """End the call with its result or the exception it raised (never raises)."""


Begin = Callable[[tuple[Any, ...], dict[str, Any]], "Call | None"]
"""Starts a call; None means no SDK is installed and the call runs untouched."""


def wrap(func: F, begin: Begin) -> F:
    """Wrap `func` so that each call runs inside `begin(args, kwargs)`'s span and is finished with its outcome.

    Works on plain functions, coroutine functions, generator and async-generator functions, and on
    `classmethod` / `staticmethod` objects (the decorator may sit above or below them).
    """
    if isinstance(func, (classmethod, staticmethod)):
        inner = cast("classmethod[Any, ..., Any] | staticmethod[..., Any]", func).__func__
        return cast("F", type(func)(wrap(inner, begin)))  # pyright: ignore[reportUnknownArgumentType]
    if inspect.isasyncgenfunction(func):
        return cast("F", _wrap_async_generator(func, begin))
    if inspect.isgeneratorfunction(func):
        return cast("F", _wrap_generator(func, begin))
    if is_coroutine_callable(func):
        return cast("F", _wrap_coroutine(func, begin))
    return cast("F", _wrap_plain(func, begin))


def is_coroutine_callable(func: Callable[..., Any]) -> bool:
    """Whether calling `func` returns a coroutine: a coroutine function, or an object whose `__call__` is one.

    Sees through `functools.partial`. A class is never one, whatever its `__call__`: calling a class constructs
    an instance, and the instance is not awaitable.
    """
    while isinstance(func, functools.partial):
        func = cast("functools.partial[Any]", func).func
    if isinstance(func, type):
        return False
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004 - we want the method, not a callability test
    return call is not None and inspect.iscoroutinefunction(call)


def _wrap_plain(func: Callable[..., Any], begin: Begin) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = begin(args, kwargs)
        if call is None:
            return func(*args, **kwargs)
        token = otel_context.attach(set_span_in_context(call.span))
        try:
            result = func(*args, **kwargs)
        except BaseException as error:
            call.finish(None, error)
            raise
        finally:
            otel_context.detach(token)
        call.finish(result, None)
        return result

    return wrapper


def _wrap_coroutine(func: Callable[..., Coroutine[Any, Any, Any]], begin: Begin) -> Callable[..., Any]:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = begin(args, kwargs)
        if call is None:
            return await func(*args, **kwargs)
        token = otel_context.attach(set_span_in_context(call.span))
        try:
            result = await func(*args, **kwargs)
        except BaseException as error:
            call.finish(None, error)
            raise
        finally:
            otel_context.detach(token)
        call.finish(result, None)
        return result

    return wrapper


def _in_span(ctx: otel_context.Context, step: Callable[..., T], *args: Any) -> T:
    token = otel_context.attach(ctx)
    try:
        return step(*args)
    finally:
        otel_context.detach(token)


def _start(call: Call, ctx: otel_context.Context, func: Callable[..., T], args: tuple[Any, ...], kwargs: Any) -> T:
    """Create the generator in the span; a function that raises instead finishes the call with that error."""
    try:
        return _in_span(ctx, lambda: func(*args, **kwargs))
    except BaseException as error:
        call.finish(None, error)
        raise


class _InSpan(Generator[Any, Any, Any]):
    """Runs each step of a generator with `ctx` attached; `yield from` it to forward `send`, `throw` and `close`.

    A class, not a generator function: the `StopIteration` that ends the wrapped generator must reach the
    `yield from` as it is, and a generator function would turn it into a `RuntimeError` (PEP 479).
    """

    __slots__ = ("_ctx", "_generator")

    def __init__(self, ctx: otel_context.Context, generator: Generator[Any, Any, Any]) -> None:
        self._ctx, self._generator = ctx, generator

    def __next__(self) -> Any:
        return _in_span(self._ctx, next, self._generator)

    def send(self, value: Any) -> Any:
        return _in_span(self._ctx, self._generator.send, value)

    def throw(self, *error: Any) -> Any:  # `yield from` passes the consumer's (type, value, traceback) form on
        return _in_span(self._ctx, self._generator.throw, *error)

    def close(self) -> None:
        _in_span(self._ctx, self._generator.close)


def _wrap_generator(func: Callable[..., Generator[Any, Any, Any]], begin: Begin) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        call = begin(args, kwargs)
        if call is None:
            return (yield from func(*args, **kwargs))
        ctx = set_span_in_context(call.span)
        generator = _start(call, ctx, func, args, kwargs)
        try:
            result = yield from _InSpan(ctx, generator)
        except GeneratorExit:
            # Closed early by the consumer (`yield from` closed the generator, in the span): not an error. Had
            # the generator's own cleanup failed, its error would have come out here instead.
            call.finish(None, None)
            raise
        except BaseException as error:
            call.finish(None, error)
            raise
        call.finish(result, None)
        return result

    return wrapper


async def _in_span_async(ctx: otel_context.Context | None, step: Callable[..., Awaitable[T]], *args: Any) -> T:
    if ctx is None:
        return await step(*args)
    token = otel_context.attach(ctx)
    try:
        return await step(*args)
    finally:
        otel_context.detach(token)


def _wrap_async_generator(func: Callable[..., AsyncGenerator[Any, Any]], begin: Begin) -> Callable[..., Any]:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        # There is no async `yield from`: the loop forwards sent values and thrown exceptions itself, with no
        # SDK too (ctx None), so a generator behaves the same whether or not `rfobs.init()` ran.
        call = begin(args, kwargs)
        ctx = None if call is None else set_span_in_context(call.span)
        generator = func(*args, **kwargs) if call is None or ctx is None else _start(call, ctx, func, args, kwargs)
        try:
            value = await _in_span_async(ctx, generator.__anext__)
            while True:
                try:
                    sent = yield value
                except GeneratorExit:
                    await _in_span_async(ctx, generator.aclose)  # its failure comes out below, as the call's error
                    raise
                except BaseException as thrown:  # thrown in by the consumer: hand it to the generator
                    value = await _in_span_async(ctx, generator.athrow, thrown)
                else:
                    value = await _in_span_async(ctx, generator.asend, sent)
        except StopAsyncIteration:
            if call is not None:
                call.finish(None, None)
        except GeneratorExit:
            if call is not None:
                call.finish(None, None)  # closed early by the consumer: not an error
            raise
        except BaseException as error:
            if call is not None:
                call.finish(None, error)
            raise

    return wrapper


class Policy(Protocol):
    """A reliability policy (retry, timeout, rate limit, breaker): how to run one call, sync or async."""

    def call(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run `func(*args, **kwargs)` under the policy."""
        ...

    async def acall(self, func: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Await `func(*args, **kwargs)` under the policy."""
        ...


def wrap_policy(func: F, policy: Policy, decorator: str) -> F:
    """Wrap `func` so each call runs through `policy.call` (plain) or `policy.acall` (coroutine function).

    Raises:
        ConfigError: `func` is a generator or async-generator function: a policy around the creation of a
            lazy iterator would not cover its items.
    """
    from rfobs.exceptions import ConfigError

    if isinstance(func, (classmethod, staticmethod)):
        inner = cast("classmethod[Any, ..., Any] | staticmethod[..., Any]", func).__func__
        return cast("F", type(func)(wrap_policy(inner, policy, decorator)))  # pyright: ignore[reportUnknownArgumentType]
    if inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):
        name = getattr(func, "__qualname__", repr(func))
        raise ConfigError(
            f"@{decorator} cannot wrap the generator function {name}: it would only cover creating the "
            "iterator; apply it to the function that produces each item instead"
        )
    if is_coroutine_callable(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            return await policy.acall(func, args, kwargs)

        return cast("F", async_wrapper)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return policy.call(func, args, kwargs)

    return cast("F", wrapper)
