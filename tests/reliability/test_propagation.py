"""W3C trace context crosses real boundaries: an HTTP hop, asyncio tasks, threads, and pool workers (fork, spawn)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import pickle
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import baggage, trace
from opentelemetry.context import Context

import rfobs
from rfobs.sdk import Telemetry
from rfobs.testing import Capture, reset_global_telemetry
from rfobs.traceview import load_spans

REMOTE_TRACE = "0af7651916cd43dd8448eb211c80319c"
REMOTE_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{REMOTE_TRACE}-{REMOTE_SPAN}-01"


def tree(capture: Capture) -> list[dict[str, Any]]:
    keys = ("name", "kind", "trace_id", "span_id", "parent_id")
    return [{key: span[key] for key in keys} for span in capture.spans()]


def remote_parent(context: Context) -> trace.SpanContext:
    return trace.get_current_span(context).get_span_context()


# --- inject / extract -------------------------------------------------------------------------------------------


def test_inject_writes_the_current_span_and_baggage(capture: Capture) -> None:
    tracer = capture.tracer_provider.get_tracer("test")
    with rfobs.using_baggage({"user.id": "u 7"}, tenant="acme"), tracer.start_as_current_span("caller"):
        headers = rfobs.inject()
    assert headers == {
        "traceparent": f"00-{1:032x}-{1:016x}-01",
        "baggage": "user.id=u+7,tenant=acme",
    }


def test_inject_adds_to_the_given_mapping_and_writes_nothing_without_a_span(capture: Capture) -> None:
    headers = {"Accept": "application/json"}
    assert rfobs.inject(headers) is headers
    assert headers == {"Accept": "application/json"}
    assert rfobs.inject() == {}


def test_extract_reads_header_names_case_insensitively() -> None:
    remote = rfobs.extract({"TraceParent": TRACEPARENT, "TraceState": "vendor=x", "BAGGAGE": "tenant=acme"})
    parent = remote_parent(remote)
    assert (f"{parent.trace_id:032x}", f"{parent.span_id:016x}", parent.is_remote) == (REMOTE_TRACE, REMOTE_SPAN, True)
    assert parent.trace_state.to_header() == "vendor=x"
    assert baggage.get_all(remote) == {"tenant": "acme"}


def test_extract_does_not_include_the_current_context(capture: Capture) -> None:
    tracer = capture.tracer_provider.get_tracer("test")
    with rfobs.using_baggage(local="yes"), tracer.start_as_current_span("local"):
        remote = rfobs.extract({"baggage": "tenant=acme"})
    assert not remote_parent(remote).is_valid
    assert baggage.get_all(remote) == {"tenant": "acme"}


# --- a real HTTP hop --------------------------------------------------------------------------------------------


@rfobs.task("answerer", "answer")
def answer(question: str) -> dict[str, Any]:
    return {"answer": question.upper(), "tenant": baggage.get_baggage("tenant")}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        # http.server hands over an HTTPMessage; urllib capitalised the names ("Traceparent").
        with rfobs.continue_trace(self.headers):
            tracer = trace.get_tracer("test.server")
            with tracer.start_as_current_span("GET /answer", kind=trace.SpanKind.SERVER):
                body = json.dumps(answer("rag")).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, name="propagation-test-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/answer"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
        assert not thread.is_alive()


@rfobs.api_call("answerer", "ask")
def ask(url: str, headers: Mapping[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={**headers, **rfobs.inject()})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_a_server_span_joins_the_clients_trace_over_http(capture: Capture, server: str) -> None:
    with rfobs.using_baggage(tenant="acme"):
        reply = ask(server, {})
    assert reply == {"answer": "RAG", "tenant": "acme"}
    assert tree(capture) == [
        {"name": "answerer.answer", "kind": "INTERNAL", "trace_id": 1, "span_id": 3, "parent_id": 2},
        {"name": "GET /answer", "kind": "SERVER", "trace_id": 1, "span_id": 2, "parent_id": 1},
        {"name": "answerer.ask", "kind": "CLIENT", "trace_id": 1, "span_id": 1, "parent_id": None},
    ]


def test_a_request_without_trace_headers_starts_a_new_trace_on_the_server(capture: Capture, server: str) -> None:
    with urllib.request.urlopen(server, timeout=10) as response:
        assert json.loads(response.read()) == {"answer": "RAG", "tenant": None}
    assert tree(capture) == [
        {"name": "answerer.answer", "kind": "INTERNAL", "trace_id": 1, "span_id": 2, "parent_id": 1},
        {"name": "GET /answer", "kind": "SERVER", "trace_id": 1, "span_id": 1, "parent_id": None},
    ]


# --- malformed and hostile headers ------------------------------------------------------------------------------


class _Exploding:
    def items(self) -> list[tuple[str, str]]:
        raise RuntimeError("the framework's header object is broken")


HOSTILE: dict[str, Any] = {
    "garbage": {"traceparent": "not-a-traceparent"},
    "empty": {"traceparent": ""},
    "huge": {"traceparent": f"00-{REMOTE_TRACE}-{REMOTE_SPAN}-01" + "-x" * 500_000},
    "huge-but-under-8k": {"traceparent": TRACEPARENT + " " * 4000},
    "version-ff": {"traceparent": f"ff-{REMOTE_TRACE}-{REMOTE_SPAN}-01"},
    "version-00-extra-field": {"traceparent": TRACEPARENT + "-extra"},
    "uppercase-hex": {"traceparent": TRACEPARENT.upper()},
    "short-trace-id": {"traceparent": f"00-{REMOTE_TRACE[:-1]}-{REMOTE_SPAN}-01"},
    "zero-trace-id": {"traceparent": f"00-{'0' * 32}-{REMOTE_SPAN}-01"},
    "zero-span-id": {"traceparent": f"00-{REMOTE_TRACE}-{'0' * 16}-01"},
    "duplicated": {"traceparent": TRACEPARENT, "Traceparent": f"00-{'1' * 32}-{'2' * 16}-01"},
    "list-of-two": {"traceparent": [TRACEPARENT, TRACEPARENT]},
    "bytes": {"traceparent": TRACEPARENT.encode()},
    "none": {"traceparent": None},
    "int-key": {1: TRACEPARENT},
    "non-ascii": {"traceparent": f"00-{REMOTE_TRACE}-{REMOTE_SPAN}-0\u0661"},
    "broken-carrier": _Exploding(),
}


@pytest.mark.parametrize("headers", HOSTILE.values(), ids=HOSTILE.keys())
def test_malformed_headers_give_an_empty_context_and_a_new_trace(capture: Capture, headers: Any) -> None:
    assert rfobs.extract(headers) == Context()
    tracer = capture.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("local"), rfobs.continue_trace(headers):
        assert not trace.get_current_span().get_span_context().is_valid
        with tracer.start_as_current_span("handler"):
            pass
    assert tree(capture) == [
        {"name": "handler", "kind": "INTERNAL", "trace_id": 2, "span_id": 2, "parent_id": None},
        {"name": "local", "kind": "INTERNAL", "trace_id": 1, "span_id": 1, "parent_id": None},
    ]


@pytest.mark.parametrize(
    "value",
    ["=;=,,,", "tenant", "a=b" + ",c=d" * 5000, "tenant=" + "x" * 9000, "t\u00e9nant=acme"],
    ids=["delimiters", "no-value", "over-8k", "huge-entry", "non-ascii"],
)
def test_bad_baggage_is_dropped_and_the_trace_still_continues(value: str) -> None:
    remote = rfobs.extract({"traceparent": TRACEPARENT, "tracestate": "=,garbage,,", "baggage": value})
    assert f"{remote_parent(remote).trace_id:032x}" == REMOTE_TRACE
    assert baggage.get_all(remote) == {}


def test_using_baggage_refuses_non_string_entries() -> None:
    with pytest.raises(TypeError, match="tenant"), rfobs.using_baggage(tenant=3):  # pyright: ignore[reportArgumentType]
        pass
    with pytest.raises(TypeError), rfobs.using_baggage({"": "x"}):
        pass


# --- in-process boundaries: asyncio tasks and threads -----------------------------------------------------------


async def test_concurrent_tasks_each_continue_their_own_remote_parent(capture: Capture) -> None:
    tracer = capture.tracer_provider.get_tracer("test")

    async def handle(trace_id: int, span_id: int) -> None:
        with rfobs.continue_trace({"traceparent": f"00-{trace_id:032x}-{span_id:016x}-01"}):
            await asyncio.sleep(0.01)
            with tracer.start_as_current_span(f"handle {trace_id}"):
                await asyncio.sleep(0)
        assert not trace.get_current_span().get_span_context().is_valid

    await asyncio.gather(handle(0xA1, 0xB1), handle(0xA2, 0xB2))
    spans = sorted(tree(capture), key=lambda span: span["name"])
    assert [(s["name"], s["trace_id"], s["parent_id"]) for s in spans] == [
        ("handle 161", 0xA1, 0xB1),
        ("handle 162", 0xA2, 0xB2),
    ]


async def test_with_context_wraps_coroutine_functions(capture: Capture) -> None:
    tracer = capture.tracer_provider.get_tracer("test")

    async def child() -> str:
        with tracer.start_as_current_span("child"):
            await asyncio.sleep(0)
        return str(baggage.get_baggage("tenant"))

    with rfobs.using_baggage(tenant="acme"), tracer.start_as_current_span("parent"):
        wrapped = rfobs.with_context(child)
    assert await wrapped() == "acme"
    assert tree(capture) == [
        {"name": "parent", "kind": "INTERNAL", "trace_id": 1, "span_id": 1, "parent_id": None},
        {"name": "child", "kind": "INTERNAL", "trace_id": 1, "span_id": 2, "parent_id": 1},
    ]


def test_with_context_carries_the_callers_span_into_a_thread_pool(capture: Capture) -> None:
    tracer = capture.tracer_provider.get_tracer("test")

    def work(name: str) -> None:
        with tracer.start_as_current_span(name):
            pass

    with ThreadPoolExecutor(1) as executor, tracer.start_as_current_span("caller"):
        executor.submit(rfobs.with_context(work), "wrapped").result(timeout=10)
        executor.submit(work, "plain").result(timeout=10)  # threads start with an empty context
    assert tree(capture) == [
        {"name": "wrapped", "kind": "INTERNAL", "trace_id": 1, "span_id": 2, "parent_id": 1},
        {"name": "plain", "kind": "INTERNAL", "trace_id": 2, "span_id": 3, "parent_id": None},
        {"name": "caller", "kind": "INTERNAL", "trace_id": 1, "span_id": 1, "parent_id": None},
    ]


def test_with_context_pickles_the_function_and_the_headers(capture: Capture) -> None:
    with capture.tracer_provider.get_tracer("test").start_as_current_span("caller"):
        wrapped = rfobs.with_context(square)
    copy = pickle.loads(pickle.dumps(wrapped))
    assert (copy.function, copy.carrier) == (square, {"traceparent": f"00-{1:032x}-{1:016x}-01"})
    assert copy(3) == wrapped(3)


# --- multiprocessing: fork and spawn ----------------------------------------------------------------------------

_worker_telemetry: Telemetry | None = None


def _start_worker_telemetry(trace_file: str) -> None:
    """Pool initializer: the worker's own rfobs, writing its spans to a file the test process reads."""
    global _worker_telemetry
    # A forked worker inherits the test's in-memory providers (a spawned one starts with none): replace them.
    reset_global_telemetry()
    _worker_telemetry = rfobs.init(
        service__name="pool-worker",
        tracing__exporter="file",
        tracing__file_path=trace_file,
        metrics__enabled=False,
        health__enabled=False,
        logging__enabled=False,
    )


@rfobs.task("worker", "square")
def _square_task(x: int) -> dict[str, Any]:
    return {"value": x * x, "pid": os.getpid(), "tenant": baggage.get_baggage("tenant")}


def square(x: int) -> dict[str, Any]:
    result = _square_task(x)
    if _worker_telemetry is not None:
        assert _worker_telemetry.force_flush(timeout=10)
    return result


@rfobs.task("dispatcher", "fan_out")
def fan_out(pool: Pool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    wrapped = pool.map_async(rfobs.with_context(square), [1, 2, 3]).get(timeout=60)
    plain = pool.map_async(square, [4]).get(timeout=60)
    return wrapped, plain


@pytest.mark.parametrize(
    "method",
    [
        pytest.param(
            "fork",
            marks=[
                pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here"),
                pytest.mark.filterwarnings("ignore:.*use of fork\\(\\) may lead to deadlocks:DeprecationWarning"),
            ],
        ),
        "spawn",
    ],
)
def test_pool_workers_join_the_callers_trace(capture: Capture, tmp_path: Path, method: str) -> None:
    trace_file = tmp_path / "worker-traces.jsonl"
    context = multiprocessing.get_context(method)
    # The pool starts outside any span, so a forked worker inherits no context of the caller's.
    with (
        context.Pool(2, initializer=_start_worker_telemetry, initargs=(str(trace_file),)) as pool,
        rfobs.using_baggage(tenant="acme"),
    ):
        wrapped, plain = fan_out(pool)
    assert [r["value"] for r in wrapped] == [1, 4, 9]
    assert all(r["pid"] != os.getpid() for r in [*wrapped, *plain])
    assert [r["tenant"] for r in [*wrapped, *plain]] == ["acme", "acme", "acme", None]
    assert tree(capture) == [
        {"name": "dispatcher.fan_out", "kind": "INTERNAL", "trace_id": 1, "span_id": 1, "parent_id": None}
    ]

    spans = load_spans(trace_file)
    joined = [s for s in spans if s.trace_id == f"{1:032x}"]
    assert (
        sorted((s.name, s.parent_span_id, s.service_name) for s in joined)
        == [("worker.square", f"{1:016x}", "pool-worker")] * 3
    )
    assert [(s.name, s.parent_span_id) for s in spans if s not in joined] == [("worker.square", None)]
