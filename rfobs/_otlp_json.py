"""The OTLP/JSON encoding of spans: SDK spans to one JSON line, and a line back to plain span records."""

from __future__ import annotations

import base64
import json
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeAlias, cast

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan

__all__ = ["AttributeValue", "SpanEvent", "SpanRecord", "decode_otlp_json_line", "encode_otlp_json"]

AttributeValue: TypeAlias = "str | bool | int | float | bytes | list[AttributeValue] | dict[str, AttributeValue] | None"

_SPAN_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
_STATUS_CODES = {0: "UNSET", 1: "OK", 2: "ERROR"}
_HEX = frozenset(string.hexdigits)
_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


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

    The OTLP/JSON mapping differs from plain protobuf JSON in one place: trace and span ids are
    lowercase hex, not base64. Field names are lowerCamelCase, enums are integers, 64-bit integers
    are decimal strings and default values are omitted.

    Args:
        spans: Finished SDK spans, in any mix of resources and instrumentation scopes.

    Returns:
        Compact JSON without a trailing newline.
    """
    body = json_format.MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for resource_spans in body.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                _hex_ids(span)
                for link in span.get("links", ()):
                    _hex_ids(link)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _hex_ids(message: dict[str, Any]) -> None:
    for name in _ID_FIELDS:
        if name in message:
            message[name] = base64.b64decode(message[name]).hex()


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
