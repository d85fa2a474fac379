"""Carry the trace across process and HTTP boundaries: W3C `traceparent`, `tracestate` and `baggage` headers.

The parsing and formatting are OpenTelemetry's own (`TraceContextTextMapPropagator` and `W3CBaggagePropagator`);
rfobs adds what a caller otherwise writes by hand around them:

- `inject()` returns the headers for the current span and baggage, ready for any HTTP client or task queue.
- `extract()` reads them back from whatever the server hands over (a dict, `http.server`'s `self.headers`, a
  framework's case-insensitive headers), looking header names up case-insensitively, and never raises: a
  malformed, oversized or duplicated `traceparent` gives an empty context, so the receiver starts a new trace.
- `continue_trace(headers)` makes the spans started inside a `with` block children of the remote caller's span.
- `with_context(fn)` captures the caller's trace for a call that runs somewhere else: another process
  (`multiprocessing`, `ProcessPoolExecutor`, under `fork` and `spawn` alike) or a thread pool.
- `using_baggage(tenant="acme")` sets baggage entries for a `with` block; `opentelemetry.baggage.get_baggage()`
  reads them, here or on the far side of a boundary.

The headers are always W3C Trace Context and Baggage, whatever `OTEL_PROPAGATORS` says, so that two rfobs
processes always understand each other. For other formats (B3, Jaeger) use `opentelemetry.propagate`, which
follows the globally configured propagators. For frameworks with separate before/after-request hooks, attach
and detach by hand: `token = opentelemetry.context.attach(rfobs.extract(headers))`, later
`opentelemetry.context.detach(token)`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, MutableMapping
from typing import Any, Final, Generic, ParamSpec, Protocol, TypeVar, cast, overload

from opentelemetry import baggage as otel_baggage
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from rfobs import _guard
from rfobs.conversation import (
    BAGGAGE_KEYS,
    CONVERSATION_ID,
    SESSION_ID,
    USER_ID,
    attributes_from_baggage,
    conversation,
    with_conversation_baggage,
)
from rfobs.instrument._wrap import is_coroutine_callable

__all__ = ["CallInContext", "HeaderCarrier", "continue_trace", "extract", "inject", "using_baggage", "with_context"]

P = ParamSpec("P")
R = TypeVar("R")
M = TypeVar("M", bound=MutableMapping[str, str])

_log = logging.getLogger("rfobs")

_W3C: Final = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
_FIELDS: Final = frozenset(_W3C.fields)
# The W3C baggage limit; OpenTelemetry caps traceparent at 512 and tracestate at 512 characters itself. Anything
# longer is dropped here, before a parser (or a warning quoting the whole value) ever sees it.
_MAX_VALUE_LENGTH: Final = 8192


class HeaderCarrier(Protocol):
    """Anything with `items()` yielding `(name, value)` string pairs: a dict, `http.server`'s `self.headers`."""

    def items(self) -> Iterable[tuple[str, str]]:
        """The header fields."""
        ...


class _ListGetter(Getter[Mapping[str, list[str]]]):
    """Reads the normalised `{lowercase name: [values]}` carrier `extract` builds."""

    def get(self, carrier: Mapping[str, list[str]], key: str) -> list[str] | None:
        return carrier.get(key)

    def keys(self, carrier: Mapping[str, list[str]]) -> list[str]:
        return list(carrier)


_GETTER: Final = _ListGetter()


@overload
def inject(carrier: None = None, *, context: Context | None = None) -> dict[str, str]: ...


@overload
def inject(carrier: M, *, context: Context | None = None) -> M: ...


def inject(
    carrier: MutableMapping[str, str] | None = None, *, context: Context | None = None
) -> MutableMapping[str, str]:
    """Write the current span and baggage as W3C headers (`traceparent`, `tracestate`, `baggage`).

    Inside `rfobs.conversation()`, the baggage also holds its `gen_ai.conversation.id`, `session.id` and
    `user.id`. Nothing is written when there is no valid current span and no baggage. Never raises: a failure is
    logged and counted as an rfobs internal error, and the carrier is returned as it is.

    Args:
        carrier: The headers to add to; a new dict when omitted.
        context: The context to write instead of the current one.

    Returns:
        The carrier (the same object when one was given).

    Example:
        >>> import urllib.request
        >>> request = urllib.request.Request("http://127.0.0.1:8000/answer", headers=inject())
    """
    headers: MutableMapping[str, str] = {} if carrier is None else carrier
    try:
        _W3C.inject(headers, context=with_conversation_baggage(context))
    except Exception:
        _guard.internal_error("injecting trace context headers")
    return headers


def extract(carrier: HeaderCarrier | Mapping[str, str]) -> Context:
    """Read W3C headers into a context holding the remote span (as parent) and the baggage.

    Header names are matched case-insensitively (`Traceparent`, `TRACEPARENT`); values that are not strings,
    longer than 8 KiB, or malformed are ignored, and a repeated `traceparent` is ignored as the W3C
    recommendation says. Never raises: with nothing usable the result is an empty context, under which spans
    start a new trace. The result does not include the current context: it replaces it for the remote call.

    Args:
        carrier: Incoming headers: a mapping, or an object with `items()` such as `http.server`'s `self.headers`.

    Returns:
        The remote context, to pass to `opentelemetry.context.attach` or as `context=` to `start_span`.

    Example:
        >>> from opentelemetry import trace
        >>> remote = extract({"Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
        >>> f"{trace.get_current_span(remote).get_span_context().trace_id:032x}"
        '0af7651916cd43dd8448eb211c80319c'
    """
    try:
        fields = _normalise(carrier)
    except Exception as error:  # a hostile or broken carrier object is the caller's, not an rfobs failure
        _log.debug("rfobs: could not read trace headers from %s: %r", type(carrier).__name__, error)
        return Context()
    if not fields:
        return Context()
    try:
        return _W3C.extract(fields, context=Context(), getter=_GETTER)
    except Exception:
        _guard.internal_error("extracting trace context headers")
        return Context()


def _normalise(carrier: HeaderCarrier | Mapping[str, str]) -> dict[str, list[str]]:
    """The propagation fields of `carrier` as `{lowercase name: [values]}`, unusable values left out."""
    fields: dict[str, list[str]] = {}
    for name, value in cast(Iterable[tuple[object, object]], carrier.items()):
        if not isinstance(name, str):
            continue
        key = name.strip().lower()
        if key not in _FIELDS:
            continue
        values = cast(Iterable[object], value) if isinstance(value, (list, tuple)) else (value,)
        for item in values:
            if isinstance(item, str) and len(item) <= _MAX_VALUE_LENGTH:
                fields.setdefault(key, []).append(item)
    if len(fields.get("traceparent", ())) > 1:
        # Two parents cannot both be right: restart the trace (W3C Trace Context, "traceparent" duplicated).
        fields.pop("traceparent")
        fields.pop("tracestate", None)
    return fields


@contextlib.contextmanager
def continue_trace(carrier: HeaderCarrier | Mapping[str, str]) -> Generator[Context]:
    """Make the spans started inside the `with` block children of the remote caller's span.

    The remote context (span and baggage from `carrier`) replaces the current one for the block and is detached
    on exit, also when the block raises. Works in plain and `async def` code alike (use `with`, not `async with`:
    each asyncio task has its own context, so concurrent requests do not see each other's parents). Without
    usable headers the block runs under an empty context, and its spans start a new trace.

    Args:
        carrier: Incoming headers, as for `extract`.

    Yields:
        The remote context.

    Example:
        >>> with continue_trace({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}):
        ...     pass  # spans started here continue the caller's trace
    """
    remote, carried = _conversation_out_of_baggage(extract(carrier))
    token = otel_context.attach(remote)
    try:
        with _conversation_scope(carried):
            yield remote
    finally:
        otel_context.detach(token)


def _conversation_out_of_baggage(remote: Context) -> tuple[Context, dict[str, str]]:
    """`remote` without the conversation's baggage entries, and those entries.

    The conversation goes on in this process as an `rfobs.conversation` scope, not as OpenTelemetry baggage:
    baggage would be sent on by every HTTP and LLM client instrumentation, user ids included, to third parties.
    """
    from opentelemetry import baggage

    carried = attributes_from_baggage(baggage.get_all(remote))
    for key in BAGGAGE_KEYS:
        remote = baggage.remove_baggage(key, remote)
    return remote, carried


def _conversation_scope(carried: Mapping[str, str]) -> contextlib.AbstractContextManager[object]:
    if not carried:
        return contextlib.nullcontext()
    try:
        return conversation(carried.get(CONVERSATION_ID), user=carried.get(USER_ID), session=carried.get(SESSION_ID))
    except Exception:  # a remote value rfobs would refuse locally: the block runs without a conversation
        return contextlib.nullcontext()


@contextlib.contextmanager
def using_baggage(entries: Mapping[str, str] | None = None, /, **more: str) -> Generator[Context]:
    """Add W3C baggage entries to the current context for the `with` block.

    `inject()` and `with_context()` carry them to the next process, where `opentelemetry.baggage.get_baggage(name)`
    reads them. Baggage travels in clear text to every downstream service: never put secrets in it.

    Args:
        entries: Entries whose names are not Python identifiers (`{"user.id": "u-7"}`).
        **more: Further entries by keyword.

    Yields:
        The context with the baggage.

    Raises:
        TypeError: A name is not a non-empty string or a value is not a string.

    Example:
        >>> from opentelemetry import baggage
        >>> with using_baggage(tenant="acme"):
        ...     baggage.get_baggage("tenant")
        'acme'
    """
    items = {**(entries or {}), **more}
    for name, value in items.items():
        _check_baggage_entry(name, value)
    scoped = otel_context.get_current()
    for name, value in items.items():
        scoped = otel_baggage.set_baggage(name, value, context=scoped)
    token = otel_context.attach(scoped)
    try:
        yield scoped
    finally:
        otel_context.detach(token)


def _check_baggage_entry(name: object, value: object) -> None:
    if not isinstance(name, str) or not name.strip() or not isinstance(value, str):
        raise TypeError(f"using_baggage: {name!r}={value!r}: names must be non-empty strings and values strings")


class CallInContext(Generic[P, R]):
    """A function and the W3C headers of the context it was wrapped in; calling it runs it in that context.

    Built by `with_context`. It holds only the function and a dict of strings, so it pickles whenever the function
    does (a module-level function, not a lambda or closure) and can be sent to another process. A coroutine
    function gives a coroutine that enters the context when awaited.

    Attributes:
        function: The wrapped function.
        carrier: The headers captured when it was wrapped.
    """

    __slots__ = ("carrier", "function")

    def __init__(self, function: Callable[P, R], carrier: dict[str, str]) -> None:
        self.function = function
        self.carrier = carrier

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function with the captured context current; the caller's context is restored after."""
        if is_coroutine_callable(self.function):
            return cast(R, self._call_async(*args, **kwargs))
        with continue_trace(self.carrier):
            return self.function(*args, **kwargs)

    async def _call_async(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        with continue_trace(self.carrier):
            return await cast(Awaitable[Any], self.function(*args, **kwargs))

    def __reduce__(self) -> tuple[type[CallInContext[P, R]], tuple[Callable[P, R], dict[str, str]]]:
        return (type(self), (self.function, self.carrier))

    def __repr__(self) -> str:
        name = getattr(self.function, "__qualname__", repr(self.function))
        return f"{type(self).__name__}({name}, {self.carrier!r})"


def with_context(function: Callable[P, R]) -> CallInContext[P, R]:
    """Capture the current trace and baggage now, for calls of `function` that run elsewhere.

    Wrap at the point of hand-off, inside the span the remote work belongs to, not at definition time: the
    context is captured when `with_context` is called. Each call of the result, in whatever process or thread
    it runs, starts its spans as children of that span and sees that baggage. In the receiving process the
    spans go wherever that process's telemetry goes (call `rfobs.init()` there as well, e.g. in a pool
    initializer; with `fork`, a child inherits the parent's).

    Args:
        function: A picklable callable (a module-level function) when the call crosses a process boundary.

    Returns:
        A picklable callable with the same signature.

    Example:
        >>> import multiprocessing
        >>> def square(x: int) -> int:
        ...     return x * x
        >>> with multiprocessing.Pool(2) as pool:  # doctest: +SKIP
        ...     pool.map(with_context(square), range(4))
        [0, 1, 4, 9]
    """
    return CallInContext(function, inject())
