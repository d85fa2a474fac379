"""Builds the span, metric and log exporters that the settings ask for; each exporter is imported only when chosen.

Every exporter built here is wrapped by `rfobs._scrub_export`, so what leaves the process is scrubbed of secrets,
and every OTLP one by `rfobs._export_watch`, which reports a failing endpoint in one rfobs line at a time and stops
a signal the backend does not accept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, TypeVar

from rfobs._drops import DropCounter
from rfobs._settings_model import OtlpSettings, Settings

if TYPE_CHECKING:
    from opentelemetry.sdk._logs.export import LogRecordExporter
    from opentelemetry.sdk.metrics.export import MetricExporter
    from opentelemetry.sdk.trace.export import SpanExporter

    from rfobs._export_watch import ExportWatch

__all__ = ["log_exporter", "metric_exporter", "span_exporter"]

Exporter = TypeVar("Exporter")
_Signal = Literal["traces", "metrics", "logs"]


def span_exporter(settings: Settings, drops: DropCounter | None = None) -> SpanExporter | None:
    """The span exporter for `settings.trace_exporter` (file, otlp, console; None for `none`), secrets scrubbed.

    `drops` counts what an OTLP exporter does not send (a fresh counter when None).
    """
    from rfobs._scrub_export import ScrubbingSpanExporter

    inner = _span_exporter(settings)
    if inner is None:
        return None
    if settings.trace_exporter == "otlp":
        from rfobs._export_watch import WatchedSpanExporter

        inner = WatchedSpanExporter(inner, _watch("traces", settings.otlp, drops))
    return ScrubbingSpanExporter(inner)


def _watch(signal: _Signal, otlp: OtlpSettings, drops: DropCounter | None) -> ExportWatch:
    from rfobs._export_watch import ExportWatch, quiet_sdk_loggers

    quiet_sdk_loggers()
    endpoint = _endpoint(otlp)
    if otlp.protocol != "grpc":
        endpoint = f"{endpoint}/v1/{signal}"
    # Traces are what rfobs is for: a trace endpoint that refuses them is reported until it is fixed, not dropped.
    return ExportWatch(signal, endpoint, drops or DropCounter(), stop_on_refusal=signal != "traces")


def _endpoint(otlp: OtlpSettings) -> str:
    default = "http://127.0.0.1:4317" if otlp.protocol == "grpc" else "http://127.0.0.1:4318"
    return otlp.endpoint or default


def _span_exporter(settings: Settings) -> SpanExporter | None:
    kind = settings.trace_exporter
    if kind == "file":
        from rfobs._file_exporter import OtlpJsonFileSpanExporter

        tracing = settings.tracing
        return OtlpJsonFileSpanExporter(
            tracing.file_path, max_bytes=tracing.file_max_bytes, backup_count=tracing.file_backup_count
        )
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(service_name=settings.service.name)
    if kind == "otlp":
        if settings.otlp.protocol == "grpc":
            from rfobs._otlp_exporters import GrpcSpanExporter

            return _grpc(GrpcSpanExporter, settings.otlp)
        from rfobs._otlp_exporters import HttpSpanExporter

        return _http(HttpSpanExporter, settings.otlp, "traces")
    return None


def metric_exporter(otlp: OtlpSettings, drops: DropCounter | None = None) -> MetricExporter:
    """The OTLP metric exporter (cumulative temporality, as Prometheus-style backends expect), secrets scrubbed.

    `drops` counts what it does not send (a fresh counter when None).
    """
    from rfobs._export_watch import WatchedMetricExporter
    from rfobs._scrub_export import ScrubbingMetricExporter

    return ScrubbingMetricExporter(WatchedMetricExporter(_metric_exporter(otlp), _watch("metrics", otlp, drops)))


def _metric_exporter(otlp: OtlpSettings) -> MetricExporter:
    if otlp.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter

        return _grpc(GrpcMetricExporter, otlp)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return _http(OTLPMetricExporter, otlp, "metrics")


def log_exporter(otlp: OtlpSettings, drops: DropCounter | None = None) -> LogRecordExporter:
    """The OTLP log record exporter, secrets scrubbed; `drops` counts what it does not send (fresh when None)."""
    from rfobs._export_watch import WatchedLogExporter
    from rfobs._scrub_export import ScrubbingLogExporter

    return ScrubbingLogExporter(WatchedLogExporter(_log_exporter(otlp), _watch("logs", otlp, drops)))


def _log_exporter(otlp: OtlpSettings) -> LogRecordExporter:
    if otlp.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter

        return _grpc(GrpcLogExporter, otlp)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    return _http(OTLPLogExporter, otlp, "logs")


def _headers(otlp: OtlpSettings) -> dict[str, str]:
    return {name.lower(): secret.get_secret_value() for name, secret in otlp.headers.items()}


def _grpc(exporter: Callable[..., Exporter], otlp: OtlpSettings) -> Exporter:
    """Build one of the three OTLP/gRPC exporters, which share these keyword arguments."""
    # The gRPC exporters take grpc's own Compression enum, not the HTTP exporter's.
    from grpc import Compression

    endpoint = _endpoint(otlp)
    compression = {"none": Compression.NoCompression, "gzip": Compression.Gzip, "deflate": Compression.Deflate}
    return exporter(
        endpoint=endpoint,
        insecure=otlp.insecure if otlp.insecure is not None else endpoint.startswith("http://"),
        headers=_headers(otlp),
        timeout=otlp.timeout,
        compression=compression[otlp.compression],
    )


def _http(exporter: Callable[..., Exporter], otlp: OtlpSettings, signal: _Signal) -> Exporter:
    """Build one of the three OTLP/HTTP exporters; the OTLP spec appends the signal's path to a base endpoint."""
    from opentelemetry.exporter.otlp.proto.http import Compression

    base = _endpoint(otlp)
    compression = {"none": Compression.NoCompression, "gzip": Compression.Gzip, "deflate": Compression.Deflate}
    return exporter(
        endpoint=f"{base}/v1/{signal}",
        headers=_headers(otlp),
        timeout=otlp.timeout,
        compression=compression[otlp.compression],
    )
