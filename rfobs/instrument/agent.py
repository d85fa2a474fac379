"""`@agent`: an agent invocation span (`invoke_agent {name}`) under which `@task`s are steps, not agents.

The agent scope opened here (and by a `@task` with no agent around it) is what makes a nested `@task` a CHAIN
step; the invocation spans of both are built by `agent_operation`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Final, ParamSpec, TypeVar, cast

from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from rfobs import _check
from rfobs.instrument import _telemetry as t
from rfobs.instrument._attributes import check_attributes
from rfobs.instrument._capture import capture_default, input_content, output_content
from rfobs.instrument._operation import (
    Operation,
    check_name,
    duration_hooks,
    function_label,
    scope_async_generator,
    scope_generator,
)
from rfobs.instrument._wrap import wrap

__all__ = ["DEFAULT_PROVIDER", "agent", "agent_operation", "content_capture", "description_of", "with_agent_scope"]

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_PROVIDER: Final = "rfobs"
"""`gen_ai.provider.name` of an agent rfobs runs in-process, when the user names no model provider."""
MAX_DESCRIPTION: Final = 256


def _task_metrics(instruments: t.Instruments) -> tuple[t.Counts, Any]:
    return instruments.task_counts, instruments.task_duration


def _agent_histogram(instruments: t.Instruments) -> Any:
    return instruments.invoke_agent_duration


def _inner(func: Callable[..., Any]) -> Callable[..., Any]:
    return getattr(func, "__func__", func)  # a classmethod or staticmethod object


def is_generator(func: Callable[..., Any]) -> bool:
    """Whether `func` (or the function of a classmethod or staticmethod) is a generator or async-generator one."""
    inner = _inner(func)
    return inspect.isgeneratorfunction(inner) or inspect.isasyncgenfunction(inner)


def with_agent_scope(func: F) -> tuple[F, bool]:
    """`func` made to run inside the agent scope, and whether its `Call` must open that scope itself.

    A generator's steps are scoped one by one (the scope must not hold between items, while the consumer runs);
    a plain or coroutine function is scoped by its call's start and finish, with no wrapper of its own.
    """
    if isinstance(func, classmethod | staticmethod):
        method = cast("classmethod[Any, ..., Any] | staticmethod[..., Any]", func)
        inner, by_call = with_agent_scope(method.__func__)
        return cast("F", type(method)(inner)), by_call
    if inspect.isasyncgenfunction(func):
        return cast("F", scope_async_generator(func)), False
    if inspect.isgeneratorfunction(func):
        return cast("F", scope_generator(func)), False
    return func, True


def content_capture(func: Callable[..., Any], enabled: bool, *, tool: bool = False) -> dict[str, Any]:
    """`Operation` keywords that record a call's arguments and result as content, when `enabled`.

    A generator's result is not recorded: its items go to the consumer, not to the span.
    """
    if not enabled:
        return {}
    found: dict[str, Any] = {"argument_attributes": input_content(_inner(func), tool=tool)}
    if not is_generator(func):
        found["result_attributes"] = output_content(tool=tool)
    return found


def description_of(func: Callable[..., Any], given: object, owner: str) -> str | None:
    """`given` checked, else the first line of `func`'s docstring; either cut to `MAX_DESCRIPTION` characters."""
    if given is not None:
        text = _check.text(owner, "description", given, "a non-empty string, or None for the docstring's first line")
    else:
        doc = inspect.getdoc(_inner(func))
        text = next((line.strip() for line in (doc or "").splitlines() if line.strip()), "")
        if not text:
            return None
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


def agent_operation(
    span_name: str,
    agent_name: str,
    task_name: str | None,
    provider: str,
    identity: Mapping[str, AttributeValue],
    constant: Mapping[str, AttributeValue],
    *,
    genai_duration: bool = True,
    **options: Any,
) -> Operation:
    """The operation of an agent invocation: `@agent`, and a `@task` with no agent around it.

    Args:
        span_name: The span's name.
        agent_name: `gen_ai.agent.name` and the `agent` metric label.
        task_name: `rfobs.task` and the `task` metric label; None for an `@agent`, whose `task` label is its name.
        provider: `gen_ai.provider.name`.
        identity: Further GenAI agent attributes (id, version, description).
        constant: The user's constant attributes.
        genai_duration: Also record the duration in `gen_ai.invoke_agent.duration` (a second histogram value per
            call, which `@task` does not pay: its duration is in `agent_task_duration_seconds`).
        **options: Further `Operation` keywords (capture, function label, `inside_agent`, ...).
    """
    attributes: dict[str, AttributeValue] = {
        t.GEN_AI_OPERATION: "invoke_agent",
        t.GEN_AI_PROVIDER: provider,
        t.GEN_AI_AGENT_NAME: agent_name,
        **identity,
        t.OPENINFERENCE_KIND: "AGENT",
        t.RFOBS_AGENT: agent_name,
    }
    if task_name is not None:
        attributes[t.RFOBS_TASK] = task_name
    attributes.update(constant)
    if genai_duration:
        # The attributes the conventions define for gen_ai.invoke_agent.duration (no operation or provider).
        options["on_result"], options["on_error"] = duration_hooks(_agent_histogram, {t.GEN_AI_AGENT_NAME: agent_name})
    return Operation(
        span_name,
        SpanKind.INTERNAL,
        attributes,
        {"agent": agent_name, "task": task_name or agent_name},
        _task_metrics,
        **options,
    )


def agent(
    name: str,
    *,
    provider: str = DEFAULT_PROVIDER,
    id: str | None = None,  # shadows the builtin: the conventions name it so (gen_ai.agent.id)
    version: str | None = None,
    description: str | None = None,
    capture_content: bool | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Trace an agent run: an INTERNAL span `"invoke_agent {name}"`, the OpenTelemetry GenAI agent span.

    The span carries `gen_ai.operation.name=invoke_agent`, `gen_ai.agent.name`, `gen_ai.provider.name`,
    `gen_ai.agent.id` / `version` / `description` when known, and `openinference.span.kind=AGENT`. Every
    `@task` called inside it (at any depth) is a step of this agent: a CHAIN span, not an agent of its own.
    The run counts in `agent_tasks_total` and `agent_task_duration_seconds` (`agent=name, task=name`) and in
    the `gen_ai.invoke_agent.duration` histogram. Works on plain, async, generator and async-generator
    functions and methods; an exception is recorded on the span and re-raised unchanged.

    Args:
        name: The agent's name (a metric label: keep it bounded).
        provider: `gen_ai.provider.name`, which the conventions require. The default "rfobs" says that rfobs
            runs the agent in-process; pass the model provider ("openai", "anthropic", ...) if you prefer.
        id: `gen_ai.agent.id`, a stable identifier of the agent, if it has one.
        version: `gen_ai.agent.version`.
        description: `gen_ai.agent.description`; defaults to the first line of the function's docstring (cut to
            256 characters).
        capture_content: Record the arguments (`input.value`, a JSON object) and the result (`output.value`),
            bounded and scrubbed of secrets. None follows `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`
            (off unless set to true): content often holds personal data.
        attributes: Constant span attributes added to every call (as for `@task`).

    Raises:
        ConfigError: An empty name, provider, id, version or description, or an invalid attribute, at decoration.

    Example:
        >>> @agent("researcher", version="2")
        ... def research(question: str) -> str:
        ...     '''Answers research questions.'''
        ...     return question
    """
    name = check_name("name", name, "agent")
    provider = check_name("provider", provider, "agent")
    identity: dict[str, AttributeValue] = {}
    if id is not None:
        identity[t.GEN_AI_AGENT_ID] = check_name("id", id, "agent")
    if version is not None:
        identity[t.GEN_AI_AGENT_VERSION] = check_name("version", version, "agent")
    if description is not None:
        description = description_of(agent, description, "@agent")  # checked now, not when a function comes
    constant = check_attributes(attributes, "agent")
    capture = capture_default(
        None if capture_content is None else _check.flag("@agent", "capture_content", capture_content)
    )

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        described = description_of(func, description, "@agent")
        scoped, by_call = with_agent_scope(func)
        spec = agent_operation(
            f"invoke_agent {name}",
            name,
            None,
            provider,
            {**identity, t.GEN_AI_AGENT_DESCRIPTION: described} if described else identity,
            constant,
            function=function_label("agent", func),
            opens_agent_scope=by_call,
            **content_capture(func, capture),
        )
        return wrap(scoped, spec.begin)

    return decorate
