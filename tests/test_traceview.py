"""`rfobs traces` reads the OTLP/JSON-lines file back and renders exact, width-bounded span trees."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode

from rfobs._file_exporter import OtlpJsonFileSpanExporter
from rfobs._otlp_json import decode_otlp_json_line, encode_otlp_json
from rfobs.traceview import (
    SpanEvent,
    SpanRecord,
    build_traces,
    load_spans,
    read_trace_file,
    render_file,
    render_traces,
)

T0 = 1_735_787_045_678_000_000  # 2025-01-02T03:04:05.678Z
MS = 1_000_000
NEW_TRACE = "0af7651916cd43dd8448eb211c803192"
OLD_TRACE = "0af7651916cd43dd8448eb211c803191"

NEW_TRACE_TEXT = """\
0af7651916cd43dd8448eb211c803192  2025-01-02T03:04:05.678Z  1.20s  4 spans  1 error  research-agent
agent.run  1.20s  ✓  gen_ai.agent.name=researcher gen_ai.operation.name=invoke_agent
├── llm.chat  850ms  ✗ ERROR: TimeoutError: read timed out  gen_ai.request.model=gpt-4o
│   │   gen_ai.usage.input_tokens=120 http.response.status_code=429 error.type=RateLimitError
│   │ • retry attempt=2 delay=0.5
│   │ • exception TimeoutError: read timed out after 30s
│   └── POST /v1/chat  12.3ms  ✓  http.request.method=POST
└── tool.search  850µs  ✓  openinference.span.kind=TOOL
      rfobs.tool.query="a very long query string that goes on …"""

OLD_TRACE_TEXT = """\
0af7651916cd43dd8448eb211c803191  2025-01-02T03:03:05.678Z  2.50s  1 span  0 errors  research-agent
agent.run  2.50s  ✓  gen_ai.agent.name=researcher
  • plan.ready steps=3"""


class IncrementingIdGenerator(IdGenerator):
    """Ids that count up from fixed, realistic-looking values, so that the output is deterministic."""

    def __init__(self) -> None:
        """Start just below the first ids handed out."""
        self.trace_id = int(OLD_TRACE, 16) - 1
        self.span_id = 0x00F067AA0BA902B0

    def generate_trace_id(self) -> int:
        """Return the next trace id."""
        self.trace_id += 1
        return self.trace_id

    def generate_span_id(self) -> int:
        """Return the next span id."""
        self.span_id += 1
        return self.span_id


def make_provider(path: Path, **exporter_options: int) -> TracerProvider:
    """A provider with deterministic ids that appends each span to `path` as it ends."""
    provider = TracerProvider(
        resource=Resource({"service.name": "research-agent"}), id_generator=IncrementingIdGenerator()
    )
    provider.add_span_processor(SimpleSpanProcessor(OtlpJsonFileSpanExporter(path, **exporter_options)))
    return provider


def record_two_traces(provider: TracerProvider) -> None:
    """An older, healthy trace with an event, then an agent run whose LLM call failed after a retry."""
    tracer = provider.get_tracer("tests.traceview")
    old = tracer.start_span("agent.run", start_time=T0 - 60_000 * MS, attributes={"gen_ai.agent.name": "researcher"})
    old.add_event("plan.ready", {"steps": 3}, timestamp=T0 - 59_000 * MS)
    old.end(end_time=T0 - 57_500 * MS)

    root = tracer.start_span(
        "agent.run",
        start_time=T0,
        attributes={
            "gen_ai.agent.name": "researcher",
            "gen_ai.operation.name": "invoke_agent",
            "internal.detail": "not a key attribute",
        },
    )
    llm = tracer.start_span(
        "llm.chat",
        context=trace.set_span_in_context(root),
        kind=SpanKind.CLIENT,
        start_time=T0 + 10 * MS,
        attributes={
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 120,
            "http.response.status_code": 429,
            "error.type": "RateLimitError",
        },
    )
    http = tracer.start_span(
        "POST /v1/chat",
        context=trace.set_span_in_context(llm),
        kind=SpanKind.CLIENT,
        start_time=T0 + 11 * MS,
        attributes={"http.request.method": "POST"},
    )
    http.end(end_time=T0 + 23_300_000)
    llm.add_event("retry", {"attempt": 2, "delay": 0.5}, timestamp=T0 + 300 * MS)
    llm.record_exception(TimeoutError("read timed out\nafter 30s"), timestamp=T0 + 800 * MS)
    llm.set_status(Status(StatusCode.ERROR, "TimeoutError: read timed out"))
    llm.end(end_time=T0 + 860 * MS)
    tool = tracer.start_span(
        "tool.search",
        context=trace.set_span_in_context(root),
        start_time=T0 + 900 * MS,
        attributes={
            "openinference.span.kind": "TOOL",
            "rfobs.tool.query": "a very long query string that goes on and on and on",
        },
    )
    tool.end(end_time=T0 + 900 * MS + 850_000)
    root.set_status(Status(StatusCode.OK))
    root.end(end_time=T0 + 1_200 * MS)


@pytest.fixture
def trace_file(tmp_path: Path) -> Path:
    """A file holding the two traces of `record_two_traces`."""
    path = tmp_path / "traces" / "spans.jsonl"
    record_two_traces(make_provider(path))
    return path


def record(span_id: str, parent: str | None, start_ms: int, end_ms: int, status_code: str = "UNSET") -> SpanRecord:
    """A span of trace 0x...01 with times in milliseconds after T0."""
    return SpanRecord(
        trace_id=f"{1:032x}",
        span_id=span_id,
        parent_span_id=parent,
        name=f"span-{span_id}",
        start_ns=T0 + start_ms * MS,
        end_ns=T0 + end_ms * MS,
        status_code=status_code,
        service_name="svc",
    )


def test_file_renders_as_span_trees_newest_trace_first(trace_file: Path) -> None:
    """Header, tree connectors, durations, status, key attributes (wrapped) and events, exactly."""
    assert render_file(trace_file) == f"{NEW_TRACE_TEXT}\n\n{OLD_TRACE_TEXT}"


def test_no_line_exceeds_the_width(trace_file: Path) -> None:
    """Narrow terminals get truncated values and wrapped attributes, never a longer line."""
    assert render_file(trace_file, width=60, trace_id=NEW_TRACE) == (
        """\
0af7651916cd43dd8448eb211c803192  2025-01-02T03:04:05.678Z …
agent.run  1.20s  ✓  gen_ai.agent.name=researcher
│   gen_ai.operation.name=invoke_agent
├── llm.chat  850ms  ✗ ERROR: TimeoutError: read timed out
│   │   gen_ai.request.model=gpt-4o
│   │   gen_ai.usage.input_tokens=120
│   │   http.response.status_code=429
│   │   error.type=RateLimitError
│   │ • retry attempt=2 delay=0.5
│   │ • exception TimeoutError: read timed out after 30s
│   └── POST /v1/chat  12.3ms  ✓  http.request.method=POST
└── tool.search  850µs  ✓  openinference.span.kind=TOOL
      rfobs.tool.query="a very long query string that goes …"""
    )
    for width in range(20, 121, 7):
        assert max(len(line) for line in render_file(trace_file, width=width).splitlines()) <= width


def test_errors_only_keeps_traces_with_an_error_span(trace_file: Path) -> None:
    """--errors drops the healthy trace."""
    assert render_file(trace_file, errors_only=True) == NEW_TRACE_TEXT


def test_trace_id_selects_by_prefix_of_at_least_eight_hex_characters(trace_file: Path) -> None:
    """A full id picks one trace, case-insensitively; a shared prefix picks all that share it."""
    assert render_file(trace_file, trace_id=OLD_TRACE.upper()) == OLD_TRACE_TEXT
    assert render_file(trace_file, trace_id=NEW_TRACE[:8]) == f"{NEW_TRACE_TEXT}\n\n{OLD_TRACE_TEXT}"
    assert render_file(trace_file, trace_id="deadbeef", errors_only=True) == (
        f"no trace matches --trace-id deadbeef --errors in {trace_file}"
    )
    with pytest.raises(ValueError, match="'0af765' is not 8 to 32 hex characters"):
        render_file(trace_file, trace_id="0af765")


def test_last_keeps_the_newest_traces_and_says_how_many_are_hidden(trace_file: Path) -> None:
    """--last 1 shows the newest trace and a count of the rest."""
    assert render_file(trace_file, last=1) == f"{NEW_TRACE_TEXT}\n\n… 1 older trace not shown"
    assert render_file(trace_file, last=5) == f"{NEW_TRACE_TEXT}\n\n{OLD_TRACE_TEXT}"
    with pytest.raises(ValueError, match="last must be at least 1"):
        render_file(trace_file, last=0)


def test_unreadable_lines_are_skipped_and_counted_but_a_truncated_last_line_is_not(trace_file: Path) -> None:
    """Garbage, non-OTLP JSON and spans without ids are counted; a half-written final line is ignored."""
    with trace_file.open("a", encoding="utf-8") as file:
        file.write('not json\n{"foo": 1}\n{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "x"}]}]}]}\n')
        file.write("[" * 100_000 + "\n")
        file.write('{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "0af7')

    loaded = read_trace_file(trace_file)

    assert loaded.skipped_lines == 4
    assert loaded.files == [trace_file]
    assert len(loaded.spans) == 5
    assert render_file(trace_file) == f"{NEW_TRACE_TEXT}\n\n{OLD_TRACE_TEXT}\n\n(4 unreadable lines skipped)"


def test_missing_file_says_there_are_no_traces(tmp_path: Path) -> None:
    """A missing file is not an error: nothing has been traced yet."""
    path = tmp_path / "spans.jsonl"
    assert load_spans(path) == []
    assert render_file(path) == f"no traces in {path}"


def test_rotated_backups_are_read_oldest_first(tmp_path: Path) -> None:
    """Spans in spans.jsonl.N ... spans.jsonl.1 and spans.jsonl all come back, in write order."""
    path = tmp_path / "spans.jsonl"
    tracer = make_provider(path, max_bytes=1_000, backup_count=50).get_tracer("tests.traceview")
    for index in range(30):
        tracer.start_span(f"span-{index}", start_time=T0 + index).end(end_time=T0 + index + 1)

    loaded = read_trace_file(path)

    assert len(loaded.files) > 2
    assert [span.name for span in loaded.spans] == [f"span-{index}" for index in range(30)]
    assert [trace.roots[0].span.name for trace in build_traces(loaded.spans)][:3] == ["span-29", "span-28", "span-27"]


def test_span_whose_parent_is_missing_becomes_a_root() -> None:
    """A trace that began in another process, or whose root rotated away, still renders every span."""
    spans = [
        record("00000000000000c1", "00000000000000b1", 5, 9),
        record("00000000000000b1", "00000000000000a0", 0, 10),
        record("00000000000000b2", "00000000000000a0", 20, 21, status_code="ERROR"),
    ]

    (only,) = build_traces(spans)

    assert [root.span.span_id for root in only.roots] == ["00000000000000b1", "00000000000000b2"]
    assert render_traces([only]) == (
        """\
00000000000000000000000000000001  2025-01-02T03:04:05.678Z  21.0ms  3 spans  1 error  svc
span-00000000000000b1  10.0ms  ✓
└── span-00000000000000c1  4.00ms  ✓
span-00000000000000b2  1.00ms  ✗ ERROR"""
    )


def test_parent_cycle_is_cut_instead_of_losing_spans() -> None:
    """Corrupt input where two spans name each other as parent still shows both, once."""
    spans = [record("00000000000000a1", "00000000000000a2", 0, 2), record("00000000000000a2", "00000000000000a1", 1, 2)]

    (only,) = build_traces(spans)

    assert render_traces([only]).splitlines()[1:] == [
        "span-00000000000000a1  2.00ms  ✓",
        "└── span-00000000000000a2  1.00ms  ✓",
    ]


def test_children_are_sorted_by_start_time_and_duplicates_dropped() -> None:
    """Spans arrive in end order; the tree is in start order, and a span seen twice appears once."""
    root = record("00000000000000a0", None, 0, 100)
    late = record("00000000000000a2", "00000000000000a0", 50, 60)
    early = record("00000000000000a1", "00000000000000a0", 10, 90)

    (only,) = build_traces([late, early, root, late])

    assert [child.span.span_id for child in only.roots[0].children] == ["00000000000000a1", "00000000000000a2"]
    assert len(only.spans) == 3


@pytest.mark.parametrize(
    ("duration_ns", "text"),
    [
        (500, "500ns"),
        (850_000, "850µs"),
        (1_500_000, "1.50ms"),
        (12_345_000, "12.3ms"),
        (850_000_000, "850ms"),
        (1_200_000_000, "1.20s"),
        (125_000_000_000, "2m05s"),
        (3_723_000_000_000, "1h02m"),
    ],
)
def test_durations_are_human_readable(duration_ns: int, text: str) -> None:
    """Three significant digits below a minute, then minutes and hours."""
    span = SpanRecord(
        trace_id=f"{1:032x}", span_id=f"{1:016x}", parent_span_id=None, name="x", start_ns=T0, end_ns=T0 + duration_ns
    )
    assert render_traces(build_traces([span])).splitlines()[1] == f"x  {text}  ✓"


def test_span_from_another_service_and_attribute_values_of_every_type() -> None:
    """Foreign spans name their service; values are shown compactly and quoted only when needed."""
    root = record("00000000000000a0", None, 0, 10)
    attributes = {
        "rfobs.flag": True,
        "rfobs.ratio": 0.5,
        "rfobs.tags": ["a", "b c"],
        "rfobs.blob": b"\x00\x01",
        "rfobs.empty": "",
        "rfobs.multi": "two\nlines",
        "other": "hidden",
    }
    remote = replace(record("00000000000000a1", "00000000000000a0", 1, 2), service_name="tools", attributes=attributes)

    assert render_traces(build_traces([root, remote])).splitlines()[2] == (
        '└── span-00000000000000a1 @tools  1.00ms  ✓  rfobs.flag=true rfobs.ratio=0.5 rfobs.tags=[a,"b c"]'
    )
    assert (
        render_traces(build_traces([root, remote]), width=200)
        .splitlines()[2]
        .endswith('rfobs.blob=<2 bytes> rfobs.empty="" rfobs.multi="two lines"')
    )


def test_decoder_reads_its_own_encoding_and_plain_protobuf_json() -> None:
    """Hex ids and integer enums (OTLP/JSON) or base64 ids and enum names (protobuf JSON) decode alike."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource({"service.name": "research-agent"}), id_generator=IncrementingIdGenerator()
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    record_two_traces(provider)
    spans = memory.get_finished_spans()

    ours = decode_otlp_json_line(encode_otlp_json(spans))
    protobuf_json = json_format.MessageToJson(encode_spans(spans), indent=None)

    assert decode_otlp_json_line(protobuf_json) == ours
    llm = next(span for span in ours if span.name == "llm.chat")
    assert (llm.trace_id, llm.kind, llm.status_code) == (NEW_TRACE, "CLIENT", "ERROR")
    assert llm.attributes["gen_ai.usage.input_tokens"] == 120
    assert llm.events[0] == SpanEvent("retry", T0 + 300 * MS, {"attempt": 2, "delay": 0.5})
