"""A traced operation: what `@task`, `@tool`, `@api_call` and `@llm_call` share between decoration and each call.

`Operation` holds everything fixed at decoration (span name, kind, attributes, metric labels and attribute
dicts); `Call` is one run of it. The per-call path starts a span, counts, records the duration, ends the span.

The agent scope (`in_agent`) is a context variable that is True while the code of an `@agent` or `@task` runs,
so a `@task` inside one is a step of it rather than an agent invocation of its own.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping
from contextvars import ContextVar, Token
from typing import Any, Final, TypeVar

from opentelemetry import trace as _trace_api
from opentelemetry.metrics import _internal as _metrics_api
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from rfobs import _check, _latency
from rfobs._guard import internal_error
from rfobs._limits import current_limits, stack_trace, truncate
from rfobs.instrument import _telemetry as t
from rfobs.instrument._deferred import DeferredHistogram

__all__ = [
    "Call",
    "Operation",
    "check_name",
    "duration_hooks",
    "exception_type",
    "function_label",
    "in_agent",
    "record_error",
    "scope_async_generator",
    "scope_generator",
]

_MAX_STATUS_MESSAGE: Final = 256
_log = logging.getLogger("rfobs")

Metrics = Callable[[t.Instruments], "tuple[t.Counts, Any]"]
"""Picks the counter and duration histogram of an operation from the current instruments."""
ResultHook = Callable[[object, Span, t.Instruments, float], bool]
"""Reads a successful call's result (HTTP status, token usage): sets span attributes, records extra
metrics, and returns False when the result itself means failure."""
ErrorHook = Callable[[BaseException, Span, t.Instruments, float], None]
"""Records extra metrics for a call that raised."""
Capture = Callable[[tuple[Any, ...], dict[str, Any]], str]
"""Renders a call's arguments as the text of `rfobs.input` (`@llm_call`'s capture)."""
ArgumentAttributes = Callable[[tuple[Any, ...], dict[str, Any]], Mapping[str, AttributeValue]]
"""Span attributes read from a call's arguments (content, a tool call id), set when the span records."""
ResultAttributes = Callable[[object], Mapping[str, AttributeValue]]
"""Span attributes read from a call's result (content), set when the span records."""
T = TypeVar("T")

in_agent: ContextVar[bool] = ContextVar("rfobs_in_agent", default=False)
"""True while the code of an rfobs agent or task runs (and in everything it calls)."""


def _in_scope(step: Callable[..., T], *args: Any) -> T:
    token = in_agent.set(True)
    try:
        return step(*args)
    finally:
        in_agent.reset(token)


class _ScopedSteps(Generator[Any, Any, Any]):
    """Runs each step of a generator inside the agent scope; `yield from` it to forward `send`, `throw`, `close`.

    The scope must hold only while the generator's own code runs, not between its items, where the consumer's
    code runs (as `_wrap._InSpan` does for the span).
    """

    __slots__ = ("_generator",)

    def __init__(self, generator: Generator[Any, Any, Any]) -> None:
        self._generator = generator

    def __next__(self) -> Any:
        return _in_scope(next, self._generator)

    def send(self, value: Any) -> Any:
        return _in_scope(self._generator.send, value)

    def throw(self, *error: Any) -> Any:
        return _in_scope(self._generator.throw, *error)

    def close(self) -> None:
        _in_scope(self._generator.close)


def scope_generator(func: Callable[..., Generator[Any, Any, Any]]) -> Callable[..., Generator[Any, Any, Any]]:
    """`func`, a generator function, whose every step runs inside the agent scope."""

    @functools.wraps(func)
    def scoped(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        return (yield from _ScopedSteps(func(*args, **kwargs)))

    return scoped


async def _in_scope_async(step: Callable[..., Awaitable[T]], *args: Any) -> T:
    token = in_agent.set(True)
    try:
        return await step(*args)
    finally:
        in_agent.reset(token)


def scope_async_generator(func: Callable[..., AsyncGenerator[Any, Any]]) -> Callable[..., AsyncGenerator[Any, Any]]:
    """`func`, an async generator function, whose every step runs inside the agent scope."""

    @functools.wraps(func)
    async def scoped(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        generator = func(*args, **kwargs)
        try:
            value = await _in_scope_async(generator.__anext__)
            while True:  # no async `yield from`: forward what the consumer sends and throws (as `_wrap` does)
                try:
                    sent = yield value
                except GeneratorExit:
                    await _in_scope_async(generator.aclose)
                    raise
                except BaseException as thrown:
                    value = await _in_scope_async(generator.athrow, thrown)
                else:
                    value = await _in_scope_async(generator.asend, sent)
        except StopAsyncIteration:
            return

    return scoped


def check_name(argument: str, value: object, decorator: str) -> str:
    """A decorator's name argument, stripped, or a ConfigError naming the argument and the value."""
    return _check.text(f"@{decorator}", argument, value, f"a non-empty string naming the {argument}")


def function_label(decorator: str, func: Callable[..., Any]) -> str:
    """How a warning names a decorated function: `@task research.agents.plan()`."""
    inner = getattr(func, "__func__", func)  # a classmethod or staticmethod object
    qualname = getattr(inner, "__qualname__", None) or repr(inner)
    module = getattr(inner, "__module__", None)
    return f"@{decorator} {module}.{qualname}()" if module else f"@{decorator} {qualname}()"


def exception_type(kind: type[BaseException]) -> str:
    """The name rfobs writes for an exception class, everywhere: `exception.type`, `error.type`, retry events.

    The form the OpenTelemetry SDK's `record_exception()` writes: `module.QualName`, builtins bare
    (`ValueError`, `rfobs.demo.TransientAPIError`). Bounded like the set of classes, so fine as a metric label.
    """
    module = kind.__module__
    return f"{module}.{kind.__qualname__}" if module and module != "builtins" else kind.__qualname__


def duration_hooks(
    histogram: Callable[[t.Instruments], DeferredHistogram], attributes: Mapping[str, str]
) -> tuple[ResultHook, ErrorHook]:
    """Hooks recording a call's duration in a GenAI histogram, with `error.type` added when it raised."""
    fixed = dict(attributes)

    def on_result(_result: object, _span: Span, instruments: t.Instruments, elapsed: float) -> bool:
        histogram(instruments).record(elapsed, fixed)
        return True

    def on_error(error: BaseException, _span: Span, instruments: t.Instruments, elapsed: float) -> None:
        histogram(instruments).record(elapsed, {**fixed, t.ERROR_TYPE: exception_type(type(error))})

    return on_result, on_error


def record_error(span: Span, error: BaseException) -> None:
    """Record `error` on `span`: an exception event, status ERROR and `error.type`.

    The message and stack trace are cut to `tracing.max_exception_length` / `max_stacktrace_length` (marked)
    before anything else is done with them. Secrets in them are scrubbed by rfobs's exporters, on the export
    thread, not here in the agent's.
    """
    limits = current_limits()
    text = str(error)
    message = truncate(text, limits.exception_message)
    kind = type(error)
    name = exception_type(kind)
    # As the SDK's record_exception() records it, without its second, uncut formatting of the traceback.
    span.add_event(
        "exception",
        {
            t.EXCEPTION_TYPE: name,
            "exception.message": message,
            "exception.stacktrace": stack_trace(error, limits.exception_message, limits.stacktrace),
            "exception.escaped": "False",
        },
    )
    status = f"{kind.__name__}: "
    whole = len(status) + len(text)
    span.set_status(
        Status(StatusCode.ERROR, truncate(status + text[:_MAX_STATUS_MESSAGE], _MAX_STATUS_MESSAGE, length=whole))
    )
    span.set_attribute(t.ERROR_TYPE, name)


class Operation:
    """Everything about one decorated function that does not change between calls."""

    __slots__ = (
        "argument_attributes",
        "attributes",
        "capture_input",
        "capture_output",
        "error_attributes",
        "error_labels",
        "function",
        "inside_agent",
        "kind",
        "metrics",
        "on_error",
        "on_result",
        "opens_agent_scope",
        "result_attributes",
        "span_name",
        "success_attributes",
        "success_labels",
    )

    def __init__(
        self,
        span_name: str,
        kind: SpanKind,
        attributes: Mapping[str, AttributeValue],
        labels: Mapping[str, str],
        metrics: Metrics,
        *,
        on_result: ResultHook | None = None,
        on_error: ErrorHook | None = None,
        capture_input: Capture | None = None,
        capture_output: Callable[[object], str] | None = None,
        argument_attributes: ArgumentAttributes | None = None,
        result_attributes: ResultAttributes | None = None,
        function: str | None = None,
        opens_agent_scope: bool = False,
        inside_agent: Operation | None = None,
    ) -> None:
        """Fix what every call shares.

        Args:
            span_name: The span's name.
            kind: The span's kind.
            attributes: The span's constant attributes.
            labels: Metric labels, without `status`.
            metrics: Picks the counter and duration histogram.
            on_result: Reads a successful call's result; returns False when the result means failure.
            on_error: Records extra metrics for a call that raised.
            capture_input: Legacy argument text for `rfobs.input`.
            capture_output: Legacy result text for `rfobs.output`.
            argument_attributes: Span attributes from the arguments, set when the span records.
            result_attributes: Span attributes from a successful result, set when the span records.
            function: How a warning names the decorated function.
            opens_agent_scope: Set `in_agent` while the call runs (plain and coroutine functions; generator
                functions are wrapped with `scope_generator` / `scope_async_generator` instead).
            inside_agent: The operation to run instead when the call starts inside the agent scope.
        """
        self.span_name = span_name
        self.function = function or span_name
        self.kind = kind
        self.attributes = dict(attributes)
        self.success_labels = (*labels.items(), ("status", "success"))
        self.error_labels = (*labels.items(), ("status", "error"))
        self.success_attributes = dict(self.success_labels)
        self.error_attributes = dict(self.error_labels)
        self.metrics = metrics
        self.on_result = on_result
        self.on_error = on_error
        self.capture_input = capture_input
        self.capture_output = capture_output
        self.argument_attributes = argument_attributes
        self.result_attributes = result_attributes
        self.opens_agent_scope = opens_agent_scope
        self.inside_agent = inside_agent

    def begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
        """Start one call; None before an SDK is installed (the call then runs untouched)."""
        # t.current()'s own first test, inlined: the call it saves pays for the check of the warning flag.
        if _trace_api._TRACER_PROVIDER is None and _metrics_api._METER_PROVIDER is None:  # pyright: ignore[reportPrivateUsage]
            if t.no_sdk_unreported:
                t.report_no_sdk(self.function)
            return None
        instruments = t.current()
        if instruments is None:
            return None
        if self.inside_agent is not None and in_agent.get():
            return Call(self.inside_agent, instruments, args, kwargs)
        return Call(self, instruments, args, kwargs)


class Call:
    """One run of an `Operation`."""

    __slots__ = ("_instruments", "_operation", "_scope", "_start", "span")

    def __init__(
        self, operation: Operation, instruments: t.Instruments, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self._operation = operation
        self._instruments = instruments
        self.span = instruments.tracer.start_span(
            operation.span_name, kind=operation.kind, attributes=operation.attributes
        )
        if (operation.capture_input is not None or operation.argument_attributes is not None) and (
            self.span.is_recording()
        ):
            try:
                if operation.capture_input is not None:
                    self.span.set_attribute(t.RFOBS_INPUT, operation.capture_input(args, kwargs))
                if operation.argument_attributes is not None:
                    self.span.set_attributes(operation.argument_attributes(args, kwargs))
            except Exception:
                internal_error("capturing a call's arguments")
        # Reset in finish(), which the wrappers of plain and coroutine functions call in this same context.
        self._scope: Token[bool] | None = in_agent.set(True) if operation.opens_agent_scope else None
        self._start = time.perf_counter()

    def finish(self, result: object, error: BaseException | None) -> None:
        """End the call with its result or the exception it raised. Never raises; the span always ends."""
        elapsed = time.perf_counter() - self._start
        operation, span = self._operation, self.span
        try:
            ok = error is None
            if error is not None:
                record_error(span, error)
                if operation.on_error is not None:
                    operation.on_error(error, span, self._instruments, elapsed)
            else:
                if operation.on_result is not None:
                    ok = operation.on_result(result, span, self._instruments, elapsed)
                if operation.capture_output is not None and span.is_recording():
                    span.set_attribute(t.RFOBS_OUTPUT, operation.capture_output(result))
                if operation.result_attributes is not None and span.is_recording():
                    span.set_attributes(operation.result_attributes(result))
            if (recent := _latency.recorder) is not None:  # set by the performance health check, when there is one
                recent.record(operation.span_name, elapsed)
            counts, histogram = operation.metrics(self._instruments)
            if ok:
                counts.add(operation.success_labels)
                histogram.record(elapsed, operation.success_attributes)
            else:
                counts.add(operation.error_labels)
                histogram.record(elapsed, operation.error_attributes)
        except Exception:
            internal_error(f"finishing the span {operation.span_name!r}")
        finally:
            try:
                span.end()  # another span processor's on_end may raise: the agent scope is left all the same
            finally:
                if self._scope is not None:
                    try:
                        in_agent.reset(self._scope)
                    except (ValueError, RuntimeError):  # finished in another context: nothing of ours to undo
                        internal_error(f"leaving the agent scope of {operation.span_name!r}")
