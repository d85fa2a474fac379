"""Metric and log exports that fail are counted in telemetry.dropped; the OTLP log bridge records what it should."""

from __future__ import annotations

import logging
import socket

import pytest
from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

import rfobs
from rfobs._scrub_export import ScrubbingLogExporter
from rfobs.instrument import _telemetry
from rfobs.logs import OtelLogHandler
from rfobs.testing import Capture


def refused_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.mark.usefixtures("clean_globals")
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_failed_metric_and_log_exports_are_counted(protocol: str) -> None:
    telemetry = rfobs.init(
        otlp__endpoint=refused_endpoint(),
        otlp__protocol=protocol,
        otlp__timeout=0.5,
        metrics__otlp_export=True,
        metrics__export_interval=3600,
        metrics__prometheus_enabled=False,
        tracing__exporter="none",
        logging__enabled=False,
    )

    @rfobs.task("researcher", "search")
    def search() -> None:
        logging.getLogger("agent").warning("searching")

    search()
    telemetry.force_flush(timeout=10)  # completes: the exports fail fast against a refused port
    # One point each for the agent_tasks counter, the duration histogram, the internal-errors counter and the
    # abandoned-threads gauge (nothing was dropped before), plus the state gauge of every circuit breaker alive in
    # this process (other tests' too).
    live_breakers = len(list(_telemetry._breakers))  # pyright: ignore[reportPrivateUsage]
    assert telemetry.drops.get("metrics", "export_failed") == 4 + live_breakers
    assert telemetry.drops.get("logs", "export_failed") == 1
    telemetry.shutdown(timeout=2)


def test_log_bridge_sends_scrubbed_records_with_trace_context(capture: Capture) -> None:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    # Scrubbed by the exporter wrapper, as on the exporter rfobs.init() builds.
    provider.add_log_record_processor(SimpleLogRecordProcessor(ScrubbingLogExporter(exporter)))
    handler = OtelLogHandler(provider)
    logger = logging.getLogger("agent.bridge")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with trace.get_tracer("test").start_as_current_span("work") as span:
            logger.error("upstream said password=hunter2", extra={"user_id": "u-1", "api_key": "sk-x"})
        logging.getLogger("rfobs").addHandler(handler)
        logging.getLogger("rfobs").warning("the export path's own warnings are not bridged")
    finally:
        logger.removeHandler(handler)
        logging.getLogger("rfobs").removeHandler(handler)
        provider.shutdown()
    (record,) = exporter.get_finished_logs()
    log = record.log_record
    assert log.body == "upstream said password=***"
    assert (log.severity_text, log.severity_number.name if log.severity_number else None) == ("ERROR", "ERROR")
    assert log.trace_id == span.get_span_context().trace_id
    assert log.span_id == span.get_span_context().span_id
    attributes = dict(log.attributes or {})
    assert (attributes["user_id"], attributes["api_key"]) == ("u-1", "***")
    assert attributes["code.function.name"] == "test_log_bridge_sends_scrubbed_records_with_trace_context"
