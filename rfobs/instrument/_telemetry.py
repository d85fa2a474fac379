"""Attribute and metric names, and the instruments shared by every decorator, made once per installed provider.

Instruments are bound to the *current* global providers and rebuilt when those change (as `rfobs.testing`
does around each test), so a function decorated at import time reports to whichever SDK is installed now.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Final

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation
from opentelemetry.metrics._internal import _ProxyMeterProvider  # pyright: ignore[reportPrivateUsage]
from opentelemetry.trace import Tracer

__all__ = ["Counts", "Instruments", "current"]

SCOPE: Final = "rfobs"
DEFAULT_NAMESPACE: Final = "researchflow_agents"

# Span attributes: OTel GenAI semantic conventions, OpenInference, and rfobs's own.
GEN_AI_OPERATION: Final = "gen_ai.operation.name"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
OPENINFERENCE_KIND: Final = "openinference.span.kind"
ERROR_TYPE: Final = "error.type"
RFOBS_AGENT: Final = "rfobs.agent"
RFOBS_TASK: Final = "rfobs.task"
RFOBS_SERVICE: Final = "rfobs.api.service"
RFOBS_ENDPOINT: Final = "rfobs.api.endpoint"
HTTP_STATUS: Final = "http.response.status_code"

# Seconds; covers a 1 ms tool call up to a 5-minute agent task.
DURATION_BUCKETS: Final = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)

Labels = tuple[tuple[str, str], ...]


class Counts:
    """Plain per-label-set counts, published as an observable counter.

    Counting costs a dict update, not a metric call (DESIGN decision 10).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[Labels, int] = {}

    def add(self, labels: Labels, amount: int = 1) -> None:
        """Add `amount` to the count of `labels`."""
        with self._lock:
            self._counts[labels] = self._counts.get(labels, 0) + amount

    def observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        """Observable-counter callback."""
        with self._lock:
            items = list(self._counts.items())
        return [Observation(n, dict(labels)) for labels, n in items]


class Instruments:
    """The tracer, histograms and counts for one pair of installed providers."""

    def __init__(self, tracer_provider: trace.TracerProvider, meter_provider: metrics.MeterProvider, ns: str) -> None:
        from rfobs._version import __version__

        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.tracer: Tracer = tracer_provider.get_tracer(SCOPE, __version__)
        # Before an SDK is installed the global meter provider is a proxy that would bind these instruments to
        # the first real provider later, next to the ones made for that provider: two series for one metric.
        # Calls made before init() are not measured; their instruments come from the no-op provider.
        source = metrics.NoOpMeterProvider() if isinstance(meter_provider, _ProxyMeterProvider) else meter_provider
        meter: Meter = source.get_meter(SCOPE, __version__)
        self.task_counts = self._counter(meter, f"{ns}.agent_tasks", "Agent task and tool runs, by status.")
        self.task_duration = self._histogram(meter, f"{ns}.agent_task_duration", "Agent task and tool duration.")
        self.api_counts = self._counter(meter, f"{ns}.api_calls", "External API calls, by status.")
        self.api_duration = self._histogram(meter, f"{ns}.api_call_duration", "External API call duration.")

    @staticmethod
    def _counter(meter: Meter, name: str, description: str) -> Counts:
        counts = Counts()
        meter.create_observable_counter(name, callbacks=[counts.observe], unit="1", description=description)
        return counts

    @staticmethod
    def _histogram(meter: Meter, name: str, description: str) -> Histogram:
        return meter.create_histogram(
            name, unit="s", description=description, explicit_bucket_boundaries_advisory=DURATION_BUCKETS
        )


_lock = threading.Lock()
_current: Instruments | None = None


def current() -> Instruments:
    """The instruments for the providers installed right now (two global reads on the fast path)."""
    tracer_provider, meter_provider = trace.get_tracer_provider(), metrics.get_meter_provider()
    found = _current
    if found is not None and found.tracer_provider is tracer_provider and found.meter_provider is meter_provider:
        return found
    return _rebuild(tracer_provider, meter_provider)


def _rebuild(tracer_provider: trace.TracerProvider, meter_provider: metrics.MeterProvider) -> Instruments:
    global _current
    from rfobs import sdk

    with _lock:
        found = _current
        if found is None or found.tracer_provider is not tracer_provider or found.meter_provider is not meter_provider:
            settings = sdk.active_settings()
            namespace = settings.metrics.namespace if settings is not None else DEFAULT_NAMESPACE
            found = _current = Instruments(tracer_provider, meter_provider, namespace)
        return found


def labels(**values: str) -> Labels:
    """A hashable, ordered label set."""
    return tuple(values.items())


def as_attributes(values: Mapping[str, str]) -> dict[str, str]:
    """A fresh attribute dict (the SDK may keep a reference to the one it is given)."""
    return dict(values)
