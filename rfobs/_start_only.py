"""`StartOnlyProcessor`: the span-processor methods left empty by a processor that acts only as spans start."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, Span

__all__ = ["StartOnlyProcessor"]


class StartOnlyProcessor:
    """Base of span processors whose work is all in `on_start`: ending, flushing and shutting down do nothing.

    Not a subclass of the SDK's `SpanProcessor`, so importing it does not import the SDK (the SDK calls a
    processor by these methods alone); a subclass that wants the SDK type lists `SpanProcessor` after it.
    """

    def _on_ending(self, span: Span) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        """Nothing to do when a span ends."""

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered."""
        return True
