"""Token usage of an LLM response, read by shape: the GenAI conventions' totals, cache and reasoning tokens.

No client library is imported. The conventions count cached tokens inside `gen_ai.usage.input_tokens`, so the
shapes are read differently:

- OpenAI Chat Completions / Embeddings (`prompt_tokens`, `completion_tokens`): `prompt_tokens` already includes
  `prompt_tokens_details.cached_tokens`; reasoning is `completion_tokens_details.reasoning_tokens`.
- Anthropic (`input_tokens` with `cache_read_input_tokens` / `cache_creation_input_tokens`): `input_tokens`
  counts only the uncached tokens, so the input total is the sum of the three.
- OpenAI Responses (`input_tokens` with `input_tokens_details.cached_tokens`): `input_tokens` includes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from opentelemetry.util.types import AttributeValue

__all__ = ["NO_USAGE", "LLMUsage", "count", "field", "llm_usage", "usage_attributes"]

GEN_AI_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_CACHE_READ_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_CACHE_CREATION_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_REASONING_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
# OpenInference's names for the same counts.
LLM_PROMPT_TOKENS: Final = "llm.token_count.prompt"
LLM_COMPLETION_TOKENS: Final = "llm.token_count.completion"
LLM_TOTAL_TOKENS: Final = "llm.token_count.total"
LLM_CACHE_READ_TOKENS: Final = "llm.token_count.prompt_details.cache_read"
LLM_CACHE_WRITE_TOKENS: Final = "llm.token_count.prompt_details.cache_write"
LLM_REASONING_TOKENS: Final = "llm.token_count.completion_details.reasoning"


@dataclass(frozen=True, slots=True)
class LLMUsage:
    """Token counts of one LLM call, as the GenAI conventions count them; None where the response does not say.

    Attributes:
        input: Input tokens, cached ones included (`gen_ai.usage.input_tokens`).
        output: Output tokens, reasoning included (`gen_ai.usage.output_tokens`).
        cache_read: Input tokens served from the provider's cache (`gen_ai.usage.cache_read.input_tokens`).
        cache_creation: Input tokens written to the cache (`gen_ai.usage.cache_creation.input_tokens`).
        reasoning: Output tokens spent on reasoning (`gen_ai.usage.reasoning.output_tokens`).
    """

    input: int | None = None
    output: int | None = None
    cache_read: int | None = None
    cache_creation: int | None = None
    reasoning: int | None = None

    @property
    def total(self) -> int | None:
        """Input plus output tokens, or None when neither is known."""
        if self.input is None and self.output is None:
            return None
        return (self.input or 0) + (self.output or 0)

    @property
    def uncached_input(self) -> int | None:
        """Input tokens neither read from nor written to the cache (what is billed at the base input price)."""
        if self.input is None:
            return None
        return max(0, self.input - (self.cache_read or 0) - (self.cache_creation or 0))


NO_USAGE: Final = LLMUsage()
"""A response that shows no usage."""


def field(source: object, name: str) -> object:
    """`source.name` or `source[name]`, or None when absent or when looking it up fails."""
    # Results are arbitrary objects: a `__getattr__` or a mapping may raise anything; that means "not there".
    if source is None:
        return None
    try:
        if isinstance(source, Mapping):
            return source.get(name)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        return getattr(source, name, None)
    except Exception:
        return None


def count(source: object, name: str) -> int | None:
    """A non-negative int field of `source`, or None."""
    value = field(source, name)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _openai_chat(source: object) -> LLMUsage | None:
    prompt, completion = count(source, "prompt_tokens"), count(source, "completion_tokens")
    if prompt is None and completion is None:
        return None
    prompt_details = field(source, "prompt_tokens_details")
    return LLMUsage(
        prompt,
        completion,
        cache_read=count(prompt_details, "cached_tokens"),
        cache_creation=count(prompt_details, "cache_write_tokens"),
        reasoning=count(field(source, "completion_tokens_details"), "reasoning_tokens"),
    )


def _input_output(source: object) -> LLMUsage | None:
    given, output = count(source, "input_tokens"), count(source, "output_tokens")
    cache_read, cache_creation = count(source, "cache_read_input_tokens"), count(source, "cache_creation_input_tokens")
    output_details = field(source, "output_tokens_details")
    reasoning = count(output_details, "reasoning_tokens")
    if reasoning is None:
        reasoning = count(output_details, "thinking_tokens")
    if cache_read is not None or cache_creation is not None:  # Anthropic: input_tokens excludes the cache
        if given is None and output is None:
            return None
        total = None if given is None else given + (cache_read or 0) + (cache_creation or 0)
        return LLMUsage(total, output, cache_read, cache_creation, reasoning)
    if given is None and output is None:
        return None
    cached = count(field(source, "input_tokens_details"), "cached_tokens")
    return LLMUsage(given, output, cache_read=cached, reasoning=reasoning)


def llm_usage(result: object) -> LLMUsage:
    """The token usage of an LLM response (or of a `usage` object itself), `LLMUsage()` when it shows none.

    Read from `result.usage` (attribute or mapping key), else from `result` itself.
    """
    usage = field(result, "usage")
    for source in (usage, result) if usage is not None else (result,):
        found = _openai_chat(source) or _input_output(source)
        if found is not None:
            return found
    return NO_USAGE


def usage_attributes(usage: LLMUsage) -> dict[str, AttributeValue]:
    """The span attributes of `usage`: the GenAI `gen_ai.usage.*` and OpenInference's `llm.token_count.*`."""
    attributes: dict[str, AttributeValue] = {}
    for value, names in (
        (usage.input, (GEN_AI_INPUT_TOKENS, LLM_PROMPT_TOKENS)),
        (usage.output, (GEN_AI_OUTPUT_TOKENS, LLM_COMPLETION_TOKENS)),
        (usage.total, (LLM_TOTAL_TOKENS,)),
        (usage.cache_read, (GEN_AI_CACHE_READ_TOKENS, LLM_CACHE_READ_TOKENS)),
        (usage.cache_creation, (GEN_AI_CACHE_CREATION_TOKENS, LLM_CACHE_WRITE_TOKENS)),
        (usage.reasoning, (GEN_AI_REASONING_TOKENS, LLM_REASONING_TOKENS)),
    ):
        if value is not None:
            attributes.update(dict.fromkeys(names, value))
    return attributes
