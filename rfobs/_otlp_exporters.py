"""OTLP span exporters (gRPC and HTTP) that send `encode_trace_request` bytes instead of SDK protobuf objects.

They are the SDK's exporters with the encoding step swapped: connection handling, retries, compression,
timeouts, headers and the SDK's own exporter metrics are inherited unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as SdkGrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http._common import RequestPayloadTooLargeError
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as SdkHttpSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE

from rfobs._otlp_proto import encode_trace_request

if TYPE_CHECKING:
    import grpc

__all__ = ["GrpcSpanExporter", "HttpSpanExporter"]

_logger = logging.getLogger("rfobs")
_EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _already_serialized(request: bytes) -> bytes:
    return request


class _BytesTraceServiceStub(TraceServiceStub):
    """A `TraceService` client whose `Export` takes the request already serialized."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.Export = channel.unary_unary(
            _EXPORT_METHOD,
            request_serializer=_already_serialized,
            response_deserializer=ExportTraceServiceResponse.FromString,
        )


class GrpcSpanExporter(SdkGrpcSpanExporter):
    """The SDK's OTLP/gRPC span exporter, encoding with rfobs's direct protobuf writer.

    Takes the SDK exporter's arguments (`endpoint`, `insecure`, `credentials`, `headers`, `timeout`,
    `compression`, ...). Reconnection after `UNAVAILABLE` rebuilds the client from the same stub class.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The SDK keeps the stub class to rebuild its client when it reconnects.
        self._stub = _BytesTraceServiceStub
        if self._channel is not None:
            self._client = _BytesTraceServiceStub(self._channel)

    def _translate_data(self, data: Sequence[ReadableSpan]) -> bytes:  # pyright: ignore[reportIncompatibleMethodOverride]  # the stub sends bytes
        return encode_trace_request(data)


class HttpSpanExporter(SdkHttpSpanExporter):
    """The SDK's OTLP/HTTP (protobuf) span exporter, encoding with rfobs's direct protobuf writer.

    Takes the SDK exporter's arguments (`endpoint`, `headers`, `timeout`, `compression`, ...) and keeps
    its HTTP client: retries, `Retry-After`, compression and its `max_request_size` limit.
    """

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Send `spans` as one request.

        Args:
            spans: The batch.

        Returns:
            `SUCCESS` once the receiver accepted the request; `FAILURE` after shutdown, when the batch
            cannot be encoded or is over `max_request_size`, or when the receiver refused it.
        """
        if self._shutdown:
            _logger.warning("rfobs OTLP/HTTP exporter is shut down; dropping %d spans", len(spans))
            return SpanExportResult.FAILURE
        with self._metrics.export_operation(len(spans)) as outcome:
            try:
                body = encode_trace_request(spans)
            except Exception as exc:
                # The exception text may quote attribute values; log its type only.
                _logger.warning("rfobs could not encode %d spans (%s); dropping them", len(spans), type(exc).__name__)
                outcome.error = exc
                return SpanExportResult.FAILURE
            if 0 < self._max_request_size < len(body):
                # The SDK's error class: its name becomes `error.type` on the SDK's exporter metrics.
                outcome.error = RequestPayloadTooLargeError(f"request of {len(body)} bytes is over max_request_size")
                _logger.warning(
                    "rfobs dropped %d spans: the request is %d bytes, max_request_size is %d",
                    len(spans),
                    len(body),
                    self._max_request_size,
                )
                return SpanExportResult.FAILURE
            sent = self._client.export(body)
            if not sent.success:
                outcome.error = sent.error
                if sent.status_code is not None:
                    outcome.error_attrs = {HTTP_RESPONSE_STATUS_CODE: sent.status_code}
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS
