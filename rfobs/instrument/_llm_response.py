"""Response fields of an LLM result, read by shape: id, model, finish reasons, output texts, embedding size.

Shapes: OpenAI `ChatCompletion` / `Completion` (`choices[].finish_reason`, `choices[].message.content` or
`choices[].text`), Anthropic `Message` (`stop_reason`, text blocks in `content`), OpenAI
`CreateEmbeddingResponse` (`data[0].embedding`); objects or mappings of those shapes alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry.util.types import AttributeValue

from rfobs.instrument._llm_usage import field

__all__ = [
    "GEN_AI_EMBEDDING_DIMENSIONS",
    "GEN_AI_FINISH_REASONS",
    "GEN_AI_RESPONSE_ID",
    "GEN_AI_RESPONSE_MODEL",
    "LLM_MODEL_KEYS",
    "OutputMessage",
    "Response",
    "items",
    "read_response",
    "response_attributes",
]

GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_EMBEDDING_DIMENSIONS: Final = "gen_ai.embeddings.dimension.count"
LLM_MODEL_KEYS: Final = ("llm.model_name", "embedding.model_name")
"""OpenInference's model attribute: of an LLM span, of an embedding span (index with `operation == "embeddings"`)."""

_MAX_CHOICES: Final = 64


@dataclass(frozen=True, slots=True)
class OutputMessage:
    """One message the model returned: a chat choice, or an Anthropic message's text blocks joined."""

    role: str
    text: str | None
    finish_reason: str | None


@dataclass(frozen=True, slots=True)
class Response:
    """What an LLM result says about itself, besides token usage."""

    id: str | None = None
    model: str | None = None
    finish_reasons: tuple[str, ...] = ()
    outputs: tuple[OutputMessage, ...] = ()
    embedding_dimensions: int | None = None


def items(value: object, limit: int = _MAX_CHOICES) -> list[Any]:
    """The first `limit` elements of a list or tuple; [] for anything else (strings and mappings included)."""
    if isinstance(value, (list, tuple)):
        return list(value[:limit])  # pyright: ignore[reportUnknownArgumentType]
    return []


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _choice_output(choice: object) -> OutputMessage:
    finish_reason = _text(field(choice, "finish_reason"))
    message = field(choice, "message")
    if message is None:  # a text completion's choice
        return OutputMessage("assistant", _text(field(choice, "text")), finish_reason)
    role = _text(field(message, "role")) or "assistant"
    return OutputMessage(role, _text(field(message, "content")), finish_reason)


def _block_texts(blocks: Sequence[object]) -> str | None:
    texts = [text for block in blocks if field(block, "type") == "text" and (text := _text(field(block, "text")))]
    return "".join(texts) if texts else None


def _embedding_dimensions(result: object) -> int | None:
    data = items(field(result, "data"), 1)
    if not data:
        return None
    vector = field(data[0], "embedding")
    return len(vector) if isinstance(vector, (list, tuple)) else None  # pyright: ignore[reportUnknownArgumentType]


def read_response(result: object) -> Response:
    """The response fields `result` shows; an empty `Response` when it shows none."""
    if result is None or isinstance(result, (str, bytes, int, float)):
        return Response()
    response_id, model = _text(field(result, "id")), _text(field(result, "model"))
    choices = items(field(result, "choices"))
    if choices:
        outputs = tuple(_choice_output(choice) for choice in choices)
        reasons = tuple(output.finish_reason for output in outputs if output.finish_reason is not None)
        return Response(response_id, model, reasons, outputs)
    stop_reason = _text(field(result, "stop_reason"))
    blocks = items(field(result, "content"), 256)
    if stop_reason is not None or blocks:
        role = _text(field(result, "role")) or "assistant"
        output = OutputMessage(role, _block_texts(blocks), stop_reason)
        return Response(response_id, model, () if stop_reason is None else (stop_reason,), (output,))
    return Response(response_id, model, embedding_dimensions=_embedding_dimensions(result))


def response_attributes(response: Response, embeddings: bool = False) -> dict[str, AttributeValue]:
    """The span attributes of `response`: `gen_ai.response.*`, the embedding size, the OpenInference model name.

    The response's model (the one that answered) overrides the requested one in `llm.model_name`.
    """
    attributes: dict[str, AttributeValue] = {}
    if response.id is not None:
        attributes[GEN_AI_RESPONSE_ID] = response.id
    if response.model is not None:
        attributes[GEN_AI_RESPONSE_MODEL] = attributes[LLM_MODEL_KEYS[embeddings]] = response.model
    if response.finish_reasons:
        attributes[GEN_AI_FINISH_REASONS] = list(response.finish_reasons)
    if response.embedding_dimensions is not None:
        attributes[GEN_AI_EMBEDDING_DIMENSIONS] = response.embedding_dimensions
    return attributes
