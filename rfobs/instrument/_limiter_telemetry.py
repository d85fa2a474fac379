"""What a rate limiter's decisions leave in telemetry: tallies the decision counter reads, and span events.

Counting a decision is an increment of a list item under the limiter's lock; the counter reads the tallies at
collection time, so an admitted call never touches the SDK.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import trace

from rfobs.instrument import _telemetry as t

__all__ = ["Decisions", "annotate", "decision_labels", "note_fallback", "tally_for"]

Decisions = tuple[t.Labels, t.Labels, t.Labels]
"""The metric labels of the three decisions, in the order of a tally: allowed, delayed, rejected."""
_REJECTED = 2


def decision_labels(limiter: str) -> Decisions:
    """The labels of `limiter`'s three decisions, built once per limiter."""
    return (
        (("limiter", limiter), ("decision", "allowed")),
        (("limiter", limiter), ("decision", "delayed")),
        (("limiter", limiter), ("decision", "rejected")),
    )


def tally_for(instruments: t.Instruments, labels: Decisions) -> list[int]:
    """A new tally of decisions `[allowed, delayed, rejected]`, read by `instruments`' counter at collection.

    Once the limiter has decided anything, its `rejected` series is published, at 0 until a call is refused:
    an alert on refusals then sees 0, not an empty result.
    """
    tally = [0, 0, 0]

    def read() -> list[tuple[t.Labels, int]]:
        if not any(tally):
            return []
        return [(labels[i], n) for i, n in enumerate(tally) if n or i == _REJECTED]

    instruments.rate_limit_counts.add_source(read)
    return tally


def annotate(limiter: str, wait: float) -> None:
    """Put a `rate_limit` event on the current span for a wait (`wait > 0`) or a refusal (`-retry_after`)."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    if wait > 0:
        span.add_event(
            t.RATE_LIMIT_EVENT, {t.RATE_LIMIT_NAME: limiter, t.RATE_LIMIT_DECISION: "delayed", t.RATE_LIMIT_WAIT: wait}
        )
        # Several waits under one span (retried attempts, say) add up.
        attributes: Mapping[str, object] = getattr(span, "attributes", None) or {}
        earlier = attributes.get(t.RATE_LIMIT_WAIT)
        span.set_attribute(t.RATE_LIMIT_WAIT, earlier + wait if isinstance(earlier, float) else wait)
    else:
        span.add_event(
            t.RATE_LIMIT_EVENT,
            {
                t.RATE_LIMIT_NAME: limiter,
                t.RATE_LIMIT_DECISION: "rejected",
                t.RATE_LIMIT_WAIT: 0.0,
                t.RATE_LIMIT_RETRY_AFTER: -wait,
            },
        )


def note_fallback(limiter: str, policy: str, reason: str) -> None:
    """Count a decision a shared backend made without its store, and put a `rate_limit.fallback` event on the span.

    Counted as `rate_limit_requests{limiter, decision="fallback"}`, next to the decision's own outcome.
    """
    instruments = t.current()
    if instruments is None:
        return
    instruments.rate_limit_counts.add((("limiter", limiter), ("decision", "fallback")))
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(
            t.RATE_LIMIT_FALLBACK_EVENT,
            {t.RATE_LIMIT_NAME: limiter, t.RATE_LIMIT_POLICY: policy, t.RATE_LIMIT_FALLBACK_REASON: reason},
        )
