"""Build the OpenTelemetry providers, exporters and servers that the settings ask for, and install them globally."""

from __future__ import annotations

import logging
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rfobs import _process
from rfobs._drops import DropCounter
from rfobs._settings_model import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import Sampler
    from prometheus_client import CollectorRegistry

    from rfobs._processor import BoundedBatchLogProcessor, BoundedBatchSpanProcessor
    from rfobs._prometheus import MetricsEndpoint
    from rfobs.fleet.wiring import Fleet
    from rfobs.health.checker import HealthChecker

__all__ = ["Pipeline", "build_pipeline", "installed", "serve_metrics"]

# Providers rfobs installed as OpenTelemetry's globals (weakly held: they live as long as the globals do).
installed: weakref.WeakSet[Any] = weakref.WeakSet()


@dataclass
class Pipeline:
    """What `build_pipeline` assembles for the handle `rfobs.init()` returns."""

    drops: DropCounter = field(default_factory=DropCounter)
    tracer_provider: TracerProvider | None = None
    span_processor: BoundedBatchSpanProcessor | None = None
    meter_provider: MeterProvider | None = None
    metrics_endpoint: MetricsEndpoint | None = None
    logger_provider: LoggerProvider | None = None
    log_processor: BoundedBatchLogProcessor | None = None
    # What shutdown() stops, each with what a forked child does instead (None: the child stops it too).
    closers: list[tuple[Callable[[], None], Callable[[], None] | None]] = field(default_factory=lambda: [])
    health: HealthChecker | None = None
    health_url: str | None = None
    prometheus_registry: CollectorRegistry | None = None
    fleet: Fleet | None = None
    """The Redis store and default backends when `ratelimit.backend` or `breaker.backend` is `redis`."""


def build_pipeline(settings: Settings) -> Pipeline:
    """Build and install the providers, exporters and servers `settings` ask for (nothing when the SDK is off)."""
    from rfobs._scrub_export import configure as configure_scrubbing

    configure_scrubbing(settings)  # sdk.scrub_patterns and the text size limits
    pipeline = Pipeline()
    # Shared limits are behaviour, not telemetry: wired even when the SDK is disabled.
    _add_fleet(settings, pipeline)
    if settings.sdk.disabled:
        return pipeline
    _process.import_before_providers()
    if settings.logging.enabled:
        from rfobs.logs import setup_logging

        setup_logging(settings.logging.level, settings.logging.format == "json")
    resource = _resource(settings)
    if settings.metrics.enabled:
        _add_meter_provider(settings, resource, pipeline)
    if settings.tracing.enabled:
        _add_tracer_provider(settings, resource, pipeline)
    if settings.otlp.endpoint and settings.logging.otlp_export:
        _add_logger_provider(settings, resource, pipeline)
    if settings.health.enabled:
        _add_health(settings, pipeline)
    return pipeline


def _resource(settings: Settings) -> Resource:
    import os
    import platform
    import socket
    import sys
    from importlib.metadata import version

    from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, Resource, ServiceInstanceIdResourceDetector

    from rfobs._version import __version__

    # Built by hand rather than with Resource.create(): that also reads OTEL_* variables itself, and
    # config.py is the one place that reads the environment. Command-line arguments are left out on purpose:
    # agents are often started with API keys on the command line.
    attributes: dict[str, str | int] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": version("opentelemetry-sdk"),
        "telemetry.distro.name": "rfobs",
        "telemetry.distro.version": __version__,
        "host.name": socket.gethostname(),
        "os.type": sys.platform,
        "process.pid": os.getpid(),
        "process.runtime.name": sys.implementation.name,
        "process.runtime.version": platform.python_version(),
        "process.executable.name": os.path.basename(sys.executable),
        # Tells apart the processes of one service, whose metrics would otherwise share one series wherever
        # they meet (a Collector's Prometheus exporter); one set by the user wins in the process that set it.
        # The SDK's own detector: the providers ask it again in a forked child and merge its answer over the
        # resource, so every child gets an id of its own (even where the user had set one).
        "service.instance.id": str(ServiceInstanceIdResourceDetector().detect().attributes[SERVICE_INSTANCE_ID]),
        **settings.service.resource_attributes,
        "service.name": settings.service.name,
        "service.version": settings.service.version,
        "deployment.environment.name": settings.deployment_environment,
    }
    # Not scrubbed here: every exporter, and the /metrics reader, scrub the resource they send (on their thread).
    return Resource(attributes)


def _sampler(settings: Settings) -> Sampler:
    from opentelemetry.sdk.trace import sampling

    ratio = settings.tracing.sampler_ratio
    samplers: dict[str, Callable[[], Sampler]] = {
        "always_on": lambda: sampling.ALWAYS_ON,
        "always_off": lambda: sampling.ALWAYS_OFF,
        "traceidratio": lambda: sampling.TraceIdRatioBased(ratio),
        "parentbased_always_on": lambda: sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": lambda: sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": lambda: sampling.ParentBased(sampling.TraceIdRatioBased(ratio)),
    }
    return samplers[settings.tracing.sampler]()


def _add_tracer_provider(settings: Settings, resource: Resource, pipeline: Pipeline) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider

    from rfobs._processor import BoundedBatchSpanProcessor
    from rfobs.exporters import span_exporter

    tracing = settings.tracing
    limits = SpanLimits(
        max_span_attributes=tracing.max_attributes,
        max_event_attributes=tracing.max_attributes,
        max_link_attributes=tracing.max_attributes,
        max_attribute_length=tracing.max_attribute_length,
        max_events=tracing.max_events,
    )
    # shutdown_on_exit=False: the handle's own bounded exit hook shuts the providers down, once.
    provider = TracerProvider(resource=resource, sampler=_sampler(settings), span_limits=limits, shutdown_on_exit=False)
    if (exporter := span_exporter(settings, pipeline.drops)) is not None:
        pipeline.span_processor = BoundedBatchSpanProcessor(
            exporter,
            pipeline.drops,
            max_queue_size=tracing.max_queue_size,
            max_queue_bytes=tracing.max_queue_bytes,
            max_export_batch_size=tracing.max_export_batch_size,
            schedule_delay=tracing.schedule_delay,
            track_open=settings.sdk.handle_sigterm,
        )
        provider.add_span_processor(pipeline.span_processor)
    _install(trace.set_tracer_provider, trace.get_tracer_provider, trace.ProxyTracerProvider, provider)
    pipeline.tracer_provider = provider


def _add_meter_provider(settings: Settings, resource: Resource, pipeline: Pipeline) -> None:
    from opentelemetry import metrics
    from opentelemetry.metrics._internal import _ProxyMeterProvider  # pyright: ignore[reportPrivateUsage]
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    readers: list[MetricReader] = []
    if settings.metrics.prometheus_enabled:
        readers.append(_prometheus_reader(settings, pipeline))
    if settings.metrics.otlp_export and settings.otlp.endpoint:
        from rfobs._counting_metrics import CountingMetricExporter
        from rfobs.exporters import metric_exporter

        readers.append(
            PeriodicExportingMetricReader(
                CountingMetricExporter(metric_exporter(settings.otlp, pipeline.drops), pipeline.drops),
                export_interval_millis=settings.metrics.export_interval * 1000,
                export_timeout_millis=settings.otlp.timeout * 1000,
            )
        )
    from rfobs._version import __version__

    provider = MeterProvider(metric_readers=readers, resource=resource, shutdown_on_exit=False)
    # With its version: Prometheus shows the scope as otel_scope_version, which is empty without one.
    pipeline.drops.register(provider.get_meter("rfobs", __version__), settings.metrics.namespace)
    _install(metrics.set_meter_provider, metrics.get_meter_provider, _ProxyMeterProvider, provider)
    pipeline.meter_provider = provider


def _prometheus_reader(settings: Settings, pipeline: Pipeline) -> MetricReader:
    from prometheus_client import CollectorRegistry

    from rfobs._scrub_export import ScrubbingPrometheusReader

    # A registry of our own: prometheus_client's global one would show a second init()'s series twice.
    registry = CollectorRegistry(auto_describe=True)
    reader = ScrubbingPrometheusReader(registry=registry)
    pipeline.prometheus_registry = registry
    pipeline.metrics_endpoint = serve_metrics(
        settings, registry, worker=_process.is_multiprocessing_child(), pipeline=pipeline
    )
    return reader


def serve_metrics(
    settings: Settings, registry: CollectorRegistry, *, worker: bool, pipeline: Pipeline
) -> MetricsEndpoint | None:
    """Serve `/metrics` for `registry`; a worker process takes a free port (its target file tells Prometheus)."""
    from rfobs._prometheus import MetricsEndpoint

    metrics = settings.metrics
    port = 0 if worker else metrics.prometheus_port
    labels = {"service_name": settings.service.name}
    endpoint = MetricsEndpoint(registry, metrics.prometheus_host, port, metrics.targets_dir, labels)
    try:
        endpoint.start()
    except OSError as error:
        asked_by = settings.sources.get("metrics.prometheus_port", "")
        fix = (
            f"pass {asked_by.removesuffix('()')}(port=...) a free port"
            if asked_by.endswith("start_http_server()")
            else "set metrics.prometheus_port (RFOBS_METRICS__PROMETHEUS_PORT) to a free port"
        )
        warnings.warn(
            f"rfobs: cannot serve /metrics on {metrics.prometheus_host}:{port} ({error.strerror or error}); {fix}, "
            "or 0 for any. Metrics are still recorded; traces and logs are unaffected.",
            RuntimeWarning,
            stacklevel=_caller_outside_rfobs(),
        )
        return None
    pipeline.closers.append((endpoint.close, endpoint.release_after_fork))
    return endpoint


def _add_fleet(settings: Settings, pipeline: Pipeline) -> None:
    if settings.ratelimit.backend == "memory" and settings.breaker.backend == "memory":
        return  # rfobs.fleet (and redis-py) are not imported at all
    from rfobs.fleet.wiring import start_fleet

    pipeline.fleet = fleet = start_fleet(settings)
    if fleet is not None:
        pipeline.closers.append((fleet.close, None))


def _add_health(settings: Settings, pipeline: Pipeline) -> None:
    from rfobs.health.setup import build_health_checker

    pipeline.health = checker = build_health_checker(settings)
    if pipeline.fleet is not None:
        pipeline.fleet.register_check(checker)
    if not settings.health.server_enabled:
        return
    from rfobs.health.server import HealthServer

    host, port = settings.health.host, settings.health.port
    server = HealthServer(
        checker,
        host=host,
        port=port,
        live_process=settings.health.live_process,
        check_interval=settings.health.interval,
    )
    try:
        pipeline.health_url = server.start()
    except OSError as error:
        reason = error.__cause__ if isinstance(error.__cause__, OSError) else error
        warnings.warn(
            f"rfobs: cannot serve /health on {host}:{port} ({reason.strerror or reason}); set health.port "
            "(RFOBS_HEALTH__PORT) to a free port, or 0 for any. handle.health still runs the checks; "
            "telemetry is unaffected.",
            RuntimeWarning,
            stacklevel=_caller_outside_rfobs(),
        )
        return
    pipeline.closers.append(
        (lambda: server.stop(timeout=min(2.0, settings.sdk.shutdown_timeout)), server.release_after_fork)
    )


def _add_logger_provider(settings: Settings, resource: Resource, pipeline: Pipeline) -> None:
    from opentelemetry import _logs
    from opentelemetry._logs._internal import ProxyLoggerProvider
    from opentelemetry.sdk._logs import LoggerProvider

    from rfobs._processor import BoundedBatchLogProcessor
    from rfobs.exporters import log_exporter
    from rfobs.logs import OtelLogHandler

    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    pipeline.log_processor = BoundedBatchLogProcessor(log_exporter(settings.otlp, pipeline.drops), pipeline.drops)
    provider.add_log_record_processor(pipeline.log_processor)
    _install(_logs.set_logger_provider, _logs.get_logger_provider, ProxyLoggerProvider, provider)
    root = logging.getLogger()
    handlers: list[logging.Handler] = [OtelLogHandler(provider)]
    if not root.handlers:
        # Nothing prints logs (`logging.enabled` off): Python's last-resort stderr output would stop once the OTLP
        # handler exists, and rfobs's own warnings (a dead collector among them) would go only where it cannot
        # deliver. Keep them on stderr.
        own_warnings = logging.StreamHandler()
        own_warnings.setLevel(logging.WARNING)
        own_warnings.addFilter(logging.Filter("rfobs"))
        handlers.append(own_warnings)
    for handler in handlers:
        root.addHandler(handler)

    def remove_handlers() -> None:
        for handler in handlers:
            root.removeHandler(handler)

    pipeline.closers.append((remove_handlers, None))
    pipeline.logger_provider = provider


def _caller_outside_rfobs() -> int:
    """The `stacklevel` that makes a warning raised by this function's caller point at the first frame outside rfobs.

    Counted, not fixed: `init()`, `init_with_settings()` and the seed's `start_http_server()` reach the pipeline
    through different numbers of rfobs frames.
    """
    import os
    import sys

    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 1  # pyright: ignore[reportPrivateUsage]
    while frame.f_back is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _install(
    set_global: Callable[[Any], None], get_global: Callable[[], Any], placeholder: type, provider: Any
) -> None:
    """Install `provider` globally unless another library already did (OTel globals are set-once)."""
    current = get_global()
    if not isinstance(current, placeholder):
        warnings.warn(
            f"rfobs: a global {type(current).__name__} is already installed; rfobs decorators report to it, "
            "and rfobs's own provider is used only through the handle",
            RuntimeWarning,
            stacklevel=_caller_outside_rfobs(),
        )
        return
    set_global(provider)
    installed.add(provider)
