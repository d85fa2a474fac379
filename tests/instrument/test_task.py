from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import rfobs
from rfobs.testing import Capture

AGENT_ATTRS = {
    "gen_ai.operation.name": "invoke_agent",
    "gen_ai.provider.name": "rfobs",
    "gen_ai.agent.name": "researcher",
    "openinference.span.kind": "AGENT",
    "rfobs.agent": "researcher",
}
OK = {"code": "UNSET", "description": None}


def task_points(capture: Capture) -> list[dict[str, Any]]:
    return capture.metric("researchflow_agents.agent_tasks")


@rfobs.task("researcher", "plan")
def plan(question: str) -> list[str]:
    return [search(question), search(question + " survey")]


@rfobs.api_call("arxiv", "search")
def search(query: str) -> str:
    if query == "boom":
        raise ConnectionError("arxiv reset the connection")
    return query.upper()


def test_nested_task_and_api_calls_form_one_tree(capture: Capture) -> None:
    assert plan("rag") == ["RAG", "RAG SURVEY"]
    api_attrs = {"openinference.span.kind": "TOOL", "rfobs.api.service": "arxiv", "rfobs.api.endpoint": "search"}
    assert capture.spans() == [
        {"name": "arxiv.search", "trace_id": 1, "span_id": 2, "parent_id": 1, "kind": "CLIENT", "status": OK,
         "attributes": api_attrs, "events": []},
        {"name": "arxiv.search", "trace_id": 1, "span_id": 3, "parent_id": 1, "kind": "CLIENT", "status": OK,
         "attributes": api_attrs, "events": []},
        {"name": "researcher.plan", "trace_id": 1, "span_id": 1, "parent_id": None, "kind": "INTERNAL", "status": OK,
         "attributes": {**AGENT_ATTRS, "rfobs.task": "plan"}, "events": []},
    ]  # fmt: skip
    assert task_points(capture) == [
        {"attributes": {"agent": "researcher", "task": "plan", "status": "success"}, "value": 1},
        {"attributes": {"agent": "researcher", "task": "plan", "status": "error"}, "value": 0},
    ]
    assert capture.metric("researchflow_agents.api_calls") == [
        {"attributes": {"service": "arxiv", "endpoint": "search", "status": "success"}, "value": 2},
        {"attributes": {"service": "arxiv", "endpoint": "search", "status": "error"}, "value": 0},
    ]
    (duration,) = capture.metric("researchflow_agents.api_call_duration")
    assert duration["count"] == 2 and duration["attributes"]["status"] == "success"


def test_exception_is_recorded_and_reraised_unchanged(capture: Capture) -> None:
    with pytest.raises(ConnectionError) as caught:
        search("boom")
    assert str(caught.value) == "arxiv reset the connection"
    (span,) = capture.spans()
    assert span["status"] == {"code": "ERROR", "description": "ConnectionError: arxiv reset the connection"}
    assert span["attributes"]["error.type"] == "ConnectionError"
    assert span["events"] == [
        {
            "name": "exception",
            "attributes": {
                "exception.type": "ConnectionError",
                "exception.message": "arxiv reset the connection",
                "exception.escaped": "False",
            },
        }
    ]
    assert capture.metric("researchflow_agents.api_calls") == [
        {"attributes": {"service": "arxiv", "endpoint": "search", "status": "error"}, "value": 1}
    ]


def test_secret_looking_text_in_exceptions_is_scrubbed(capture: Capture) -> None:
    @rfobs.task("researcher", "call")
    def call() -> None:
        raise PermissionError("rejected api_key=sk-abcdefghijklmnopqrstuvwx")

    with pytest.raises(PermissionError):
        call()
    (span,) = capture.spans()
    assert span["status"]["description"] == "PermissionError: rejected api_key=***"
    assert span["events"][0]["attributes"]["exception.message"] == "rejected api_key=***"


@dataclass
class Response:
    status_code: int


def test_http_error_status_in_the_result_marks_the_call_failed(capture: Capture) -> None:
    @rfobs.api_call("scholar", "lookup")
    def lookup(code: int) -> Response:
        return Response(code)

    lookup(200)
    lookup(503)
    ok, failed = capture.spans()
    assert ok["attributes"]["http.response.status_code"] == 200 and ok["status"] == OK
    assert failed["attributes"]["http.response.status_code"] == 503
    assert failed["attributes"]["error.type"] == "503"
    assert failed["status"] == {"code": "ERROR", "description": "HTTP 503"}
    assert capture.metric("researchflow_agents.api_calls") == [
        {"attributes": {"service": "scholar", "endpoint": "lookup", "status": "success"}, "value": 1},
        {"attributes": {"service": "scholar", "endpoint": "lookup", "status": "error"}, "value": 1},
    ]


async def test_coroutines_are_awaited_inside_their_span(capture: Capture) -> None:
    @rfobs.api_call("llm", "chat")
    async def chat() -> str:
        await asyncio.sleep(0)
        return "hi"

    @rfobs.task("researcher")
    async def converse() -> list[str]:
        return list(await asyncio.gather(chat(), chat()))

    assert await converse() == ["hi", "hi"]
    spans = capture.spans()
    assert [(s["name"], s["parent_id"]) for s in spans] == [
        ("llm.chat", 1),
        ("llm.chat", 1),
        ("researcher.converse", None),
    ]


def test_generator_span_covers_the_whole_iteration(capture: Capture) -> None:
    @rfobs.task("researcher", "stream")
    def stream() -> Iterator[int]:
        for i in range(3):
            search(str(i))  # a child while the generator runs
            yield i

    assert list(stream()) == [0, 1, 2]
    spans = capture.spans()
    assert [(s["name"], s["parent_id"]) for s in spans] == [
        ("arxiv.search", 1),
        ("arxiv.search", 1),
        ("arxiv.search", 1),
        ("researcher.stream", None),
    ]


def test_generator_closed_early_ends_its_span_without_error(capture: Capture) -> None:
    @rfobs.task("researcher", "stream")
    def stream() -> Generator[int, None, None]:
        yield from range(10)

    generator = stream()
    assert next(generator) == 0
    generator.close()
    (span,) = capture.spans()
    assert span["status"] == OK
    assert task_points(capture) == [
        {"attributes": {"agent": "researcher", "task": "stream", "status": "success"}, "value": 1},
        {"attributes": {"agent": "researcher", "task": "stream", "status": "error"}, "value": 0},
    ]


def test_the_span_is_not_current_between_yields(capture: Capture) -> None:
    @rfobs.task("researcher", "stream")
    def stream() -> Iterator[int]:
        yield 1
        yield 2

    for _ in stream():
        search("outside")  # the consumer's work is not a child of the generator
    names_parents = [(s["name"], s["parent_id"]) for s in capture.spans()]
    assert names_parents == [("arxiv.search", None), ("arxiv.search", None), ("researcher.stream", None)]


async def test_async_generator_consumed_from_another_task(capture: Capture) -> None:
    @rfobs.task("researcher", "tokens")
    async def tokens() -> AsyncIterator[str]:
        for token in ("a", "b", "c"):
            await asyncio.sleep(0)
            yield token

    stream = tokens()
    first = await asyncio.create_task(anext(stream))  # type: ignore[arg-type]
    rest = [token async for token in stream]
    assert [first, *rest] == ["a", "b", "c"]
    (span,) = capture.spans()
    assert span["name"] == "researcher.tokens" and span["status"] == OK


async def test_async_generator_failure_is_recorded(capture: Capture) -> None:
    @rfobs.task("researcher", "tokens")
    async def tokens() -> AsyncIterator[str]:
        yield "a"
        raise RuntimeError("stream broke")

    with pytest.raises(RuntimeError, match="stream broke"):
        async for _ in tokens():
            pass
    (span,) = capture.spans()
    assert span["status"] == {"code": "ERROR", "description": "RuntimeError: stream broke"}


class Agent:
    def __init__(self) -> None:
        self.calls = 0

    @rfobs.task("researcher", "method")
    def method(self, x: int) -> int:
        self.calls += 1
        return x * 2

    @rfobs.task("researcher", "klass")
    @classmethod
    def klass(cls, x: int) -> str:
        return f"{cls.__name__}:{x}"

    @rfobs.task("researcher", "static")
    @staticmethod
    def static(x: int) -> int:
        return x + 1


def test_methods_classmethods_and_staticmethods(capture: Capture) -> None:
    agent = Agent()
    assert agent.method(2) == 4 and agent.calls == 1
    assert Agent.klass(3) == "Agent:3"
    assert agent.static(4) == 5
    assert [s["name"] for s in capture.spans()] == ["researcher.method", "researcher.klass", "researcher.static"]
    assert Agent.method.__name__ == "method" and Agent.method.__doc__ is None


def test_bare_task_uses_the_function_name(capture: Capture) -> None:
    @rfobs.task
    def summarize() -> str:
        return "ok"

    assert summarize() == "ok"
    assert [s["name"] for s in capture.spans()] == ["agent.summarize"]


def test_tool_carries_the_genai_tool_attributes(capture: Capture) -> None:
    @rfobs.tool("web_search", agent="researcher")
    def web_search() -> None:
        pass

    web_search()
    (span,) = capture.spans()
    assert span["name"] == "execute_tool web_search"
    assert span["attributes"] == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "web_search",
        "gen_ai.tool.type": "function",
        "openinference.span.kind": "TOOL",
        "tool.name": "web_search",
        "gen_ai.agent.name": "researcher",
        "rfobs.agent": "researcher",
        "rfobs.task": "web_search",
    }


def test_tool_without_an_agent_is_an_execute_tool_span_with_an_empty_agent_label(capture: Capture) -> None:
    @rfobs.tool("web_search")
    def web_search() -> None:
        pass

    @rfobs.tool("web_search", agent="researcher")
    def owned_search() -> None:
        pass

    web_search()
    owned_search()
    bare, owned = capture.spans()
    assert (bare["name"], bare["kind"]) == ("execute_tool web_search", "INTERNAL")
    assert bare["attributes"] == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "web_search",
        "gen_ai.tool.type": "function",
        "openinference.span.kind": "TOOL",
        "tool.name": "web_search",
        "rfobs.task": "web_search",
    }
    assert owned["name"] == "execute_tool web_search"  # the owning agent is an attribute, not part of the name
    # One label set for every series of agent_tasks_total: {agent, task, status}.
    assert task_points(capture) == [
        {"attributes": {"agent": "", "task": "web_search", "status": "success"}, "value": 1},
        {"attributes": {"agent": "", "task": "web_search", "status": "error"}, "value": 0},
        {"attributes": {"agent": "researcher", "task": "web_search", "status": "success"}, "value": 1},
        {"attributes": {"agent": "researcher", "task": "web_search", "status": "error"}, "value": 0},
    ]


def test_seed_compatible_names(capture: Capture) -> None:
    @rfobs.track_agent_task("researcher", "legacy")
    def legacy() -> int:
        return 1

    @rfobs.track_api_call("arxiv")
    def fetch() -> int:
        return 2

    assert legacy() + fetch() == 3
    assert [s["name"] for s in capture.spans()] == ["researcher.legacy", "arxiv.fetch"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: rfobs.task(""), r"@task\(agent=''\): expected a non-empty string"),
        (lambda: rfobs.task("a", "  "), r"@task\(name='  '\)"),
        (lambda: rfobs.api_call(42), r"@api_call\(service=42\)"),  # type: ignore[arg-type]
        (lambda: rfobs.tool(""), r"@tool\(name=''\)"),
        (lambda: rfobs.tool("web_search", agent=" "), r"@tool\(agent=' '\)"),
    ],
)
def test_bad_decorator_arguments_fail_at_decoration(make: Any, message: str) -> None:
    with pytest.raises(rfobs.ConfigError, match=message):
        make()


@pytest.mark.usefixtures("clean_globals")
def test_without_init_decorators_still_work_and_record_nothing() -> None:
    from opentelemetry import trace

    from rfobs.instrument import _telemetry

    @rfobs.task("researcher", "offline")
    def offline() -> int:
        assert not trace.get_current_span().is_recording()  # the no-SDK path ran: no span
        return 42

    assert _telemetry.current() is None  # no SDK installed, so the fast path runs
    assert offline() == 42


EARLY_CALLS = """
import urllib.request

import rfobs

@rfobs.task("researcher", "early")
def early() -> None:
    pass

early()
early()  # no SDK yet: the no-op API, nothing to count
telemetry = rfobs.init(metrics__prometheus_port=0, logging__enabled=False, tracing__exporter="none")
early()
with urllib.request.urlopen(telemetry.metrics_url) as response:
    print("\\n".join(line for line in response.read().decode().splitlines() if "agent_tasks_total{" in line))
telemetry.shutdown()
"""


def test_calls_before_an_sdk_is_installed_are_not_counted_twice(tmp_path: Path) -> None:
    # A fresh interpreter: OpenTelemetry's proxy providers keep state across the tests of one process.
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", EARLY_CALLS], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    success, error = result.stdout.splitlines()
    assert success.startswith("researchflow_agents_agent_tasks_total{agent=") and 'status="success"' in success
    assert success.endswith(" 1.0")
    assert 'status="error"' in error and error.endswith(" 0.0")  # the zero error series, not a second count


def test_stacktrace_on_the_span_is_scrubbed_too(capture: Capture) -> None:
    @rfobs.task("researcher", "leak")
    def leak() -> None:
        raise ValueError("upstream rejected api_key=sk-live-hunter2-abcdefghij")

    with pytest.raises(ValueError):
        leak()
    (span,) = capture.exporter.get_finished_spans()
    (event,) = span.events
    attributes = dict(event.attributes or {})
    assert "hunter2" not in str(attributes)
    assert str(attributes["exception.stacktrace"]).endswith("ValueError: upstream rejected api_key=***\n")


def test_generator_whose_cleanup_fails_still_ends_its_span(capture: Capture) -> None:
    @rfobs.task("researcher", "stream")
    def stream() -> Generator[int, None, None]:
        try:
            yield 1
            yield 2
        finally:
            raise OSError("cleanup failed")

    generator = stream()
    next(generator)
    with pytest.raises(OSError, match="cleanup failed"):
        generator.close()
    (span,) = capture.spans()
    assert span["status"] == {"code": "ERROR", "description": "OSError: cleanup failed"}


async def test_async_generator_whose_cleanup_fails_still_ends_its_span(capture: Capture) -> None:
    @rfobs.task("researcher", "tokens")
    async def tokens() -> AsyncGenerator[str, None]:
        try:
            yield "a"
        finally:
            raise OSError("cleanup failed")

    stream = tokens()
    await anext(stream)
    with pytest.raises(OSError, match="cleanup failed"):
        await stream.aclose()
    (span,) = capture.spans()
    assert span["status"]["code"] == "ERROR"


def test_signature_and_coroutine_nature_are_preserved() -> None:
    async def original(query: str, *, limit: int = 3) -> list[str]:
        return [query] * limit

    for decorate in (rfobs.task("researcher"), rfobs.api_call("arxiv"), rfobs.task("researcher", retry=2)):
        decorated = decorate(original)
        assert inspect.signature(decorated) == inspect.signature(original)
        assert inspect.iscoroutinefunction(decorated)
        assert decorated.__name__ == "original" and decorated.__wrapped__ is not None  # type: ignore[attr-defined]


class Hostile:
    """A result whose every attribute lookup and repr fails."""

    def __getattr__(self, name: str) -> object:
        raise KeyError(name)

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class EvilStatus(int):
    """An HTTP status that cannot be compared."""

    def __le__(self, other: object) -> bool:
        raise RuntimeError("cannot compare")


@dataclass
class EvilResponse:
    status_code: int


def test_a_hostile_result_never_breaks_the_call_and_the_span_ends(capture: Capture) -> None:
    @rfobs.llm_call("openai", "gpt")
    def ask() -> Hostile:
        return Hostile()

    @rfobs.task("researcher", "capture", capture_args=True)
    def captured() -> Hostile:
        return Hostile()

    @rfobs.api_call("evil", "status")
    def status() -> EvilResponse:
        return EvilResponse(EvilStatus(200))

    assert isinstance(ask(), Hostile)  # token usage unreadable: simply not recorded
    assert isinstance(captured(), Hostile)  # reprlib renders what repr() cannot
    assert capture.internal_errors() == 0
    capture.allow_internal_errors = True
    assert status().status_code == 200  # rfobs's own code fails on this result: caught, the call goes on
    assert capture.internal_errors() == 1
    assert [s["name"] for s in capture.spans()] == ["chat gpt", "researcher.capture", "evil.status"]
    assert capture.metric("researchflow_agents.telemetry.internal_errors")[0]["value"] >= 1
