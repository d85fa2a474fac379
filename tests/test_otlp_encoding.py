"""rfobs's direct OTLP encoders give exactly what the SDK's protobuf encoder gives, as JSON and on the wire (#9)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext

from rfobs import _otlp_json, _otlp_proto
from rfobs._otlp_json import SpanEvent, SpanRecord, decode_otlp_json_line, encode_otlp_json
from rfobs._otlp_proto import encode_trace_request
from tests.otlp_samples import T0, rich_spans, sdk_otlp_json


def typed_json(text: str) -> Any:
    """Parsed JSON in which numbers keep their JSON type: a double written as 1 must not equal 1.0 or true."""
    return json.loads(text, parse_int=lambda s: ("int", int(s)), parse_float=lambda s: ("float", float(s)))


def assert_same_as_sdk(spans: list[ReadableSpan]) -> None:
    assert typed_json(encode_otlp_json(spans)) == typed_json(sdk_otlp_json(spans))
    sdk_request = encode_spans(spans)
    ours = encode_trace_request(spans)
    assert ExportTraceServiceRequest.FromString(ours) == sdk_request
    # Message equality cannot see a field written twice or a default written explicitly; the bytes can
    # (upb writes fields in field-number order, as rfobs does).
    assert ours == sdk_request.SerializeToString()


def test_rich_batch_encodes_as_the_sdk_does() -> None:
    assert_same_as_sdk(rich_spans())


@pytest.mark.parametrize("index", range(7))
def test_each_rich_span_alone_encodes_as_the_sdk_does(index: int) -> None:
    assert_same_as_sdk([rich_spans()[index]])


def test_json_text_is_identical_to_the_protobuf_json_mapping() -> None:
    spans = rich_spans()
    assert encode_otlp_json(spans) == sdk_otlp_json(spans)


def test_spans_group_by_resource_then_scope_in_order_of_first_appearance() -> None:
    spans = rich_spans()
    assert [span.name for span in spans] == ["llm.chat", "search", "tool", "twin.resource", "agent.run", "raw", ""]
    body = json.loads(encode_otlp_json(spans))
    layout = [
        (
            {item["key"]: item["value"] for item in resource_spans["resource"].get("attributes", [])}.get(
                "service.name"
            ),
            [
                (scope_spans["scope"].get("name"), [span.get("name", "") for span in scope_spans["spans"]])
                for scope_spans in resource_spans["scopeSpans"]
            ],
        )
        for resource_spans in body["resourceSpans"]
    ]
    # The twin provider's resource equals the agent's, so its span joins the agent's rfobs scope.
    assert layout == [
        (
            {"stringValue": "researcher"},
            [("rfobs", ["llm.chat", "twin.resource", "agent.run"]), ("plain", ["tool"])],
        ),
        ({"stringValue": "retriever"}, [("retriever.search", ["search"])]),
        (None, [(None, ["raw"]), ("raw", [""])]),
    ]


def test_values_follow_the_otlp_json_mapping() -> None:
    spans = rich_spans()
    body = json.loads(encode_otlp_json(spans))
    root = body["resourceSpans"][0]["scopeSpans"][0]["spans"][2]
    values = {item["key"]: item["value"] for item in root["attributes"]}
    assert values["int64.max"] == {"intValue": "9223372036854775807"}
    assert (values["nan"], values["inf"], values["minus.inf"]) == (
        {"doubleValue": "NaN"},
        {"doubleValue": "Infinity"},
        {"doubleValue": "-Infinity"},
    )
    assert values["no.items"] == {"arrayValue": {}}
    assert values["with.none"] == {"arrayValue": {"values": [{"stringValue": "a"}, {}]}}
    assert "int64.overflow" not in values
    assert (root["traceId"], root["parentSpanId"]) == ("f0e1d2c3b4a5968778695a4b3c2d1e0f", "8000000000000001")
    assert (root["traceState"], root["flags"], root["kind"]) == ("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", 768, 2)
    assert "droppedAttributesCount" not in root
    tool = body["resourceSpans"][0]["scopeSpans"][1]["spans"][0]
    assert (tool["droppedAttributesCount"], tool["attributes"][0]["key"], len(tool["attributes"])) == (5, "extra.5", 40)


def test_attributes_that_cannot_be_encoded_are_dropped_and_logged_without_their_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attributes: dict[Any, Any] = {"ok": 1, "huge": 2**64, "bad": object(), "secret": "sk-123\ud800", 7: "x"}
    span = ReadableSpan("s", SpanContext(1, 2, is_remote=False), resource=Resource.get_empty(), attributes=attributes)
    expected = {"rfobs dropped span attribute 'huge': ValueError", "rfobs dropped span attribute 'bad': TypeError"}
    expected |= {
        "rfobs dropped span attribute 'secret': UnicodeEncodeError",
        "rfobs dropped span attribute 7: TypeError",
    }
    for encode in (encode_otlp_json, encode_trace_request):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="rfobs"):
            encode([span])
        assert {record.getMessage() for record in caplog.records if record.name == "rfobs"} == expected
        assert "sk-123" not in caplog.text
    (kept,) = json.loads(encode_otlp_json([span]))["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]
    assert kept == {"key": "ok", "value": {"intValue": "1"}}
    assert_same_as_sdk([span])


@pytest.mark.parametrize("field", ["name", "status", "event", "scope"])
def test_a_non_utf8_name_fails_the_batch_as_in_the_sdk(field: str) -> None:
    bad = "x\ud800"
    span = ReadableSpan(
        bad if field == "name" else "s",
        SpanContext(1, 2, is_remote=False),
        resource=Resource.get_empty(),
        events=[Event(bad if field == "event" else "e", timestamp=T0)],
        instrumentation_scope=InstrumentationScope(bad if field == "scope" else "scope"),
    )
    if field == "status":
        from opentelemetry.trace import Status, StatusCode

        span = ReadableSpan("s", SpanContext(1, 2, is_remote=False), status=Status(StatusCode.ERROR, bad))
    for encode in (encode_spans, encode_otlp_json, encode_trace_request):
        with pytest.raises(UnicodeEncodeError):
            encode([span])


def test_an_empty_batch_is_an_empty_request() -> None:
    assert encode_otlp_json([]) == sdk_otlp_json([]) == "{}"
    assert encode_trace_request([]) == encode_spans([]).SerializeToString() == b""


def test_the_attribute_key_caches_stay_bounded() -> None:
    context = SpanContext(1, 2, is_remote=False)
    spans = [
        ReadableSpan("s", context, resource=Resource.get_empty(), attributes={f"key.{index}": index})
        for index in range(5000)
    ]
    assert_same_as_sdk(spans)
    assert len(_otlp_proto._keys) <= 4096  # pyright: ignore[reportPrivateUsage]
    assert len(_otlp_json._key_prefixes) <= 4096  # pyright: ignore[reportPrivateUsage]


def comparable(value: object) -> object:
    """A decoded or SDK attribute value in one shape: sequences as lists, floats by repr (NaN equals NaN)."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return [comparable(item) for item in cast("list[object] | tuple[object, ...]", value)]
    return value


def comparable_attributes(attributes: Mapping[str, object] | None, dropped: frozenset[str] = frozenset()) -> Any:
    return {key: comparable(value) for key, value in (attributes or {}).items() if key not in dropped}


def test_decode_reads_back_what_encode_wrote() -> None:
    spans = [span for span in rich_spans() if span.name not in ("raw", "")]
    records = decode_otlp_json_line(encode_otlp_json(spans))
    by_name = {record.name: record for record in records}  # each provider numbers its ids from 1
    assert len(records) == len(by_name) == len(spans)
    for span in spans:
        context = span.get_span_context()
        assert context is not None
        record = by_name[span.name]
        decoded = (
            comparable_attributes(record.attributes),
            [comparable_attributes(e.attributes) for e in record.events],
        )
        assert decoded == (
            comparable_attributes(span.attributes, frozenset({"int64.overflow"})),
            [comparable_attributes(event.attributes) for event in span.events],
        )
        expected = SpanRecord(
            trace_id=f"{context.trace_id:032x}",
            span_id=f"{context.span_id:016x}",
            parent_span_id=f"{span.parent.span_id:016x}" if span.parent else None,
            name=span.name,
            start_ns=span.start_time or 0,
            end_ns=span.end_time or 0,
            kind=span.kind.name,
            status_code=span.status.status_code.name,
            status_message=span.status.description or "",
            attributes=record.attributes,
            events=[
                SpanEvent(event.name, event.timestamp, decoded.attributes)
                for event, decoded in zip(span.events, record.events, strict=True)
            ],
            service_name=str(span.resource.attributes["service.name"]),
        )
        assert record == expected


# Attribute values of every shape the SDK's encoder accepts or refuses, lone surrogates included.
_TEXT = st.text(st.characters(exclude_categories=()), max_size=6)
_SCALARS = st.one_of(
    _TEXT,
    st.booleans(),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(),
    st.none(),
    st.binary(max_size=4),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(_TEXT, children, max_size=3),
    ),
    max_leaves=6,
)
_ATTRIBUTES = st.dictionaries(st.one_of(_TEXT, st.integers(0, 2)), _VALUES, max_size=5)


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(span_attributes=_ATTRIBUTES, event_attributes=_ATTRIBUTES, link_attributes=_ATTRIBUTES)
def test_any_attributes_encode_as_the_sdk_does(
    span_attributes: dict[Any, Any], event_attributes: dict[Any, Any], link_attributes: dict[Any, Any]
) -> None:
    logging.getLogger("rfobs").disabled = True
    logging.getLogger("opentelemetry.exporter.otlp.proto.common._internal").disabled = True
    try:
        span = ReadableSpan(
            "s",
            SpanContext(1, 2, is_remote=False),
            resource=Resource.get_empty(),
            attributes=span_attributes,
            events=[Event("e", event_attributes, timestamp=T0)],
            links=[Link(SpanContext(3, 4, is_remote=True), link_attributes)],
            start_time=T0,
            end_time=T0 + 1,
        )
        assert_same_as_sdk([span])
    finally:
        logging.getLogger("rfobs").disabled = False
        logging.getLogger("opentelemetry.exporter.otlp.proto.common._internal").disabled = False


def test_nan_compares_by_repr_in_the_round_trip_helper() -> None:
    assert comparable(math.nan) == comparable(float("nan"))
