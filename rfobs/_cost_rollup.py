"""The span processor that adds each LLM call's cost (`gen_ai.usage.cost`) to its nearest open agent span."""

from __future__ import annotations

import logging
import os
import threading
import weakref

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from rfobs import _guard
from rfobs.instrument._cost import GEN_AI_USAGE_COST
from rfobs.instrument._telemetry import OPENINFERENCE_KIND

__all__ = ["CostRollupProcessor"]

_log = logging.getLogger("rfobs")


class _Agent:
    """An agent span and the cost its descendants have rolled up into it so far."""

    __slots__ = ("open", "outer", "span", "span_id", "total")

    def __init__(self, span: Span, outer: _Agent | None) -> None:
        self.span = span
        self.span_id = span.get_span_context().span_id
        self.outer = outer  # the nearest agent around this one
        self.total = 0.0
        self.open = True


class CostRollupProcessor(SpanProcessor):
    """Sums the `gen_ai.usage.cost` of the spans under each agent span (`openinference.span.kind` "AGENT").

    When a span carrying a cost ends, its cost is added to the nearest agent span around it that is still open, and
    that agent's `gen_ai.usage.cost` is set to its new total before it ends. An agent inside another is one of
    those spans: its total reaches the outer agent once, when it ends, so each call's cost counts once per level.

    Only spans inside an agent are tracked (span id -> nearest agent, removed when the span ends), at most
    `max_tracked` at a time; a span outside every agent costs a dictionary miss at start and end. Thread-safe.
    The agent must be set as such when its span starts (in the start attributes, as rfobs's decorators do).

    Args:
        max_tracked: Spans remembered at once; past that, new spans are not tracked (their cost is not rolled
            up) and one log line says so. A bound for spans that never end.
    """

    def __init__(self, max_tracked: int = 100_000) -> None:
        self._lock = threading.Lock()
        _processors.add(self)
        self._agent_of: dict[int, _Agent] = {}  # span id -> the nearest agent (for an agent span: its own record)
        self._max_tracked = max_tracked
        self._full_reported = False

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Remember the nearest agent of a span inside an agent, and every agent span."""
        try:
            parent = span.parent
            outer = None if parent is None else self._agent_of.get(parent.span_id)
            attributes = span.attributes
            is_agent = attributes is not None and attributes.get(OPENINFERENCE_KIND) == "AGENT"
            record = _Agent(span, outer) if is_agent else outer
            if record is None:
                return
            with self._lock:
                if len(self._agent_of) >= self._max_tracked:
                    self._report_full()
                    return
                self._agent_of[span.get_span_context().span_id] = record
        except Exception:
            _guard.internal_error("tracking a span for the cost roll-up")

    def _on_ending(self, span: Span) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        """Forget the span; add its cost, if it has one, to the nearest agent around it still open."""
        try:
            context = span.context
            if context is None or (found := self._agent_of.get(context.span_id)) is None:
                return
            cost = (span.attributes or {}).get(GEN_AI_USAGE_COST)
            with self._lock:
                self._agent_of.pop(context.span_id, None)
                target: _Agent | None = found
                if found.span_id == context.span_id:
                    found.open = False
                    target = found.outer
                if not isinstance(cost, (int, float)) or isinstance(cost, bool):
                    return
                # An agent whose `end()` has begun no longer takes attributes, though its `on_end` is yet to run.
                while target is not None and not (target.open and target.span.is_recording()):
                    target = target.outer
                if target is not None:
                    target.total += cost
                    target.span.set_attribute(GEN_AI_USAGE_COST, target.total)
        except Exception:
            _guard.internal_error("adding an LLM call's cost to its agent")

    def _report_full(self) -> None:
        if not self._full_reported:
            self._full_reported = True
            _log.warning(
                "rfobs: %d spans inside agents are open at once; the costs of newer ones are not added to their "
                "agent spans until some end",
                self._max_tracked,
            )

    def tracked(self) -> int:
        """How many open spans are tracked now (agent spans and the spans inside them)."""
        return len(self._agent_of)

    def after_fork_in_child(self) -> None:
        """In a forked child: a fresh lock (the parent's may have been held), and none of the parent's open spans."""
        self._lock = threading.Lock()
        self._agent_of = type(self._agent_of)()

    def shutdown(self) -> None:
        """Forget every open span."""
        with self._lock:
            self._agent_of.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered."""
        return True


_processors: weakref.WeakSet[CostRollupProcessor] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for processor in list(_processors):
        processor.after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
