"""A metric exporter wrapper that counts the data points of failed exports in `telemetry.dropped`.

Spans and log records are counted by rfobs's own batch processors; metrics go through the SDK's periodic
reader, which only logs a failed export, so the exporter itself is wrapped.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData

from rfobs._drops import DropCounter, point_count

__all__ = ["CountingMetricExporter"]

_log = logging.getLogger("rfobs")


class CountingMetricExporter(MetricExporter):
    """Delegates to `inner`; a failed or raising export counts its data points as dropped."""

    def __init__(self, inner: MetricExporter, drops: DropCounter) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._drops = drops
        drops.expect("metrics")

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        """Export, counting the data points of a failed export."""
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)  # pyright: ignore[reportUnknownMemberType]
        except Exception:  # exporters should not raise; if one does, the agent must not see it
            _log.warning("rfobs: metric exporter raised", exc_info=True)
            result = MetricExportResult.FAILURE
        if result is not MetricExportResult.SUCCESS:
            self._drops.add("metrics", "export_failed", point_count(metrics_data))
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Delegate."""
        return self._inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Delegate."""
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)  # pyright: ignore[reportUnknownMemberType]
