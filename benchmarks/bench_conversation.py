"""Cost per span of the conversation span processor: with and without it, inside and outside a conversation.

Run: .venv/bin/python benchmarks/bench_conversation.py [--quick]

Each case starts and ends spans on a real SDK `TracerProvider` whose only other processor does nothing, so the
figures isolate the processor's `on_start`. The cases run interleaved, round after round, in one process, and
each figure is the best round (the machine is shared: compare ratios, not absolute numbers).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Generator

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.trace import Tracer

import rfobs
from rfobs._conversation_processor import ConversationSpanProcessor


class Discard(SpanProcessor):
    """Stands for the export pipeline, at no cost."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        pass


def tracer(with_processor: bool) -> Tracer:
    provider = TracerProvider(shutdown_on_exit=False)
    if with_processor:
        provider.add_span_processor(ConversationSpanProcessor())
    provider.add_span_processor(Discard())
    return provider.get_tracer("bench")


@contextlib.contextmanager
def nothing() -> Generator[None]:
    yield


@contextlib.contextmanager
def inside() -> Generator[None]:
    with rfobs.conversation("c-42", user="u-7", session="s-1", metadata={"tenant": "acme"}):
        yield


@contextlib.contextmanager
def remote() -> Generator[None]:
    """A receiving process: no local conversation, the caller's in baggage."""
    with rfobs.conversation("c-42", user="u-7", session="s-1"):
        headers = rfobs.inject()
    token = otel_context.attach(rfobs.extract(headers))
    try:
        yield
    finally:
        otel_context.detach(token)


# What the processor sets inside `inside()`: the reference case passes them to `start_span` itself, which shows
# how much of the cost inside a conversation is the SDK's own attribute handling.
SAME_ATTRIBUTES: dict[str, str] = {
    "gen_ai.conversation.id": "c-42",
    "session.id": "s-1",
    "user.id": "u-7",
    "metadata": '{"tenant":"acme"}',
}


def ns_per_span(span_tracer: Tracer, number: int, attributes: dict[str, str] | None) -> float:
    start_span = span_tracer.start_span
    started = time.perf_counter_ns()
    for _ in range(number):
        start_span("step", attributes=attributes).end()
    return (time.perf_counter_ns() - started) / number


Case = tuple[bool, Callable[[], contextlib.AbstractContextManager[None]], dict[str, str] | None]
CASES: dict[str, Case] = {
    "without processor, outside": (False, nothing, None),
    "without processor, inside": (False, inside, None),
    "with processor, outside": (True, nothing, None),
    "with processor, inside": (True, inside, None),
    "with processor, remote baggage": (True, remote, None),
    "reference: same 4 attributes given": (False, nothing, SAME_ATTRIBUTES),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer spans and rounds")
    options = parser.parse_args()
    number, rounds = (5_000, 5) if options.quick else (50_000, 15)
    tracers = {name: tracer(with_processor) for name, (with_processor, _, _) in CASES.items()}
    best = dict.fromkeys(CASES, float("inf"))
    for _ in range(rounds):
        for name, (_, scope, attributes) in CASES.items():
            with scope():
                best[name] = min(best[name], ns_per_span(tracers[name], number, attributes))
    baseline = best["without processor, outside"]
    print(f"spans started and ended: {number} per round, best of {rounds} rounds")
    print(f"{'case':<36}{'ns/span':>10}{'+ns':>8}{'ratio':>8}")
    for name, figure in best.items():
        print(f"{name:<36}{figure:>10.0f}{figure - baseline:>+8.0f}{figure / baseline:>8.3f}")


if __name__ == "__main__":
    main()
