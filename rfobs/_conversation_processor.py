"""The span processor that puts the conversation in effect (or a remote caller's, from baggage) on every span."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, cast

from opentelemetry import baggage
from opentelemetry.context import Context, get_current
from opentelemetry.sdk.trace import Span, SpanProcessor

from rfobs import _guard
from rfobs._start_only import StartOnlyProcessor
from rfobs.conversation import attributes_from_baggage, current_conversation

__all__ = ["ConversationSpanProcessor"]

# OpenTelemetry's context key for baggage, read straight from the context: `baggage.get_all()` builds a
# read-only view of the entries for every span. Should a release rename it, the public call is used instead.
_BAGGAGE_KEY: Final[str | None] = getattr(baggage, "_BAGGAGE_KEY", None)


class ConversationSpanProcessor(StartOnlyProcessor, SpanProcessor):
    """Sets `gen_ai.conversation.id`, `session.id`, `user.id` and `metadata` on each span as it starts.

    The values come from the innermost `rfobs.conversation()` block in effect; outside any, from the W3C baggage
    of the span's parent context (entries a remote rfobs process sent). Thread-safe: it only reads context-local
    state, and the attributes of a block are computed once when it is entered.
    """

    def __init__(self) -> None:
        # The last baggage seen and its attributes: a receiving process starts many spans under one baggage.
        # Swapped whole (one tuple), so threads need no lock; holding the mapping keeps its identity unique.
        self._last: tuple[object, Mapping[str, str]] = (None, {})

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Copy the conversation's attributes onto `span`."""
        try:
            scope = current_conversation()
            if scope is not None:
                span.set_attributes(scope.attributes)
                return
            if _BAGGAGE_KEY is None:
                entries: object = baggage.get_all(parent_context)
            else:
                entries = (parent_context if parent_context is not None else get_current()).get(_BAGGAGE_KEY)
            if not entries or not isinstance(entries, dict | MappingProxyType):
                return
            last, found = self._last
            if entries is not last:
                found = attributes_from_baggage(cast("Mapping[str, object]", entries))
                self._last = (entries, found)
            if found:
                span.set_attributes(found)
        except Exception:
            _guard.internal_error("adding the conversation to a span")
