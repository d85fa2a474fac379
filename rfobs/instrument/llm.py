"""`@llm_call`: a GenAI client span with token usage read from the result, plus the GenAI client metrics.

No LLM client library is imported: usage is read by shape from what the call returns (OpenAI-style
`usage.prompt_tokens` / `usage.completion_tokens`, Anthropic-style `usage.input_tokens` / `usage.output_tokens`,
or a mapping with either pair, at the top level or under `"usage"`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

from opentelemetry.trace import Span, SpanKind

from rfobs.instrument import _telemetry as t
from rfobs.instrument._capture import input_capturer, output_capturer
from rfobs.instrument._operation import ErrorHook, Operation, ResultHook, check_name, exception_type, function_label
from rfobs.instrument._wrap import wrap

__all__ = ["TokenUsage", "llm_call", "token_usage"]

P = ParamSpec("P")
R = TypeVar("R")

_INPUT_KEYS = ("input_tokens", "prompt_tokens")
_OUTPUT_KEYS = ("output_tokens", "completion_tokens")

TokenUsage = tuple[int | None, int | None]
"""(input tokens, output tokens); None where the result does not say."""


def _field(source: object, name: str) -> object:
    # Results are arbitrary objects: a `__getattr__` or a mapping may raise anything; that means "not there".
    try:
        if isinstance(source, Mapping):
            return source.get(name)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        return getattr(source, name, None)
    except Exception:
        return None


def _count(source: object, names: tuple[str, ...]) -> int | None:
    for name in names:
        value = _field(source, name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def token_usage(result: object) -> TokenUsage:
    """Token counts from an LLM response of a common shape, or (None, None)."""
    usage = _field(result, "usage")
    for source in (usage, result) if usage is not None else (result,):
        counts = (_count(source, _INPUT_KEYS), _count(source, _OUTPUT_KEYS))
        if counts != (None, None):
            return counts
    return None, None


def _llm_metrics(instruments: t.Instruments) -> tuple[t.Counts, Any]:
    return instruments.api_counts, instruments.api_duration


def _hooks(provider: str, model: str | None) -> tuple[ResultHook, ErrorHook]:
    base: dict[str, str] = {t.GEN_AI_OPERATION: "chat", t.GEN_AI_PROVIDER: provider}
    if model is not None:
        base[t.GEN_AI_REQUEST_MODEL] = model
    token_attributes = {kind: {**base, t.GEN_AI_TOKEN_TYPE: kind} for kind in ("input", "output")}

    def on_result(result: object, span: Span, instruments: t.Instruments, elapsed: float) -> bool:
        input_tokens, output_tokens = token_usage(result)
        response_model = _field(result, "model")
        if isinstance(response_model, str):
            span.set_attribute(t.GEN_AI_RESPONSE_MODEL, response_model)
        if input_tokens is not None:
            span.set_attribute(t.GEN_AI_INPUT_TOKENS, input_tokens)
            instruments.llm_token_usage.record(input_tokens, token_attributes["input"])
        if output_tokens is not None:
            span.set_attribute(t.GEN_AI_OUTPUT_TOKENS, output_tokens)
            instruments.llm_token_usage.record(output_tokens, token_attributes["output"])
        instruments.llm_duration.record(elapsed, base)
        return True

    def on_error(error: BaseException, instruments: t.Instruments, elapsed: float) -> None:
        instruments.llm_duration.record(elapsed, {**base, t.ERROR_TYPE: exception_type(type(error))})

    return on_result, on_error


def llm_call(
    provider: str, model: str | None = None, *, capture_content: bool = False
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Trace a call to an LLM: a CLIENT span `"chat {model}"` with the GenAI semantic-convention attributes.

    The span has `gen_ai.operation.name=chat`, `gen_ai.provider.name`, `gen_ai.request.model` and
    `openinference.span.kind=LLM`; token usage read from the result becomes `gen_ai.usage.input_tokens` /
    `output_tokens` and the `gen_ai.client.token.usage` histogram; the duration goes to
    `gen_ai.client.operation.duration`, and the call counts in `api_calls_total{service=provider, endpoint=chat}`.

    Args:
        provider: The provider, as in the conventions: "openai", "anthropic", "aws.bedrock", ...
        model: The requested model, if fixed for this function.
        capture_content: Record prompt arguments and the response on the span (truncated, secrets scrubbed).
            Off by default: prompts and completions often hold personal data.

    Example:
        >>> @llm_call("openai", "gpt-4o-mini")
        ... def ask(prompt: str) -> dict[str, object]:
        ...     return {"usage": {"prompt_tokens": 12, "completion_tokens": 30}}
    """
    provider = check_name("provider", provider, "llm_call")
    if model is not None:
        model = check_name("model", model, "llm_call")
    attributes: dict[str, str] = {
        t.GEN_AI_OPERATION: "chat",
        t.GEN_AI_PROVIDER: provider,
        t.OPENINFERENCE_KIND: "LLM",
    }
    if model is not None:
        attributes[t.GEN_AI_REQUEST_MODEL] = model
    on_result, on_error = _hooks(provider, model)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        capture: dict[str, Any] = {}
        if capture_content:
            capture = {"capture_input": input_capturer(func), "capture_output": output_capturer()}
        spec = Operation(
            f"chat {model}" if model else "chat",
            SpanKind.CLIENT,
            attributes,
            {"service": provider, "endpoint": "chat"},
            _llm_metrics,
            on_result=on_result,
            on_error=on_error,
            function=function_label("llm_call", func),
            **capture,
        )
        return wrap(func, spec.begin)

    return decorate
