"""A backend that does not take a signal (a trace-only one, like Arize Phoenix): told once, then not sent (#13).

Real local receivers: an HTTP server that accepts `/v1/traces` and answers 405 elsewhere, and a gRPC server that
has the trace service only (logs and metrics are UNIMPLEMENTED).
"""

from __future__ import annotations

import faulthandler
import logging
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
    TraceServiceServicer,
    add_TraceServiceServicer_to_server,  # pyright: ignore[reportUnknownVariableType]
)

import rfobs

pytestmark = pytest.mark.usefixtures("clean_globals")


@pytest.fixture(autouse=True)
def _hard_timeout() -> Iterator[None]:
    """A hung export ends the run with every thread's traceback instead of hanging it."""
    faulthandler.dump_traceback_later(60, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


class TraceOnlyHttp(ThreadingHTTPServer):
    """Answers 200 on /v1/traces and 405 Method Not Allowed on any other path, counting requests per path."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TraceOnlyHandler)
        self.paths: dict[str, int] = {}
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _TraceOnlyHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        server = cast("TraceOnlyHttp", self.server)
        self.rfile.read(int(self.headers["Content-Length"]))
        server.paths[self.path] = server.paths.get(self.path, 0) + 1
        if self.path != "/v1/traces":
            self.send_error(405)
            return
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


class TraceOnlyGrpc(TraceServiceServicer):
    """A gRPC server with the OTLP trace service and nothing else."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        add_TraceServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def Export(self, request: ExportTraceServiceRequest, context: object) -> ExportTraceServiceResponse:
        self.requests.append(request)
        return ExportTraceServiceResponse()


def rfobs_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "rfobs" and r.levelno >= logging.WARNING]


def run_agent(endpoint: str, protocol: str) -> rfobs.Telemetry:
    telemetry = rfobs.init(
        otlp__endpoint=endpoint,
        otlp__protocol=protocol,
        otlp__timeout=5,
        tracing__exporter="otlp",
        metrics__otlp_export=True,
        metrics__export_interval=3600,
        metrics__prometheus_enabled=False,
        logging__enabled=False,
    )

    @rfobs.task("researcher", "search")
    def search() -> None:
        logging.getLogger("agent").warning("searching")

    for _ in range(3):
        search()
        assert telemetry.force_flush(timeout=10)
    return telemetry


def unsupported(signal: str, endpoint: str, reason: str, switch: str) -> str:
    return (
        f"rfobs: the OTLP endpoint {endpoint} does not accept {signal} ({reason}); rfobs stops sending {signal} for "
        f"the life of this process and counts them as dropped (reason=unsupported_by_backend). To stop producing "
        f"them, set {switch}."
    )


LOGS_SWITCH = "logging.otlp_export=false (RFOBS_LOGGING__OTLP_EXPORT)"
METRICS_SWITCH = "metrics.otlp_export=false (RFOBS_METRICS__OTLP_EXPORT)"


def test_http_405_on_logs_and_metrics_is_reported_once_and_those_signals_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = TraceOnlyHttp()
    try:
        telemetry = run_agent(server.endpoint, "http/protobuf")
        try:
            # One request each, then nothing more for the life of the process; traces keep flowing.
            assert server.paths == {"/v1/traces": 3, "/v1/logs": 1, "/v1/metrics": 1}
            assert sorted(rfobs_warnings(caplog)) == [
                unsupported("logs", f"{server.endpoint}/v1/logs", "HTTP 405", LOGS_SWITCH),
                unsupported("metrics", f"{server.endpoint}/v1/metrics", "HTTP 405", METRICS_SWITCH),
            ]
            assert telemetry.drops.get("logs", "unsupported_by_backend") == 3
            assert telemetry.drops.get("logs") == 3  # nothing counted twice as export_failed
            assert telemetry.drops.get("metrics", "unsupported_by_backend") > 0
            assert telemetry.drops.get("metrics", "export_failed") == 0
            assert telemetry.drops.get("spans") == 0
        finally:
            telemetry.shutdown(timeout=5)
    finally:
        server.shutdown()
        server.server_close()


def test_grpc_unimplemented_logs_and_metrics_are_reported_once_and_those_signals_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = TraceOnlyGrpc()
    endpoint = f"http://127.0.0.1:{receiver.port}"
    try:
        telemetry = run_agent(endpoint, "grpc")
        try:
            assert len(receiver.requests) == 3
            assert sorted(rfobs_warnings(caplog)) == [
                unsupported("logs", endpoint, "gRPC UNIMPLEMENTED", LOGS_SWITCH),
                unsupported("metrics", endpoint, "gRPC UNIMPLEMENTED", METRICS_SWITCH),
            ]
            assert telemetry.drops.get("logs", "unsupported_by_backend") == 3
            assert telemetry.drops.get("logs") == 3
            assert telemetry.drops.get("metrics", "export_failed") == 0
        finally:
            telemetry.shutdown(timeout=5)
    finally:
        receiver.server.stop(None).wait(10)
