"""Deferred histograms: values queued on the hot path reach the SDK at collection, or from the flusher thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any, cast

import pytest
from opentelemetry.metrics import Histogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.util.types import AttributeValue

from rfobs.instrument._deferred import MAX_PENDING, DeferredHistogram, DeferredHistograms

BUCKETS = [1.0, 2.0]
ATTRIBUTES: Mapping[str, AttributeValue] = {"operation": "deferred"}


class Watched:
    """Passes each value on to the SDK histogram, noting which thread recorded it; `reached(n)` waits for n."""

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._changed = threading.Condition()
        self.threads: list[str] = []

    def record(self, amount: float, attributes: Mapping[str, AttributeValue] | None = None) -> None:
        self._histogram.record(amount, attributes)
        with self._changed:
            self.threads.append(threading.current_thread().name)
            self._changed.notify_all()

    def reached(self, count: int) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.threads) >= count, timeout=10)


@pytest.fixture
def provider() -> Iterator[tuple[MeterProvider, InMemoryMetricReader]]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield provider, reader
    provider.shutdown()


def point(reader: InMemoryMetricReader, name: str) -> HistogramDataPoint | None:
    """The one data point of histogram `name`, or None before anything was recorded into it."""
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    (found,) = cast("Any", metric.data).data_points
                    return cast("HistogramDataPoint", found)
    return None


def summary(found: HistogramDataPoint | None) -> tuple[int, list[int], float] | None:
    return None if found is None else (found.count, list(found.bucket_counts), found.sum)


def test_values_past_max_pending_are_recorded_by_the_flusher_thread_before_any_collection(
    provider: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    meter_provider, reader = provider
    watched = Watched(
        meter_provider.get_meter("test").create_histogram("queued", explicit_bucket_boundaries_advisory=BUCKETS)
    )
    # No DeferredHistograms around it: no collection hook flushes this queue, only the flusher thread can.
    deferred = DeferredHistogram(cast("Histogram", watched))

    for _ in range(MAX_PENDING - 1):
        deferred.record(0.5, ATTRIBUTES)
    assert summary(point(reader, "queued")) is None  # below the threshold: still queued, nothing recorded
    assert watched.threads == []
    deferred.record(1.5, ATTRIBUTES)  # the value that fills the queue wakes the flusher
    assert watched.reached(MAX_PENDING)
    assert set(watched.threads) == {"rfobs-histogram-flush"}
    assert summary(point(reader, "queued")) == (MAX_PENDING, [MAX_PENDING - 1, 1, 0], 0.5 * (MAX_PENDING - 1) + 1.5)

    # The queue fills and drains again: the flusher is asked once per full queue, not once ever.
    for _ in range(MAX_PENDING):
        deferred.record(3.0, ATTRIBUTES)
    assert watched.reached(2 * MAX_PENDING)
    assert summary(point(reader, "queued")) == (
        2 * MAX_PENDING,
        [MAX_PENDING - 1, 1, MAX_PENDING],
        0.5 * (MAX_PENDING - 1) + 1.5 + 3.0 * MAX_PENDING,
    )
    assert set(watched.threads) == {"rfobs-histogram-flush"}


def test_a_collection_records_what_is_queued_below_the_threshold(
    provider: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    meter_provider, reader = provider
    histograms = DeferredHistograms(meter_provider.get_meter("test"), "test.flush")
    deferred = histograms.create("collected", "s", "test values", BUCKETS)
    for value in (0.5, 1.5, 2.5):
        deferred.record(value, ATTRIBUTES)
    assert summary(point(reader, "collected")) == (3, [1, 1, 1], 4.5)
    assert summary(point(reader, "collected")) == (3, [1, 1, 1], 4.5)  # cumulative: nothing recorded twice
    deferred.record(0.5, ATTRIBUTES)
    histograms.discard_pending()  # a forked child drops its parent's values
    assert summary(point(reader, "collected")) == (3, [1, 1, 1], 4.5)
