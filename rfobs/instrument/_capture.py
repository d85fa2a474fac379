"""Argument and result capture for spans: short, bounded, and scrubbed of secret-looking values.

Two renderings: `input_content` / `output_content` give OpenInference's `input.value` / `output.value` with their
mime types (JSON when the values have a JSON form), and `input_capturer` / `output_capturer` give the older
`name=value` text of `rfobs.input` / `rfobs.output`, still used by `@llm_call`.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import reprlib
from collections.abc import Callable, Mapping
from itertools import islice
from typing import Any, Final

from opentelemetry.util.types import AttributeValue

from rfobs._secrets import REDACTED, is_secret_key, scrub_text
from rfobs.instrument import _telemetry as t

__all__ = [
    "CAPTURE_CONTENT_ENV",
    "JSON_MIME_TYPE",
    "MAX_CAPTURE_LENGTH",
    "TEXT_MIME_TYPE",
    "capture_default",
    "input_capturer",
    "input_content",
    "output_capturer",
    "output_content",
]

MAX_CAPTURE_LENGTH: Final = 1024
CAPTURE_CONTENT_ENV: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_TRUE: Final = frozenset({"true", "1", "yes", "on"})
JSON_MIME_TYPE: Final = "application/json"
TEXT_MIME_TYPE: Final = "text/plain"
_MAX_ITEMS: Final = 20
_MAX_DEPTH: Final = 3
_MAX_STRING: Final = 400
_SCRUB_WINDOW: Final = 4 * _MAX_STRING


def capture_default(explicit: bool | None = None) -> bool:
    """Whether a decorator captures content: its own argument when given, else the GenAI instrumentations' switch.

    `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` (read when decorating, as the OpenTelemetry GenAI
    instrumentations read it) turns capture on for every rfobs decorator not told otherwise; off by default, since
    prompts and results often hold personal data.
    """
    if explicit is not None:
        return explicit
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() in _TRUE


# reprlib bounds the work as well as the text: a 10 MB prompt or a million-item list is never fully rendered.
_repr = reprlib.Repr()
_repr.maxstring = 400
_repr.maxother = 200
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 20
_repr.maxlevel = 3


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _show(name: str, value: object) -> str:
    return REDACTED if is_secret_key(name) else _repr.repr(value)


def input_capturer(
    func: Callable[..., Any], limit: int = MAX_CAPTURE_LENGTH
) -> Callable[[tuple[Any, ...], dict[str, Any]], str]:
    """A function rendering a call's arguments as `name=value, ...` (self and cls left out)."""
    try:
        signature: inspect.Signature | None = inspect.signature(func)
    except (TypeError, ValueError):  # some builtins and C callables have no signature
        signature = None

    def capture(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        if signature is not None:
            try:
                arguments = signature.bind_partial(*args, **kwargs).arguments
            except TypeError:
                arguments = {"args": args, **kwargs}
        else:
            arguments = {"args": args, **kwargs}
        text = ", ".join(
            f"{name}={_show(name, value)}" for name, value in arguments.items() if name not in {"self", "cls"}
        )
        return _truncate(scrub_text(text), limit)

    return capture


def output_capturer(limit: int = MAX_CAPTURE_LENGTH) -> Callable[[object], str]:
    """A function rendering a call's result."""

    def capture(result: object) -> str:
        return _truncate(scrub_text(_repr.repr(result)), limit)

    return capture


ArgumentContent = Callable[[tuple[Any, ...], dict[str, Any]], dict[str, AttributeValue]]
ResultContent = Callable[[object], dict[str, AttributeValue]]


def _text(value: str) -> str:
    # Scrubbed before it is cut, so a secret is never cut in two and half of it kept; the window bounds the work.
    return _truncate(scrub_text(value[:_SCRUB_WINDOW]), _MAX_STRING)


def _json_ready(value: object, key: str | None = None, depth: int = 0) -> object:
    """A bounded copy of `value` that `json.dumps` accepts: values under secret-looking keys are `***`.

    Strings are scrubbed and cut, containers keep their first items (then a "…" marker) down to a few levels,
    and anything without a JSON form becomes its bounded, scrubbed `repr`.
    """
    if key is not None and is_secret_key(key):
        return REDACTED
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)  # JSON has no NaN or infinity
    if isinstance(value, str):
        return _text(value)
    if depth < _MAX_DEPTH:
        if isinstance(value, Mapping):
            mapping: Mapping[Any, Any] = value  # pyright: ignore[reportUnknownVariableType]
            ready = {str(k): _json_ready(v, str(k), depth + 1) for k, v in islice(mapping.items(), _MAX_ITEMS)}
            if len(mapping) > _MAX_ITEMS:
                ready["…"] = f"{len(mapping) - _MAX_ITEMS} more"
            return ready
        if isinstance(value, list | tuple):
            sequence: list[Any] | tuple[Any, ...] = value  # pyright: ignore[reportUnknownVariableType]
            items = [_json_ready(item, None, depth + 1) for item in sequence[:_MAX_ITEMS]]
            return [*items, "…"] if len(sequence) > _MAX_ITEMS else items
    return scrub_text(_repr.repr(value))


def _as_json(ready: object, limit: int) -> tuple[str, str]:
    """A `_json_ready` value rendered for `input.value` / `output.value`, and its mime type.

    JSON when it fits in `limit`; cut to `limit` (and then plain text, since a cut JSON document is not one).
    """
    text = json.dumps(ready, ensure_ascii=False)
    if len(text) <= limit:
        return text, JSON_MIME_TYPE
    return _truncate(text, limit), TEXT_MIME_TYPE


def input_content(func: Callable[..., Any], *, tool: bool = False, limit: int = MAX_CAPTURE_LENGTH) -> ArgumentContent:
    """A function giving a call's arguments as OpenInference `input.value` (a JSON object by name) and mime type.

    `self` and `cls` are left out. With `tool=True` the same text is also `gen_ai.tool.call.arguments`.
    """
    try:
        signature: inspect.Signature | None = inspect.signature(func)
    except (TypeError, ValueError):  # some builtins and C callables have no signature
        signature = None

    def capture(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, AttributeValue]:
        arguments: dict[str, Any] | None = None
        if signature is not None:
            with contextlib.suppress(TypeError):  # arguments that do not fit: the call itself will fail
                arguments = dict(signature.bind_partial(*args, **kwargs).arguments)
        if arguments is None:
            arguments = {"args": list(args), **kwargs}
        arguments.pop("self", None)
        arguments.pop("cls", None)
        text, mime_type = _as_json(_json_ready(arguments), limit)
        found: dict[str, AttributeValue] = {t.OI_INPUT_VALUE: text, t.OI_INPUT_MIME_TYPE: mime_type}
        if tool:
            found[t.GEN_AI_TOOL_CALL_ARGUMENTS] = text
        return found

    return capture


def output_content(*, tool: bool = False, limit: int = MAX_CAPTURE_LENGTH) -> ResultContent:
    """A function giving a call's result as OpenInference `output.value` and mime type.

    A string result is the text itself (`text/plain`); a result with a JSON form is JSON; anything else is its
    bounded `repr` as text. With `tool=True` the same text is also `gen_ai.tool.call.result`.
    """

    def capture(result: object) -> dict[str, AttributeValue]:
        if isinstance(result, str):
            text, mime_type = _truncate(scrub_text(result[: limit * 4]), limit), TEXT_MIME_TYPE
        else:
            ready = _json_ready(result)
            if isinstance(ready, str):  # no JSON form: its repr, as text
                text, mime_type = _truncate(ready, limit), TEXT_MIME_TYPE
            else:
                text, mime_type = _as_json(ready, limit)
        found: dict[str, AttributeValue] = {t.OI_OUTPUT_VALUE: text, t.OI_OUTPUT_MIME_TYPE: mime_type}
        if tool:
            found[t.GEN_AI_TOOL_CALL_RESULT] = text
        return found

    return capture
