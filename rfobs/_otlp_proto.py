"""OTLP protobuf encoding of spans, written straight to the wire format.

`encode_trace_request(spans)` returns the bytes that the SDK's
`encode_spans(spans).SerializeToString()` returns, in ~12 µs instead of ~43 µs for a span with ten
attributes: the SDK builds a protobuf object per span, event, link, attribute and value first. The export thread
shares the GIL with the agent, so its cost per span decides the rate a burst can be absorbed at.

Field numbers are those of `opentelemetry/proto/trace/v1/trace.proto` and `common/v1/common.proto`.
Fields are written in field-number order and default values are omitted, as protobuf does.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import cast

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind

from rfobs._span_groups import group_spans

__all__ = ["encode_trace_request"]

_logger = logging.getLogger("rfobs")

_BYTE = tuple(bytes((value,)) for value in range(256))
_UINT64 = 0xFFFF_FFFF_FFFF_FFFF
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_KEY_CACHE_SIZE = 4096

# Span.kind is the SDK's SpanKind shifted by one: OTLP reserves 0 for SPAN_KIND_UNSPECIFIED.
_KIND = {
    SpanKind.INTERNAL: b"\x30\x01",
    SpanKind.SERVER: b"\x30\x02",
    SpanKind.CLIENT: b"\x30\x03",
    SpanKind.PRODUCER: b"\x30\x04",
    SpanKind.CONSUMER: b"\x30\x05",
}
# Span.flags (field 16, fixed32) and Link.flags (field 6): SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK,
# plus SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK when the parent (or linked) context is remote.
_SPAN_FLAGS = (b"\x85\x01\x00\x01\x00\x00", b"\x85\x01\x00\x03\x00\x00")
_LINK_FLAGS = (b"\x35\x00\x01\x00\x00", b"\x35\x00\x03\x00\x00")
_BOOL = (b"\x10\x00", b"\x10\x01")
_EMPTY_ARRAY = b"\x2a\x00"
_EMPTY_KVLIST = b"\x32\x00"

_fixed64_pair = struct.Struct("<BQBQ").pack
_fixed64 = struct.Struct("<BQ").pack
_double = struct.Struct("<Bd").pack

# Encoded KeyValue.key fields; attribute keys repeat across spans. Cleared when full.
_keys: dict[str, bytes] = {}


def encode_trace_request(spans: Sequence[ReadableSpan]) -> bytes:
    """Encode spans as a serialized OTLP `ExportTraceServiceRequest`.

    Args:
        spans: Finished SDK spans, in any mix of resources and instrumentation scopes.

    Returns:
        The request's protobuf wire format, equal (as a message) to what the SDK's
        `encode_spans(spans)` builds.

    Raises:
        Exception: What the SDK's encoder raises on an invalid span (for example a non-UTF-8
            name). An attribute that cannot be encoded is dropped and logged instead, as the
            SDK does.
    """
    request: list[bytes] = []
    for resource, scopes in group_spans(spans):
        resource_spans = [_message(b"\x0a", _resource(resource))]
        for scope, members in scopes:
            scope_spans = [_message(b"\x0a", _scope(scope))]
            for span in members:
                body = _span(span)
                scope_spans.append(b"\x12" + _varint(len(body)))
                scope_spans.append(body)
            if scope is not None and scope.schema_url:
                scope_spans.append(_string(b"\x1a", scope.schema_url))
            _append_message(resource_spans, b"\x12", scope_spans)
        if resource.schema_url:
            resource_spans.append(_string(b"\x1a", resource.schema_url))
        _append_message(request, b"\x0a", resource_spans)
    return b"".join(request)


def _append_message(parts: list[bytes], tag: bytes, body: list[bytes]) -> None:
    parts.append(tag + _varint(sum(map(len, body))))
    parts.extend(body)


def _resource(resource: Resource) -> bytes:
    return _attributes(b"\x0a", resource.attributes)


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return b""
    parts: list[bytes] = []
    if scope.name:
        parts.append(_string(b"\x0a", scope.name))
    if scope.version:
        parts.append(_string(b"\x12", scope.version))
    parts.append(_attributes(b"\x1a", scope.attributes))
    return b"".join(parts)


def _span(span: ReadableSpan) -> bytes:
    context = span.context
    if context is None:
        msg = f"span {span.name!r} has no span context"
        raise ValueError(msg)
    parts = [b"\x0a\x10" + context.trace_id.to_bytes(16, "big") + b"\x12\x08" + context.span_id.to_bytes(8, "big")]
    trace_state = context.trace_state
    if trace_state:
        parts.append(_string(b"\x1a", ",".join([f"{key}={value}" for key, value in trace_state.items()])))
    parent = span.parent
    if parent is not None:
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    if span.name:
        parts.append(_string(b"\x2a", span.name))
    parts.append(_KIND[span.kind])
    start, end = span.start_time, span.end_time
    if start and end:
        parts.append(_fixed64_pair(0x39, start, 0x41, end))
    else:
        if start:
            parts.append(_fixed64(0x39, start))
        if end:
            parts.append(_fixed64(0x41, end))
    parts.append(_attributes(b"\x4a", span.attributes))
    if dropped := span.dropped_attributes:
        parts.append(b"\x50" + _varint(dropped))
    for event in span.events:
        event_parts: list[bytes] = []
        if event.timestamp:
            event_parts.append(_fixed64(0x09, event.timestamp))
        if event.name:
            event_parts.append(_string(b"\x12", event.name))
        event_parts.append(_attributes(b"\x1a", event.attributes))
        if dropped := event.dropped_attributes:
            event_parts.append(b"\x20" + _varint(dropped))
        _append_message(parts, b"\x5a", event_parts)
    if dropped := span.dropped_events:
        parts.append(b"\x60" + _varint(dropped))
    for link in span.links:
        linked = link.context
        link_parts = [
            b"\x0a\x10" + linked.trace_id.to_bytes(16, "big") + b"\x12\x08" + linked.span_id.to_bytes(8, "big"),
            _attributes(b"\x22", link.attributes),
        ]
        if dropped := link.dropped_attributes:
            link_parts.append(b"\x28" + _varint(dropped))
        link_parts.append(_LINK_FLAGS[linked.is_remote])
        _append_message(parts, b"\x6a", link_parts)
    if dropped := span.dropped_links:
        parts.append(b"\x70" + _varint(dropped))
    parts.append(_status(span))
    parts.append(_SPAN_FLAGS[_is_remote(parent)])
    return b"".join(parts)


def _is_remote(parent: SpanContext | None) -> bool:
    return parent is not None and parent.is_remote


def _status(span: ReadableSpan) -> bytes:
    status = span.status
    code = status.status_code.value
    if status.description:
        message = _string(b"\x12", status.description)
        body = message + b"\x18" + _varint(code) if code else message
        return b"\x7a" + _varint(len(body)) + body
    return b"\x7a\x02\x18" + _BYTE[code] if code else b"\x7a\x00"


def _attributes(tag: bytes, attributes: Mapping[str, object] | None) -> bytes:
    """The repeated KeyValue field `tag`; an attribute that cannot be encoded is dropped, as the SDK does."""
    if not attributes:
        return b""
    parts: list[bytes] = []
    for key, value in attributes.items():
        try:
            key_field = _keys.get(key) or _key_field(key)
            if type(value) is str:
                data = value.encode()
                size = len(data)
                # Most attributes are short strings: every length fits one byte.
                if (total := len(key_field) + size + 4) < 0x80:
                    parts.append(
                        b"".join((tag, _BYTE[total], key_field, b"\x12", _BYTE[size + 2], b"\x0a", _BYTE[size], data))
                    )
                    continue
                any_value = b"".join((b"\x0a", _varint(size), data))
            else:
                any_value = _any_value(value)
        except Exception as exc:
            # The message may quote the value, which may be a secret.
            _logger.warning("rfobs dropped span attribute %r: %s", key, type(exc).__name__)
            continue
        size = len(any_value)
        if (total := len(key_field) + size + 2) < 0x80:
            parts.append(b"".join((tag, _BYTE[total], key_field, b"\x12", _BYTE[size], any_value)))
        else:
            body = b"".join((key_field, b"\x12", _varint(size), any_value))
            parts.append(b"".join((tag, _varint(len(body)), body)))
    return b"".join(parts)


def _key_field(key: object) -> bytes:
    """KeyValue.key, omitted when empty as protobuf omits default values."""
    if not isinstance(key, str):
        msg = f"attribute key must be a str, not {type(key).__name__}"
        raise TypeError(msg)
    field = _keys.get(key)
    if field is None:
        field = _string(b"\x0a", key) if key else b""
        if len(_keys) >= _KEY_CACHE_SIZE:
            _keys.clear()
        _keys[key] = field
    return field


def _any_value(value: object) -> bytes:
    """One AnyValue message; its oneof fields are written even when they hold a default value."""
    if type(value) is str:
        data = value.encode()
        return b"\x0a" + _varint(len(data)) + data
    if type(value) is bool:
        return _BOOL[value]
    if type(value) is int:
        return b"\x18" + _int64(value)
    if type(value) is float:
        return _double(0x21, value)
    return _any_value_general(value)


def _any_value_general(value: object) -> bytes:
    """The SDK's own order of checks, for subclasses, None, bytes, sequences and mappings."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return _BOOL[bool(value)]
    if isinstance(value, str):
        data = str.encode(value)
        return b"\x0a" + _varint(len(data)) + data
    if isinstance(value, int):
        return b"\x18" + _int64(int.__int__(value))
    if isinstance(value, float):
        return _double(0x21, value)
    if isinstance(value, bytes):
        return b"\x3a" + _varint(len(value)) + value
    if isinstance(value, Sequence):
        items = cast("Sequence[object]", value)
        return _repeated(b"\x2a", map(_any_value, items)) or _EMPTY_ARRAY
    if isinstance(value, Mapping):
        pairs = cast("Mapping[object, object]", value).items()
        return _repeated(b"\x32", (_key_field(str(key)) + _value_field(item) for key, item in pairs)) or _EMPTY_KVLIST
    msg = f"cannot encode a {type(value).__name__} attribute value"
    raise TypeError(msg)


def _value_field(value: object) -> bytes:
    any_value = _any_value(value)
    return b"\x12" + _varint(len(any_value)) + any_value


def _repeated(tag: bytes, messages: Iterable[bytes]) -> bytes:
    """An ArrayValue or KeyValueList in field `tag` of AnyValue, or b"" when it has no elements."""
    body = b"".join([b"\x0a" + _varint(len(message)) + message for message in messages])
    return tag + _varint(len(body)) + body if body else b""


def _int64(value: int) -> bytes:
    if not _INT64_MIN <= value <= _INT64_MAX:
        msg = f"Value out of range: {value}"
        raise ValueError(msg)
    return _varint(value & _UINT64)


def _string(tag: bytes, text: str) -> bytes:
    data = text.encode()
    return tag + _varint(len(data)) + data


def _message(tag: bytes, body: bytes) -> bytes:
    return tag + _varint(len(body)) + body


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _BYTE[value]
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
