"""What an OTLP endpoint's failures leave in the output: one rfobs line at a time, and a refused signal stopped.

The OpenTelemetry SDK's OTLP exporters log every retry and every failed batch themselves ("Transient error
HTTPConnectionPool(...)", "Shutdown in progress, aborting retry."): against a dead collector, a line per batch
forever. For the exporters rfobs builds, those SDK lines are silenced (only while one of them is exporting, on its
own thread, so a user's own exporters keep theirs) and rfobs writes one line instead: the endpoint, the signal and
how much was dropped, at the first failure and then at most once a minute, plus a summary at shutdown.

A backend that does not take a signal at all (a trace-only backend such as Arize Phoenix answers HTTP 405 on
`/v1/logs`, a gRPC server without the logs service UNIMPLEMENTED) is told once, and that signal is no longer sent:
its batches are counted as dropped with `reason="unsupported_by_backend"`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Generator, Sequence
from contextlib import contextmanager
from typing import Any, Final

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from rfobs._drops import UNSUPPORTED, DropCounter, point_count
from rfobs._secrets import redact_url

__all__ = [
    "UNSUPPORTED",
    "ExportWatch",
    "WatchedLogExporter",
    "WatchedMetricExporter",
    "WatchedSpanExporter",
    "quiet_sdk_loggers",
]

REPORT_INTERVAL: Final = 60.0
"""Seconds between two rfobs lines about the same failing endpoint and signal."""

# Where the SDK's OTLP exporters log (opentelemetry-exporter-otlp is pinned): the gRPC exporters share one module
# logger; each HTTP exporter hands its own module's logger to its HTTP client.
_SDK_LOGGERS: Final = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "opentelemetry.exporter.otlp.common.http",
)
# HTTP answers meaning "nothing here takes this signal", as opposed to a failing or overloaded receiver.
_REFUSING_STATUS: Final = frozenset({404, 405, 415, 501})
_UNITS: Final = {"traces": "span(s)", "metrics": "metric data point(s)", "logs": "log record(s)"}
# The switches that stop a signal from being exported at all, for the message that tells how.
_SWITCHES: Final = {
    "metrics": "metrics.otlp_export=false (RFOBS_METRICS__OTLP_EXPORT)",
    "logs": "logging.otlp_export=false (RFOBS_LOGGING__OTLP_EXPORT)",
}

_log = logging.getLogger("rfobs")
_exporting = threading.local()
_installed = False
_install_lock = threading.Lock()
_watches: weakref.WeakSet[ExportWatch] = weakref.WeakSet()


def _new_locks_in_child() -> None:
    """A fork while an export thread held a lock would leave it held for ever in the child."""
    global _install_lock
    _install_lock = threading.Lock()
    for watch in list(_watches):
        watch._lock = threading.Lock()  # pyright: ignore[reportPrivateUsage]


os.register_at_fork(after_in_child=_new_locks_in_child)


class _WhileRfobsExports(logging.Filter):
    """Drops a record logged on a thread that is inside an export of an exporter rfobs built."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_exporting, "active", False)


def quiet_sdk_loggers() -> None:
    """Install the filter on the SDK's OTLP exporter loggers (once per process)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        quiet = _WhileRfobsExports()
        for name in _SDK_LOGGERS:
            logging.getLogger(name).addFilter(quiet)
        _installed = True


@contextmanager
def _rfobs_exporting() -> Generator[None]:
    previous = getattr(_exporting, "active", False)
    _exporting.active = True
    try:
        yield
    finally:
        _exporting.active = previous


class _OutcomeTap:
    """Stands in for an SDK exporter's `_metrics`, whose per-export result holds the error the exporter saw.

    The SDK exporters return only SUCCESS or FAILURE; the HTTP status or gRPC code of a failure is written to
    this result (`error`, `error_attrs`) for their own metrics, so it is read here.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._last = threading.local()

    @contextmanager
    def export_operation(self, num_items: int) -> Generator[Any]:
        with self._inner.export_operation(num_items) as result:
            self._last.result = result
            yield result

    def take(self) -> Any:
        """The result of this thread's latest export, once (None if there was none since the last take)."""
        result = getattr(self._last, "result", None)
        self._last.result = None
        return result


def _describe(result: Any) -> tuple[str, bool]:
    """A short, secret-free reason for a failed export, and whether it means "this signal is not accepted"."""
    if result is None:
        return "no response", False
    attributes = dict(getattr(result, "error_attrs", None) or {})
    status = attributes.get("http.response.status_code")
    if isinstance(status, int):
        return f"HTTP {status}", status in _REFUSING_STATUS
    code = attributes.get("rpc.response.status_code")
    if isinstance(code, str):
        return f"gRPC {code}", code == "UNIMPLEMENTED"
    error = getattr(result, "error", None)
    # The type only: an exception's text can quote the request (and its headers).
    return ("no response" if error is None else type(error).__name__), False


class ExportWatch:
    """The failures of one exporter rfobs built (one endpoint, one signal), reported and acted on.

    Thread-safety: `run` may be called from several threads (a flush and the export thread).

    Args:
        signal: "traces", "metrics" or "logs".
        endpoint: Where the exporter sends (a password in it is never printed).
        drops: Where batches of a signal the backend refused are counted.
        stop_on_refusal: Stop the signal once the backend says it does not accept it (not for traces: a wrong
            trace endpoint keeps being tried, and reported, until it is fixed).
        clock: Monotonic seconds, for the rate limit of the report lines.
        interval: Seconds between two report lines.
    """

    def __init__(
        self,
        signal: str,
        endpoint: str,
        drops: DropCounter,
        *,
        stop_on_refusal: bool,
        clock: Callable[[], float] = time.monotonic,
        interval: float = REPORT_INTERVAL,
    ) -> None:
        self.signal = signal
        self.endpoint = redact_url(endpoint)
        self._drops = drops
        self._stop_on_refusal = stop_on_refusal
        self._clock = clock
        self._interval = interval
        self._lock = threading.Lock()
        _watches.add(self)
        self._tap: _OutcomeTap | None = None
        self.stopped = False
        self._last_report: float | None = None
        self._unreported = 0
        self._reason = ""

    def tap(self, exporter: object) -> None:
        """Read the outcome of `exporter`'s exports (an SDK OTLP exporter) from its metrics bookkeeping."""
        inner = getattr(exporter, "_metrics", None)
        if inner is not None and hasattr(inner, "export_operation"):
            self._tap = _OutcomeTap(inner)
            setattr(exporter, "_metrics", self._tap)  # noqa: B010 - a private attribute of the SDK exporter

    def run(self, count: int, export: Callable[[], bool]) -> bool:
        """Export a batch of `count` items unless the signal was stopped; True when the batch is accounted for.

        A batch of a stopped signal is not sent, and is counted as dropped (`reason="unsupported_by_backend"`)
        here: True then, so that the layers above do not count it a second time as `export_failed`.
        """
        if self.stopped:
            self._drops.add(self.signal, UNSUPPORTED, count)
            return True
        with _rfobs_exporting():
            delivered = export()
        result = self._tap.take() if self._tap is not None else None
        if delivered:
            self._recovered()
            return True
        reason, refused = _describe(result)
        if refused and self._stop_on_refusal:
            self._stop(count, reason)
            return True
        self._failed(count, reason)
        return False

    def quietly(self, step: Callable[[], Any]) -> Any:
        """Run `step` (a flush or shutdown of the exporter) with the SDK's exporter lines silenced."""
        with _rfobs_exporting():
            return step()

    def _stop(self, count: int, reason: str) -> None:
        with self._lock:
            first, self.stopped = not self.stopped, True
        self._drops.add(self.signal, UNSUPPORTED, count)
        if first:
            switch = _SWITCHES.get(self.signal, "")
            _log.warning(
                "rfobs: the OTLP endpoint %s does not accept %s (%s); rfobs stops sending %s for the life of this "
                "process and counts them as dropped (reason=%s).%s",
                self.endpoint,
                self.signal,
                reason,
                self.signal,
                UNSUPPORTED,
                f" To stop producing them, set {switch}." if switch else "",
            )

    def _failed(self, count: int, reason: str) -> None:
        now = self._clock()
        with self._lock:
            self._unreported += count
            self._reason = reason
            first = self._last_report is None
            if not first and now - (self._last_report or 0.0) < self._interval:
                return
            dropped, self._unreported, self._last_report = self._unreported, 0, now
        unit = _UNITS.get(self.signal, "item(s)")
        if first:
            _log.warning(
                "rfobs: cannot export %s to %s (%s); %d %s dropped. Recording goes on; until the endpoint answers, "
                "this is reported at most once a minute.",
                self.signal,
                self.endpoint,
                reason,
                dropped,
                unit,
            )
        else:
            _log.warning(
                "rfobs: still cannot export %s to %s (%s); %d %s dropped since the last report.",
                self.signal,
                self.endpoint,
                reason,
                dropped,
                unit,
            )

    def _recovered(self) -> None:
        if self._last_report is None:  # the common case, read without the lock: nothing has failed
            return
        with self._lock:
            dropped, self._unreported, self._last_report = self._unreported, 0, None
        _log.warning(
            "rfobs: exporting %s to %s works again; %d %s dropped since the last report.",
            self.signal,
            self.endpoint,
            dropped,
            _UNITS.get(self.signal, "item(s)"),
        )

    def summarize(self) -> None:
        """At shutdown: report what failed since the last line, if anything."""
        with self._lock:
            dropped, self._unreported = self._unreported, 0
            reason = self._reason
        if dropped:
            _log.warning(
                "rfobs: at shutdown, %d %s could not be exported to %s since the last report (%s).",
                dropped,
                _UNITS.get(self.signal, "item(s)"),
                self.endpoint,
                reason,
            )


class WatchedSpanExporter(SpanExporter):
    """An SDK OTLP span exporter run under an `ExportWatch`."""

    def __init__(self, inner: SpanExporter, watch: ExportWatch) -> None:
        self.inner = inner
        self.watch = watch
        watch.tap(inner)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export through the wrapped exporter (see `ExportWatch.run`)."""
        ok = self.watch.run(len(spans), lambda: self.inner.export(spans) is SpanExportResult.SUCCESS)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        """Shut the wrapped exporter down, then report what failed since the last report."""
        self.watch.quietly(self.inner.shutdown)
        self.watch.summarize()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Flush the wrapped exporter."""
        return bool(self.watch.quietly(lambda: self.inner.force_flush(timeout_millis)))


class WatchedLogExporter(LogRecordExporter):
    """An SDK OTLP log record exporter run under an `ExportWatch`."""

    def __init__(self, inner: LogRecordExporter, watch: ExportWatch) -> None:
        self.inner = inner
        self.watch = watch
        watch.tap(inner)

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        """Export through the wrapped exporter (see `ExportWatch.run`)."""
        ok = self.watch.run(len(batch), lambda: self.inner.export(batch) is LogRecordExportResult.SUCCESS)
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        """Shut the wrapped exporter down, then report what failed since the last report."""
        self.watch.quietly(self.inner.shutdown)
        self.watch.summarize()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Flush the wrapped exporter."""
        return bool(self.watch.quietly(lambda: self.inner.force_flush(timeout_millis)))


class WatchedMetricExporter(MetricExporter):
    """An SDK OTLP metric exporter run under an `ExportWatch`."""

    def __init__(self, inner: MetricExporter, watch: ExportWatch) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner = inner
        self.watch = watch
        watch.tap(inner)

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        """Export through the wrapped exporter (see `ExportWatch.run`)."""

        def send() -> bool:
            result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)  # pyright: ignore[reportUnknownMemberType]
            return result is MetricExportResult.SUCCESS

        ok = self.watch.run(point_count(metrics_data), send)
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Flush the wrapped exporter."""
        return bool(self.watch.quietly(lambda: self.inner.force_flush(timeout_millis=timeout_millis)))

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Shut the wrapped exporter down, then report what failed since the last report."""
        self.watch.quietly(lambda: self.inner.shutdown(timeout_millis=timeout_millis, **kwargs))  # pyright: ignore[reportUnknownMemberType]
        self.watch.summarize()
