"""Counts of the telemetry rfobs could not deliver, kept as plain integers and published as a metric.

Counting happens on the export path (a lock and an integer add); the OpenTelemetry instrument is an
observable counter read only when a reader collects, so dropping data never costs a metric call.

Every `(signal, reason)` pair rfobs can count is listed once, in `DROP_REASONS`; each pair of a signal rfobs
exports is published at 0 from `init()` on, so an alert on drops sees 0 rather than nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from rfobs import _guard

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricsData

__all__ = ["DROPPED_METRIC", "DROP_REASONS", "UNSUPPORTED", "DropCounter", "point_count"]

DROPPED_METRIC: Final = "telemetry.dropped"
"""Metric name (after the namespace): `<namespace>_telemetry_dropped_total{signal, reason}` in Prometheus."""
UNSUPPORTED: Final = "unsupported_by_backend"
"""The `reason` of `telemetry.dropped` for the batches of a signal the backend does not accept."""
_BATCHED: Final = ("queue_full", "after_shutdown", "shutdown_timeout", "export_failed")
DROP_REASONS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "spans": _BATCHED,  # rfobs's span processor; a trace endpoint is never stopped (see `_export_watch`)
        "logs": (*_BATCHED, UNSUPPORTED),  # rfobs's log processor, always in front of an OTLP exporter
        "metrics": ("export_failed", UNSUPPORTED),  # the OTLP metric exporter (`_counting_metrics`)
    }
)
"""Every `reason` rfobs can count, by `signal`: the label sets of `telemetry.dropped`."""


class DropCounter:
    """Thread-safe counts of dropped items by `(signal, reason)`, e.g. `("spans", "queue_full")`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._exported: set[str] = set()

    def expect(self, signal: str) -> None:
        """Publish every pair of `signal` in `DROP_REASONS` from now on, at 0 until something is dropped.

        Called by what exports the signal (a batch processor, the metric exporter), so only the signals rfobs
        actually exports get series.
        """
        with self._lock:
            self._exported.add(signal)
            for reason in DROP_REASONS.get(signal, ()):
                self._counts.setdefault((signal, reason), 0)

    def add(self, signal: str, reason: str, count: int = 1) -> None:
        """Count `count` items of `signal` dropped for `reason`."""
        if count <= 0:
            return
        if reason not in DROP_REASONS.get(signal, ()):
            try:  # counted all the same; reported so that the list (and the dashboards reading it) is completed
                raise LookupError(f"({signal!r}, {reason!r}) is not in rfobs._drops.DROP_REASONS")
            except LookupError:
                _guard.internal_error(f"counting dropped {signal} ({reason})")
        with self._lock:
            self._counts[signal, reason] = self._counts.get((signal, reason), 0) + count

    def restart_after_fork(self) -> None:
        """In a forked child: count from zero (the parent reports its own drops)."""
        self._lock = threading.Lock()
        self._counts = {(signal, reason): 0 for signal in self._exported for reason in DROP_REASONS.get(signal, ())}

    def get(self, signal: str, reason: str | None = None) -> int:
        """Dropped items of `signal`, for one reason or all of them."""
        with self._lock:
            return sum(n for (s, r), n in self._counts.items() if s == signal and reason in (None, r))

    def total(self) -> int:
        """Dropped items of every signal, for every reason."""
        with self._lock:
            return sum(self._counts.values())

    def observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        """Observable-counter callback: one cumulative point per `(signal, reason)`."""
        with self._lock:
            items = list(self._counts.items())
        return [Observation(n, {"signal": s, "reason": r}) for (s, r), n in items]

    def register(self, meter: Meter, namespace: str) -> None:
        """Publish the counts as `<namespace>.telemetry.dropped` on `meter`."""
        meter.create_observable_counter(
            f"{namespace}.{DROPPED_METRIC}",
            callbacks=[self.observe],
            unit="1",
            description="Spans, metric exports and log records rfobs could not deliver, by reason.",
        )


def point_count(metrics_data: MetricsData) -> int:
    """The data points in one metric export: what is counted as dropped when the export does not get through."""
    return sum(
        len(metric.data.data_points)
        for resource_metrics in metrics_data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    )
