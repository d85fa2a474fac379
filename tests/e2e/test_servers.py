# pyright: strict
"""Self-tests: each harness in ``servers.py`` works against the real server and cleans up."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
import redis
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, Counter, generate_latest, start_http_server

from tests.e2e.phoenix_server import PhoenixHandle, phoenix
from tests.e2e.redis_server import redis_server
from tests.e2e.servers import (
    APT_INSTALL_HINT,
    HttpStatusError,
    MissingBinaryError,
    ServerStartError,
    WaitTimeoutError,
    free_port,
    prometheus,
    promtool_check_metrics,
    wait_until,
)


def assert_process_gone(pid: int) -> None:
    """The server was stopped and reaped: signalling its PID finds nothing."""
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def _make_trace(resource: Resource) -> tuple[list[ReadableSpan], str, str, str]:
    """Record root ``agent.task`` -> child ``api.call`` in memory; return spans and hex ids."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("rfobs.e2e.selftest")
    with (
        tracer.start_as_current_span("agent.task", attributes={"rfobs.task.name": "plan"}) as root,
        tracer.start_as_current_span("api.call", attributes={"rfobs.retry.count": 2}) as child,
    ):
        pass
    provider.shutdown()
    root_ctx, child_ctx = root.get_span_context(), child.get_span_context()
    return (
        list(memory.get_finished_spans()),
        format(root_ctx.trace_id, "032x"),
        format(root_ctx.span_id, "016x"),
        format(child_ctx.span_id, "016x"),
    )


def _send_and_read_back(
    server: PhoenixHandle, exporter: SpanExporter, project: str, resource: Resource
) -> list[dict[str, object]]:
    spans, trace_id, root_id, child_id = _make_trace(resource)
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    got = server.wait_for_spans(project, 2, timeout=30)
    assert len(got) == 2, got
    by_name = {str(s["name"]): s for s in got}
    root, child = by_name["agent.task"], by_name["api.call"]
    assert root["context"] == {"trace_id": trace_id, "span_id": root_id}
    assert child["context"] == {"trace_id": trace_id, "span_id": child_id}
    assert root["parent_id"] is None
    assert child["parent_id"] == root_id, "parent/child link lost"
    assert root["attributes"] == {"rfobs.task.name": "plan"}
    assert child["attributes"] == {"rfobs.retry.count": 2}
    return got


# ---------------------------------------------------------------------------- generic helpers


def test_wait_until_returns_value_and_times_out_with_log_tail(tmp_path: Path) -> None:
    calls: list[int] = []

    def third_time() -> int | None:
        calls.append(1)
        return len(calls) if len(calls) >= 3 else None

    assert wait_until(third_time, timeout=5, interval=0.01, what="three calls") == 3

    log = tmp_path / "server.log"
    log.write_text("line 1\nboom: the server said no\n")
    start = time.monotonic()
    with pytest.raises(WaitTimeoutError) as info:
        wait_until(lambda: False, timeout=0.2, what="the impossible", logs=[log])
    assert time.monotonic() - start < 2
    assert isinstance(info.value, AssertionError) and isinstance(info.value, TimeoutError)
    assert "the impossible" in str(info.value) and "boom: the server said no" in str(info.value)


def test_missing_binary_is_an_error_not_a_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(MissingBinaryError, match="redis-server") as info, redis_server():
        pass
    assert APT_INSTALL_HINT in str(info.value)
    with pytest.raises(MissingBinaryError, match="promtool"):
        promtool_check_metrics("")


# ---------------------------------------------------------------------------- Prometheus


def test_prometheus_scrapes_a_prometheus_client_counter() -> None:
    registry = CollectorRegistry()
    counter = Counter("rfobs_selftest_requests", "Requests seen by the self-test.", ["route"], registry=registry)
    counter.labels(route="/a").inc(5)
    counter.labels(route="/a").inc(2)
    counter.labels(route="/b").inc()
    app_port = free_port()
    server, thread = start_http_server(app_port, addr="127.0.0.1", registry=registry)
    try:
        with prometheus([f"127.0.0.1:{app_port}"]) as prom:
            pid = prom.pid
            started = time.monotonic()
            result = prom.wait_for_value('sum(rfobs_selftest_requests_total{job="rfobs-e2e", route="/a"})', 7)
            print(f"first scraped value after {time.monotonic() - started:.1f}s: {result}")
            prom.wait_for_value('up{job="rfobs-e2e"}', 1, timeout=10)
            by_route = {
                r["metric"]["route"]: float(r["value"][1])
                for r in prom.query("sum by (route) (rfobs_selftest_requests_total)")
            }
            assert by_route == {"/a": 7.0, "/b": 1.0}
            with pytest.raises(RuntimeError, match="HTTP 400"):
                prom.query("sum(")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert_process_gone(pid)


def test_prometheus_startup_failure_raises_with_log_tail() -> None:
    # An invalid duration makes Prometheus refuse its config and exit at once.
    with pytest.raises(ServerStartError) as info, prometheus(["127.0.0.1:1"], scrape_interval="bogus"):
        pass
    message = str(info.value)
    assert "exited with code" in message and "prometheus.log" in message, message


def test_promtool_accepts_good_and_rejects_malformed_exposition() -> None:
    registry = CollectorRegistry()
    Counter("rfobs_selftest_ok", "A well-formed counter.", registry=registry).inc()
    good = promtool_check_metrics(generate_latest(registry).decode())
    assert good.returncode == 0, (good.stdout, good.stderr)

    bad = promtool_check_metrics('rfobs_bad{route="/a" 1\n')
    assert bad.returncode != 0
    assert "pars" in (bad.stdout + bad.stderr), (bad.stdout, bad.stderr)

    # Lint-only problems (no HELP, counter without _total) are reported with their own exit code.
    lint = promtool_check_metrics("# TYPE rfobs_lint counter\nrfobs_lint 1\n")
    assert lint.returncode not in (0, 1), (lint.returncode, lint.stdout, lint.stderr)
    assert "_total" in lint.stdout + lint.stderr


# ---------------------------------------------------------------------------- Redis


def test_redis_ping_set_get() -> None:
    with redis_server() as server:
        pid = server.pid
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        client = redis.Redis.from_url(server.url, decode_responses=True)  # pyright: ignore[reportUnknownMemberType]  # redis-py leaves **kwargs unannotated
        try:
            assert client.ping() is True  # pyright: ignore[reportUnknownMemberType]  # redis-py leaves **kwargs unannotated
            assert client.set("rfobs:selftest", "v1") is True
            assert client.get("rfobs:selftest") == "v1"
            assert client.config_get("save") == {"save": ""}  # pyright: ignore[reportUnknownMemberType]  # redis-py leaves **kwargs unannotated
            assert client.config_get("bind") == {"bind": "127.0.0.1"}  # pyright: ignore[reportUnknownMemberType]  # redis-py leaves **kwargs unannotated
        finally:
            client.close()
    assert_process_gone(pid)


def test_redis_url_fixture(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)  # pyright: ignore[reportUnknownMemberType]  # redis-py leaves **kwargs unannotated
    try:
        key = f"rfobs:selftest:{uuid.uuid4().hex}"
        assert client.incr(key) == 1
    finally:
        client.close()


# ---------------------------------------------------------------------------- Phoenix


def test_phoenix_otlp_http_protobuf_trace_with_project_header() -> None:
    project = f"rfobs-selftest-http-{uuid.uuid4().hex[:8]}"
    with phoenix() as server:
        pid = server.pid
        exporter = HttpSpanExporter(
            endpoint=f"{server.http_url}/v1/traces", headers={"x-project-name": project}, timeout=10
        )
        # No openinference.project.name here: the header alone picks the project.
        _send_and_read_back(server, exporter, project, Resource.create({"service.name": "rfobs-selftest"}))
        roots = server.spans(project, parent_id="null")
        assert [s["name"] for s in roots] == ["agent.task"]
    assert_process_gone(pid)


def test_phoenix_fixture_otlp_grpc_with_project_resource_attribute(phoenix_server: PhoenixHandle) -> None:
    project = f"rfobs-selftest-grpc-{uuid.uuid4().hex[:8]}"
    exporter = GrpcSpanExporter(endpoint=phoenix_server.grpc_endpoint, insecure=True, timeout=10)
    resource = Resource.create({"service.name": "rfobs-selftest", "openinference.project.name": project})
    _send_and_read_back(phoenix_server, exporter, project, resource)


def test_phoenix_spans_of_unknown_project_is_404(phoenix_server: PhoenixHandle) -> None:
    with pytest.raises(HttpStatusError) as info:
        phoenix_server.spans(f"rfobs-no-such-project-{uuid.uuid4().hex[:8]}")
    assert info.value.code == 404
