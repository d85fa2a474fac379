"""Agents, steps and tools as the OpenTelemetry GenAI conventions and OpenInference draw them."""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import rfobs
from rfobs.instrument._telemetry import AGENT_DURATION_BUCKETS, GEN_AI_DURATION_BUCKETS
from rfobs.testing import Capture

OK = {"code": "UNSET", "description": None}
LONG_DOC_LINE = "Answers questions about " + "papers " * 60


@rfobs.agent("researcher", id="agent-7", version="2.1")
def research(question: str) -> str:
    """Answers research questions.

    Not part of the description.
    """
    return plan(question)


@rfobs.task("researcher", "plan")
def plan(question: str) -> str:
    return lookup(question)


@rfobs.tool("lookup")
def lookup(query: str) -> str:
    """Look a paper up in the index."""
    return summarize(query)


@rfobs.task("researcher", "summarize")
def summarize(text: str) -> str:
    return text.upper()


def names_and_kinds(capture: Capture) -> list[tuple[str, int, int | None, str | None]]:
    return [
        (s["name"], s["span_id"], s["parent_id"], s["attributes"].get("openinference.span.kind"))
        for s in capture.spans()
    ]


def test_agent_task_tool_and_nested_task_form_the_conventions_tree(capture: Capture) -> None:
    assert research("rag") == "RAG"
    summarize_span, lookup_span, plan_span, agent_span = capture.spans()
    assert agent_span == {
        "name": "invoke_agent researcher", "trace_id": 1, "span_id": 1, "parent_id": None, "kind": "INTERNAL",
        "status": OK, "events": [],
        "attributes": {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.provider.name": "rfobs",
            "gen_ai.agent.name": "researcher",
            "gen_ai.agent.id": "agent-7",
            "gen_ai.agent.version": "2.1",
            "gen_ai.agent.description": "Answers research questions.",
            "openinference.span.kind": "AGENT",
            "rfobs.agent": "researcher",
        },
    }  # fmt: skip
    step = {"openinference.span.kind": "CHAIN", "rfobs.agent": "researcher"}
    assert plan_span == {
        "name": "researcher.plan", "trace_id": 1, "span_id": 2, "parent_id": 1, "kind": "INTERNAL", "status": OK,
        "events": [], "attributes": {**step, "rfobs.task": "plan"},
    }  # fmt: skip
    assert lookup_span == {
        "name": "execute_tool lookup", "trace_id": 1, "span_id": 3, "parent_id": 2, "kind": "INTERNAL", "status": OK,
        "events": [],
        "attributes": {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "lookup",
            "gen_ai.tool.type": "function",
            "openinference.span.kind": "TOOL",
            "tool.name": "lookup",
            "gen_ai.tool.description": "Look a paper up in the index.",
            "tool.description": "Look a paper up in the index.",
            "rfobs.task": "lookup",
        },
    }  # fmt: skip
    # Through the tool, the task is still a step of the agent: the scope holds at any depth.
    assert summarize_span == {
        "name": "researcher.summarize", "trace_id": 1, "span_id": 4, "parent_id": 3, "kind": "INTERNAL",
        "status": OK, "events": [], "attributes": {**step, "rfobs.task": "summarize"},
    }  # fmt: skip
    assert capture.metric("researchflow_agents.agent_tasks") == [
        {"attributes": {"agent": "researcher", "task": "summarize", "status": "success"}, "value": 1},
        {"attributes": {"agent": "researcher", "task": "summarize", "status": "error"}, "value": 0},
        {"attributes": {"agent": "", "task": "lookup", "status": "success"}, "value": 1},
        {"attributes": {"agent": "", "task": "lookup", "status": "error"}, "value": 0},
        {"attributes": {"agent": "researcher", "task": "plan", "status": "success"}, "value": 1},
        {"attributes": {"agent": "researcher", "task": "plan", "status": "error"}, "value": 0},
        {"attributes": {"agent": "researcher", "task": "researcher", "status": "success"}, "value": 1},
        {"attributes": {"agent": "researcher", "task": "researcher", "status": "error"}, "value": 0},
    ]
    (agent_duration,) = capture.metric("gen_ai.invoke_agent.duration")
    assert agent_duration["attributes"] == {"gen_ai.agent.name": "researcher"}  # what the conventions define
    (tool_duration,) = capture.metric("gen_ai.execute_tool.duration")
    assert tool_duration["attributes"] == {"gen_ai.tool.name": "lookup", "gen_ai.tool.type": "function"}
    assert agent_duration["count"] == tool_duration["count"] == 1
    assert agent_duration["sum"] >= tool_duration["sum"] > 0  # the tool ran inside the agent


def test_a_task_with_no_agent_around_it_is_an_agent_invocation(capture: Capture) -> None:
    assert plan("rag") == "RAG"
    assert names_and_kinds(capture) == [
        ("researcher.summarize", 3, 2, "CHAIN"),  # inside the root task, through the tool
        ("execute_tool lookup", 2, 1, "TOOL"),
        ("researcher.plan", 1, None, "AGENT"),
    ]
    root = capture.spans()[2]
    assert root["attributes"] == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.provider.name": "rfobs",
        "gen_ai.agent.name": "researcher",
        "openinference.span.kind": "AGENT",
        "rfobs.agent": "researcher",
        "rfobs.task": "plan",
    }
    # Its duration is in rfobs's task histogram only: the GenAI agent histogram is @agent's.
    assert capture.metric("gen_ai.invoke_agent.duration") == []
    assert [p["count"] for p in capture.metric("researchflow_agents.agent_task_duration")] == [1, 1, 1]


def test_the_seed_decorator_is_still_an_agent_at_the_root(capture: Capture) -> None:
    @rfobs.track_agent_task("researcher", "legacy")
    def legacy() -> str:
        return summarize("x")

    assert legacy() == "X"
    assert names_and_kinds(capture) == [
        ("researcher.summarize", 2, 1, "CHAIN"),
        ("researcher.legacy", 1, None, "AGENT"),
    ]


def test_the_scope_ends_with_the_call_even_when_it_raises(capture: Capture) -> None:
    @rfobs.agent("researcher")
    def failing() -> None:
        summarize("x")
        raise LookupError("no such paper")

    with pytest.raises(LookupError):
        failing()
    summarize("after")
    assert names_and_kinds(capture) == [
        ("researcher.summarize", 2, 1, "CHAIN"),
        ("invoke_agent researcher", 1, None, "AGENT"),
        ("researcher.summarize", 3, None, "AGENT"),  # the agent is over: a task of its own again
    ]
    (failed,) = capture.metric("gen_ai.invoke_agent.duration")
    assert failed["attributes"] == {"gen_ai.agent.name": "researcher", "error.type": "LookupError"}
    assert failed["count"] == 1


async def test_async_agent_shares_its_scope_with_the_tasks_it_gathers(capture: Capture) -> None:
    @rfobs.task("researcher", "fetch")
    async def fetch(n: int) -> int:
        await asyncio.sleep(0)
        return n

    @rfobs.agent("researcher", provider="openai")
    async def run() -> list[int]:
        return list(await asyncio.gather(fetch(1), fetch(2)))

    assert await run() == [1, 2]
    await fetch(3)
    assert names_and_kinds(capture) == [
        ("researcher.fetch", 2, 1, "CHAIN"),
        ("researcher.fetch", 3, 1, "CHAIN"),
        ("invoke_agent researcher", 1, None, "AGENT"),
        ("researcher.fetch", 4, None, "AGENT"),
    ]
    assert capture.spans()[2]["attributes"]["gen_ai.provider.name"] == "openai"


def test_a_generator_agent_holds_its_scope_only_while_its_own_code_runs(capture: Capture) -> None:
    @rfobs.agent("streamer")
    def stream() -> Iterator[str]:
        yield summarize("a")  # inside the agent: a step
        yield summarize("b")

    outside: list[str] = []
    for item in stream():
        outside.append(summarize(item + "!"))  # the consumer's code: not the agent's
    assert outside == ["A!", "B!"]
    assert names_and_kinds(capture) == [
        ("researcher.summarize", 2, 1, "CHAIN"),
        ("researcher.summarize", 3, None, "AGENT"),
        ("researcher.summarize", 4, 1, "CHAIN"),
        ("researcher.summarize", 5, None, "AGENT"),
        ("invoke_agent streamer", 1, None, "AGENT"),
    ]


async def test_an_async_generator_agent_consumed_from_another_task(capture: Capture) -> None:
    @rfobs.task("researcher", "token")
    async def token(text: str) -> str:
        return text

    @rfobs.agent("streamer")
    async def tokens() -> AsyncIterator[str]:
        for text in ("a", "b"):
            yield await token(text)

    stream = tokens()
    first = await asyncio.create_task(anext(stream))  # type: ignore[arg-type]
    rest = [item async for item in stream]
    await token("outside")
    assert [first, *rest] == ["a", "b"]
    assert names_and_kinds(capture) == [
        ("researcher.token", 2, 1, "CHAIN"),
        ("researcher.token", 3, 1, "CHAIN"),
        ("invoke_agent streamer", 1, None, "AGENT"),
        ("researcher.token", 4, None, "AGENT"),
    ]


async def test_an_async_generator_agent_closed_early_ends_cleanly(capture: Capture) -> None:
    @rfobs.agent("streamer")
    async def tokens() -> AsyncIterator[int]:
        for n in range(10):
            yield n

    stream = tokens()
    assert await anext(stream) == 0
    await stream.aclose()  # type: ignore[attr-defined]
    (span,) = capture.spans()
    assert span["name"] == "invoke_agent streamer" and span["status"] == OK


class Library:
    @rfobs.agent("librarian")
    def ask(self, question: str) -> str:
        return summarize(question)

    @rfobs.agent("librarian")
    @classmethod
    def catalogue(cls) -> Iterator[str]:
        yield summarize(cls.__name__)


def test_agents_on_methods_and_generator_classmethods(capture: Capture) -> None:
    assert Library().ask("q") == "Q"
    assert list(Library.catalogue()) == ["LIBRARY"]
    assert names_and_kinds(capture) == [
        ("researcher.summarize", 2, 1, "CHAIN"),
        ("invoke_agent librarian", 1, None, "AGENT"),
        ("researcher.summarize", 4, 3, "CHAIN"),
        ("invoke_agent librarian", 3, None, "AGENT"),
    ]


def test_the_description_is_the_docstring_first_line_bounded_or_the_given_one(capture: Capture) -> None:
    def long_doc() -> None:
        pass

    long_doc.__doc__ = f"\n    {LONG_DOC_LINE}\n\n    More.\n    "

    @rfobs.agent("quiet")
    def undocumented() -> None:
        pass

    rfobs.agent("verbose")(long_doc)()
    undocumented()
    rfobs.tool("t", description="  Given.  ")(long_doc)()
    verbose, quiet, given = (s["attributes"] for s in capture.spans())
    assert verbose["gen_ai.agent.description"] == LONG_DOC_LINE.strip()[:255] + "…"
    assert len(verbose["gen_ai.agent.description"]) == 256
    assert "gen_ai.agent.description" not in quiet
    assert (given["gen_ai.tool.description"], given["tool.description"]) == ("Given.", "Given.")


def test_tool_histogram_records_the_measured_duration_in_the_genai_buckets(capture: Capture) -> None:
    @rfobs.tool("wait", type="extension", agent="researcher")
    def wait() -> None:
        time.sleep(0.02)

    @rfobs.tool("wait", type="extension", agent="researcher")
    def broken() -> None:
        raise TimeoutError("slow")

    wait()
    with pytest.raises(TimeoutError):
        broken()
    success, failure = capture.metric("gen_ai.execute_tool.duration")
    # The conventions' attributes for this metric: no operation name; the agent because the tool names one.
    base = {"gen_ai.tool.name": "wait", "gen_ai.tool.type": "extension", "gen_ai.agent.name": "researcher"}
    assert success["attributes"] == base
    assert failure["attributes"] == {**base, "error.type": "TimeoutError"}
    assert success["explicit_bounds"] == list(GEN_AI_DURATION_BUCKETS)
    assert success["count"] == 1 and success["sum"] >= 0.02
    expected = [0] * (len(GEN_AI_DURATION_BUCKETS) + 1)
    expected[bisect.bisect_left(GEN_AI_DURATION_BUCKETS, success["sum"])] = 1
    assert success["bucket_counts"] == expected
    # The rfobs metrics measure the same calls.
    assert capture.metric("researchflow_agents.agent_tasks") == [
        {"attributes": {"agent": "researcher", "task": "wait", "status": "success"}, "value": 1},
        {"attributes": {"agent": "researcher", "task": "wait", "status": "error"}, "value": 1},
    ]


def test_agent_histogram_records_the_measured_duration(capture: Capture) -> None:
    @rfobs.agent("sleeper")
    def sleeper() -> None:
        time.sleep(0.02)

    sleeper()
    (point,) = capture.metric("gen_ai.invoke_agent.duration")
    (rfobs_point,) = capture.metric("researchflow_agents.agent_task_duration")
    assert point["count"] == rfobs_point["count"] == 1
    assert point["sum"] == pytest.approx(rfobs_point["sum"]) and point["sum"] >= 0.02
    assert point["explicit_bounds"] == list(AGENT_DURATION_BUCKETS)  # the conventions' advice for agent runs
    expected = [0] * (len(AGENT_DURATION_BUCKETS) + 1)
    expected[bisect.bisect_left(AGENT_DURATION_BUCKETS, point["sum"])] = 1
    assert point["bucket_counts"] == expected


def test_tool_call_id_comes_from_the_tool_call_id_argument(capture: Capture) -> None:
    @rfobs.tool("search")
    def search(query: str, tool_call_id: str | None = None) -> str:
        return query

    search("a", "call_1")
    search("b", tool_call_id="call_2")
    search("c")
    ids = [s["attributes"].get("gen_ai.tool.call.id") for s in capture.spans()]
    assert ids == ["call_1", "call_2", None]


def test_tool_call_id_from_the_argument_named_by_call_id(capture: Capture) -> None:
    class Tools:
        @rfobs.tool("fetch", call_id="request")
        def fetch(self, url: str, request: int) -> str:
            return url

    Tools().fetch("u", 42)
    Tools().fetch("u", request=43)
    assert [s["attributes"]["gen_ai.tool.call.id"] for s in capture.spans()] == ["42", "43"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: rfobs.tool("t", type="script"), r"@tool\(type='script'\): expected one of 'function', 'extension'"),
        (lambda: rfobs.tool("t", call_id=""), r"@tool\(call_id=''\)"),
        (lambda: rfobs.agent(""), r"@agent\(name=''\)"),
        (lambda: rfobs.agent("a", provider=" "), r"@agent\(provider=' '\)"),
        (lambda: rfobs.agent("a", version=""), r"@agent\(version=''\)"),
        (lambda: rfobs.agent("a", description=" "), r"@agent\(description=' '\): expected a non-empty string"),
        (lambda: rfobs.tool("t", description=""), r"@tool\(description=''\)"),
        (lambda: rfobs.agent("a", capture_content="yes"), r"@agent\(capture_content='yes'\): expected True or False"),  # type: ignore[arg-type]
        (lambda: rfobs.task("a", capture_args=1), r"@task\(capture_args=1\)"),  # type: ignore[arg-type]
        (lambda: rfobs.agent("a", attributes={"k": None}), r"@agent\(attributes=\{'k': None\}\)"),
    ],
)
def test_bad_arguments_fail_at_decoration(make: Any, message: str) -> None:
    with pytest.raises(rfobs.ConfigError, match=message):
        make()


def test_a_call_id_naming_no_parameter_fails_at_decoration() -> None:
    decorator = rfobs.tool("search", call_id="call")

    def search(query: str, **extra: Any) -> str:
        return query

    with pytest.raises(
        rfobs.ConfigError, match=r"@tool\(call_id='call'\): expected the name of a parameter of .*\(query\)"
    ):
        decorator(search)


def test_every_rfobs_decorator_span_has_an_openinference_kind(capture: Capture) -> None:
    @rfobs.api_call("arxiv", "search")
    def api() -> None:
        pass

    @rfobs.llm_call("openai", "gpt-4o")
    def llm() -> None:
        pass

    @rfobs.agent("researcher")
    def whole() -> None:
        summarize("x")
        lookup("y")
        api()
        llm()

    whole()
    assert {s["name"]: s["attributes"]["openinference.span.kind"] for s in capture.spans()} == {
        "invoke_agent researcher": "AGENT",
        "researcher.summarize": "CHAIN",
        "execute_tool lookup": "TOOL",
        "arxiv.search": "TOOL",
        "chat gpt-4o": "LLM",
    }
