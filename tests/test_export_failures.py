"""Metric and log exports that fail are counted in telemetry.dropped; the OTLP log bridge records what it should."""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

import rfobs
from rfobs._drops import DROP_REASONS
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
    # One point each for the agent_tasks counter, its zero error series, the duration histogram, the
    # internal-errors counter and the abandoned-threads gauge; the 7 drop series of metrics and logs, all 0 before
    # this export; plus the state gauge of every circuit breaker alive in this process (other tests' too).
    live_breakers = len(list(_telemetry._breakers))  # pyright: ignore[reportPrivateUsage]
    drop_series = len(DROP_REASONS["metrics"]) + len(DROP_REASONS["logs"])
    assert drop_series == 7
    assert telemetry.drops.get("metrics", "export_failed") == 5 + drop_series + live_breakers
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


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_failing_endpoint_is_reported_at_first_then_at_most_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    from rfobs._drops import DropCounter
    from rfobs._export_watch import ExportWatch

    clock = Clock()
    watch = ExportWatch(
        "traces", "https://user:hunter2@collector:4318/v1/traces", DropCounter(), stop_on_refusal=False, clock=clock
    )

    def lines() -> list[str]:
        found = [r.getMessage() for r in caplog.records if r.name == "rfobs"]
        caplog.clear()
        return found

    assert not watch.run(4, lambda: False)
    assert lines() == [
        "rfobs: cannot export traces to https://user:***@collector:4318/v1/traces (no response); 4 span(s) dropped. "
        "Recording goes on; until the endpoint answers, this is reported at most once a minute."
    ]
    for _ in range(10):
        clock.now += 5
        assert not watch.run(2, lambda: False)
    assert lines() == []  # 50 s later: nothing yet
    clock.now += 10
    assert not watch.run(1, lambda: False)
    assert lines() == [
        "rfobs: still cannot export traces to https://user:***@collector:4318/v1/traces (no response); "
        "21 span(s) dropped since the last report."
    ]
    clock.now += 1
    assert not watch.run(3, lambda: False)
    assert watch.run(5, lambda: True)
    assert lines() == [
        "rfobs: exporting traces to https://user:***@collector:4318/v1/traces works again; "
        "3 span(s) dropped since the last report."
    ]
    assert watch.run(5, lambda: True)
    assert not watch.run(2, lambda: False)  # a new episode is reported at once
    assert not watch.run(6, lambda: False)
    assert len(lines()) == 1
    watch.summarize()
    assert lines() == [
        "rfobs: at shutdown, 6 span(s) could not be exported to https://user:***@collector:4318/v1/traces since "
        "the last report (no response)."
    ]
    watch.summarize()
    assert lines() == []


DEAD_ENDPOINT = """
import logging, sys
import rfobs

telemetry = rfobs.init(
    otlp__endpoint=sys.argv[1], otlp__protocol=sys.argv[2], otlp__timeout=1, tracing__exporter="otlp",
    metrics__otlp_export=True, metrics__prometheus_enabled=False, logging__format="text",
)

@rfobs.task("researcher", "search")
def search() -> None:
    logging.getLogger("agent").warning("searching")

for _ in range(4):
    search()
    telemetry.force_flush(timeout=5)
telemetry.shutdown(timeout=3)
"""


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_dead_endpoint_prints_rfobs_lines_not_the_sdks(protocol: str, tmp_path: Path) -> None:
    endpoint = refused_endpoint()
    result = subprocess.run(
        [sys.executable, "-c", DEAD_ENDPOINT, endpoint, protocol],
        capture_output=True, text=True, check=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    # Timestamps and the number of metric data points (it depends on collection timing) are left out.
    lines = [
        re.sub(r"\d+ metric data point", "N metric data point", line.partition(" ")[2])
        for line in result.stderr.splitlines()
        if "searching" not in line
    ]
    where = {s: endpoint if protocol == "grpc" else f"{endpoint}/v1/{s}" for s in ("traces", "metrics", "logs")}
    why = "gRPC UNAVAILABLE" if protocol == "grpc" else "ConnectionError"
    later = "Recording goes on; until the endpoint answers, this is reported at most once a minute."
    # The first failure of each signal, then (4 flushes within seconds, under a minute) only the shutdown summary.
    first = "WARNING rfobs: cannot export {} to {} ({}); {} dropped. {}"
    summary = "WARNING rfobs: at shutdown, {} could not be exported to {} since the last report ({})."
    assert sorted(lines) == sorted([
        first.format("traces", where["traces"], why, "1 span(s)", later),
        first.format("metrics", where["metrics"], why, "N metric data point(s)", later),
        first.format("logs", where["logs"], why, "1 log record(s)", later),
        summary.format("3 span(s)", where["traces"], why),
        summary.format("N metric data point(s)", where["metrics"], why),
        summary.format("3 log record(s)", where["logs"], why),
    ])  # fmt: skip


def test_with_logging_off_rfobs_still_says_the_endpoint_is_dead(tmp_path: Path) -> None:
    # logging.enabled=false installs no console handler; the OTLP log handler alone would swallow the warning.
    script = DEAD_ENDPOINT.replace('logging__format="text"', "logging__enabled=False")
    result = subprocess.run(
        [sys.executable, "-c", script, refused_endpoint(), "http/protobuf"],
        capture_output=True, text=True, check=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    lines = result.stderr.splitlines()
    assert [line for line in lines if line.startswith("rfobs: cannot export traces to ")], result.stderr
    assert not [line for line in lines if "searching" in line]  # the agent's own logs stay off the console


def test_a_users_own_otlp_exporter_keeps_the_sdks_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from rfobs._export_watch import quiet_sdk_loggers
    from tests.otlp_samples import rich_spans

    quiet_sdk_loggers()  # as an rfobs.init() with an OTLP endpoint does
    exporter = OTLPSpanExporter(endpoint=f"{refused_endpoint()}/v1/traces", timeout=0.5)
    try:
        exporter.export(rich_spans())
    finally:
        exporter.shutdown()
    assert any(r.name.startswith("opentelemetry.exporter.otlp") for r in caplog.records)
