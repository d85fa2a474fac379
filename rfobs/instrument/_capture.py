"""Argument and result capture for spans: short, bounded, and scrubbed of secret-looking values."""

from __future__ import annotations

import inspect
import reprlib
from collections.abc import Callable
from typing import Any, Final

from rfobs._secrets import REDACTED, is_secret_key, scrub_text

__all__ = ["MAX_CAPTURE_LENGTH", "input_capturer", "output_capturer"]

MAX_CAPTURE_LENGTH: Final = 1024

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
