"""Argument and result capture for spans: short, bounded, and scrubbed of secret-looking values."""

from __future__ import annotations

import inspect
import os
import reprlib
from collections.abc import Callable
from typing import Any, Final

from rfobs._secrets import REDACTED, is_secret_key, scrub_text

__all__ = ["CAPTURE_CONTENT_ENV", "MAX_CAPTURE_LENGTH", "capture_default", "input_capturer", "output_capturer"]

MAX_CAPTURE_LENGTH: Final = 1024
CAPTURE_CONTENT_ENV: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_TRUE: Final = frozenset({"true", "1", "yes", "on"})


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
