"""Test your agent's telemetry: a pytest fixture that installs real SDK providers with in-memory exporters.

Installed as a pytest plugin with rfobs, so the fixture needs no import::

    def test_search_is_traced(capture):
        search("llm agents")
        assert [s["name"] for s in capture.spans()] == ["researcher.search"]
        assert capture.metric("researchflow_agents.agent_tasks") == [
            {"attributes": {"agent": "researcher", "task": "search", "status": "success"}, "value": 1},
            {"attributes": {"agent": "researcher", "task": "search", "status": "error"}, "value": 0},
        ]

Span and trace ids are deterministic (1, 2, 3, ... in creation order), OpenTelemetry's global providers are
reset before and after each test, and a span still open when the test ends fails it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from rfobs.instrument._clock import VirtualClock

__all__ = [
    "Capture",
    "SequentialIds",
    "capture",
    "fast_waits",
    "fast_waits_enabled",
    "reset_global_telemetry",
    "set_testing",
    "span_as_dict",
]


class Capture:
    """What the code under test recorded, as plain dicts.

    Attributes:
        exporter: The in-memory span exporter (finished spans, secrets scrubbed as rfobs's exporters do).
        reader: The in-memory metric reader.
        tracer_provider: The installed tracer provider.
        meter_provider: The installed meter provider.
    """

    def __init__(self) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import SpanLimits, TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON

        self.exporter: InMemorySpanExporter = InMemorySpanExporter()
        self.reader: InMemoryMetricReader = InMemoryMetricReader()
        resource = Resource({"service.name": "rfobs-test"})
        self._open = _OpenSpans()
        # Explicit sampler and limits, and OTEL_SDK_DISABLED hidden while the providers are built: the SDK reads
        # those variables itself, and a developer's shell must not make a test record nothing.
        limits = SpanLimits(max_attributes=128, max_events=128, max_links=128, max_attribute_length=SpanLimits.UNSET)
        with _without_environment_variable("OTEL_SDK_DISABLED"):
            self.tracer_provider: TracerProvider = TracerProvider(
                resource=resource,
                id_generator=SequentialIds(),
                sampler=ALWAYS_ON,
                span_limits=limits,
                shutdown_on_exit=False,
            )
            self.meter_provider: MeterProvider = MeterProvider(
                metric_readers=[self.reader], resource=resource, shutdown_on_exit=False
            )
        from rfobs._conversation_processor import ConversationSpanProcessor

        # As `rfobs.init()` installs it: spans inside `rfobs.conversation()` carry its attributes in tests too.
        self.tracer_provider.add_span_processor(ConversationSpanProcessor())
        from rfobs._cost_rollup import CostRollupProcessor

        # As `rfobs.init()` installs it: agent spans carry the sum of their LLM calls' costs.
        self.tracer_provider.add_span_processor(CostRollupProcessor())
        self.tracer_provider.add_span_processor(self._open)
        from rfobs._scrub_export import ScrubbingSpanExporter

        # Through the same scrubbing pass as rfobs's own exporters: tests see what would leave the process.
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(ScrubbingSpanExporter(self.exporter)))
        from rfobs import _guard

        self._internal_errors_at_start = _guard.count()
        self.allow_internal_errors = False
        """Set True in a test that provokes an rfobs internal error on purpose; otherwise one fails the test."""

    def internal_errors(self) -> int:
        """Internal errors of rfobs (caught, logged, counted) since this capture started."""
        from rfobs import _guard

        return _guard.count() - self._internal_errors_at_start

    def spans(self) -> list[dict[str, Any]]:
        """Finished spans in the order they ended: name, ids, parent, kind, status, attributes, events."""
        return [span_as_dict(span) for span in self.exporter.get_finished_spans()]

    def metrics(self) -> dict[str, list[dict[str, Any]]]:
        """Every metric's data points by metric name, collected now."""
        collected: dict[str, list[dict[str, Any]]] = {}
        data = self.reader.get_metrics_data()
        if data is None:
            return collected
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    points = collected.setdefault(metric.name, [])
                    points.extend(_point_as_dict(point) for point in metric.data.data_points)
        return collected

    def metric(self, name: str) -> list[dict[str, Any]]:
        """Data points of one metric (an empty list if it recorded nothing)."""
        return self.metrics().get(name, [])

    def open_spans(self) -> list[str]:
        """Names of spans started but not ended."""
        return self._open.names()


def span_as_dict(span: ReadableSpan) -> dict[str, Any]:
    """A span as a plain dict, without timestamps; ids as small integers (deterministic under `capture`)."""
    parent = span.parent.span_id if span.parent is not None else None
    # The SDK always sets a context; the type allows None only for hand-built ReadableSpans.
    context = span.context
    return {
        "name": span.name,
        "trace_id": context.trace_id if context is not None else None,
        "span_id": context.span_id if context is not None else None,
        "parent_id": parent,
        "kind": span.kind.name,
        "status": {"code": span.status.status_code.name, "description": span.status.description},
        "attributes": dict(span.attributes or {}),
        "events": [
            {
                "name": event.name,
                "attributes": {k: v for k, v in (event.attributes or {}).items() if k != "exception.stacktrace"},
            }
            for event in span.events
        ],
    }


def _point_as_dict(point: Any) -> dict[str, Any]:
    attributes = dict(point.attributes or {})
    if hasattr(point, "bucket_counts"):
        return {
            "attributes": attributes,
            "count": point.count,
            "sum": point.sum,
            "bucket_counts": list(point.bucket_counts),
            "explicit_bounds": list(point.explicit_bounds),
        }
    return {"attributes": attributes, "value": point.value}


def reset_global_telemetry() -> None:
    """Forget rfobs's `init()` and OpenTelemetry's global providers, so the next test can install its own.

    OpenTelemetry's globals are set-once by design; tests are the one place that must undo them, which means
    touching the API's private state.
    """
    from opentelemetry import _logs, metrics, trace
    from opentelemetry._logs import _internal as logs_internal
    from opentelemetry.metrics import _internal as metrics_internal
    from opentelemetry.util._once import Once

    from rfobs import _state

    _state.reset()
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # pyright: ignore[reportPrivateUsage]
    trace._TRACER_PROVIDER = None  # pyright: ignore[reportPrivateUsage]
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()  # pyright: ignore[reportPrivateUsage]
    metrics_internal._METER_PROVIDER = None  # pyright: ignore[reportPrivateUsage]
    logs_internal._LOGGER_PROVIDER_SET_ONCE = Once()  # pyright: ignore[reportPrivateUsage]
    logs_internal._LOGGER_PROVIDER = None  # pyright: ignore[reportPrivateUsage]
    del _logs, metrics


def set_testing(enabled: bool) -> VirtualClock | None:
    """Test mode for users' suites: retries, rate-limit waits and breaker timeouts use a virtual clock.

    Sleeping then returns at once while the virtual time advances by the amount slept, so policies behave as
    they would in production (same attempts, same admissions) without the wall-clock wait. Returns the clock
    when enabling (tests may `advance()` it), None when disabling. Prefer the `fast_waits` fixture.
    """
    from rfobs.instrument._clock import VirtualClock, set_default_clock

    clock = VirtualClock(start=time.monotonic()) if enabled else None
    set_default_clock(clock)
    return clock


@contextlib.contextmanager
def fast_waits_enabled() -> Generator[VirtualClock]:
    """`set_testing(True)` for the duration of a `with` block."""
    from rfobs.instrument._clock import default_clock, set_default_clock

    previous = default_clock()
    clock = set_testing(True)
    assert clock is not None
    try:
        yield clock
    finally:
        set_default_clock(previous)


@pytest.fixture
def fast_waits() -> Iterator[VirtualClock]:
    """Retries, rate-limit waits and breaker timeouts run on a virtual clock for one test."""
    with fast_waits_enabled() as clock:
        yield clock


@pytest.fixture
def capture() -> Iterator[Capture]:
    """Install real SDK providers with in-memory exporters for one test; yield what they record."""
    from opentelemetry import metrics, trace

    reset_global_telemetry()
    captured = Capture()
    trace.set_tracer_provider(captured.tracer_provider)
    metrics.set_meter_provider(captured.meter_provider)
    try:
        yield captured
        left_open = captured.open_spans()
        assert not left_open, f"spans never ended: {left_open}"
        errors = captured.internal_errors()
        assert captured.allow_internal_errors or not errors, f"{errors} rfobs internal error(s): see the log"
    finally:
        captured.tracer_provider.shutdown()
        captured.meter_provider.shutdown()
        reset_global_telemetry()


@contextlib.contextmanager
def _without_environment_variable(name: str) -> Generator[None]:
    saved = os.environ.pop(name, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[name] = saved


class SequentialIds(IdGenerator):
    """Trace and span ids 1, 2, 3, ... in creation order, so tests can state them (thread-safe)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._trace = 0
        self._span = 0

    def generate_span_id(self) -> int:
        """The next span id."""
        with self._lock:
            self._span += 1
            return self._span

    def generate_trace_id(self) -> int:
        """The next trace id."""
        with self._lock:
            self._trace += 1
            return self._trace


class _OpenSpans(SpanProcessor):
    """A span processor that remembers which spans have started and not yet ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, str] = {}

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        with self._lock:
            self._open[span.get_span_context().span_id] = span.name

    def _on_ending(self, span: Span) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None:
            return
        with self._lock:
            self._open.pop(span.context.span_id, None)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._open.values())
