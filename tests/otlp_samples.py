"""Spans that exercise every part of the OTLP trace encoding, made with the real SDK, and the SDK's own encodings."""

from __future__ import annotations

import base64
import enum
import json
from typing import Any

from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from rfobs.testing import SequentialIds

T0 = 1_735_787_045_678_000_000  # 2025-01-02T03:04:05.678Z
REMOTE_TRACE_ID = 0xF0E1D2C3B4A5968778695A4B3C2D1E0F  # top bit set: ids are unsigned
REMOTE_SPAN_ID = 0x8000000000000001

EVERY_TYPE: dict[str, Any] = {
    "text": "héllo ✓ 日本 🚀",
    "empty": "",
    "yes": True,
    "no": False,
    "zero": 0,
    "negative": -7,
    "int64.max": 2**63 - 1,
    "int64.min": -(2**63),
    "ratio": 0.25,
    "whole": 3.0,
    "negative.zero": -0.0,
    "tiny": 5e-324,
    "huge.float": 1e300,
    "nan": float("nan"),
    "inf": float("inf"),
    "minus.inf": float("-inf"),
    "names": ("a", "", "ü"),
    "counts": (1, -2, 2**63 - 1),
    "weights": (0.5, float("nan"), float("-inf")),
    "checks": (True, False),
    "no.items": (),
    "with.none": ("a", None),
}


class Colour(enum.Enum):
    RED = "red"


class StrColour(str, enum.Enum):  # noqa: UP042  # not StrEnum: here str() gives "StrColour.RED", not the value
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Probability(float):
    pass


# Values the SDK's attribute cleaning would refuse or convert, set on ReadableSpans directly: the encoders
# receive whatever a span holds, so they must treat these as the SDK's encoder does.
RAW_ATTRIBUTES: dict[Any, Any] = {
    "none": None,
    "bytes": b"\x00\xff binary",
    "empty.bytes": b"",
    "mapping": {"a": 1, 2: "two", "": True, "nested": {"x": [1.5]}},
    "empty.mapping": {},
    "nested": [[1, 2], ["x"], []],
    "mixed": [1, "a", 2.5, True, None, b"\x01"],
    "bytearray": bytearray(b"ab"),
    "str.enum": StrColour.RED,
    "int.enum": Level.HIGH,
    "float.subclass": Probability(0.75),
    "": "empty key",
    "int64.overflow": 2**63,
    "int64.underflow": -(2**63) - 1,
    "array.overflow": [1, 2**64],
    "surrogate": "bad \ud800 text",
    "surrogate.in.array": ["ok", "\udfff"],
    "object": object(),
    "enum": Colour.RED,
    3: "int key",
    "surrogate.key.\udc80": "value",
    "kept.after.failures": "still here",
}


def rich_spans() -> list[ReadableSpan]:
    """Finished spans covering resources, scopes, kinds, statuses, events, links, limits and every value type.

    Spans come from three providers (two of them with equal but distinct resources, which the OTLP
    request merges) and four scopes, in interleaved order, plus hand-made spans with raw attributes.
    """
    exporter = InMemorySpanExporter()
    limits = SpanLimits(
        max_attributes=40,
        max_events=3,
        max_links=2,
        max_event_attributes=2,
        max_link_attributes=2,
        max_attribute_length=SpanLimits.UNSET,
    )
    agent_resource = {"service.name": "researcher", "service.version": "1.2.3", "host.cpus": 8, "tags": ("a", "b")}
    schema = "https://opentelemetry.io/schemas/1.26.0"
    agent = _provider(Resource(agent_resource, schema), exporter, limits)
    twin = _provider(Resource(dict(agent_resource), schema), exporter, limits)
    retriever = _provider(Resource({"service.name": "retriever"}), exporter, limits)
    rfobs_tracer = agent.get_tracer("rfobs", "0.3.0", schema_url=schema, attributes={"scope.kind": "sdk", "n": 1})
    plain_tracer = agent.get_tracer("plain")
    remote = SpanContext(
        REMOTE_TRACE_ID,
        REMOTE_SPAN_ID,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE")]),
    )
    root = rfobs_tracer.start_span(
        "agent.run",
        context=trace.set_span_in_context(NonRecordingSpan(remote)),
        kind=SpanKind.SERVER,
        start_time=T0,
        attributes=EVERY_TYPE,
    )
    root.set_attribute("int64.overflow", 2**64)  # the SDK keeps it; its encoder drops it
    in_root = trace.set_span_in_context(root)
    chat = rfobs_tracer.start_span(
        "llm.chat",
        context=in_root,
        kind=SpanKind.CLIENT,
        start_time=T0 + 10_000_000,
        attributes={"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 12},
        links=[
            Link(remote, {"link.reason": "follows", "attempt": 2, "dropped": "past max_link_attributes"}),
            Link(root.get_span_context()),
            Link(root.get_span_context(), {"third": "past max_links"}),
        ],
    )
    chat.add_event("retry", {"attempt": 2, "delay": 0.5, "dropped": True}, timestamp=T0 + 20_000_000)
    chat.add_event("", timestamp=T0 + 21_000_000)
    chat.record_exception(TimeoutError("read timed out"), timestamp=T0 + 30_000_000)
    chat.add_event("past max_events", timestamp=T0 + 31_000_000)
    chat.set_status(Status(StatusCode.ERROR, "TimeoutError: read timed out"))
    chat.end(end_time=T0 + 860_000_000)
    other = retriever.get_tracer("retriever.search", "2.0").start_span(
        "search", kind=SpanKind.PRODUCER, start_time=T0 + 1_000, attributes={"query": "agents"}
    )
    other.set_status(Status(StatusCode.OK))
    other.end(end_time=T0 + 2_000)
    tool = plain_tracer.start_span("tool", context=in_root, kind=SpanKind.CONSUMER, start_time=T0 + 5)
    for index in range(45):  # 5 past max_attributes, the oldest first: dropped_attributes_count
        tool.set_attribute(f"extra.{index}", index)
    tool.set_status(Status(StatusCode.ERROR))
    tool.end(end_time=T0 + 6)
    twin.get_tracer("rfobs", "0.3.0", schema_url=schema, attributes={"scope.kind": "sdk", "n": 1}).start_span(
        "twin.resource", start_time=T0 + 7
    ).end(end_time=T0 + 8)
    root.end(end_time=T0 + 900_000_000)
    return [*exporter.get_finished_spans(), *raw_spans()]


def raw_spans() -> list[ReadableSpan]:
    """Hand-made spans: raw attribute values, no scope, an empty resource, an empty name, no end time."""
    context = SpanContext(0x1, 0x2, is_remote=False)
    return [
        ReadableSpan(
            name="raw",
            context=context,
            parent=SpanContext(0x1, 0x3, is_remote=False),
            resource=Resource.get_empty(),
            attributes=RAW_ATTRIBUTES,
            events=[Event("raw.event", RAW_ATTRIBUTES, timestamp=T0)],
            links=[Link(SpanContext(0x4, 0x5, is_remote=True), RAW_ATTRIBUTES)],
            instrumentation_scope=None,
            start_time=T0,
            end_time=T0 + 1,
        ),
        ReadableSpan(
            name="",
            context=SpanContext(0x1, 0x6, is_remote=False),
            resource=Resource.get_empty(),
            instrumentation_scope=InstrumentationScope("raw", None, None, {}),
            start_time=T0,
        ),
    ]


def _provider(resource: Resource, exporter: InMemorySpanExporter, limits: SpanLimits) -> TracerProvider:
    provider = TracerProvider(resource=resource, id_generator=SequentialIds(), span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def sdk_otlp_json(spans: list[ReadableSpan]) -> str:
    """The reference OTLP/JSON: the SDK's protobuf request through protobuf's JSON mapping, then hex ids.

    This was `encode_otlp_json` before #9, at ~120 µs per span.
    """
    body = json_format.MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for resource_spans in body.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                for message in (span, *span.get("links", ())):
                    for name in ("traceId", "spanId", "parentSpanId"):
                        if name in message:
                            message[name] = base64.b64decode(message[name]).hex()
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))
