"""The demo's research agent, sent to a real Arize Phoenix over OTLP, reads back as an agent trace (#11).

One question of `rfobs.demo.ask_once` (an `@rfobs.agent` inside `rfobs.conversation(...)`, with content capture
on) goes to Phoenix; its REST API must show the agent as AGENT with its input and output, the steps as CHAIN, the
tools as TOOL, both LLM calls (one streamed) as LLM with model, token counts, messages and cost, and the
conversation's session and user on every span. Phoenix's trace view of it is rendered in headless Chromium and
kept as `test-artifacts/phoenix-trace.png`.
"""

from __future__ import annotations

import asyncio
import io
import json
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

import rfobs
from rfobs.demo import PLANNER_SNAPSHOT, WRITER_SNAPSHOT, DemoStats, ask_once
from rfobs.testing import reset_global_telemetry
from tests.e2e.browser import PNG_SIGNATURE, dump_dom, screenshot
from tests.e2e.phoenix_server import PhoenixHandle
from tests.test_demo import ONE_QUESTION_KINDS, ONE_QUESTION_TREE

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO_ROOT / "test-artifacts" / "phoenix-trace.png"
QUESTION = "tool use in language agents"
ANSWERING_SEED = 1  # every search answers: two papers read, one summary streamed (tests/test_demo.py too)
SPAN_COUNT = 11
WINDOW = (1800, 1000)
# 127.0.0.1 must never go through an HTTP proxy taken from the environment.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class SentTrace:
    """The agent run sent to Phoenix, and its spans as Phoenix's REST API gives them back."""

    project: str
    answer: str
    stats: DemoStats
    spans: list[dict[str, Any]]

    def named(self, name: str) -> list[dict[str, Any]]:
        return [span for span in self.spans if span["name"] == name]

    def one(self, name: str) -> dict[str, Any]:
        (span,) = self.named(name)
        return span


@pytest.fixture(scope="module")
def sent(phoenix_server: PhoenixHandle) -> Iterator[SentTrace]:
    """One demo question, exported over OTLP/HTTP to its own Phoenix project, read back once all spans are in."""
    project = f"rfobs-e2e-agent-{uuid.uuid4().hex[:8]}"
    reset_global_telemetry()
    try:
        telemetry = rfobs.init(
            otlp__endpoint=phoenix_server.http_url,
            otlp__protocol="http/protobuf",
            service__resource_attributes={"openinference.project.name": project},
            service__name="research-agent-demo",
            metrics__prometheus_port=0,
            logging__enabled=False,
        )
        answer, stats = asyncio.run(asyncio.wait_for(ask_once(QUESTION, seed=ANSWERING_SEED), timeout=20))
        assert telemetry.shutdown(timeout=10)
        spans = phoenix_server.wait_for_spans(project, SPAN_COUNT, timeout=60)
        yield SentTrace(project, answer, stats, spans)
    finally:
        reset_global_telemetry()


def test_phoenix_shows_the_agent_its_steps_tools_and_llm_calls_as_one_tree(sent: SentTrace) -> None:
    assert len(sent.spans) == SPAN_COUNT
    assert len({span["context"]["trace_id"] for span in sent.spans}) == 1
    names = {span["context"]["span_id"]: span["name"] for span in sent.spans}
    assert sorted((span["name"], names.get(span["parent_id"])) for span in sent.spans) == ONE_QUESTION_TREE
    # Phoenix's own reading of `openinference.span.kind`.
    assert {span["name"]: span["span_kind"] for span in sent.spans} == ONE_QUESTION_KINDS
    assert {span["status_code"] for span in sent.spans} == {"UNSET"}


def test_phoenix_shows_the_agent_input_output_and_cost(sent: SentTrace) -> None:
    agent = sent.one("invoke_agent researcher")["attributes"]
    assert json.loads(agent["input.value"]) == {"question": QUESTION}
    assert agent["input.mime_type"] == "application/json"
    assert agent["output.value"] == sent.answer
    assert sent.answer.startswith(f"The papers on {QUESTION} agree")
    assert (agent["gen_ai.agent.name"], agent["gen_ai.operation.name"]) == ("researcher", "invoke_agent")
    llm_costs = [
        sent.one(name)["attributes"]["gen_ai.usage.cost"]
        for name in ("chat claude-3-5-haiku-latest", "chat gpt-4o-mini")
    ]
    assert all(cost > 0 for cost in llm_costs)
    assert agent["gen_ai.usage.cost"] == pytest.approx(sum(llm_costs))
    assert agent["gen_ai.usage.cost"] == pytest.approx(sent.stats.cost)


@pytest.mark.parametrize(
    ("name", "model", "streamed"),
    [("chat claude-3-5-haiku-latest", PLANNER_SNAPSHOT, False), ("chat gpt-4o-mini", WRITER_SNAPSHOT, True)],
)
def test_phoenix_shows_each_llm_call_with_model_tokens_and_messages(
    sent: SentTrace, name: str, model: str, streamed: bool
) -> None:
    llm = sent.one(name)["attributes"]
    assert llm["llm.model_name"] == model
    prompt, completion = llm["llm.token_count.prompt"], llm["llm.token_count.completion"]
    assert prompt > 0 and completion > 0
    assert llm["llm.token_count.total"] == prompt + completion
    assert (llm["gen_ai.usage.input_tokens"], llm["gen_ai.usage.output_tokens"]) == (prompt, completion)
    assert llm.get("gen_ai.request.stream", False) is streamed
    assert llm["llm.input_messages.0.message.role"] == "system"
    assert [message["role"] for message in json.loads(llm["input.value"])] == (
        ["system", "user"] if streamed else ["user"]  # Anthropic's system prompt is an argument, not a message
    )
    (output,) = json.loads(llm["output.value"])
    assert output["role"] == "assistant"
    expected = sent.answer if streamed else f"{QUESTION}\n{QUESTION} survey"
    assert output["parts"] == [{"type": "text", "content": expected}]
    assert llm["llm.output_messages.0.message.content"] == expected


def test_phoenix_shows_the_conversation_on_every_span(sent: SentTrace) -> None:
    (conversation,) = sent.stats.conversations
    expected = {
        "gen_ai.conversation.id": conversation,
        "session.id": f"session-{conversation[9:]}",
        "user.id": "user-1",
    }
    assert [{key: span["attributes"].get(key) for key in expected} for span in sent.spans] == [expected] * SPAN_COUNT


def _project_id(phoenix: PhoenixHandle, name: str) -> str:
    with _HTTP.open(f"{phoenix.http_url}/v1/projects?limit=1000", timeout=10) as response:
        projects = cast("list[dict[str, Any]]", json.load(response)["data"])
    (found,) = [project["id"] for project in projects if project["name"] == name]
    return str(found)


def test_screenshot_of_phoenix_trace_view_shows_the_tree_and_the_streamed_llm_call(
    sent: SentTrace, phoenix_server: PhoenixHandle, tmp_path: Path
) -> None:
    trace_id = sent.spans[0]["context"]["trace_id"]
    streamed = sent.one("chat gpt-4o-mini")["id"]  # Phoenix's node id: the trace view opens with this span selected
    query = urllib.parse.urlencode({"selectedSpanNodeId": streamed})
    url = f"{phoenix_server.http_url}/projects/{_project_id(phoenix_server, sent.project)}/traces/{trace_id}?{query}"

    # The same page as the screenshot's: the trace drawer is open, with the span tree and the LLM call's details.
    dom = dump_dom(url, tmp_path / "dom-profile", window=WINDOW)
    for name in {span["name"] for span in sent.spans}:
        assert name in dom, name
    for shown in (trace_id, "Total Cost", WRITER_SNAPSHOT, "stream: true", sent.answer):
        assert shown in dom, shown

    data = screenshot(url, SCREENSHOT, tmp_path / "shot-profile", window=WINDOW)
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 100_000  # a blank page is a few kilobytes; Phoenix's trace list alone about 80
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        assert image.size == WINDOW
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colours is not None and len(colours) > 1_000  # text, icons and the span-kind badges in colour
