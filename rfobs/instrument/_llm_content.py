"""The content of an LLM call on its span: input, system and output messages, in GenAI and OpenInference form.

Only written when content capture is on. Messages follow the GenAI conventions' JSON schema (`[{"role": ...,
"parts": [{"type": "text", "content": ...}]}]`); OpenInference gets `input.value` / `output.value` and the
flattened `llm.input_messages.{i}.message.*`. Each text is scrubbed of secrets and cut to `MAX_CAPTURE_LENGTH`,
and only the last `MAX_MESSAGES` messages are kept, so a long conversation costs a bounded span.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from opentelemetry.util.types import AttributeValue

from rfobs._secrets import scrub_text
from rfobs.instrument._capture import MAX_CAPTURE_LENGTH
from rfobs.instrument._llm_response import Response, items
from rfobs.instrument._llm_usage import field

__all__ = ["MAX_MESSAGES", "bounded", "input_attributes", "output_attributes"]

GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
INPUT_VALUE: Final = "input.value"
INPUT_MIME_TYPE: Final = "input.mime_type"
OUTPUT_VALUE: Final = "output.value"
OUTPUT_MIME_TYPE: Final = "output.mime_type"
JSON_MIME: Final = "application/json"
TEXT_MIME: Final = "text/plain"

MAX_MESSAGES: Final = 16
"""Messages kept per direction (the most recent ones); two OpenInference attributes each."""
_MAX_PARTS: Final = 16
_TEXT_PART_TYPES: Final = frozenset({"text", "input_text", "output_text"})

Part = dict[str, str]
Message = dict[str, Any]


def bounded(text: str, limit: int = MAX_CAPTURE_LENGTH) -> str:
    """`text` scrubbed of secrets and cut to `limit` characters (marked with `…`)."""
    # Cut a generous margin first so scrubbing a huge text stays cheap, yet a secret at the cut is still seen whole.
    scrubbed = scrub_text(text[: limit * 2])
    return scrubbed if len(scrubbed) <= limit else scrubbed[: limit - 1] + "…"


def _text_part(text: str) -> Part:
    return {"type": "text", "content": bounded(text)}


def _parts(content: object) -> list[Part]:
    """Text parts of a message's content: a string, or a list of parts (`{"type": "text", "text": ...}`)."""
    if isinstance(content, str):
        return [_text_part(content)]
    parts: list[Part] = []
    for part in items(content, _MAX_PARTS):
        if isinstance(part, str):
            parts.append(_text_part(part))
        elif field(part, "type") in _TEXT_PART_TYPES and isinstance(text := field(part, "text"), str):
            parts.append(_text_part(text))
    return parts


def _last(value: object, limit: int) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value[-limit:])  # pyright: ignore[reportUnknownArgumentType]
    return []


def input_messages(kwargs: Mapping[str, Any], operation: str) -> list[Message]:
    """The call's `messages=` in the conventions' form; a text completion's `prompt=` as one user message."""
    messages: list[Message] = []
    for message in _last(kwargs.get("messages"), MAX_MESSAGES):
        role = field(message, "role")
        messages.append({"role": role if isinstance(role, str) else "user", "parts": _parts(field(message, "content"))})
    prompt = kwargs.get("prompt")
    if not messages and operation == "text_completion" and isinstance(prompt, str):
        messages.append({"role": "user", "parts": [_text_part(prompt)]})
    return messages


def _joined(parts: list[Part]) -> str:
    return "\n".join(part["content"] for part in parts)


def _flattened(prefix: str, messages: list[Message]) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {}
    for index, message in enumerate(messages):
        attributes[f"{prefix}.{index}.message.role"] = message["role"]
        attributes[f"{prefix}.{index}.message.content"] = _joined(message["parts"])
    return attributes


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def input_attributes(
    kwargs: Mapping[str, Any], operation: str, arguments: Callable[[], str]
) -> dict[str, AttributeValue]:
    """Span attributes of the call's input; `arguments()` renders the call's arguments when it has no messages."""
    attributes: dict[str, AttributeValue] = {}
    messages = input_messages(kwargs, operation)
    system = _parts(kwargs.get("system"))
    if system:
        attributes[GEN_AI_SYSTEM_INSTRUCTIONS] = _json(system)
    if messages:
        attributes[GEN_AI_INPUT_MESSAGES] = attributes[INPUT_VALUE] = _json(messages)
        attributes[INPUT_MIME_TYPE] = JSON_MIME
    else:
        attributes[INPUT_VALUE] = arguments()
        attributes[INPUT_MIME_TYPE] = TEXT_MIME
    # OpenInference keeps the system prompt as the first input message.
    flat = [{"role": "system", "parts": system}] if system else []
    attributes.update(_flattened("llm.input_messages", flat + messages[: MAX_MESSAGES - len(flat)]))
    return attributes


def output_messages(response: Response) -> list[Message]:
    """The response's messages in the conventions' form.

    The conventions' schema requires `finish_reason`; a response that does not say one (a stream cut short, a
    provider that omits it) gets "unknown" rather than an invented reason.
    """
    messages: list[Message] = []
    for output in response.outputs[:MAX_MESSAGES]:
        message: Message = {"role": output.role, "parts": [] if output.text is None else [_text_part(output.text)]}
        message["finish_reason"] = output.finish_reason if output.finish_reason is not None else "unknown"
        messages.append(message)
    return messages


def output_attributes(response: Response, result: Callable[[], str] | None) -> dict[str, AttributeValue]:
    """Span attributes of the call's output; `result()` renders the raw result when it shows no messages."""
    messages = output_messages(response)
    if messages:
        text = _json(messages)
        return {
            GEN_AI_OUTPUT_MESSAGES: text,
            OUTPUT_VALUE: text,
            OUTPUT_MIME_TYPE: JSON_MIME,
            **_flattened("llm.output_messages", messages),
        }
    if result is None:
        return {}
    return {OUTPUT_VALUE: result(), OUTPUT_MIME_TYPE: TEXT_MIME}
