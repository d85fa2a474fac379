"""A traced operation: what `@task`, `@tool`, `@api_call` and `@llm_call` share between decoration and each call.

`Operation` holds everything fixed at decoration (span name, kind, attributes, metric labels and attribute
dicts); `Call` is one run of it. The per-call path starts a span, counts, records the duration, ends the span.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from opentelemetry import trace as _trace_api
from opentelemetry.metrics import _internal as _metrics_api
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from rfobs import _check, _latency
from rfobs._guard import internal_error
from rfobs._limits import current_limits, stack_trace, truncate
from rfobs.instrument import _telemetry as t

__all__ = ["Call", "Operation", "check_name", "exception_type", "function_label", "record_error"]

_MAX_STATUS_MESSAGE: Final = 256
_log = logging.getLogger("rfobs")

Metrics = Callable[[t.Instruments], "tuple[t.Counts, Any]"]
"""Picks the counter and duration histogram of an operation from the current instruments."""
ResultHook = Callable[[object, Span, t.Instruments, float], bool]
"""Reads a successful call's result (HTTP status, token usage): sets span attributes, records extra
metrics, and returns False when the result itself means failure."""
ErrorHook = Callable[[BaseException, t.Instruments, float], None]
"""Records extra metrics for a call that raised."""
Capture = Callable[[tuple[Any, ...], dict[str, Any]], str]


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
        "attributes",
        "capture_input",
        "capture_output",
        "error_attributes",
        "error_labels",
        "function",
        "kind",
        "metrics",
        "on_error",
        "on_result",
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
        function: str | None = None,
    ) -> None:
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

    def begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
        """Start one call; None before an SDK is installed (the call then runs untouched)."""
        # t.current()'s own first test, inlined: the call it saves pays for the check of the warning flag.
        if _trace_api._TRACER_PROVIDER is None and _metrics_api._METER_PROVIDER is None:  # pyright: ignore[reportPrivateUsage]
            if t.no_sdk_unreported:
                t.report_no_sdk(self.function)
            return None
        instruments = t.current()
        return None if instruments is None else Call(self, instruments, args, kwargs)


class Call:
    """One run of an `Operation`."""

    __slots__ = ("_instruments", "_operation", "_start", "span")

    def __init__(
        self, operation: Operation, instruments: t.Instruments, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self._operation = operation
        self._instruments = instruments
        self.span = instruments.tracer.start_span(
            operation.span_name, kind=operation.kind, attributes=operation.attributes
        )
        if operation.capture_input is not None and self.span.is_recording():
            try:
                self.span.set_attribute(t.RFOBS_INPUT, operation.capture_input(args, kwargs))
            except Exception:
                internal_error("capturing a call's arguments")
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
                    operation.on_error(error, self._instruments, elapsed)
            else:
                if operation.on_result is not None:
                    ok = operation.on_result(result, span, self._instruments, elapsed)
                if operation.capture_output is not None and span.is_recording():
                    span.set_attribute(t.RFOBS_OUTPUT, operation.capture_output(result))
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
            span.end()
