"""Builds the span, metric and log exporters that the settings ask for; each exporter is imported only when chosen."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rfobs._settings_model import OtlpSettings, Settings

if TYPE_CHECKING:
    from opentelemetry.sdk._logs.export import LogRecordExporter
    from opentelemetry.sdk.metrics.export import MetricExporter
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = ["log_exporter", "metric_exporter", "span_exporter"]

_SIGNAL_PATHS = {"traces": "v1/traces", "metrics": "v1/metrics", "logs": "v1/logs"}


def span_exporter(settings: Settings) -> SpanExporter | None:
    """The span exporter for `settings.trace_exporter`: file, otlp, console, or None for `none`."""
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
        otlp = settings.otlp
        if otlp.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcSpanExporter,
            )

            return GrpcSpanExporter(**_grpc_arguments(otlp))
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(**_http_arguments(otlp, "traces"))
    return None


def metric_exporter(otlp: OtlpSettings) -> MetricExporter:
    """The OTLP metric exporter (cumulative temporality, as Prometheus-style backends expect)."""
    if otlp.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )

        return GrpcMetricExporter(**_grpc_arguments(otlp))
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(**_http_arguments(otlp, "metrics"))


def log_exporter(otlp: OtlpSettings) -> LogRecordExporter:
    """The OTLP log record exporter."""
    if otlp.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
            OTLPLogExporter as GrpcLogExporter,
        )

        return GrpcLogExporter(**_grpc_arguments(otlp))
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    return OTLPLogExporter(**_http_arguments(otlp, "logs"))


def _headers(otlp: OtlpSettings) -> dict[str, str]:
    return {name.lower(): secret.get_secret_value() for name, secret in otlp.headers.items()}


def _grpc_arguments(otlp: OtlpSettings) -> dict[str, object]:
    from opentelemetry.exporter.otlp.proto.grpc.exporter import Compression

    endpoint = otlp.endpoint or "http://127.0.0.1:4317"
    insecure = otlp.insecure if otlp.insecure is not None else endpoint.startswith("http://")
    compression = {"none": Compression.NoCompression, "gzip": Compression.Gzip, "deflate": Compression.Deflate}
    return {
        "endpoint": endpoint,
        "insecure": insecure,
        "headers": _headers(otlp),
        "timeout": otlp.timeout,
        "compression": compression[otlp.compression],
    }


def _http_arguments(otlp: OtlpSettings, signal: str) -> dict[str, object]:
    from opentelemetry.exporter.otlp.proto.http import Compression

    base = otlp.endpoint or "http://127.0.0.1:4318"
    compression = {"none": Compression.NoCompression, "gzip": Compression.Gzip, "deflate": Compression.Deflate}
    return {
        # The OTLP spec: a base endpoint gets the per-signal path appended.
        "endpoint": f"{base}/{_SIGNAL_PATHS[signal]}",
        "headers": _headers(otlp),
        "timeout": otlp.timeout,
        "compression": compression[otlp.compression],
    }
