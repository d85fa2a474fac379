"""The OTLP/JSON encoding of spans: SDK spans to one JSON line, and a line back to plain span records."""

from __future__ import annotations

import base64
import json
import json.encoder
import logging
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeAlias, cast

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanKind, Status

from rfobs._span_groups import group_spans

__all__ = ["AttributeValue", "SpanEvent", "SpanRecord", "decode_otlp_json_line", "encode_otlp_json"]

AttributeValue: TypeAlias = "str | bool | int | float | bytes | list[AttributeValue] | dict[str, AttributeValue] | None"

_SPAN_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
_STATUS_CODES = {0: "UNSET", 1: "OK", 2: "ERROR"}
_HEX = frozenset(string.hexdigits)

_logger = logging.getLogger("rfobs")
# A JSON string literal escaped as json.dumps(..., ensure_ascii=False) escapes it.
_quote: Callable[[str], str] = json.encoder.encode_basestring
# Span.kind is the SDK's SpanKind shifted by one: OTLP reserves 0 for SPAN_KIND_UNSPECIFIED.
_KINDS = {
    SpanKind.INTERNAL: '"kind":1',
    SpanKind.SERVER: '"kind":2',
    SpanKind.CLIENT: '"kind":3',
    SpanKind.PRODUCER: '"kind":4',
    SpanKind.CONSUMER: '"kind":5',
}
# SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK, plus SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK for a remote parent or link.
_LOCAL_FLAGS = '"flags":256'
_REMOTE_FLAGS = '"flags":768'
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_KEY_CACHE_SIZE = 4096

# `{"key":"...","value":` per attribute key; keys repeat across spans. Cleared when full.
_key_prefixes: dict[str, str] = {}


class SpanEvent(NamedTuple):
    """A span event: what happened, when (ns since the epoch) and its attributes."""

    name: str
    time_ns: int
    attributes: dict[str, AttributeValue]


@dataclass(frozen=True)
class SpanRecord:
    """One span as read back from the file, with ids as lowercase hex and enums as names."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    start_ns: int
    end_ns: int
    kind: str = "INTERNAL"
    status_code: str = "UNSET"
    status_message: str = ""
    attributes: dict[str, AttributeValue] = field(default_factory=dict[str, "AttributeValue"])
    events: list[SpanEvent] = field(default_factory=list[SpanEvent])
    service_name: str = ""

    @property
    def duration_ns(self) -> int:
        """The span's duration, never negative."""
        return max(0, self.end_ns - self.start_ns)


def encode_otlp_json(spans: Sequence[ReadableSpan]) -> str:
    """Encode spans as one OTLP/JSON `ExportTraceServiceRequest`, the format of the Collector's `otlpjsonfile`.

    The output is what protobuf's JSON mapping gives for the SDK's `encode_spans(spans)`, except that
    trace and span ids are lowercase hex, not base64, as OTLP/JSON requires. Field names are
    lowerCamelCase, enums are integers, 64-bit integers are decimal strings, non-finite doubles are
    `"NaN"`, `"Infinity"` or `"-Infinity"` and default values are omitted.

    The text is written directly, with the escaping `json.dumps(..., ensure_ascii=False)` uses: going
    through protobuf objects cost ~120 µs per span, and building dicts for `json.dumps` ~20 µs.

    Args:
        spans: Finished SDK spans, in any mix of resources and instrumentation scopes.

    Returns:
        Compact JSON without a trailing newline.

    Raises:
        UnicodeEncodeError: If a name, description or trace state is not valid UTF-8 (holds a lone
            surrogate), as the SDK's encoder does. Such an attribute is dropped and logged instead.
    """
    resource_spans: list[str] = []
    for resource, scopes in group_spans(spans):
        scope_spans: list[str] = []
        for scope, members in scopes:
            fields = [f'"scope":{_json_scope(scope)}', f'"spans":[{",".join(map(_json_span, members))}]']
            if scope is not None and scope.schema_url:
                fields.append(f'"schemaUrl":{_quote(scope.schema_url)}')
            scope_spans.append(f"{{{','.join(fields)}}}")
        fields = [f'"resource":{_json_message(_json_attributes(resource.attributes))}']
        fields.append(f'"scopeSpans":[{",".join(scope_spans)}]')
        if resource.schema_url:
            fields.append(f'"schemaUrl":{_quote(resource.schema_url)}')
        resource_spans.append(f"{{{','.join(fields)}}}")
    text = f'{{"resourceSpans":[{",".join(resource_spans)}]}}' if resource_spans else "{}"
    if not text.isascii():
        text.encode()
    return text


def _json_scope(scope: InstrumentationScope | None) -> str:
    if scope is None:
        return "{}"
    fields: list[str] = []
    if scope.name:
        fields.append(f'"name":{_quote(scope.name)}')
    if scope.version:
        fields.append(f'"version":{_quote(scope.version)}')
    if attributes := _json_attributes(scope.attributes):
        fields.append(f'"attributes":[{attributes}]')
    return f"{{{','.join(fields)}}}"


def _json_message(attributes: str) -> str:
    return f'{{"attributes":[{attributes}]}}' if attributes else "{}"


def _json_span(span: ReadableSpan) -> str:
    context = span.context
    if context is None:
        msg = f"span {span.name!r} has no span context"
        raise ValueError(msg)
    fields = [
        f'"traceId":"{context.trace_id.to_bytes(16, "big").hex()}"',
        f'"spanId":"{context.span_id.to_bytes(8, "big").hex()}"',
    ]
    if trace_state := context.trace_state:
        fields.append(f'"traceState":{_quote(",".join([f"{key}={value}" for key, value in trace_state.items()]))}')
    parent = span.parent
    if parent is not None:
        fields.append(f'"parentSpanId":"{parent.span_id.to_bytes(8, "big").hex()}"')
    if span.name:
        fields.append(f'"name":{_quote(span.name)}')
    fields.append(_KINDS[span.kind])
    if start := span.start_time:
        fields.append(f'"startTimeUnixNano":"{start}"')
    if end := span.end_time:
        fields.append(f'"endTimeUnixNano":"{end}"')
    if attributes := _json_attributes(span.attributes):
        fields.append(f'"attributes":[{attributes}]')
    if dropped := span.dropped_attributes:
        fields.append(f'"droppedAttributesCount":{dropped}')
    if events := span.events:
        fields.append(f'"events":[{",".join(map(_json_event, events))}]')
    if dropped := span.dropped_events:
        fields.append(f'"droppedEventsCount":{dropped}')
    if links := span.links:
        fields.append(f'"links":[{",".join(map(_json_link, links))}]')
    if dropped := span.dropped_links:
        fields.append(f'"droppedLinksCount":{dropped}')
    fields.append(_json_status(span.status))
    fields.append(_REMOTE_FLAGS if parent is not None and parent.is_remote else _LOCAL_FLAGS)
    return f"{{{','.join(fields)}}}"


def _json_status(status: Status) -> str:
    code = status.status_code.value
    if status.description:
        message = _quote(status.description)
        return f'"status":{{"message":{message},"code":{code}}}' if code else f'"status":{{"message":{message}}}'
    return f'"status":{{"code":{code}}}' if code else '"status":{}'


def _json_event(event: Event) -> str:
    fields: list[str] = []
    if event.timestamp:
        fields.append(f'"timeUnixNano":"{event.timestamp}"')
    if event.name:
        fields.append(f'"name":{_quote(event.name)}')
    if attributes := _json_attributes(event.attributes):
        fields.append(f'"attributes":[{attributes}]')
    if dropped := event.dropped_attributes:
        fields.append(f'"droppedAttributesCount":{dropped}')
    return f"{{{','.join(fields)}}}"


def _json_link(link: Link) -> str:
    linked = link.context
    fields = [
        f'"traceId":"{linked.trace_id.to_bytes(16, "big").hex()}"',
        f'"spanId":"{linked.span_id.to_bytes(8, "big").hex()}"',
    ]
    if attributes := _json_attributes(link.attributes):
        fields.append(f'"attributes":[{attributes}]')
    if dropped := link.dropped_attributes:
        fields.append(f'"droppedAttributesCount":{dropped}')
    fields.append(_REMOTE_FLAGS if linked.is_remote else _LOCAL_FLAGS)
    return f"{{{','.join(fields)}}}"


def _json_attributes(attributes: Mapping[str, object] | None) -> str:
    """The KeyValues, comma-separated; one that cannot be encoded is dropped and logged, as the SDK does."""
    if not attributes:
        return ""
    items: list[str] = []
    for key, value in attributes.items():
        try:
            prefix = _key_prefixes.get(key) or _key_prefix(key)
            if type(value) is str:
                if not value.isascii():
                    value.encode()
                items.append(f'{prefix}{{"stringValue":{_quote(value)}}}}}')
            else:
                items.append(f"{prefix}{_json_value(value)}}}")
        except Exception as exc:
            # The message may quote the value, which may be a secret.
            _logger.warning("rfobs dropped span attribute %r: %s", key, type(exc).__name__)
    return ",".join(items)


def _key_prefix(key: object) -> str:
    """`{"key":...,"value":` of a KeyValue (the key omitted when empty, as protobuf omits defaults)."""
    if not isinstance(key, str):
        msg = f"attribute key must be a str, not {type(key).__name__}"
        raise TypeError(msg)
    prefix = _key_prefixes.get(key)
    if prefix is None:
        key.encode()
        prefix = f'{{"key":{_quote(key)},"value":' if key else '{"value":'
        if len(_key_prefixes) >= _KEY_CACHE_SIZE:
            _key_prefixes.clear()
        _key_prefixes[key] = prefix
    return prefix


def _json_value(value: object) -> str:
    """One AnyValue; its oneof fields appear even when they hold a default value."""
    if type(value) is str:
        if not value.isascii():
            value.encode()
        return f'{{"stringValue":{_quote(value)}}}'
    if type(value) is bool:
        return '{"boolValue":true}' if value else '{"boolValue":false}'
    if type(value) is int:
        return f'{{"intValue":"{_int64(value)}"}}'
    if type(value) is float:
        return _json_double(value)
    if type(value) is tuple:
        return _json_array(cast("tuple[object, ...]", value))
    return _json_value_general(value)


def _json_value_general(value: object) -> str:
    """The SDK's own order of checks, for subclasses, None, bytes, lists and mappings."""
    if value is None:
        return "{}"
    if isinstance(value, bool):
        return _json_value(bool(value))
    # The plain value, as protobuf stores it: a subclass's __str__ (an Enum's, say) does not apply.
    if isinstance(value, str):
        return _json_value(str.__str__(value))
    if isinstance(value, int):
        return _json_value(int.__int__(value))
    if isinstance(value, float):
        return _json_double(float.__float__(value))
    if isinstance(value, bytes):
        return f'{{"bytesValue":"{base64.b64encode(value).decode("ascii")}"}}'
    if isinstance(value, Sequence):
        return _json_array(cast("Sequence[object]", value))
    if isinstance(value, Mapping):
        pairs = cast("Mapping[object, object]", value).items()
        values = ",".join([f"{_key_prefix(str(key))}{_json_value(item)}}}" for key, item in pairs])
        return f'{{"kvlistValue":{{"values":[{values}]}}}}' if values else '{"kvlistValue":{}}'
    msg = f"cannot encode a {type(value).__name__} attribute value"
    raise TypeError(msg)


def _json_array(items: Sequence[object]) -> str:
    if not items:
        return '{"arrayValue":{}}'
    return f'{{"arrayValue":{{"values":[{",".join(map(_json_value, items))}]}}}}'


def _json_double(value: float) -> str:
    if value - value == 0.0:  # finite
        return f'{{"doubleValue":{float.__repr__(value)}}}'
    if value != value:
        return '{"doubleValue":"NaN"}'
    return '{"doubleValue":"Infinity"}' if value > 0 else '{"doubleValue":"-Infinity"}'


def _int64(value: int) -> int:
    if not _INT64_MIN <= value <= _INT64_MAX:
        msg = f"Value out of range: {value}"
        raise ValueError(msg)
    return value


def decode_otlp_json_line(line: str) -> list[SpanRecord]:
    """Decode one OTLP/JSON `ExportTraceServiceRequest` line.

    Accepts hex ids (OTLP/JSON) as well as base64 ids (plain protobuf JSON), and enums as
    integers or names.

    Args:
        line: One line of the file, with or without its newline.

    Returns:
        The spans of the request.

    Raises:
        ValueError: If the line is not JSON or not an OTLP trace request.
        KeyError: If a span lacks its trace or span id.
        TypeError: If a field has the wrong type.
    """
    body = _object(json.loads(line))
    if "resourceSpans" not in body:
        msg = "not an OTLP trace request: no resourceSpans"
        raise ValueError(msg)
    records: list[SpanRecord] = []
    for resource_spans in _array(body["resourceSpans"]):
        resource_spans = _object(resource_spans)
        resource = _attributes(_object(resource_spans.get("resource", {})).get("attributes"))
        service_name = str(resource.get("service.name", ""))
        for scope_spans in _array(resource_spans.get("scopeSpans")):
            for raw in _array(_object(scope_spans).get("spans")):
                records.append(_span(_object(raw), service_name))
    return records


def _span(span: dict[str, Any], service_name: str) -> SpanRecord:
    status = _object(span.get("status", {}))
    parent = str(span.get("parentSpanId", ""))
    return SpanRecord(
        trace_id=_hex_id(span["traceId"]),
        span_id=_hex_id(span["spanId"]),
        parent_span_id=_hex_id(parent) if parent.strip("0") else None,
        name=str(span.get("name", "")),
        kind=_enum(span.get("kind", 0), _SPAN_KINDS, "SPAN_KIND_"),
        start_ns=int(span.get("startTimeUnixNano", 0)),
        end_ns=int(span.get("endTimeUnixNano", 0)),
        status_code=_enum(status.get("code", 0), _STATUS_CODES, "STATUS_CODE_"),
        status_message=str(status.get("message", "")),
        attributes=_attributes(span.get("attributes")),
        events=[
            SpanEvent(
                name=str(event.get("name", "")),
                time_ns=int(event.get("timeUnixNano", 0)),
                attributes=_attributes(event.get("attributes")),
            )
            for event in map(_object, _array(span.get("events")))
        ],
        service_name=service_name,
    )


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        msg = f"expected a JSON object, got {type(value).__name__}"
        raise TypeError(msg)
    return cast("dict[str, Any]", value)


def _array(value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        msg = f"expected a JSON array, got {type(value).__name__}"
        raise TypeError(msg)
    return cast("list[Any]", value)


def _hex_id(value: Any) -> str:
    text = str(value)
    if len(text) in (16, 32) and _HEX.issuperset(text):
        return text.lower()
    return base64.b64decode(text, validate=True).hex()


def _enum(value: Any, names: dict[int, str], prefix: str) -> str:
    if isinstance(value, str) and not value.isdigit():
        return value.removeprefix(prefix)
    return names.get(int(value), names[0])


def _attributes(value: Any) -> dict[str, AttributeValue]:
    return {str(item["key"]): _any_value(item.get("value", {})) for item in map(_object, _array(value))}


def _any_value(value: Any) -> AttributeValue:
    value = _object(value)
    if "stringValue" in value:
        return str(value["stringValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [_any_value(item) for item in _array(_object(value["arrayValue"]).get("values"))]
    if "kvlistValue" in value:
        return _attributes(_object(value["kvlistValue"]).get("values"))
    if "bytesValue" in value:
        return base64.b64decode(str(value["bytesValue"]))
    return None
