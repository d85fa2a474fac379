"""`@task`, `@tool` and `@api_call`: a span per call plus a counter and a duration histogram per operation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from rfobs.exceptions import ConfigError
from rfobs.instrument import _telemetry as t
from rfobs.instrument._attributes import check_attributes
from rfobs.instrument._capture import input_capturer, output_capturer
from rfobs.instrument._operation import Operation, check_name, function_label
from rfobs.instrument._wrap import wrap

if TYPE_CHECKING:
    from rfobs.instrument.breaker import CircuitBreaker
    from rfobs.instrument.ratelimit import RateLimiter
    from rfobs.instrument.retry import RetryPolicy
    from rfobs.instrument.timeout import Timeout

__all__ = ["api_call", "task", "tool", "track_agent_task", "track_api_call"]

P = ParamSpec("P")
R = TypeVar("R")
Decorator = Callable[[Callable[P, R]], Callable[P, R]]


def _task_metrics(instruments: t.Instruments) -> tuple[t.Counts, Any]:
    return instruments.task_counts, instruments.task_duration


def _api_metrics(instruments: t.Instruments) -> tuple[t.Counts, Any]:
    return instruments.api_counts, instruments.api_duration


def _capture(func: Callable[..., Any], enabled: bool) -> dict[str, Any]:
    if not enabled:
        return {}
    return {"capture_input": input_capturer(func), "capture_output": output_capturer()}


@overload
def task(agent: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def task(
    agent: str,
    name: str | None = None,
    *,
    capture_args: bool = False,
    attributes: Mapping[str, Any] | None = None,
    retry: RetryPolicy | Mapping[str, Any] | int | bool | None = None,
    timeout: Timeout | float | None = None,
    rate_limit: RateLimiter | float | None = None,
    breaker: CircuitBreaker | str | bool | None = None,
) -> Decorator[P, R]: ...
def task(
    agent: str | Callable[P, R],
    name: str | None = None,
    *,
    capture_args: bool = False,
    attributes: Mapping[str, Any] | None = None,
    retry: RetryPolicy | Mapping[str, Any] | int | bool | None = None,
    timeout: Timeout | float | None = None,
    rate_limit: RateLimiter | float | None = None,
    breaker: CircuitBreaker | str | bool | None = None,
) -> Decorator[P, R] | Callable[P, R]:
    """Trace an agent task: a span `"{agent}.{name}"`, `agent_tasks_total` and `agent_task_duration_seconds`.

    The span carries the GenAI attributes (`gen_ai.operation.name=invoke_agent`, `gen_ai.agent.name`) and
    `openinference.span.kind=AGENT`. An exception is recorded on the span (status ERROR, `error.type`) and
    re-raised unchanged.

    Args:
        agent: The agent's name (a metric label: keep it bounded). Used bare (`@task`), the agent is "agent".
        name: The task's name; defaults to the function's name.
        capture_args: Record the arguments (`rfobs.input`) and the result (`rfobs.output`) on the span,
            truncated and with secret-looking values replaced by `***`.
        attributes: Constant span attributes added to every call: non-empty string names; values str, bool,
            int or float, or a list or tuple of one of those types.
        retry: Retry inside the task span: a `RetryPolicy`, a dict of its options, a number of attempts, or True
            for the defaults. Each attempt is an event on the span.
        timeout: A `Timeout` or seconds, per attempt.
        rate_limit: A `RateLimiter` (share one to share a budget) or calls per second; admits each attempt.
        breaker: A `CircuitBreaker` (share one to share its state), a breaker name, or True to name one after
            the task; sees every real call.

    The policies stack as task span ▸ retry ▸ timeout ▸ rate limit ▸ circuit breaker ▸ the function.

    Raises:
        ConfigError: An empty name, an attribute the OpenTelemetry SDK would drop (None, a dict, a mixed list,
            ...) or an invalid policy argument, at decoration, naming the argument and its value.

    Example:
        >>> @task("researcher", "search", retry=3, timeout=30, rate_limit=5, breaker="arxiv")
        ... def search(query: str) -> list[str]:
        ...     return [query]
    """
    policies = {"retry": retry, "timeout": timeout, "rate_limit": rate_limit, "breaker": breaker}
    if callable(agent):
        if name is not None or capture_args or attributes is not None or any(v is not None for v in policies.values()):
            raise ConfigError(f"@task(agent={agent!r}, ...): expected the agent's name; bare @task takes no arguments")
        return _task_decorator("agent", None, None, False, "invoke_agent", "AGENT", "task")(agent)
    span = _task_decorator(agent, name, attributes, capture_args, "invoke_agent", "AGENT", "task")
    if all(value is None for value in policies.values()):
        return span
    from rfobs.instrument.compose import policy_stack  # the policies load tenacity and friends: only when used

    stack = policy_stack(retry=retry, timeout=timeout, rate_limit=rate_limit, breaker=breaker)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        task_name = name or getattr(func, "__name__", None) or "task"
        return span(stack(f"{agent}.{task_name}", func))

    return decorate


def tool(
    name: str | None = None,
    *,
    agent: str | None = None,
    capture_args: bool = False,
    attributes: Mapping[str, Any] | None = None,
) -> Decorator[P, R]:
    """Trace a tool the agent calls: like `@task`, with `gen_ai.operation.name=execute_tool` and kind TOOL.

    Without an agent the span is `"execute_tool {name}"` (the GenAI semantic conventions' tool span name) with
    `gen_ai.tool.name` and no agent attribute, and its metrics carry `agent=""`. With one it is
    `"{agent}.{name}"` and also carries `gen_ai.agent.name`.

    Args:
        name: The tool's name; defaults to the function's name.
        agent: The agent that owns the tool (metric label), if any.
        capture_args: Record arguments and result on the span, truncated and scrubbed.
        attributes: Constant span attributes added to every call (as for `@task`).

    Raises:
        ConfigError: An empty name or agent, or an invalid attribute, at decoration.
    """
    return _task_decorator(agent, name, attributes, capture_args, "execute_tool", "TOOL", "tool")


def _task_decorator(
    agent: str | None,
    name: str | None,
    attributes: Mapping[str, Any] | None,
    capture_args: bool,
    operation: str,
    kind: str,
    decorator: str,
) -> Decorator[P, R]:
    if agent is not None:
        agent = check_name("agent", agent, decorator)
    if name is not None:
        name = check_name("name", name, decorator)
    constant = check_attributes(attributes, decorator)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        task_name = (
            name or getattr(func, "__name__", None) or getattr(getattr(func, "__func__", None), "__name__", "task")
        )
        span_attributes: dict[str, Any] = {t.GEN_AI_OPERATION: operation}
        if agent is not None:
            span_attributes[t.GEN_AI_AGENT_NAME] = agent
        span_attributes[t.OPENINFERENCE_KIND] = kind
        if agent is not None:
            span_attributes[t.RFOBS_AGENT] = agent
        span_attributes[t.RFOBS_TASK] = task_name
        if decorator == "tool":
            span_attributes[t.GEN_AI_TOOL_NAME] = task_name
        span_attributes.update(constant)
        spec = Operation(
            f"{agent}.{task_name}" if agent is not None else f"{operation} {task_name}",
            SpanKind.INTERNAL,
            span_attributes,
            # "" rather than no label: every series of agent_tasks_total keeps the same label names.
            {"agent": agent or "", "task": task_name},
            _task_metrics,
            function=function_label(decorator, func),
            **_capture(func, capture_args),
        )
        return wrap(func, spec.begin)

    return decorate


def _http_status_ok(result: object, span: Span, _instruments: t.Instruments, _elapsed: float) -> bool:
    """Read an HTTP status from a response-like result (`status_code` or `status`); >= 400 is an error."""
    try:
        code = getattr(result, "status_code", None)
        if code is None:
            code = getattr(result, "status", None)
    except Exception:  # an arbitrary result object: a raising __getattr__ means "no status"
        return True
    if isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599:
        span.set_attribute(t.HTTP_STATUS, code)
        if code >= 400:
            span.set_status(Status(StatusCode.ERROR, f"HTTP {code}"))
            span.set_attribute(t.ERROR_TYPE, str(code))
            return False
    return True


def api_call(
    service: str,
    endpoint: str | None = None,
    *,
    capture_args: bool = False,
    attributes: Mapping[str, Any] | None = None,
) -> Decorator[P, R]:
    """Trace a call to an external API: a CLIENT span, `api_calls_total` and `api_call_duration_seconds`.

    The status is `error` when the call raises, or when it returns a response whose `status_code` (or
    `status`) is 400 or more.

    Args:
        service: The API's name, such as "arxiv" (a metric label: keep it bounded).
        endpoint: The operation, such as "search"; defaults to the function's name. Never put ids in it.
        capture_args: Record arguments and result on the span, truncated and scrubbed.
        attributes: Constant span attributes added to every call (as for `@task`).

    Raises:
        ConfigError: An empty name or an invalid attribute, at decoration.
    """
    service = check_name("service", service, "api_call")
    if endpoint is not None:
        endpoint = check_name("endpoint", endpoint, "api_call")
    constant = check_attributes(attributes, "api_call")

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        endpoint_name = endpoint or getattr(func, "__name__", "call")
        spec = Operation(
            f"{service}.{endpoint_name}",
            SpanKind.CLIENT,
            # TOOL: OpenInference's kind for "a call to an external tool such as a ... weather API".
            {t.OPENINFERENCE_KIND: "TOOL", t.RFOBS_SERVICE: service, t.RFOBS_ENDPOINT: endpoint_name, **constant},
            {"service": service, "endpoint": endpoint_name},
            _api_metrics,
            on_result=_http_status_ok,
            function=function_label("api_call", func),
            **_capture(func, capture_args),
        )
        return wrap(func, spec.begin)

    return decorate


def track_agent_task(agent: str, task_name: str) -> Decorator[P, R]:
    """Seed-compatible name: `@track_agent_task("researcher", "search")` is `@task("researcher", "search")`."""
    return task(agent, task_name)


def track_api_call(service: str, endpoint: str | None = None) -> Decorator[P, R]:
    """Seed-compatible name of `@api_call`."""
    return api_call(service, endpoint)
