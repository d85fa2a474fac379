"""rfobs's OTLP span exporters deliver what the SDK's encoder builds to real gRPC and HTTP receivers (#9)."""

from __future__ import annotations

import faulthandler
import gzip
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
    TraceServiceServicer,
    add_TraceServiceServicer_to_server,  # pyright: ignore[reportUnknownVariableType]
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from rfobs._otlp_exporters import GrpcSpanExporter, HttpSpanExporter
from tests.otlp_samples import rich_spans

HARD_TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def _hard_timeout() -> Iterator[None]:
    """A hung gRPC or HTTP call ends the run with every thread's traceback instead of hanging it."""
    faulthandler.dump_traceback_later(HARD_TIMEOUT, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def spans() -> list[ReadableSpan]:
    return rich_spans()


class GrpcReceiver(TraceServiceServicer):
    """An OTLP/gRPC trace receiver on 127.0.0.1 that keeps every request."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        add_TraceServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.server.start()

    def Export(self, request: ExportTraceServiceRequest, context: object) -> ExportTraceServiceResponse:
        self.requests.append(request)
        return ExportTraceServiceResponse()

    def stop(self) -> None:
        self.server.stop(None).wait(10)


@pytest.fixture
def grpc_receiver() -> Iterator[GrpcReceiver]:
    receiver = GrpcReceiver()
    yield receiver
    receiver.stop()


class HttpReceiver(ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver on 127.0.0.1 that keeps every request and its Content-Encoding."""

    def __init__(self, status: int = 200) -> None:
        super().__init__(("127.0.0.1", 0), _OtlpHandler)
        self.status = status
        self.requests: list[ExportTraceServiceRequest] = []
        self.encodings: list[str | None] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"


class _OtlpHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        receiver = cast("HttpReceiver", self.server)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        encoding = self.headers.get("Content-Encoding")
        if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
            self.send_error(404)
            return
        receiver.encodings.append(encoding)
        receiver.requests.append(ExportTraceServiceRequest.FromString(gzip.decompress(body) if encoding else body))
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(receiver.status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()
    yield receiver
    receiver.shutdown()
    receiver.server_close()


def grpc_exporter(
    port: int, *, timeout: float, compression: grpc.Compression = grpc.Compression.NoCompression
) -> SpanExporter:
    return GrpcSpanExporter(
        endpoint=f"http://127.0.0.1:{port}", insecure=True, timeout=timeout, compression=compression
    )


@pytest.mark.parametrize("compression", [grpc.Compression.NoCompression, grpc.Compression.Gzip])
def test_grpc_exporter_delivers_the_sdk_request(
    grpc_receiver: GrpcReceiver, spans: list[ReadableSpan], compression: grpc.Compression
) -> None:
    exporter = grpc_exporter(grpc_receiver.port, timeout=10, compression=compression)
    try:
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        assert exporter.export(spans[:1]) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert grpc_receiver.requests == [encode_spans(spans), encode_spans(spans[:1])]
    assert exporter.export(spans) is SpanExportResult.FAILURE


def test_grpc_exporter_reconnects_when_the_receiver_restarts_on_the_same_port(spans: list[ReadableSpan]) -> None:
    first = GrpcReceiver()
    exporter = grpc_exporter(first.port, timeout=20)
    second: GrpcReceiver | None = None
    try:
        assert exporter.export(spans[:1]) is SpanExportResult.SUCCESS
        first.stop()
        restarted = threading.Event()

        def restart() -> None:
            nonlocal second
            second = GrpcReceiver(first.port)
            restarted.set()

        # The export starts while nothing listens: UNAVAILABLE makes the SDK rebuild its channel and client
        # from the exporter's stub class, then retry after about a second, by which time the receiver is back.
        timer = threading.Timer(0.3, restart)
        timer.start()
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        assert restarted.is_set()
        assert exporter.export(spans[:2]) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
        if second is not None:
            second.stop()
    assert first.requests == [encode_spans(spans[:1])]
    assert second is not None
    assert second.requests == [encode_spans(spans), encode_spans(spans[:2])]


@pytest.mark.parametrize("compression", [HttpCompression.NoCompression, HttpCompression.Gzip])
def test_http_exporter_delivers_the_sdk_request(
    http_receiver: HttpReceiver, spans: list[ReadableSpan], compression: HttpCompression
) -> None:
    exporter = HttpSpanExporter(endpoint=http_receiver.endpoint, timeout=10, compression=compression)
    try:
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        assert exporter.export(spans[:1]) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert http_receiver.requests == [encode_spans(spans), encode_spans(spans[:1])]
    expected_encoding = "gzip" if compression is HttpCompression.Gzip else None
    assert http_receiver.encodings == [expected_encoding, expected_encoding]
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert len(http_receiver.requests) == 2


def test_http_exporter_reports_a_refused_request_as_failure(spans: list[ReadableSpan]) -> None:
    receiver = HttpReceiver(status=400)
    exporter = HttpSpanExporter(endpoint=receiver.endpoint, timeout=10)
    try:
        assert exporter.export(spans) is SpanExportResult.FAILURE
    finally:
        exporter.shutdown()
        receiver.shutdown()
        receiver.server_close()
    assert receiver.requests == [encode_spans(spans)]


def test_http_exporter_drops_a_batch_over_max_request_size(
    http_receiver: HttpReceiver, spans: list[ReadableSpan], caplog: pytest.LogCaptureFixture
) -> None:
    size = len(encode_spans(spans).SerializeToString())
    exporter = HttpSpanExporter(endpoint=http_receiver.endpoint, timeout=10, max_request_size=size - 1)
    try:
        assert exporter.export(spans) is SpanExportResult.FAILURE
        assert exporter.export(spans[:1]) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert http_receiver.requests == [encode_spans(spans[:1])]
    assert f"the request is {size} bytes, max_request_size is {size - 1}" in caplog.text
