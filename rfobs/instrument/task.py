"""`@task`, `@tool` and `@api_call`: a span per call plus a counter and a duration histogram per operation."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar, overload

from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from rfobs import _check
from rfobs.exceptions import ConfigError
from rfobs.instrument import _telemetry as t
from rfobs.instrument._attributes import check_attributes
from rfobs.instrument._capture import capture_default
from rfobs.instrument._operation import ArgumentAttributes, Operation, check_name, duration_hooks, function_label
from rfobs.instrument._wrap import wrap
from rfobs.instrument.agent import DEFAULT_PROVIDER, agent_operation, content_capture, description_of, with_agent_scope

if TYPE_CHECKING:
    from rfobs.instrument.breaker import CircuitBreaker
    from rfobs.instrument.ratelimit import RateLimiter
    from rfobs.instrument.retry import RetryPolicy
    from rfobs.instrument.timeout import Timeout

__all__ = ["api_call", "task", "tool", "track_agent_task", "track_api_call"]

P = ParamSpec("P")
R = TypeVar("R")
Decorator = Callable[[Callable[P, R]], Callable[P, R]]


_TOOL_TYPES: Final = ("function", "extension", "datastore")
_MAX_CALL_ID: Final = 256


def _task_metrics(instruments: t.Instruments) -> tuple[t.Counts, Any]:
    return instruments.task_counts, instruments.task_duration


def _api_metrics(instruments: t.Instruments) -> tuple[t.Counts, Any]:
    return instruments.api_counts, instruments.api_duration


def _tool_histogram(instruments: t.Instruments) -> Any:
    return instruments.execute_tool_duration


def _capture_flag(value: object, decorator: str) -> bool:
    """The decorator's `capture_args`, or the GenAI content-capture switch when it is None."""
    return capture_default(None if value is None else _check.flag(f"@{decorator}", "capture_args", value))


def _task_name(func: Callable[..., Any], name: str | None, fallback: str) -> str:
    return name or getattr(func, "__name__", None) or getattr(getattr(func, "__func__", None), "__name__", fallback)


@overload
def task(agent: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def task(
    agent: str,
    name: str | None = None,
    *,
    capture_args: bool | None = None,
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
    capture_args: bool | None = None,
    attributes: Mapping[str, Any] | None = None,
    retry: RetryPolicy | Mapping[str, Any] | int | bool | None = None,
    timeout: Timeout | float | None = None,
    rate_limit: RateLimiter | float | None = None,
    breaker: CircuitBreaker | str | bool | None = None,
) -> Decorator[P, R] | Callable[P, R]:
    """Trace an agent task: a span `"{agent}.{name}"`, `agent_tasks_total` and `agent_task_duration_seconds`.

    What the span is depends on where the task runs:

    - inside an `@agent` or another `@task` (at any depth, through tools and other calls): a step of that
      agent, with `openinference.span.kind=CHAIN` and no `gen_ai.operation.name`;
    - with no rfobs agent or task around it: an agent invocation of its own, as the seed programme's tasks
      are: `gen_ai.operation.name=invoke_agent`, `gen_ai.agent.name`, `gen_ai.provider.name="rfobs"`,
      `openinference.span.kind=AGENT` (its duration stays in `agent_task_duration_seconds` only: the
      `gen_ai.invoke_agent.duration` histogram is `@agent`'s, so a seed task pays for no second histogram).

    The span's name is `"{agent}.{name}"` either way. An exception is recorded on the span (status ERROR,
    `error.type`) and re-raised unchanged.

    Args:
        agent: The agent's name (a metric label: keep it bounded). Used bare (`@task`), the agent is "agent".
        name: The task's name; defaults to the function's name.
        capture_args: Record the arguments (`input.value`, a JSON object) and the result (`output.value`) with
            their mime types, bounded and with secret-looking values replaced by `***`. None follows
            `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` (off unless set to true).
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
        given = (name, capture_args, attributes, *policies.values())
        if any(value is not None for value in given):
            raise ConfigError(f"@task(agent={agent!r}, ...): expected the agent's name; bare @task takes no arguments")
        return _task_decorator("agent", None, None, None)(agent)
    span = _task_decorator(agent, name, attributes, capture_args)
    if all(value is None for value in policies.values()):
        return span
    from rfobs.instrument.compose import policy_stack  # the policies load tenacity and friends: only when used

    stack = policy_stack(retry=retry, timeout=timeout, rate_limit=rate_limit, breaker=breaker)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        task_name = name or getattr(func, "__name__", None) or "task"
        return span(stack(f"{agent}.{task_name}", func))

    return decorate


def _task_decorator(
    agent: str, name: str | None, attributes: Mapping[str, Any] | None, capture_args: bool | None
) -> Decorator[P, R]:
    agent = check_name("agent", agent, "task")
    if name is not None:
        name = check_name("name", name, "task")
    constant = check_attributes(attributes, "task")
    capture = _capture_flag(capture_args, "task")

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        task_name = _task_name(func, name, "task")
        span_name = f"{agent}.{task_name}"
        function = function_label("task", func)
        scoped, by_call = with_agent_scope(func)
        content = content_capture(func, capture)
        step = Operation(
            span_name,
            SpanKind.INTERNAL,
            {t.OPENINFERENCE_KIND: "CHAIN", t.RFOBS_AGENT: agent, t.RFOBS_TASK: task_name, **constant},
            {"agent": agent, "task": task_name},
            _task_metrics,
            function=function,
            **content,
        )
        invocation = agent_operation(
            span_name,
            agent,
            task_name,
            DEFAULT_PROVIDER,
            {},
            constant,
            genai_duration=False,
            function=function,
            opens_agent_scope=by_call,
            inside_agent=step,
            **content,
        )
        return wrap(scoped, invocation.begin)

    return decorate


def _call_id_reader(func: Callable[..., Any], call_id: str | None) -> ArgumentAttributes | None:
    """Reads `gen_ai.tool.call.id` from the argument named `call_id`, else from one named `tool_call_id`.

    Raises:
        ConfigError: `call_id` names no parameter of `func` (`*args` and `**kwargs` do not count).
    """
    inner = getattr(func, "__func__", func)
    try:
        parameters = list(inspect.signature(inner).parameters.values())
    except (TypeError, ValueError):  # no signature to read: only an explicit call_id is an error
        parameters = []
    named = [p for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    wanted = call_id or "tool_call_id"
    found = next(((i, p) for i, p in enumerate(named) if p.name == wanted), None)
    if found is None:
        if call_id is None:
            return None
        names = ", ".join(p.name for p in named) or "none"
        allowed = f"the name of a parameter of {function_label('tool', func)} ({names})"
        raise _check.bad("@tool", "call_id", call_id, allowed)
    index, parameter = found
    position = index if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD) else None

    def read(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, AttributeValue]:
        value = args[position] if position is not None and position < len(args) else kwargs.get(wanted)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and value:
            return {t.GEN_AI_TOOL_CALL_ID: value[:_MAX_CALL_ID]}
        return {}

    return read


def _both(first: ArgumentAttributes | None, second: ArgumentAttributes | None) -> ArgumentAttributes | None:
    if first is None or second is None:
        return first or second

    def both(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Mapping[str, AttributeValue]:
        return {**first(args, kwargs), **second(args, kwargs)}

    return both


def tool(
    name: str | None = None,
    *,
    agent: str | None = None,
    type: str = "function",  # shadows the builtin: the conventions name it so (gen_ai.tool.type)
    call_id: str | None = None,
    description: str | None = None,
    capture_args: bool | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Decorator[P, R]:
    """Trace a tool the agent calls: an INTERNAL span `"execute_tool {name}"`, the GenAI tool span.

    The span carries `gen_ai.operation.name=execute_tool`, `gen_ai.tool.name`, `gen_ai.tool.type`,
    `gen_ai.tool.description` and `gen_ai.tool.call.id` when known, and OpenInference's
    `openinference.span.kind=TOOL`, `tool.name` and `tool.description`. It counts in `agent_tasks_total` /
    `agent_task_duration_seconds` (`agent=""` without an agent) and in the `gen_ai.execute_tool.duration`
    histogram.

    Args:
        name: The tool's name; defaults to the function's name.
        agent: The agent that owns the tool, if any: the `agent` metric label and `gen_ai.agent.name`.
        type: `gen_ai.tool.type`: "function" (runs in the agent's process), "extension" (runs elsewhere, called
            by the agent) or "datastore" (a store the agent reads, as in retrieval).
        call_id: The parameter whose argument is the model's tool call id (`gen_ai.tool.call.id`). By default a
            parameter named `tool_call_id`, when the function has one.
        description: `gen_ai.tool.description`; defaults to the first line of the function's docstring.
        capture_args: Record the arguments (`input.value` and `gen_ai.tool.call.arguments`, a JSON object) and
            the result (`output.value` and `gen_ai.tool.call.result`), bounded and scrubbed. None follows
            `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` (off unless set to true).
        attributes: Constant span attributes added to every call (as for `@task`).

    Raises:
        ConfigError: An empty name, agent or description, a type not listed above, a `call_id` that names no
            parameter of the function, or an invalid attribute, at decoration.

    Example:
        >>> @tool("web_search", type="extension")
        ... def web_search(query: str, tool_call_id: str | None = None) -> list[str]:
        ...     '''Searches the web.'''
        ...     return [query]
    """
    if name is not None:
        name = check_name("name", name, "tool")
    if agent is not None:
        agent = check_name("agent", agent, "tool")
    tool_type = _check.one_of("@tool", "type", type, _TOOL_TYPES)
    if call_id is not None:
        call_id = check_name("call_id", call_id, "tool")
    if description is not None:
        description = description_of(tool, description, "@tool")  # checked now, not when a function comes
    constant = check_attributes(attributes, "tool")
    capture = _capture_flag(capture_args, "tool")

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        tool_name = _task_name(func, name, "tool")
        described = description_of(func, description, "@tool")
        span_attributes: dict[str, AttributeValue] = {
            t.GEN_AI_OPERATION: "execute_tool",
            t.GEN_AI_TOOL_NAME: tool_name,
            t.GEN_AI_TOOL_TYPE: tool_type,
            t.OPENINFERENCE_KIND: "TOOL",
            t.OI_TOOL_NAME: tool_name,
        }
        if described:
            span_attributes[t.GEN_AI_TOOL_DESCRIPTION] = span_attributes[t.OI_TOOL_DESCRIPTION] = described
        if agent is not None:
            span_attributes[t.GEN_AI_AGENT_NAME] = span_attributes[t.RFOBS_AGENT] = agent
        span_attributes[t.RFOBS_TASK] = tool_name
        span_attributes.update(constant)
        # The attributes the conventions define for gen_ai.execute_tool.duration (no operation name).
        tool_metric: dict[str, str] = {t.GEN_AI_TOOL_NAME: tool_name, t.GEN_AI_TOOL_TYPE: tool_type}
        if agent is not None:
            tool_metric[t.GEN_AI_AGENT_NAME] = agent
        on_result, on_error = duration_hooks(_tool_histogram, tool_metric)
        content = content_capture(func, capture, tool=True)
        spec = Operation(
            f"execute_tool {tool_name}",
            SpanKind.INTERNAL,
            span_attributes,
            # "" rather than no label: every series of agent_tasks_total keeps the same label names.
            {"agent": agent or "", "task": tool_name},
            _task_metrics,
            on_result=on_result,
            on_error=on_error,
            function=function_label("tool", func),
            argument_attributes=_both(_call_id_reader(func, call_id), content.get("argument_attributes")),
            result_attributes=content.get("result_attributes"),
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
    capture_args: bool | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Decorator[P, R]:
    """Trace a call to an external API: a CLIENT span, `api_calls_total` and `api_call_duration_seconds`.

    The status is `error` when the call raises, or when it returns a response whose `status_code` (or
    `status`) is 400 or more.

    Args:
        service: The API's name, such as "arxiv" (a metric label: keep it bounded).
        endpoint: The operation, such as "search"; defaults to the function's name. Never put ids in it.
        capture_args: Record arguments and result on the span (`input.value`, `output.value`), bounded and
            scrubbed. None follows `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` (off unless set to true).
        attributes: Constant span attributes added to every call (as for `@task`).

    Raises:
        ConfigError: An empty name or an invalid attribute, at decoration.
    """
    service = check_name("service", service, "api_call")
    if endpoint is not None:
        endpoint = check_name("endpoint", endpoint, "api_call")
    constant = check_attributes(attributes, "api_call")
    capture = _capture_flag(capture_args, "api_call")

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
            **content_capture(func, capture),
        )
        return wrap(func, spec.begin)

    return decorate


def track_agent_task(agent: str, task_name: str) -> Decorator[P, R]:
    """Seed-compatible name: `@track_agent_task("researcher", "search")` is `@task("researcher", "search")`."""
    return task(agent, task_name)


def track_api_call(service: str, endpoint: str | None = None) -> Decorator[P, R]:
    """Seed-compatible name of `@api_call`."""
    return api_call(service, endpoint)
