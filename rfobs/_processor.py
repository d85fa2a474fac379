"""Batch processors for spans and log records whose shutdown keeps a deadline, and that count what they drop.

Why not the SDK's `BatchSpanProcessor` / `BatchLogRecordProcessor`: their shutdown waits for the worker thread up
to 30 s and then lets the exporter finish its own retries (1, 2, 4 s backoff per batch against a dead collector),
so an agent's exit can hang for many seconds; and what is still queued when they give up is lost without a
count. Here one deadline bounds the whole shutdown, the worker is a daemon thread that is abandoned (never
waited on) once the deadline passes, and whatever was queued or in flight then is counted in `telemetry.dropped`.
"""

from __future__ import annotations

import collections
import copy
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from opentelemetry import context
from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from rfobs._drops import DropCounter
from rfobs._process import at_fork_in_child

__all__ = [
    "BoundedBatchLogProcessor",
    "BoundedBatchSpanProcessor",
    "BoundedBatcher",
    "estimated_span_bytes",
    "skip_retry_backoff",
]

_log = logging.getLogger("rfobs")
Item = TypeVar("Item")


class BoundedBatcher(Generic[Item]):
    """A bounded queue drained in batches by one daemon thread, with a deadline-keeping shutdown.

    Thread-safety: `add` may be called from any thread; it never blocks on the exporter and never raises.

    Args:
        export: Sends one batch; True when it was delivered.
        close_exporter: Shuts the exporter down (called once, possibly from a thread nobody waits for).
        drops: Where dropped items are counted.
        signal: The `signal` label of the drop counts ("spans", "logs").
        max_queue_size: Items held before new ones are dropped (`reason="queue_full"`).
        max_export_batch_size: Items per export.
        schedule_delay: Seconds between exports when the queue is not full.
        max_queue_bytes: Estimated memory the queued items may take before new ones are dropped
            (`reason="queue_full"`); None: bounded by `max_queue_size` alone.
        size_of: The estimated memory of one item, in bytes (required with `max_queue_bytes`).
        stop_retrying: Called when shutdown starts: the exporter should make its attempts without sleeping
            between retries (a short script must not pay seconds of backoff against a dead collector at exit).
    """

    def __init__(
        self,
        export: Callable[[list[Item]], bool],
        close_exporter: Callable[[], None],
        drops: DropCounter,
        signal: str,
        *,
        max_queue_size: int = 2048,
        max_export_batch_size: int = 512,
        schedule_delay: float = 1.0,
        max_queue_bytes: int | None = None,
        size_of: Callable[[Item], int] = lambda _item: 0,
        stop_retrying: Callable[[], None] = lambda: None,
    ) -> None:
        self._export_batch = export
        self._stop_retrying = stop_retrying
        self._close_exporter = close_exporter
        self._drops = drops
        self._signal = signal
        drops.expect(signal)
        self._max_queue_size = max_queue_size
        self._max_batch = min(max_export_batch_size, max_queue_size)
        self._delay = schedule_delay
        self._queue: collections.deque[Item] = collections.deque()
        self._max_queue_bytes = max_queue_bytes if max_queue_bytes is not None else 2**63
        self._size_of = size_of
        # The estimated bytes queued: producers add and the worker subtracts, under a lock of their own so that
        # adding never waits for the worker's condition.
        self._queued_bytes = 0
        self._bytes_lock = threading.Lock()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._flush_wanted = False
        self._stopping = False
        self._abandoned = False
        self._failed_while_stopping = False
        self._worker = self._start_worker()
        at_fork_in_child(self._after_fork_in_child)

    def _start_worker(self) -> threading.Thread:
        worker = threading.Thread(target=self._run, name=f"rfobs-{self._signal}-export", daemon=True)
        worker.start()
        return worker

    def _after_fork_in_child(self) -> None:
        # The parent's items are the parent's to send; the child starts empty with a worker of its own.
        self._queue.clear()
        self._queued_bytes = 0
        self._bytes_lock = threading.Lock()
        self._cond = threading.Condition()
        self._in_flight = 0
        if not self._stopping:
            self._worker = self._start_worker()

    def add(self, item: Item) -> None:
        """Queue one item; drop and count it when the queue is full or shut down."""
        if self._stopping:
            self._drops.add(self._signal, "after_shutdown")
            return
        size = self._size_of(item)
        with self._bytes_lock:
            full = len(self._queue) >= self._max_queue_size or self._queued_bytes + size > self._max_queue_bytes
            if not full:
                self._queued_bytes += size
                self._queue.append(item)
        if full:
            self._drops.add(self._signal, "queue_full")
            return
        if len(self._queue) >= self._max_batch:
            with self._cond:
                self._cond.notify_all()

    def force_flush(self, timeout: float) -> bool:
        """Export everything queued so far; False if that did not finish within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._stopping:
                return False
            self._flush_wanted = True
            self._cond.notify_all()
            return self._cond.wait_for(self._idle, timeout=max(0.0, deadline - time.monotonic()))

    def shutdown_before(self, deadline: float) -> bool:
        """Export what is queued until `deadline` (a `time.monotonic()` value), then stop.

        Returns:
            True if every queued item was delivered in time. False if an export failed meanwhile (counted as
            `reason="export_failed"`), or if the deadline ran out; the items still queued or in flight are then
            counted as dropped (`reason="shutdown_timeout"`), even if a batch in flight is delivered later.
        """
        with self._cond:
            if self._stopping:
                return not self._abandoned
            self._stopping = True
            nothing_pending = self._idle()
            self._cond.notify_all()
        self._stop_retrying()
        if not nothing_pending:
            self._worker.join(max(0.0, deadline - time.monotonic()))
            if self._worker.is_alive():
                with self._cond:
                    self._abandoned = True
                    pending = len(self._queue) + self._in_flight
                    self._queue.clear()
                self._drops.add(self._signal, "shutdown_timeout", pending)
                _log.warning(
                    "rfobs: %s export did not finish before the shutdown deadline; %d dropped", self._signal, pending
                )
                # The exporter may be stuck in a request: ask it to stop from a thread nobody waits for.
                threading.Thread(target=self._close, name="rfobs-exporter-shutdown", daemon=True).start()
                return False
        # An item added by a thread that saw `_stopping` too late is not sent: count it.
        if late := len(self._queue):
            self._queue.clear()
            self._drops.add(self._signal, "after_shutdown", late)
        self._close()
        return not self._failed_while_stopping

    def _close(self) -> None:
        try:
            self._close_exporter()
        except Exception:
            _log.warning("rfobs: %s exporter failed to shut down", self._signal, exc_info=True)

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
            delivered = self._send(batch) if batch else True
            # Released after the export: a batch in flight still takes its memory.
            released = sum(map(self._size_of, batch))
            with self._bytes_lock:
                self._queued_bytes -= released
            with self._cond:
                # Under the lock, so a batch abandoned at the deadline is counted once, by shutdown_before.
                if not delivered and not self._abandoned:
                    self._failed_while_stopping = self._failed_while_stopping or self._stopping
                    self._drops.add(self._signal, "export_failed", len(batch))
                self._in_flight = 0
                self._cond.notify_all()

    def _send(self, batch: list[Item]) -> bool:
        # Instrumented HTTP/gRPC clients must not trace the export itself: each export would make a span to export.
        token = context.attach(context.set_value(context._SUPPRESS_INSTRUMENTATION_KEY, True))  # pyright: ignore[reportPrivateUsage]
        try:
            return self._export_batch(batch)
        except Exception:  # exporters should not raise; if one does, the agent must not see it
            _log.warning("rfobs: %s exporter raised; %d dropped", self._signal, len(batch), exc_info=True)
            return False
        finally:
            context.detach(token)

    def on_worker_thread(self) -> bool:
        """Whether the caller is the export thread itself (which must never wait for its own exports)."""
        return threading.current_thread() is self._worker


class _BatcherProcessor:
    """The flush and shutdown side shared by the span and the log record processor."""

    _batcher: BoundedBatcher[Any]

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export everything queued so far; False if that did not finish within the timeout."""
        return self._batcher.force_flush(timeout_millis / 1000)

    def shutdown(self) -> None:
        """Shut down with a 30 s deadline (the SDK's default); `rfobs` calls `shutdown_before` instead."""
        self._batcher.shutdown_before(time.monotonic() + 30.0)

    def shutdown_before(self, deadline: float) -> bool:
        """See `BoundedBatcher.shutdown_before`."""
        return self._batcher.shutdown_before(deadline)


def skip_retry_backoff(exporter: object) -> None:
    """Make an OTLP exporter give up a batch after a failed attempt instead of sleeping before the next one.

    Sets the event the SDK's OTLP exporters (gRPC, and HTTP's client) wait on between retries, which their own
    `shutdown()` sets too (opentelemetry-exporter-otlp is pinned; `tests/reliability/test_exit.py` covers it).
    Wrapping exporters (rfobs's scrubbing ones) are looked through by their `inner` attribute. Other exporters
    have no such event.
    """
    while exporter is not None:
        for owner in (exporter, getattr(exporter, "_client", None)):
            for name in ("_shutdown_in_progress", "_shutdown_event"):
                if isinstance(event := getattr(owner, name, None), threading.Event):
                    event.set()
        exporter = getattr(exporter, "inner", None)


def estimated_span_bytes(span: ReadableSpan) -> int:
    """Roughly what a finished SDK span holds in memory, from counts that cost nothing to read.

    Measured with `tracemalloc` on spans from the rfobs decorators: about 1.2 KB for the span itself and 150 B
    per attribute; string values are bounded by `tracing.max_attribute_length`.
    """
    return 1200 + 150 * len(span.attributes or ()) + 400 * len(span.events) + 300 * len(span.links)


class BoundedBatchSpanProcessor(_BatcherProcessor, SpanProcessor):
    """The span processor `rfobs.init()` installs: a `BoundedBatcher` of finished, sampled spans."""

    def __init__(
        self,
        exporter: SpanExporter,
        drops: DropCounter,
        *,
        max_queue_size: int = 2048,
        max_export_batch_size: int = 512,
        schedule_delay: float = 1.0,
        max_queue_bytes: int | None = None,
        track_open: bool = False,
    ) -> None:
        # Spans started and not yet ended, by span id, so that SIGTERM can end them (`track_open=True`).
        self._open: dict[int, Span] | None = {} if track_open else None
        # A `time.monotonic()` deadline until which each span is exported as it ends (0: batching as usual).
        # After SIGTERM under an application's handler: each span is exported as it ends (see `export_as_ended`).
        self._export_as_ended = False
        self._export_wait = 1.0
        if track_open:
            at_fork_in_child(self._forget_open_spans)
        self._batcher: BoundedBatcher[ReadableSpan] = BoundedBatcher(
            lambda batch: exporter.export(batch) is SpanExportResult.SUCCESS,
            exporter.shutdown,
            drops,
            "spans",
            max_queue_size=max_queue_size,
            max_export_batch_size=max_export_batch_size,
            schedule_delay=schedule_delay,
            max_queue_bytes=max_queue_bytes,
            size_of=estimated_span_bytes,
            stop_retrying=lambda: skip_retry_backoff(exporter),
        )

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Remember the span while it is open, when tracking open spans."""
        if (open_spans := self._open) is not None and span.context is not None:
            open_spans[span.context.span_id] = span

    def on_end(self, span: ReadableSpan) -> None:
        """Queue a finished, sampled span."""
        if (open_spans := self._open) is not None and span.context is not None:
            open_spans.pop(span.context.span_id, None)
        # The SDK types allow a context-less span; it has no trace to belong to, so it is not exported.
        if span.context is not None and span.context.trace_flags.sampled:
            self._batcher.add(span)
            if self._export_as_ended and not self._batcher.on_worker_thread():
                # Bounded, and given up once an export did not finish in time: the ending thread may be a
                # server's event loop finishing its last requests, which a dead collector must not stall.
                self._export_as_ended = self._batcher.force_flush(self._export_wait)

    def end_open_spans(self, reason: str) -> int:
        """End every span still open (in any thread) as failed with `reason`; return how many were ended."""
        from opentelemetry.trace import Status, StatusCode

        open_spans = self._open
        if open_spans is None:
            return 0
        spans = list(open_spans.values())
        for span in spans:
            if not span.is_recording():  # ended by its own thread meanwhile
                continue
            span.set_attribute("error.type", reason)
            span.set_status(Status(StatusCode.ERROR, f"process terminated ({reason}) while the span was open"))
            span.end()
        return len(spans)

    def export_as_ended(self, wait: float) -> None:
        """Export what is queued now (without waiting for it) and, from now on, every span as it ends.

        For a process about to die without running exit hooks: the thread ending a span then waits for its
        export, at most `wait` seconds (and no more once an export has not finished in time).
        """
        self._export_wait = wait
        self._export_as_ended = True
        threading.Thread(target=self._batcher.force_flush, args=(wait,), daemon=True).start()

    def _forget_open_spans(self) -> None:
        # In a forked child the parent's open spans are the parent's to end.
        if self._open is not None:
            self._open.clear()


class BoundedBatchLogProcessor(_BatcherProcessor, LogRecordProcessor):
    """The log record processor `rfobs.init()` installs with an OTLP endpoint: a `BoundedBatcher` of records."""

    def __init__(self, exporter: LogRecordExporter, drops: DropCounter, *, max_queue_size: int = 2048) -> None:
        def export(batch: Sequence[ReadableLogRecord]) -> bool:
            return exporter.export(batch) is LogRecordExportResult.SUCCESS

        self._batcher: BoundedBatcher[ReadableLogRecord] = BoundedBatcher(
            export,
            exporter.shutdown,
            drops,
            "logs",
            max_queue_size=max_queue_size,
            stop_retrying=lambda: skip_retry_backoff(exporter),
        )

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        """Queue a readable copy of the record, without its (possibly large) context."""
        record = copy.copy(log_record.log_record)
        record.context = Context()
        self._batcher.add(
            ReadableLogRecord(
                log_record=record,
                resource=log_record.resource if log_record.resource is not None else Resource.get_empty(),
                instrumentation_scope=log_record.instrumentation_scope,
                limits=log_record.limits,
            )
        )
