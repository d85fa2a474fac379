"""A collector that is down never reaches user code, and shutdown keeps its deadline with spans pending."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Generator
from contextlib import contextmanager

import pytest

import rfobs

pytestmark = pytest.mark.usefixtures("clean_globals")

PENDING = 2000


def refused_endpoint() -> str:
    """An address where nothing listens: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextmanager
def hanging_endpoint() -> Generator[str, None, None]:
    """A server that accepts connections and reads, but never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        for connection in accepted:
            connection.close()
        server.close()


LOG_RECORDS = 200


def run_workload_then_shutdown(endpoint: str, protocol: str) -> tuple[bool, float, int, int]:
    telemetry = rfobs.init(
        otlp__endpoint=endpoint,
        otlp__protocol=protocol,
        tracing__max_queue_size=4096,
        tracing__schedule_delay=0.05,
        metrics__prometheus_port=0,
        logging__enabled=False,
    )

    @rfobs.api_call("llm", "chat")
    def call(i: int) -> int:
        return i

    for i in range(PENDING):
        assert call(i) == i  # never raises into user code
    for i in range(LOG_RECORDS):
        logging.getLogger("agent").warning("step %d", i)  # the OTLP log bridge queues these
    started = time.monotonic()
    delivered = telemetry.shutdown(timeout=2)
    elapsed = time.monotonic() - started
    return delivered, elapsed, telemetry.drops.get("spans"), telemetry.drops.get("logs")


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_refusing_collector_shutdown_keeps_deadline_and_counts_spans(protocol: str) -> None:
    delivered, elapsed, dropped, dropped_logs = run_workload_then_shutdown(refused_endpoint(), protocol)
    assert delivered is False
    assert elapsed <= 2.2
    assert (dropped, dropped_logs) == (PENDING, LOG_RECORDS)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_hanging_collector_shutdown_keeps_deadline_and_counts_spans(protocol: str) -> None:
    with hanging_endpoint() as endpoint:
        delivered, elapsed, dropped, dropped_logs = run_workload_then_shutdown(endpoint, protocol)
    assert delivered is False
    assert elapsed <= 2.2
    assert (dropped, dropped_logs) == (PENDING, LOG_RECORDS)


def test_shutdown_says_false_when_its_final_exports_fail_even_in_time() -> None:
    telemetry = rfobs.init(
        otlp__endpoint=refused_endpoint(),
        otlp__protocol="http/protobuf",
        otlp__timeout=1,
        tracing__exporter="otlp",
        metrics__otlp_export=True,
        metrics__prometheus_enabled=False,
        logging__enabled=False,
    )

    @rfobs.task("researcher", "search")
    def search() -> None:
        return None

    search()
    telemetry.force_flush(timeout=5)  # the span's export fails now: left for shutdown is the final metric export
    started = time.monotonic()
    assert telemetry.shutdown(timeout=10) is False
    assert time.monotonic() - started < 10  # in time: it is the delivery that failed
    assert telemetry.drops.get("spans") == 1
    assert telemetry.drops.get("metrics") > 0
