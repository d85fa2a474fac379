"""`@task`, `@tool` and `@api_call`: a span per call plus a counter and a duration histogram per operation."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Final, ParamSpec, TypeVar, overload

from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from rfobs._secrets import scrub_text
from rfobs.exceptions import ConfigError
from rfobs.instrument import _telemetry as t
from rfobs.instrument._wrap import wrap

__all__ = ["api_call", "task", "tool", "track_agent_task", "track_api_call"]

P = ParamSpec("P")
R = TypeVar("R")
Decorator = Callable[[Callable[P, R]], Callable[P, R]]

_MAX_STATUS_MESSAGE: Final = 256


def _check_name(argument: str, value: object, decorator: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"@{decorator}({argument}={value!r}): expected a non-empty string naming the {argument}")
    return value.strip()


def _error_status(error: BaseException) -> Status:
    message = scrub_text(f"{type(error).__name__}: {error}")[:_MAX_STATUS_MESSAGE]
    return Status(StatusCode.ERROR, message)


def _record_error(span: Span, error: BaseException) -> None:
    span.record_exception(error, attributes={"exception.message": scrub_text(str(error))})
    span.set_status(_error_status(error))
    span.set_attribute(t.ERROR_TYPE, type(error).__qualname__)


class _Operation:
    """Everything about one decorated function that does not change between calls."""

    __slots__ = ("attributes", "counts", "duration", "kind", "label_error", "label_success", "span_name", "status_of")

    def __init__(
        self,
        span_name: str,
        kind: SpanKind,
        attributes: Mapping[str, Any],
        labels: Mapping[str, str],
        counts: Callable[[t.Instruments], tuple[t.Counts, Any]],
        status_of: Callable[[object, Span], bool] | None = None,
    ) -> None:
        self.span_name = span_name
        self.kind = kind
        self.attributes = dict(attributes)
        self.label_success = (*labels.items(), ("status", "success"))
        self.label_error = (*labels.items(), ("status", "error"))
        self.counts = counts
        self.status_of = status_of

    def begin(self, _args: tuple[Any, ...], _kwargs: dict[str, Any]) -> _Call | None:
        instruments = t.current()
        return None if instruments is None else _Call(self, instruments)


class _Call:
    __slots__ = ("_instruments", "_operation", "_start", "span")

    def __init__(self, operation: _Operation, instruments: t.Instruments) -> None:
        self._operation = operation
        self._instruments = instruments
        self.span = instruments.tracer.start_span(
            operation.span_name, kind=operation.kind, attributes=operation.attributes
        )
        self._start = time.perf_counter()

    def finish(self, result: object, error: BaseException | None) -> None:
        elapsed = time.perf_counter() - self._start
        operation, span = self._operation, self.span
        ok = error is None
        if error is not None:
            _record_error(span, error)
        elif operation.status_of is not None:
            ok = operation.status_of(result, span)
        labels = operation.label_success if ok else operation.label_error
        counts, histogram = operation.counts(self._instruments)
        counts.add(labels)
        histogram.record(elapsed, dict(labels))
        span.end()


def _task_instruments(instruments: t.Instruments) -> tuple[t.Counts, Any]:
    return instruments.task_counts, instruments.task_duration


def _api_instruments(instruments: t.Instruments) -> tuple[t.Counts, Any]:
    return instruments.api_counts, instruments.api_duration


@overload
def task(agent: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def task(agent: str, name: str | None = None, *, attributes: Mapping[str, Any] | None = None) -> Decorator[P, R]: ...
def task(
    agent: str | Callable[P, R], name: str | None = None, *, attributes: Mapping[str, Any] | None = None
) -> Decorator[P, R] | Callable[P, R]:
    """Trace an agent task: a span `"{agent}.{name}"`, `agent_tasks_total` and `agent_task_duration_seconds`.

    The span carries the GenAI attributes (`gen_ai.operation.name=invoke_agent`, `gen_ai.agent.name`) and
    `openinference.span.kind=AGENT`. An exception is recorded on the span (status ERROR, `error.type`) and
    re-raised unchanged.

    Args:
        agent: The agent's name (a metric label: keep it bounded). Used bare (`@task`), the agent is "agent".
        name: The task's name; defaults to the function's name.
        attributes: Constant span attributes added to every call.

    Example:
        >>> @task("researcher", "search")
        ... def search(query: str) -> list[str]:
        ...     return [query]
    """
    if callable(agent):
        return _task_decorator("agent", None, None, "invoke_agent", "AGENT", "task")(agent)
    return _task_decorator(agent, name, attributes, "invoke_agent", "AGENT", "task")


def tool(
    name: str | None = None, *, agent: str = "agent", attributes: Mapping[str, Any] | None = None
) -> Decorator[P, R]:
    """Trace a tool the agent calls: like `@task`, with `gen_ai.operation.name=execute_tool` and kind TOOL.

    Args:
        name: The tool's name; defaults to the function's name.
        agent: The agent that owns the tool (metric label).
        attributes: Constant span attributes added to every call.
    """
    return _task_decorator(agent, name, attributes, "execute_tool", "TOOL", "tool")


def _task_decorator(
    agent: str, name: str | None, attributes: Mapping[str, Any] | None, operation: str, kind: str, decorator: str
) -> Decorator[P, R]:
    agent = _check_name("agent", agent, decorator)
    if name is not None:
        name = _check_name("name", name, decorator)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        task_name = (
            name or getattr(func, "__name__", None) or getattr(getattr(func, "__func__", None), "__name__", "task")
        )
        span_attributes: dict[str, Any] = {
            t.GEN_AI_OPERATION: operation,
            t.GEN_AI_AGENT_NAME: agent,
            t.OPENINFERENCE_KIND: kind,
            t.RFOBS_AGENT: agent,
            t.RFOBS_TASK: task_name,
            **(attributes or {}),
        }
        if decorator == "tool":
            span_attributes[t.GEN_AI_TOOL_NAME] = task_name
        spec = _Operation(
            f"{agent}.{task_name}",
            SpanKind.INTERNAL,
            span_attributes,
            {"agent": agent, "task": task_name},
            _task_instruments,
        )
        return wrap(func, spec.begin)

    return decorate


def _http_status_ok(result: object, span: Span) -> bool:
    """Read an HTTP status from a response-like result (`status_code` or `status`); >= 400 is an error."""
    code = getattr(result, "status_code", None)
    if code is None:
        code = getattr(result, "status", None)
    if isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599:
        span.set_attribute(t.HTTP_STATUS, code)
        if code >= 400:
            span.set_status(Status(StatusCode.ERROR, f"HTTP {code}"))
            span.set_attribute(t.ERROR_TYPE, str(code))
            return False
    return True


def api_call(
    service: str, endpoint: str | None = None, *, attributes: Mapping[str, Any] | None = None
) -> Decorator[P, R]:
    """Trace a call to an external API: a CLIENT span, `api_calls_total` and `api_call_duration_seconds`.

    The status is `error` when the call raises, or when it returns a response whose `status_code` (or
    `status`) is 400 or more.

    Args:
        service: The API's name, such as "arxiv" (a metric label: keep it bounded).
        endpoint: The operation, such as "search"; defaults to the function's name. Never put ids in it.
        attributes: Constant span attributes added to every call.
    """
    service = _check_name("service", service, "api_call")
    if endpoint is not None:
        endpoint = _check_name("endpoint", endpoint, "api_call")

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        endpoint_name = endpoint or getattr(func, "__name__", "call")
        spec = _Operation(
            f"{service}.{endpoint_name}",
            SpanKind.CLIENT,
            {t.RFOBS_SERVICE: service, t.RFOBS_ENDPOINT: endpoint_name, **(attributes or {})},
            {"service": service, "endpoint": endpoint_name},
            _api_instruments,
            _http_status_ok,
        )
        return wrap(func, spec.begin)

    return decorate


def track_agent_task(agent: str, task_name: str) -> Decorator[P, R]:
    """Seed-compatible name: `@track_agent_task("researcher", "search")` is `@task("researcher", "search")`."""
    return task(agent, task_name)


def track_api_call(service: str, endpoint: str | None = None) -> Decorator[P, R]:
    """Seed-compatible name of `@api_call`."""
    return api_call(service, endpoint)
