"""Agent → the OpenTelemetry Collector → Jaeger v2, both built from their Go modules and run on loopback (#12).

Every test runs the stack's own `collector/otel-collector.yaml` in otelcol-rfobs and `collector/jaeger.yaml` in
Jaeger, and reads what arrived back through Jaeger's query APIs (`/api/traces`, `/api/v3/traces`):

* the demo agent's trace tree comes back whole: names, parents, status, events and GenAI attributes;
* tail sampling keeps every failing and every slow trace and about the configured share of the rest;
* credentials put on spans, events, captured content and logs by code rfobs does not scrub never reach Jaeger
  or the Collector's log file.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

import rfobs
from rfobs.demo import ask_once
from rfobs.testing import reset_global_telemetry
from tests.e2e.engines import CollectorHandle, JaegerHandle, jaeger, otelcol
from tests.e2e.servers import wait_until
from tests.test_demo import ONE_QUESTION_KINDS, ONE_QUESTION_TREE

ANSWERING_SEED = 1  # every search answers: the 11-span tree of tests/test_demo.py
# Waits for spans to pass the Collector (tail-sampling decision wait, then its batch timeout of 5 s) into Jaeger.
ARRIVAL_TIMEOUT = 60.0

# Credentials in the shapes the Collector's redaction processor knows, as code that bypasses rfobs would send them.
OPENAI_KEY = "sk-proj-" + "Q7w8E9r0T1y2U3i4" * 2
ANTHROPIC_KEY = "sk-ant-api03-" + "Zx9Cv8Bn7Mm6Ll5K" * 2
AWS_KEY_ID = "AKIAIOSFODNN7RFOBSQA"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1LTcifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
DB_PASSWORD = "hunter2-correct-horse"
URL_PASSWORD = "s3cr3t-pw-in-url"
SECRETS = (OPENAI_KEY, ANTHROPIC_KEY, AWS_KEY_ID, JWT, DB_PASSWORD, URL_PASSWORD)
ORDINARY = {
    "agent.task": "task-decomposition-pipeline-v2",
    "risk": "risk-assessment-of-the-quarterly-report",
    "secret_name": "prod-db-credentials",
    "password_file": "/run/secrets/db",
    "gen_ai.request.max_tokens": 512,
    "session.id": "s-1",
    "url.full": "https://api.example.com/v1/chat",
}


@pytest.fixture(scope="module")
def jaeger_server() -> Iterator[JaegerHandle]:
    with jaeger() as handle:
        yield handle


def unique_service(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@contextmanager
def rfobs_to(collector: CollectorHandle, service: str) -> Generator[None]:
    """`rfobs.init()` exporting over OTLP/gRPC to `collector`; shut down (everything flushed) on exit."""
    reset_global_telemetry()
    try:
        telemetry = rfobs.init(
            otlp__endpoint=collector.otlp_grpc,
            service__name=service,
            metrics__prometheus_port=0,
            logging__enabled=False,
        )
        yield
        assert telemetry.shutdown(timeout=15)
    finally:
        reset_global_telemetry()


def traces_when(
    jaeger_server: JaegerHandle, service: str, done: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """Jaeger's traces of `service` once `done(traces)` holds (bounded wait)."""
    last: list[list[dict[str, Any]]] = [[]]

    def check() -> list[dict[str, Any]] | None:
        last[0] = jaeger_server.traces(service)
        return last[0] if done(last[0]) else None

    return wait_until(
        check,
        ARRIVAL_TIMEOUT,
        interval=0.5,
        what=lambda: f"traces of {service} in Jaeger (have {len(last[0])})",
        logs=[jaeger_server.log_path],
    )


def tags(span: dict[str, Any]) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in span["tags"]}


def tree(trace_json: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(operation, parent operation) of every span of a v1 trace, sorted."""
    names = {span["spanID"]: span["operationName"] for span in trace_json["spans"]}
    pairs: list[tuple[str, str | None]] = []
    for span in trace_json["spans"]:
        parents = [ref["spanID"] for ref in span["references"] if ref["refType"] == "CHILD_OF"]
        pairs.append((span["operationName"], names[parents[0]] if parents else None))
    return sorted(pairs, key=lambda pair: (pair[0], pair[1] or ""))


def v3_spans(resource_spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [span for rs in resource_spans for scope in rs["scopeSpans"] for span in scope["spans"]]


def v3_attributes(span: dict[str, Any]) -> dict[str, Any]:
    return {attr["key"]: next(iter(attr["value"].values())) for attr in span.get("attributes", [])}


class BrokenPaperError(LookupError):
    pass


@rfobs.agent("librarian")
def librarian() -> None:
    raise BrokenPaperError("no such paper: 2405.00001")


def test_the_agent_trace_tree_reaches_jaeger_whole(jaeger_server: JaegerHandle) -> None:
    service = unique_service("stack-tree")
    with otelcol(jaeger_server.otlp_grpc, env={"OTELCOL_TAIL_KEEP_PERCENT": "100"}) as collector:
        with rfobs_to(collector, service):
            asyncio.run(asyncio.wait_for(ask_once("tool use in language agents", seed=ANSWERING_SEED), timeout=20))
            with pytest.raises(BrokenPaperError):
                librarian()
        traces = traces_when(
            jaeger_server, service, lambda found: sum(len(t["spans"]) for t in found) == len(ONE_QUESTION_TREE) + 1
        )

    (question,) = [t for t in traces if len(t["spans"]) == len(ONE_QUESTION_TREE)]
    (failed,) = [t for t in traces if len(t["spans"]) == 1]
    assert tree(question) == ONE_QUESTION_TREE
    for span in question["spans"]:
        assert tags(span)["openinference.span.kind"] == ONE_QUESTION_KINDS[span["operationName"]]
        assert tags(span).get("otel.status_code") != "ERROR", span["operationName"]

    root = next(s for s in question["spans"] if s["operationName"] == "invoke_agent researcher")
    assert tags(root)["gen_ai.operation.name"] == "invoke_agent"
    assert tags(root)["gen_ai.agent.name"] == "researcher"
    llm = {s["operationName"]: tags(s) for s in question["spans"] if s["operationName"].startswith("chat ")}
    assert set(llm) == {"chat claude-3-5-haiku-latest", "chat gpt-4o-mini"}
    for name, attributes in llm.items():
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.request.model"] == name.removeprefix("chat ")
        assert attributes["gen_ai.usage.input_tokens"] > 0 and attributes["gen_ai.usage.output_tokens"] > 0
        assert attributes["gen_ai.usage.cost"] > 0
        assert attributes["span.kind"] == "client"
    assert llm["chat gpt-4o-mini"]["gen_ai.request.stream"] is True
    assert math.isclose(tags(root)["gen_ai.usage.cost"], sum(a["gen_ai.usage.cost"] for a in llm.values()))

    (error_span,) = failed["spans"]
    error_tags = tags(error_span)
    assert error_span["operationName"] == "invoke_agent librarian"
    assert error_tags["otel.status_code"] == "ERROR" and error_tags["error"] is True
    assert error_tags["error.type"] == f"{__name__}.BrokenPaperError"
    (event,) = [{f["key"]: f["value"] for f in log["fields"]} for log in error_span["logs"]]
    assert event["event"] == "exception"
    assert event["exception.type"] == f"{__name__}.BrokenPaperError"
    assert event["exception.message"] == "no such paper: 2405.00001"
    assert "librarian" in event["exception.stacktrace"]

    # The v3 API (OTLP/JSON) gives the same trace: parents by span id, status code, events.
    spans = v3_spans(jaeger_server.trace_v3(question["traceID"]))
    assert len(spans) == len(ONE_QUESTION_TREE)
    by_id = {span["spanId"]: span for span in spans}
    pairs = sorted((s["name"], by_id[s["parentSpanId"]]["name"] if s.get("parentSpanId") else None) for s in spans)
    assert sorted(pairs, key=lambda p: (p[0], p[1] or "")) == ONE_QUESTION_TREE
    (v3_error,) = v3_spans(jaeger_server.trace_v3(failed["traceID"]))
    assert v3_error["status"]["code"] in (2, "STATUS_CODE_ERROR")
    assert [e["name"] for e in v3_error["events"]] == ["exception"]
    assert v3_attributes(v3_error)["gen_ai.agent.name"] == "librarian"


HEALTHY, FAILING, SLOW = 300, 12, 6
KEEP_PERCENT = 20
SLOW_MS = 300


@rfobs.agent("sampler")
def sampled_run(kind: str, ids: dict[str, list[str]]) -> None:
    ids[kind].append(format(trace.get_current_span().get_span_context().trace_id, "032x"))
    if kind == "slow":
        time.sleep(SLOW_MS * 1.5 / 1000)
    elif kind == "failing":
        raise RuntimeError("upstream said no")


def test_tail_sampling_keeps_every_failing_and_slow_trace_and_a_share_of_the_rest(
    jaeger_server: JaegerHandle,
) -> None:
    service = unique_service("stack-sampling")
    ids: dict[str, list[str]] = {"healthy": [], "failing": [], "slow": []}
    env = {
        "OTELCOL_TAIL_KEEP_PERCENT": str(KEEP_PERCENT),
        "OTELCOL_TAIL_SLOW_MS": str(SLOW_MS),
        "OTELCOL_TAIL_DECISION_WAIT": "1s",
    }
    with otelcol(jaeger_server.otlp_grpc, env=env) as collector:
        with rfobs_to(collector, service):
            for kind, count in (("healthy", HEALTHY), ("failing", FAILING), ("slow", SLOW)):
                for _ in range(count):
                    with suppress(RuntimeError):
                        sampled_run(kind, ids)
        must_keep = set(ids["failing"]) | set(ids["slow"])
        traces_when(jaeger_server, service, lambda found: must_keep <= {t["traceID"] for t in found})
        time.sleep(7)  # the batch timeout (5 s) once more, so late healthy traces are counted too
        kept = {t["traceID"] for t in jaeger_server.traces(service)}

    assert set(ids["failing"]) <= kept
    assert set(ids["slow"]) <= kept
    healthy_kept = len(kept & set(ids["healthy"]))
    expected = HEALTHY * KEEP_PERCENT / 100
    sigma = math.sqrt(HEALTHY * KEEP_PERCENT / 100 * (1 - KEEP_PERCENT / 100))
    kept_failing, kept_slow = len(kept & set(ids["failing"])), len(kept & set(ids["slow"]))
    print(
        f"tail sampling: kept {kept_failing}/{FAILING} failing, {kept_slow}/{SLOW} slow, "
        f"{healthy_kept}/{HEALTHY} healthy (expected {expected:.0f} +- {sigma:.1f})"
    )
    assert abs(healthy_kept - expected) <= 4.5 * sigma, (healthy_kept, expected)
    assert kept <= set(ids["healthy"]) | must_keep


def test_credentials_from_code_rfobs_does_not_scrub_never_reach_jaeger_or_the_log_file(
    jaeger_server: JaegerHandle,
) -> None:
    service = unique_service("stack-redaction")
    resource = Resource.create({"service.name": service})
    with otelcol(jaeger_server.otlp_grpc, env={"OTELCOL_TAIL_KEEP_PERCENT": "100"}) as collector:
        # The plain OpenTelemetry SDK, as a library or another service would send: no rfobs scrubbing on the way.
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.otlp_grpc, insecure=True)))
        tracer = provider.get_tracer("plain-sdk")
        with tracer.start_as_current_span("chat gpt-4o-mini") as span:
            span.set_attribute("db.password", DB_PASSWORD)
            span.set_attribute("http.request.header.authorization", [f"Bearer {JWT}"])
            span.set_attribute("note", f"deploy used {AWS_KEY_ID} today")
            span.set_attribute(
                "gen_ai.input.messages",
                json.dumps([{"role": "user", "parts": [{"type": "text", "content": f"my key is {ANTHROPIC_KEY}"}]}]),
            )
            span.set_attribute("gen_ai.usage.input_tokens", 12)
            span.set_attribute("api_token", DB_PASSWORD)
            span.set_attribute("tool.arguments", json.dumps({"user": "ada", "password": DB_PASSWORD}))
            # Ordinary values and keys that only look alike must come through untouched.
            for key, value in ORDINARY.items():
                span.set_attribute(key, value)
            span.set_attribute("gen_ai.request.model", "gpt-4o-mini")
            try:
                raise ConnectionError(f"postgres://admin:{URL_PASSWORD}@db/prod refused; client key {OPENAI_KEY}")
            except ConnectionError as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
        provider.shutdown()

        logs = LoggerProvider(resource=resource)
        logs.add_log_record_processor(
            SimpleLogRecordProcessor(OTLPLogExporter(endpoint=collector.otlp_grpc, insecure=True))
        )
        logs.get_logger("plain-sdk").emit(
            body=f"retrying with {OPENAI_KEY}",
            severity_number=SeverityNumber.WARN,
            attributes={"api_key": DB_PASSWORD, "attempt": 2},
        )
        logs.shutdown()

        # rfobs's own path with a credential set by user code (scrubbed by rfobs, then by the Collector).
        with rfobs_to(collector, service):

            @rfobs.tool("lookup", capture_args=True)
            def lookup(query: str) -> str:
                trace.get_current_span().set_attribute("customer.api_key", OPENAI_KEY)
                return f"found {query}"

            lookup(f"token={JWT}")

        traces = traces_when(jaeger_server, service, lambda found: len(found) == 2)
        log_text: str = wait_until(
            lambda: collector.logs_path.read_text() if collector.logs_path.exists() else None,
            ARRIVAL_TIMEOUT,
            what=f"the Collector's log file {collector.logs_path}",
        )

    received = json.dumps(traces) + json.dumps([jaeger_server.trace_v3(t["traceID"]) for t in traces]) + log_text
    leaks = [received[max(0, m.start() - 120) : m.end()] for s in SECRETS for m in re.finditer(re.escape(s), received)]
    assert leaks == [], "credentials reached Jaeger or the Collector's log file:\n" + "\n".join(leaks)

    plain = next(t for t in traces if t["spans"][0]["operationName"] == "chat gpt-4o-mini")["spans"][0]
    plain_tags = tags(plain)
    assert plain_tags["db.password"] == "****"
    assert "http.request.header.authorization" not in plain_tags
    assert plain_tags["note"] == "deploy used **** today"
    assert "my key is ****" in plain_tags["gen_ai.input.messages"]
    assert plain_tags["gen_ai.usage.input_tokens"] == 12 and plain_tags["gen_ai.request.model"] == "gpt-4o-mini"
    assert plain_tags["redaction.masked.count"] >= 3
    (event,) = [{f["key"]: f["value"] for f in log["fields"]} for log in plain["logs"]]
    assert event["exception.type"] == "ConnectionError"
    assert event["exception.message"] == "postgres://admin****db/prod refused; client key ****"
    assert plain_tags["otel.status_description"] == "postgres://admin****db/prod refused; client key ****"
    assert plain_tags["api_token"] == "****"
    assert plain_tags["tool.arguments"] == '{"user": "ada", "****"}'  # the key goes with the value
    assert {key: plain_tags[key] for key in ORDINARY} == ORDINARY
    assert "retrying with ****" in log_text and '"attempt"' in log_text
