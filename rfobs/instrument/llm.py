"""`@llm_call`: a GenAI client span with token usage read from the result, plus the GenAI client metrics.

No LLM client library is imported: the response is read by shape (OpenAI, Anthropic, or mappings of either),
whether the function returns it whole or is a generator yielding its stream's chunks. The span follows the
OpenTelemetry GenAI conventions and carries the OpenInference attributes Phoenix and Arize read.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, ParamSpec, TypeVar, cast

from opentelemetry.trace import Span, SpanKind
from opentelemetry.util.types import AttributeValue

from rfobs import _check
from rfobs._guard import internal_error
from rfobs.instrument import _telemetry as t
from rfobs.instrument._capture import capture_default, input_capturer, output_capturer
from rfobs.instrument._cost import record_cost
from rfobs.instrument._llm_content import input_attributes, output_attributes
from rfobs.instrument._llm_response import LLM_MODEL_KEYS, read_response, response_attributes
from rfobs.instrument._llm_stream import (
    GEN_AI_REQUEST_STREAM,
    StreamCall,
    StreamOutcome,
    observe_async_generator,
    observe_generator,
)
from rfobs.instrument._llm_usage import LLMUsage, llm_usage, usage_attributes
from rfobs.instrument._operation import (
    Call,
    ErrorHook,
    Operation,
    ResultHook,
    check_name,
    exception_type,
    function_label,
)
from rfobs.instrument._wrap import Call as AnyCall
from rfobs.instrument._wrap import wrap

__all__ = ["OPERATIONS", "LLMUsage", "TokenUsage", "llm_call", "llm_usage", "token_usage"]

P = ParamSpec("P")
R = TypeVar("R")

OPERATIONS: Final = ("chat", "text_completion", "generate_content", "embeddings")
"""The `gen_ai.operation.name` values `@llm_call(operation=...)` accepts."""

SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
GEN_AI_ENCODING_FORMATS: Final = "gen_ai.request.encoding_formats"
LLM_PROVIDER: Final = "llm.provider"
LLM_SYSTEM: Final = "llm.system"
USAGE_RECORDED_BY: Final = "rfobs.llm.usage_recorded_by"
"""On an `@llm_call` span: the scope of another instrumentation's GenAI span under it, which then carries the
token usage and the GenAI client metrics of the request instead (set by `rfobs._instrumentations`)."""

# OpenInference's names for the providers the GenAI conventions name: (llm.provider, llm.system).
_OPENINFERENCE_PROVIDERS: Final = {
    "openai": ("openai", "openai"),
    "anthropic": ("anthropic", "anthropic"),
    "azure.ai.openai": ("azure", "openai"),
    "aws.bedrock": ("aws", "aws.bedrock"),
    "gcp.vertex_ai": ("google", "vertexai"),
    "gcp.gemini": ("google", "vertexai"),
    "gcp.gen_ai": ("google", "vertexai"),
    "mistral_ai": ("mistralai", "mistralai"),
    "cohere": ("cohere", "cohere"),
    "x_ai": ("xai", "xai"),
    "deepseek": ("deepseek", "deepseek"),
}
_MAX_MODELS: Final = 64  # per decorated function; the Operations of further models are made per call
_MAX_MODEL_LENGTH: Final = 256

TokenUsage = tuple[int | None, int | None]
"""(input tokens, output tokens); None where the result does not say."""


def token_usage(result: object) -> TokenUsage:
    """Token counts from an LLM response of a common shape, or (None, None); input includes cached tokens."""
    usage = llm_usage(result)
    return usage.input, usage.output


@dataclass(frozen=True, slots=True)
class _Settings:
    """One decorated function's `@llm_call` arguments, checked."""

    provider: str
    operation: str
    server_address: str | None
    server_port: int | None
    capture: bool
    streaming: bool

    def metric_attributes(self, model: str | None) -> dict[str, AttributeValue]:
        attributes: dict[str, AttributeValue] = {t.GEN_AI_OPERATION: self.operation, t.GEN_AI_PROVIDER: self.provider}
        if model is not None:
            attributes[t.GEN_AI_REQUEST_MODEL] = model
        if self.server_address is not None:
            attributes[SERVER_ADDRESS] = self.server_address
        if self.server_port is not None:
            attributes[SERVER_PORT] = self.server_port
        return attributes

    def span_attributes(self, model: str | None) -> dict[str, AttributeValue]:
        attributes = self.metric_attributes(model)
        embeddings = self.operation == "embeddings"
        attributes[t.OPENINFERENCE_KIND] = "EMBEDDING" if embeddings else "LLM"
        provider, system = _OPENINFERENCE_PROVIDERS.get(self.provider, (self.provider, self.provider))
        attributes[LLM_PROVIDER], attributes[LLM_SYSTEM] = provider, system
        if model is not None:
            attributes[LLM_MODEL_KEYS[embeddings]] = model
        if self.streaming:
            attributes[GEN_AI_REQUEST_STREAM] = True
        return attributes


def _hooks(
    settings: _Settings, model: str | None, render: Callable[[object], str] | None
) -> tuple[ResultHook, ErrorHook]:
    base = settings.metric_attributes(model)
    token_attributes = {kind: {**base, t.GEN_AI_TOKEN_TYPE: kind} for kind in ("input", "output")}
    embeddings = settings.operation == "embeddings"

    def on_result(result: object, span: Span, instruments: t.Instruments, elapsed: float) -> bool:
        if isinstance(result, StreamOutcome):
            response, usage, first_chunk = result.response, result.usage, result.time_to_first_chunk
            raw = None
        else:
            response, usage, first_chunk = read_response(result), llm_usage(result), None
            raw = None if render is None else functools.partial(render, result)
        if embeddings:  # an embedding's usage counts its input only
            usage = LLMUsage(input=usage.input)
        # One request, one usage: another instrumentation's span under this one already counts it.
        delegated = _delegated(span)
        counted = LLMUsage() if delegated else usage
        if span.is_recording():
            span.set_attributes(response_attributes(response, embeddings))
            span.set_attributes(usage_attributes(counted))
            if render is not None:
                span.set_attributes(output_attributes(response, raw))
        if counted.input is not None:
            instruments.llm_token_usage.record(counted.input, token_attributes["input"])
        if counted.output is not None:
            instruments.llm_token_usage.record(counted.output, token_attributes["output"])
        if first_chunk is not None:
            instruments.llm_time_to_first_chunk.record(first_chunk, base)
        priced_model = response.model or model
        if priced_model is not None and usage.input is not None and usage.output is not None:
            record_cost(
                span,
                instruments,
                settings.provider,
                priced_model,
                input_tokens=usage.input,
                output_tokens=usage.output,
                cache_read_tokens=usage.cache_read or 0,
                cache_creation_tokens=usage.cache_creation or 0,
                reasoning_tokens=usage.reasoning or 0,
            )
        if not delegated:
            instruments.llm_duration.record(elapsed, base)
        return True

    def on_error(error: BaseException, span: Span, instruments: t.Instruments, elapsed: float) -> None:
        if not _delegated(span):  # the instrumentation's span records this request's duration, failed or not
            instruments.llm_duration.record(elapsed, {**base, t.ERROR_TYPE: exception_type(type(error))})

    return on_result, on_error


def _delegated(span: Span) -> bool:
    """Whether another instrumentation's GenAI span under `span` records the request's usage and duration."""
    return USAGE_RECORDED_BY in (cast("Mapping[str, object] | None", getattr(span, "attributes", None)) or {})


def _call_model(kwargs: Mapping[str, Any]) -> str | None:
    value = kwargs.get("model")
    if isinstance(value, str) and (model := value.strip()):
        return model[:_MAX_MODEL_LENGTH]
    return None


def _encoding_formats(kwargs: Mapping[str, Any]) -> list[str]:
    value = kwargs.get("encoding_format")
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [item for item in cast("list[object] | tuple[object, ...]", value) if isinstance(item, str)]
    return []


def llm_call(
    provider: str,
    model: str | None = None,
    *,
    operation: str = "chat",
    capture_content: bool | None = None,
    server_address: str | None = None,
    server_port: int | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Trace a call to an LLM: a CLIENT span `"{operation} {model}"` with the GenAI semantic-convention attributes.

    The span has `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model` and the OpenInference
    `openinference.span.kind`, `llm.provider`, `llm.system`, `llm.model_name`. From the result (or, for a
    generator, from the chunks it yields) come `gen_ai.response.id` / `.model` / `.finish_reasons` and the token
    usage: `gen_ai.usage.input_tokens` (cached tokens included, as the conventions count them) and
    `output_tokens`, the cache-read, cache-creation and reasoning counts, `llm.token_count.*`, and the
    `gen_ai.client.token.usage` histogram. The duration goes to `gen_ai.client.operation.duration`, a stream's
    time to its first chunk to `gen_ai.response.time_to_first_chunk` and
    `gen_ai.client.operation.time_to_first_chunk`, and the call counts in
    `api_calls_total{service=provider, endpoint=operation}`.

    Args:
        provider: The provider, as in the conventions: "openai", "anthropic", "aws.bedrock", ...
        model: The requested model, if fixed for this function; else each call's `model=` keyword argument.
        operation: "chat", "text_completion", "generate_content" or "embeddings".
        capture_content: Record the call's messages (`messages=`, `system=`) and the response's messages on the
            span (scrubbed of secrets, bounded). None follows `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`;
            off by default, since prompts and completions often hold personal data.
        server_address: The host the client talks to (`server.address`).
        server_port: Its port (`server.port`).

    Raises:
        ConfigError: An argument is not one of the values described above.

    Example:
        >>> @llm_call("openai", "gpt-4o-mini")
        ... def ask(prompt: str) -> dict[str, object]:
        ...     return {"usage": {"prompt_tokens": 12, "completion_tokens": 30}}
    """
    owner = "@llm_call"
    provider = check_name("provider", provider, "llm_call")
    if model is not None:
        model = check_name("model", model, "llm_call")
    operation = _check.one_of(owner, "operation", operation, OPERATIONS)
    capture = capture_default(
        None if capture_content is None else _check.flag(owner, "capture_content", capture_content)
    )
    if server_address is not None:
        server_address = check_name("server_address", server_address, "llm_call")
    if server_port is not None:
        server_port = _check.integer(owner, "server_port", server_port, ge=1, le=65535)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        inner: Callable[..., Any] = func
        if isinstance(func, (classmethod, staticmethod)):
            inner = cast("classmethod[Any, ..., Any] | staticmethod[..., Any]", func).__func__
        asynchronous = inspect.isasyncgenfunction(inner)
        streaming = asynchronous or inspect.isgeneratorfunction(inner)
        settings = _Settings(provider, operation, server_address, server_port, capture, streaming)
        arguments = input_capturer(inner) if capture else None
        render = output_capturer() if capture else None
        label = function_label("llm_call", inner)
        operations: dict[str | None, Operation] = {}

        def operation_for(call_model: str | None) -> Operation:
            found = operations.get(call_model)
            if found is None:
                on_result, on_error = _hooks(settings, call_model, render)
                found = Operation(
                    f"{operation} {call_model}" if call_model else operation,
                    SpanKind.CLIENT,
                    settings.span_attributes(call_model),
                    {"service": provider, "endpoint": operation},
                    lambda instruments: (instruments.api_counts, instruments.api_duration),
                    on_result=on_result,
                    on_error=on_error,
                    function=label,
                )
                if len(operations) < _MAX_MODELS:
                    operations[call_model] = found
            return found

        def begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> AnyCall | None:
            call = operation_for(model if model is not None else _call_model(kwargs)).begin(args, kwargs)
            if call is None:
                return None
            _record_request(call, settings, args, kwargs, arguments)
            return StreamCall(call, capture) if streaming else call

        target: Callable[..., Any] = inner
        if streaming:
            target = observe_async_generator(inner) if asynchronous else observe_generator(inner)
        decorated = wrap(target, begin)
        if isinstance(func, (classmethod, staticmethod)):
            return cast("Callable[P, R]", type(func)(decorated))  # pyright: ignore[reportUnknownArgumentType]
        return cast("Callable[P, R]", decorated)

    return decorate


def _record_request(
    call: Call,
    settings: _Settings,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    arguments: Callable[[tuple[Any, ...], dict[str, Any]], str] | None,
) -> None:
    span = call.span
    if not span.is_recording():
        return
    try:
        if settings.operation == "embeddings" and (formats := _encoding_formats(kwargs)):
            span.set_attribute(GEN_AI_ENCODING_FORMATS, formats)
        if arguments is not None:
            span.set_attributes(input_attributes(kwargs, settings.operation, lambda: arguments(args, kwargs)))
    except Exception:
        internal_error("recording an LLM call's request")
