"""Histograms recorded off the hot path: a call appends its value to a queue, collection hands it to the SDK.

The SDK's `Histogram.record` costs about 5.5 µs here (attribute validation and hashing, a measurement object,
locks), more than everything else a decorated call does. `DeferredHistogram.record` is a deque append. The
queued values are recorded into the real histogram:

- at every collection, from an observable instrument's callback, which the SDK runs before it reads the
  histograms, so a scrape or export sees every value recorded before it (and no data point of its own);
- by a background thread once a queue holds `MAX_PENDING` values, so memory stays bounded between scrapes.

What this gives up: exemplars (values are recorded outside the span that measured them), and the moment of
recording moves by at most one collection interval, which a cumulative or delta histogram cannot tell apart.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Final

from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation
from opentelemetry.util.types import AttributeValue

__all__ = ["MAX_PENDING", "DeferredHistogram", "DeferredHistograms"]

MAX_PENDING: Final = 8192


class DeferredHistogram:
    """A histogram whose `record` only queues the value. Thread-safe: deque appends and pops are atomic."""

    __slots__ = ("_histogram", "_pending", "_ready")

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._pending: collections.deque[tuple[float, Mapping[str, AttributeValue]]] = collections.deque()
        self._ready = False

    def record(self, value: float, attributes: Mapping[str, AttributeValue]) -> None:
        """Queue one value; the attribute mapping must not be changed afterwards (pass a prebuilt one)."""
        pending = self._pending
        pending.append((value, attributes))
        if len(pending) >= MAX_PENDING and not self._ready:
            self._ready = True
            _flusher.request(self)

    def discard_pending(self) -> None:
        """Drop the queued values."""
        self._pending.clear()
        self._ready = False

    def flush(self) -> None:
        """Record every queued value into the SDK histogram."""
        self._ready = False
        pending, record = self._pending, self._histogram.record
        while True:
            try:
                value, attributes = pending.popleft()
            except IndexError:
                return
            record(value, attributes)


class DeferredHistograms:
    """The deferred histograms of one meter, flushed together at each collection."""

    def __init__(self, meter: Meter, flush_instrument: str) -> None:
        self._meter = meter
        self._histograms: list[DeferredHistogram] = []
        # An observable gauge that never observes anything: its callback is the collection hook.
        meter.create_observable_gauge(flush_instrument, callbacks=[self._flush_all])

    def create(self, name: str, unit: str, description: str, buckets: Iterable[float]) -> DeferredHistogram:
        """Create a histogram on the meter and return its deferred front."""
        histogram = self._meter.create_histogram(
            name, unit=unit, description=description, explicit_bucket_boundaries_advisory=list(buckets)
        )
        deferred = DeferredHistogram(histogram)
        self._histograms.append(deferred)
        return deferred

    def discard_pending(self) -> None:
        """Drop the values queued so far (in a forked child: they are the parent's to record)."""
        for histogram in self._histograms:
            histogram.discard_pending()

    def _flush_all(self, _options: CallbackOptions) -> Iterable[Observation]:
        for histogram in self._histograms:
            histogram.flush()
        return ()


class _Flusher:
    """One daemon thread that flushes queues grown to `MAX_PENDING` between collections."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wanted: list[DeferredHistogram] = []
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        os.register_at_fork(after_in_child=self._after_fork_in_child)

    def request(self, histogram: DeferredHistogram) -> None:
        with self._lock:
            self._wanted.append(histogram)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rfobs-histogram-flush", daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                wanted, self._wanted = self._wanted, []
            for histogram in wanted:
                histogram.flush()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._wanted = []
        self._wake = threading.Event()
        self._thread = None


_flusher = _Flusher()
