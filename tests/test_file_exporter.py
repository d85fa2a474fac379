"""The OTLP/JSON-lines file exporter writes what the OTLP protobuf encoder would send, and rotates."""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from rfobs._file_exporter import OtlpJsonFileSpanExporter
from rfobs._otlp_json import encode_otlp_json
from rfobs.testing import SequentialIds

T0 = 1_735_787_045_678_000_000  # 2025-01-02T03:04:05.678Z
_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


@pytest.fixture
def memory() -> InMemorySpanExporter:
    """An in-memory exporter that sees the same spans as the file exporter."""
    return InMemorySpanExporter()


def make_provider(exporter: OtlpJsonFileSpanExporter, memory: InMemorySpanExporter | None = None) -> TracerProvider:
    """A provider with deterministic ids that exports each span to `exporter` (and `memory`) as it ends."""
    provider = TracerProvider(
        resource=Resource({"service.name": "research-agent", "service.version": "1.2.3"}),
        id_generator=SequentialIds(),
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    if memory is not None:
        provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider


def record_failing_trace(provider: TracerProvider) -> None:
    """A root span and an LLM call child with every attribute type, a link, an event and an exception."""
    tracer = provider.get_tracer("tests.file_exporter", "0.1.0")
    root = tracer.start_span("agent.run", start_time=T0, attributes={"gen_ai.agent.name": "researcher"})
    child = tracer.start_span(
        "llm.chat",
        context=trace.set_span_in_context(root),
        kind=SpanKind.CLIENT,
        start_time=T0 + 10_000_000,
        attributes={
            "gen_ai.request.model": "gpt-4o",
            "text": "héllo ✓",
            "empty": "",
            "big": 2**62,
            "negative": -7,
            "zero": 0,
            "ratio": 0.25,
            "flag": True,
            "off": False,
            "names": ["a", "b"],
            "counts": [1, 2],
            "weights": [0.5, 1.5],
            "checks": [True, False],
        },
        links=[Link(root.get_span_context(), {"link.reason": "follows"})],
    )
    child.add_event("retry", {"attempt": 2, "delay": 0.5}, timestamp=T0 + 20_000_000)
    child.record_exception(TimeoutError("read timed out"), timestamp=T0 + 30_000_000)
    child.set_status(Status(StatusCode.ERROR, "TimeoutError: read timed out"))
    child.end(end_time=T0 + 860_000_000)
    root.set_status(Status(StatusCode.OK))
    root.end(end_time=T0 + 1_200_000_000)


def record_spans(provider: TracerProvider, count: int, payload: str = "") -> None:
    """End `count` spans, one export each, carrying `payload` to control the line size."""
    tracer = provider.get_tracer("tests.file_exporter")
    for index in range(count):
        tracer.start_span(f"span-{index}", start_time=T0, attributes={"payload": payload}).end(end_time=T0 + 1)


def hex_ids_to_base64(value: Any) -> Any:
    """Turn an OTLP/JSON document back into protobuf JSON, which spells ids in base64."""
    if isinstance(value, dict):
        items = cast("dict[str, Any]", value).items()
        return {
            key: base64.b64encode(bytes.fromhex(item)).decode() if key in _ID_FIELDS else hex_ids_to_base64(item)
            for key, item in items
        }
    if isinstance(value, list):
        return [hex_ids_to_base64(item) for item in cast("list[Any]", value)]
    return value


def parse_line(line: str) -> ExportTraceServiceRequest:
    """Parse an OTLP/JSON line with protobuf's own JSON parser."""
    request = ExportTraceServiceRequest()
    json_format.Parse(json.dumps(hex_ids_to_base64(json.loads(line))), request)
    return request


def all_spans(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield every span of an OTLP/JSON document."""
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            yield from scope_spans["spans"]


def test_each_export_appends_one_line_that_decodes_to_the_protobuf_request(
    tmp_path: Path, memory: InMemorySpanExporter
) -> None:
    """Every line is OTLP/JSON and, with ids turned back into base64, equals what encode_spans produces."""
    path = tmp_path / "nested" / "dir" / "spans.jsonl"
    record_failing_trace(make_provider(OtlpJsonFileSpanExporter(path), memory))

    finished = memory.get_finished_spans()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [span.name for span in finished] == ["llm.chat", "agent.run"]
    assert len(lines) == len(finished)
    for line, span in zip(lines, finished, strict=True):
        for encoded in all_spans(json.loads(line)):
            assert re.fullmatch(r"[0-9a-f]{32}", encoded["traceId"])
            assert re.fullmatch(r"[0-9a-f]{16}", encoded["spanId"])
        assert parse_line(line) == encode_spans([span])


def test_encoding_follows_the_otlp_json_mapping(memory: InMemorySpanExporter, tmp_path: Path) -> None:
    """Hex ids, camelCase names, integer enums, int64 as strings, and no default fields."""
    record_failing_trace(make_provider(OtlpJsonFileSpanExporter(tmp_path / "unused.jsonl"), memory))
    finished = memory.get_finished_spans()
    line = encode_otlp_json(finished)

    assert "\n" not in line
    assert parse_line(line) == encode_spans(finished)
    document = json.loads(line)
    resource = document["resourceSpans"][0]["resource"]
    assert {"key": "service.name", "value": {"stringValue": "research-agent"}} in resource["attributes"]
    child, root = all_spans(document)
    assert root["traceId"] == "00000000000000000000000000000001"
    assert root["spanId"] == "0000000000000001"
    assert "parentSpanId" not in root
    assert root["kind"] == 1
    assert root["status"] == {"code": 1}
    assert root["startTimeUnixNano"] == str(T0)
    assert child["parentSpanId"] == "0000000000000001"
    assert child["links"][0]["spanId"] == "0000000000000001"
    assert child["kind"] == 3
    assert child["status"] == {"code": 2, "message": "TimeoutError: read timed out"}
    assert child["flags"] == 256  # fixed32 stays a number: SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE, parent local
    attributes = {item["key"]: item["value"] for item in child["attributes"]}
    assert attributes["big"] == {"intValue": str(2**62)}
    assert attributes["zero"] == {"intValue": "0"}
    assert attributes["off"] == {"boolValue": False}
    assert attributes["empty"] == {"stringValue": ""}
    assert attributes["text"] == {"stringValue": "héllo ✓"}
    assert attributes["counts"] == {"arrayValue": {"values": [{"intValue": "1"}, {"intValue": "2"}]}}
    assert [event["name"] for event in child["events"]] == ["retry", "exception"]
    assert child["events"][0]["timeUnixNano"] == str(T0 + 20_000_000)


def test_rotation_keeps_backup_count_files_each_within_max_bytes(tmp_path: Path) -> None:
    """Old lines move to spans.jsonl.1 and .2, the oldest are dropped, and no file outgrows max_bytes."""
    path = tmp_path / "spans.jsonl"
    record_spans(make_provider(OtlpJsonFileSpanExporter(path, max_bytes=2_000, backup_count=2)), 60, "x" * 200)

    assert sorted(file.name for file in tmp_path.iterdir()) == ["spans.jsonl", "spans.jsonl.1", "spans.jsonl.2"]
    names: list[str] = []
    for file in (tmp_path / "spans.jsonl.2", tmp_path / "spans.jsonl.1", path):
        assert 0 < file.stat().st_size <= 2_000
        names += [span["name"] for line in file.read_text().splitlines() for span in all_spans(json.loads(line))]
    assert names == [f"span-{index}" for index in range(60 - len(names), 60)]


def test_rotation_with_no_backups_truncates(tmp_path: Path) -> None:
    """backup_count=0 empties the file instead of renaming it."""
    path = tmp_path / "spans.jsonl"
    record_spans(make_provider(OtlpJsonFileSpanExporter(path, max_bytes=1_000, backup_count=0)), 30)

    assert [file.name for file in tmp_path.iterdir()] == ["spans.jsonl"]
    assert path.stat().st_size <= 1_000
    assert json.loads(path.read_text().splitlines()[-1])["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] == (
        "span-29"
    )


def test_a_batch_larger_than_max_bytes_is_written_to_a_file_of_its_own(tmp_path: Path) -> None:
    """A line is never split or dropped for size; it just gets a fresh file."""
    path = tmp_path / "spans.jsonl"
    record_spans(make_provider(OtlpJsonFileSpanExporter(path, max_bytes=10, backup_count=5)), 2)

    assert len(path.read_text().splitlines()) == 1
    assert len((tmp_path / "spans.jsonl.1").read_text().splitlines()) == 1


def test_unwritable_path_returns_failure_and_logs_without_span_contents(
    tmp_path: Path, memory: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    """An OSError becomes FAILURE and a warning on the rfobs logger; export never raises."""
    (tmp_path / "not-a-dir").write_text("")
    exporter = OtlpJsonFileSpanExporter(tmp_path / "not-a-dir" / "spans.jsonl")
    record_failing_trace(make_provider(OtlpJsonFileSpanExporter(tmp_path / "ok.jsonl"), memory))

    with caplog.at_level(logging.WARNING, logger="rfobs"):
        assert exporter.export(memory.get_finished_spans()) is SpanExportResult.FAILURE

    assert [record.name for record in caplog.records] == ["rfobs"]
    assert "could not write 2 spans" in caplog.text
    assert "researcher" not in caplog.text
    assert "llm.chat" not in caplog.text


def test_shutdown_refuses_later_exports(tmp_path: Path, memory: InMemorySpanExporter) -> None:
    """After shutdown nothing more is written; force_flush has nothing to wait for."""
    path = tmp_path / "spans.jsonl"
    exporter = OtlpJsonFileSpanExporter(path)
    record_failing_trace(make_provider(OtlpJsonFileSpanExporter(tmp_path / "other.jsonl"), memory))
    spans = memory.get_finished_spans()

    assert exporter.force_flush() is True
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert len(path.read_text().splitlines()) == 1


def test_concurrent_exports_never_interleave_lines(tmp_path: Path, memory: InMemorySpanExporter) -> None:
    """Threads sharing one exporter each get whole lines."""
    path = tmp_path / "spans.jsonl"
    exporter = OtlpJsonFileSpanExporter(path, max_bytes=20_000, backup_count=100)
    record_failing_trace(make_provider(OtlpJsonFileSpanExporter(tmp_path / "other.jsonl"), memory))
    spans: list[ReadableSpan] = list(memory.get_finished_spans())

    def export_many() -> None:
        for _ in range(25):
            exporter.export(spans)

    threads = [threading.Thread(target=export_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    lines = [line for file in tmp_path.glob("spans.jsonl*") for line in file.read_text().splitlines()]
    assert len(lines) == 200
    assert all(parse_line(line) == encode_spans(spans) for line in lines)


@pytest.mark.parametrize(("max_bytes", "backup_count"), [(-1, 3), (100, -1)])
def test_negative_limits_are_rejected(tmp_path: Path, max_bytes: int, backup_count: int) -> None:
    """Bad limits fail at construction, naming the argument."""
    with pytest.raises(ValueError, match="must be >= 0"):
        OtlpJsonFileSpanExporter(tmp_path / "spans.jsonl", max_bytes=max_bytes, backup_count=backup_count)
