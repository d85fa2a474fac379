"""A batch span processor whose shutdown keeps a deadline, and which counts every span it cannot deliver.

Why not the SDK's `BatchSpanProcessor`: its shutdown waits for the worker thread up to 30 s and then lets the
exporter finish its own retries (1, 2, 4 s backoff per batch against a dead collector), so an agent's exit can
hang for many seconds; and spans still queued when it gives up are lost without a count. Here one deadline
bounds the whole shutdown, the worker is a daemon thread that is abandoned (never waited on) once the
deadline passes, and whatever was queued or in flight at that moment is counted in `telemetry.dropped`.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from typing import Final

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from rfobs._drops import DropCounter

__all__ = ["BoundedBatchSpanProcessor"]

_log = logging.getLogger("rfobs")
_SIGNAL: Final = "spans"


class BoundedBatchSpanProcessor(SpanProcessor):
    """Queues finished spans and exports them in batches from one daemon thread.

    Thread-safety: `on_end` may be called from any thread; it never blocks and never raises. A full queue
    drops the new span and counts it (`reason="queue_full"`).
    """

    def __init__(
        self,
        exporter: SpanExporter,
        drops: DropCounter,
        *,
        max_queue_size: int = 2048,
        max_export_batch_size: int = 512,
        schedule_delay: float = 1.0,
    ) -> None:
        self._exporter = exporter
        self._drops = drops
        self._max_queue_size = max_queue_size
        self._max_batch = min(max_export_batch_size, max_queue_size)
        self._delay = schedule_delay
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._flush_wanted = False
        self._stopping = False
        self._abandoned = False
        self._worker = self._start_worker()
        os.register_at_fork(after_in_child=self._after_fork_in_child)

    def _start_worker(self) -> threading.Thread:
        worker = threading.Thread(target=self._run, name="rfobs-span-export", daemon=True)
        worker.start()
        return worker

    def _after_fork_in_child(self) -> None:
        # The parent's spans are the parent's to send; the child starts empty with a worker of its own.
        self._queue.clear()
        self._cond = threading.Condition()
        self._in_flight = 0
        if not self._stopping:
            self._worker = self._start_worker()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Nothing to do when a span starts."""

    def on_end(self, span: ReadableSpan) -> None:
        """Queue a finished, sampled span; drop and count it when the queue is full or shut."""
        # The SDK types allow a context-less span; it has no trace to belong to, so it is not exported.
        if span.context is None or not span.context.trace_flags.sampled:
            return
        if self._stopping:
            self._drops.add(_SIGNAL, "after_shutdown")
            return
        if len(self._queue) >= self._max_queue_size:
            self._drops.add(_SIGNAL, "queue_full")
            return
        self._queue.append(span)
        if len(self._queue) >= self._max_batch:
            with self._cond:
                self._cond.notify_all()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export everything queued so far; False if that did not finish within the timeout."""
        deadline = time.monotonic() + timeout_millis / 1000
        with self._cond:
            if self._stopping:
                return False
            self._flush_wanted = True
            self._cond.notify_all()
            return self._cond.wait_for(self._idle, timeout=max(0.0, deadline - time.monotonic()))

    def shutdown(self) -> None:
        """Shut down with a 30 s deadline (the SDK's default); `rfobs` calls `shutdown_before` instead."""
        self.shutdown_before(time.monotonic() + 30.0)

    def shutdown_before(self, deadline: float) -> bool:
        """Export what is queued until `deadline` (a `time.monotonic()` value), then stop.

        Returns:
            True if every queued span was handed to the exporter in time. False if the deadline ran out; the
            spans still queued or in flight are then counted as dropped (`reason="shutdown_timeout"`).
        """
        with self._cond:
            if self._stopping:
                return not self._abandoned
            self._stopping = True
            self._cond.notify_all()
        self._worker.join(max(0.0, deadline - time.monotonic()))
        if self._worker.is_alive():
            with self._cond:
                self._abandoned = True
                pending = len(self._queue) + self._in_flight
                self._queue.clear()
            self._drops.add(_SIGNAL, "shutdown_timeout", pending)
            _log.warning("rfobs: span export did not finish before the shutdown deadline; %d spans dropped", pending)
            # The exporter may be stuck in a request: ask it to stop from a thread nobody waits for.
            threading.Thread(target=self._shutdown_exporter, name="rfobs-exporter-shutdown", daemon=True).start()
            return False
        self._shutdown_exporter()
        return True

    def _shutdown_exporter(self) -> None:
        try:
            self._exporter.shutdown()
        except Exception:
            _log.warning("rfobs: span exporter failed to shut down", exc_info=True)

    def _idle(self) -> bool:
        return not self._queue and self._in_flight == 0

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._stopping or self._flush_wanted or len(self._queue) >= self._max_batch,
                    timeout=self._delay,
                )
                if self._abandoned or (self._stopping and not self._queue):
                    self._cond.notify_all()
                    return
                self._flush_wanted = bool(self._queue) and (self._flush_wanted or self._stopping)
                batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
                self._in_flight = len(batch)
            if batch:
                self._export(batch)
            with self._cond:
                self._in_flight = 0
                self._cond.notify_all()

    def _export(self, batch: list[ReadableSpan]) -> None:
        try:
            result = self._exporter.export(batch)
        except Exception:
            _log.warning("rfobs: span exporter raised; %d spans dropped", len(batch), exc_info=True)
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS and not self._abandoned:
            self._drops.add(_SIGNAL, "export_failed", len(batch))
