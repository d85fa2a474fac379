"""The decorator core picks the wrapper by what calling the function returns, decided once at decoration."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Generator

import pytest
from opentelemetry import trace

import rfobs
from rfobs.instrument._wrap import is_coroutine_callable
from rfobs.instrument.breaker import CircuitBreaker
from rfobs.instrument.retry import retry
from rfobs.testing import Capture


class AsyncCallable:
    """Instances are awaited when called; the class itself, called, only builds one."""

    def __init__(self, value: int = 1) -> None:
        self.value = value

    async def __call__(self) -> int:
        return self.value


async def coroutine_function() -> int:
    return 1


def plain_function() -> int:
    return 1


def test_a_class_with_an_async_call_is_not_a_coroutine_callable_but_its_instances_are() -> None:
    assert not is_coroutine_callable(AsyncCallable)
    assert not is_coroutine_callable(functools.partial(AsyncCallable, 2))
    assert is_coroutine_callable(AsyncCallable())
    assert is_coroutine_callable(functools.partial(AsyncCallable()))
    assert is_coroutine_callable(coroutine_function)
    assert is_coroutine_callable(functools.partial(functools.partial(coroutine_function)))
    assert not is_coroutine_callable(plain_function)
    assert not is_coroutine_callable(int)


def test_a_decorated_class_still_constructs_instances() -> None:
    built = retry(AsyncCallable)
    assert not inspect.iscoroutinefunction(built)
    instance = built(3)
    assert isinstance(instance, AsyncCallable) and instance.value == 3
    guarded = CircuitBreaker("classes")(AsyncCallable)
    assert isinstance(guarded(), AsyncCallable)
    traced = rfobs.task("agent", "build")(AsyncCallable)
    assert isinstance(traced(4), AsyncCallable)


async def test_a_decorated_async_callable_instance_is_awaited() -> None:
    wrapped = retry(AsyncCallable(5))
    assert inspect.iscoroutinefunction(wrapped)
    assert await wrapped() == 5


class Skip(Exception):
    """Thrown into a generator by its consumer: the generator answers "skipped" and goes on."""


def echo() -> Generator[str, str, int]:
    """Yields what it was sent, each time with the current span's name; returns the count."""
    received = yield "ready"
    count = 0
    while received != "stop":
        count += 1
        try:
            span = trace.get_current_span()
            received = yield f"{received} in {getattr(span, 'name', None)}"
        except Skip:
            received = yield "skipped"
    return count


async def aecho() -> AsyncGenerator[str, str]:
    """`echo` as an async generator (which returns nothing)."""
    received = yield "ready"
    while received != "stop":
        try:
            span = trace.get_current_span()
            received = yield f"{received} in {getattr(span, 'name', None)}"
        except Skip:
            received = yield "skipped"


def test_a_traced_generator_gets_what_the_consumer_sends_and_throws_inside_its_span(capture: Capture) -> None:
    generator = rfobs.task("agent", "echo")(echo)()
    assert next(generator) == "ready"
    assert generator.send("a") == "a in agent.echo"
    assert generator.throw(Skip()) == "skipped"
    assert generator.send("b") == "b in agent.echo"
    with pytest.raises(StopIteration) as stopped:
        generator.send("stop")
    assert stopped.value.value == 2
    (span,) = capture.spans()
    assert (span["name"], span["status"]["code"]) == ("agent.echo", "UNSET")


def test_an_error_thrown_into_a_traced_generator_that_it_does_not_handle_ends_the_span(capture: Capture) -> None:
    generator = rfobs.task("agent", "echo")(echo)()
    next(generator)
    with pytest.raises(KeyError):
        generator.throw(KeyError("gone"))
    (span,) = capture.spans()
    assert span["status"] == {"code": "ERROR", "description": "KeyError: 'gone'"}


@pytest.mark.parametrize("traced", [True, False], ids=["sdk", "no-sdk"])
async def test_an_async_generator_gets_what_the_consumer_sends_and_throws_with_or_without_an_sdk(
    request: pytest.FixtureRequest, traced: bool
) -> None:
    # Without an SDK the wrapper used to re-yield with `async for`, dropping sent values and thrown exceptions.
    capture: Capture | None = request.getfixturevalue("capture") if traced else None
    inside = "agent.aecho" if traced else None
    generator = rfobs.task("agent", "aecho")(aecho)()
    assert await anext(generator) == "ready"
    assert await generator.asend("a") == f"a in {inside}"
    assert await generator.athrow(Skip()) == "skipped"
    assert await generator.asend("b") == f"b in {inside}"
    with pytest.raises(StopAsyncIteration):
        await generator.asend("stop")
    if capture is not None:
        (span,) = capture.spans()
        assert (span["name"], span["status"]["code"]) == ("agent.aecho", "UNSET")
