"""Counts of the telemetry rfobs could not deliver, kept as plain integers and published as a metric.

Counting happens on the export path (a lock and an integer add); the OpenTelemetry instrument is an
observable counter read only when a reader collects, so dropping data never costs a metric call.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from opentelemetry.metrics import CallbackOptions, Meter, Observation

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricsData

__all__ = ["DROPPED_METRIC", "DropCounter", "point_count"]

DROPPED_METRIC: Final = "telemetry.dropped"
"""Metric name (after the namespace): `<namespace>_telemetry_dropped_total{signal, reason}` in Prometheus."""


class DropCounter:
    """Thread-safe counts of dropped items by `(signal, reason)`, e.g. `("spans", "queue_full")`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}

    def add(self, signal: str, reason: str, count: int = 1) -> None:
        """Count `count` items of `signal` dropped for `reason`."""
        if count <= 0:
            return
        with self._lock:
            self._counts[signal, reason] = self._counts.get((signal, reason), 0) + count

    def restart_after_fork(self) -> None:
        """In a forked child: count from zero (the parent reports its own drops)."""
        self._lock = threading.Lock()
        self._counts = {}

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
