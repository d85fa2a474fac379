"""Exception messages, stack traces, log messages and attributes have bounded, marked sizes (#9).

Before the fix a 10 MB exception message made a 20 MB span and a 10 MB log message a 10 MB log line.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

import rfobs
from rfobs._limits import Limits, current_limits, stack_trace, truncate
from rfobs._scrub_export import ScrubbingLogExporter, configure
from rfobs._secrets import scrub_text
from rfobs.config import load_config
from rfobs.logs import OtelLogHandler
from rfobs.sdk import Telemetry
from tests.reliability.secret_corpus import CORPUS, leaked

QUIET: dict[str, Any] = {"metrics__prometheus_enabled": False, "logging__enabled": False, "health__enabled": False}
TEN_MB = 10_000_000
MARKER = re.compile(r"\.\.\.\[truncated ([0-9,]+) chars\]$")


def dropped(text: str) -> int:
    """The character count a truncation marker at the end of `text` states."""
    found = MARKER.search(text)
    assert found, text[-80:]
    return int(found.group(1).replace(",", ""))


@pytest.fixture(autouse=True)
def default_limits() -> Iterator[None]:
    yield
    configure(load_config())


def exported_spans(telemetry: Telemetry) -> list[dict[str, Any]]:
    """The spans of the trace file, as OTLP/JSON objects."""
    assert telemetry.force_flush(timeout=10) and telemetry.trace_file is not None
    spans: list[dict[str, Any]] = []
    for line in Path(telemetry.trace_file).read_text(encoding="utf-8").splitlines():
        for resource in json.loads(line)["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                spans.extend(scope["spans"])
    return spans


def attribute(item: dict[str, Any], key: str) -> Any:
    (value,) = [a["value"] for a in item.get("attributes", []) if a["key"] == key]
    return next(iter(value.values()))


def test_truncate_keeps_short_text_and_marks_what_it_cuts() -> None:
    assert truncate("short", 10) == "short"
    text = "word " * 1000
    cut = truncate(text, 100)
    assert len(cut) <= 100
    assert cut.startswith("word word ") and cut[: -len("...[truncated 4,925 chars]")].endswith("word ")
    assert len(cut) - len("...[truncated 4,925 chars]") + dropped(cut) == len(text)
    huge = truncate("x" * TEN_MB, 4096)
    assert len(huge) <= 4096 and dropped(huge) == TEN_MB - (len(huge) - len("...[truncated 9,995,934 chars]"))


def test_a_cut_never_leaves_part_of_a_secret_the_scrubber_would_miss() -> None:
    for shape in CORPUS:
        start = shape.text.find(shape.secret[:10])
        for offset in range(0, len(shape.secret), 7):
            text = "context " * 100 + shape.text
            limit = 800 + start + offset + len("...[truncated 99,999 chars]")
            assert not leaked(shape.secret, scrub_text(truncate(text, limit))), (shape.name, offset)


@pytest.mark.usefixtures("clean_globals")
def test_a_10_mb_exception_makes_a_small_marked_span_quickly() -> None:
    telemetry = rfobs.init(tracing__exporter="file", **QUIET)
    message = "upstream said: " + "y" * TEN_MB

    @rfobs.task("limits", "fail")
    def fail() -> None:
        raise RuntimeError(message)

    started = time.perf_counter()
    with pytest.raises(RuntimeError):
        fail()
    elapsed = time.perf_counter() - started
    (span,) = exported_spans(telemetry)
    line_size = Path(telemetry.trace_file or "").stat().st_size
    telemetry.shutdown(timeout=2)
    (event,) = span["events"]
    recorded = attribute(event, "exception.message")
    assert len(recorded) <= 4096 and recorded.startswith("upstream said: yyy")
    assert len(recorded) - len(MARKER.search(recorded).group(0)) + dropped(recorded) == len(message)  # pyright: ignore[reportOptionalMemberAccess]
    trace = attribute(event, "exception.stacktrace")
    assert len(trace) <= 8192 and trace.startswith("Traceback (most recent call last):") and dropped(trace) > 0
    assert "raise RuntimeError(message)" in trace
    assert len(span["status"]["message"]) <= 256 and dropped(span["status"]["message"]) > TEN_MB - 256
    assert line_size < 40_000
    assert elapsed < 0.5  # formatting the 10 MB message whole took ~50 ms alone; it is cut first


def test_a_huge_message_is_cut_before_the_traceback_is_formatted() -> None:
    try:
        try:
            raise KeyError("k")
        except KeyError as cause:
            raise ValueError("v" * TEN_MB) from cause
    except ValueError as error:
        started = time.perf_counter()
        text = stack_trace(error, 300, 2000)
        elapsed = time.perf_counter() - started
    assert elapsed < 0.01
    assert "KeyError: 'k'" in text and "The above exception was the direct cause" in text
    assert re.search(r"ValueError: v{200,}\.\.\.\[truncated 9,999,7\d\d chars\]\n$", text)


@pytest.mark.usefixtures("clean_globals")
def test_user_set_attributes_are_cut_at_max_attribute_length() -> None:
    telemetry = rfobs.init(tracing__exporter="file", **QUIET)
    with telemetry.tracer.start_as_current_span("big") as span:
        span.set_attribute("blob", "z" * TEN_MB)
        span.add_event("big event", {"blob": "z" * TEN_MB})
    (exported,) = exported_spans(telemetry)
    telemetry.shutdown(timeout=2)
    assert len(attribute(exported, "blob")) == 8192
    assert len(attribute(exported["events"][0], "blob")) == 8192


@pytest.mark.usefixtures("clean_globals")
def test_events_per_span_are_capped_by_max_events() -> None:
    telemetry = rfobs.init(tracing__exporter="file", tracing__max_events=5, **QUIET)
    with telemetry.tracer.start_as_current_span("chatty") as span:
        for number in range(12):
            span.add_event(f"event {number}")
    (exported,) = exported_spans(telemetry)
    telemetry.shutdown(timeout=2)
    assert [event["name"] for event in exported["events"]] == [f"event {n}" for n in range(7, 12)]
    assert exported["droppedEventsCount"] == 7


@pytest.mark.parametrize("json_format", [True, False], ids=["json", "text"])
def test_a_10_mb_log_message_makes_a_small_marked_line(json_format: bool) -> None:
    stream = io.StringIO()
    handler = rfobs.setup_logging("INFO", json_format=json_format, stream=stream)
    message = "retrieved document: " + "d" * TEN_MB
    try:
        started = time.perf_counter()
        logging.getLogger("agent.big").info(message, extra={"note": "n" * TEN_MB})
        try:
            raise ValueError("e" * TEN_MB)
        except ValueError:
            logging.getLogger("agent.big").exception("failed")
        elapsed = time.perf_counter() - started
    finally:
        logging.getLogger().removeHandler(handler)
    first, *rest = stream.getvalue().splitlines()
    assert len(first) < 3 * 8192 and elapsed < 0.5
    if json_format:
        entry = json.loads(first)
        assert len(entry["message"]) <= 8192 and entry["message"].startswith("retrieved document: ddd")
        assert dropped(entry["message"]) + len(entry["message"]) - len(MARKER.search(entry["message"]).group(0)) == (  # pyright: ignore[reportOptionalMemberAccess]
            len(message)
        )
        assert len(entry["note"]) <= 8192 and dropped(entry["note"]) > 0
        failure = json.loads(rest[0])
        assert len(failure["exception"]) <= 8192 and dropped(failure["exception"]) > 0
    else:
        assert "retrieved document: ddd" in first
        assert re.search(r"\.\.\.\[truncated [0-9,]+ chars\] note=n+\.\.\.", first)
        assert sum(len(line) for line in rest) < 2 * 8192


def test_a_10_mb_otel_log_body_is_cut() -> None:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(ScrubbingLogExporter(exporter)))
    handler = OtelLogHandler(provider)
    log = logging.getLogger("agent.otel.big")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("b" * TEN_MB, extra={"blob": "c" * TEN_MB})
    finally:
        log.removeHandler(handler)
        provider.shutdown()
    (record,) = exporter.get_finished_logs()
    body = record.log_record.body
    assert isinstance(body, str) and len(body) <= 8192 and dropped(body) > TEN_MB - 8192
    blob = dict(record.log_record.attributes or {})["blob"]
    assert isinstance(blob, str) and len(blob) <= 8192


def test_size_settings_have_bounded_defaults_and_are_checked() -> None:
    settings = load_config()
    tracing = settings.tracing
    assert (tracing.max_attribute_length, tracing.max_events) == (8192, 128)
    assert (tracing.max_exception_length, tracing.max_stacktrace_length) == (4096, 8192)
    assert settings.logging.max_message_length == 8192
    with pytest.raises(rfobs.ConfigError, match=r"tracing\.max_exception_length = 10 .*from 256 to 10000000"):
        load_config(overrides={"tracing__max_exception_length": 10})
    with pytest.raises(rfobs.ConfigError, match=r"tracing\.max_events = 0 .*from 1 to 100000"):
        load_config(overrides={"tracing__max_events": 0})


def test_configured_limits_stay_under_the_attribute_limit() -> None:
    configure(load_config(overrides={"tracing__max_attribute_length": 1000, "logging__max_message_length": 300}))
    assert current_limits() == Limits(exception_message=1000, stacktrace=1000, log_message=300)
    configure(load_config(overrides={"tracing__max_attribute_length": None, "tracing__max_exception_length": 500}))
    assert current_limits() == Limits(exception_message=500, stacktrace=8192, log_message=8192)
    stream = io.StringIO()
    configure(load_config(overrides={"logging__max_message_length": 300}))
    handler = rfobs.setup_logging("INFO", stream=stream)
    try:
        logging.getLogger("agent").info("m" * 1000)
    finally:
        logging.getLogger().removeHandler(handler)
    assert len(json.loads(stream.getvalue())["message"]) <= 300
