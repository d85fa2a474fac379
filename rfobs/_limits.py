"""Size limits of the text rfobs records itself: exception messages, stack traces and log messages.

Text over its limit is cut and marked (`...[truncated 9,999,000 chars]`) before any other work is done on it,
so a 10 MB exception message costs a slice, not a 10 MB scrub. `init()` sets the limits from the settings
(`tracing.max_exception_length`, `tracing.max_stacktrace_length`, `logging.max_message_length`); before it,
the defaults apply.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Final

from rfobs import _state

__all__ = ["Limits", "configure_limits", "current_limits", "stack_trace", "truncate"]

# Where a cut may move back to, so it never splits a word: a secret cut in two could leave a first part the
# scrubber no longer recognises.
_BREAKS: Final = frozenset(" \t\r\n,;&()[]{}<>\"'|")
_MAX_BACKTRACK: Final = 128


@dataclass(frozen=True, slots=True)
class Limits:
    """Longest text kept, in characters, marker included."""

    exception_message: int = 4096
    stacktrace: int = 8192
    log_message: int = 8192


_current = Limits()


def current_limits() -> Limits:
    """The limits in effect."""
    return _current


_state.on_reset(lambda: configure_limits(Limits()))


def configure_limits(limits: Limits) -> None:
    """Set the limits in effect (called by `init()`)."""
    global _current
    _current = limits


def truncate(text: str, limit: int, *, length: int | None = None) -> str:
    """`text` if it has at most `limit` characters, else its start and a `...[truncated N chars]` marker.

    The result has at most `limit` characters (and never less than the marker). The cut moves back to the
    last space or delimiter within 128 characters, so no word, and no secret, is cut in two. `length` is the
    length of the whole text when `text` is only its start (the marker counts from it).
    """
    length = len(text) if length is None else length
    if len(text) <= limit and length == len(text):
        return text
    kept = max(0, limit - len(_marker(length)))
    cut, floor = kept, max(0, kept - _MAX_BACKTRACK)
    while cut > floor and text[cut - 1] not in _BREAKS:
        cut -= 1
    if cut == floor and floor > 0 and text[floor - 1] not in _BREAKS:
        cut = kept  # one word longer than the backtrack: cut it (long enough to still be recognised)
    return text[:cut] + _marker(length - cut)


def _marker(dropped: int) -> str:
    return f"...[truncated {dropped:,} chars]"


def stack_trace(error: BaseException, message_limit: int, limit: int) -> str:
    """The formatted traceback of `error` (chained exceptions included), cut to `limit` characters.

    Messages longer than `message_limit` are cut before formatting: formatting a 10 MB message whole takes
    tens of milliseconds, only for most of it to be cut.
    """
    formatted = traceback.TracebackException.from_exception(error)
    pending, seen = [formatted], set[int]()
    while pending:
        link = pending.pop()
        if id(link) in seen:
            continue
        seen.add(id(link))
        # `_str` is where TracebackException keeps the message it formats; absent, the message is formatted whole.
        message = getattr(link, "_str", None)
        if isinstance(message, str) and len(message) > message_limit:
            setattr(link, "_str", truncate(message, message_limit))  # noqa: B010 - a private attribute
        pending.extend(e for e in (link.__cause__, link.__context__, *(link.exceptions or ())) if e is not None)
    return truncate("".join(formatted.format()), limit)
