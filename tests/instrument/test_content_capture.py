"""Content capture on agent, task and tool spans: off by default, the GenAI switch, JSON, scrubbed, bounded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import rfobs
from rfobs.instrument._capture import CAPTURE_CONTENT_ENV
from rfobs.testing import Capture

OK = {"code": "UNSET", "description": None}
LONG_DOC_LINE = "Answers questions about " + "papers " * 60


@dataclass
class Paper:
    title: str


def content_of(span: dict[str, Any]) -> dict[str, Any]:
    prefixes = ("input.", "output.", "gen_ai.tool.call.arguments", "gen_ai.tool.call.result", "rfobs.input")
    return {k: v for k, v in span["attributes"].items() if k.startswith(prefixes) or k == "rfobs.output"}


def test_content_is_off_by_default_and_on_with_the_genai_switch(
    capture: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def echo(text: str) -> str:
        return text

    rfobs.agent("off")(echo)("a")
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, "True")
    rfobs.agent("on")(echo)("b")
    rfobs.agent("told_off", capture_content=False)(echo)("c")
    rfobs.task("agent", "on")(echo)("d")
    rfobs.api_call("svc", "on")(echo)("e")
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, "false")
    rfobs.agent("told_on", capture_content=True)(echo)("f")
    rfobs.task("agent", "off")(echo)("g")
    spans = capture.spans()
    captured = {"input.mime_type": "application/json", "output.mime_type": "text/plain"}
    assert [content_of(s) for s in spans] == [
        {},
        {"input.value": '{"text": "b"}', "output.value": "b", **captured},
        {},
        {"input.value": '{"text": "d"}', "output.value": "d", **captured},
        {"input.value": '{"text": "e"}', "output.value": "e", **captured},
        {"input.value": '{"text": "f"}', "output.value": "f", **captured},
        {},
    ]


def test_tool_content_is_json_scrubbed_and_bounded(capture: Capture) -> None:
    @rfobs.tool("search", capture_args=True)
    def search(query: str, filters: dict[str, Any], api_key: str, tool_call_id: str) -> dict[str, Any]:
        return {"hits": [query] * 30, "token": "t-123"}

    search(
        "rag",
        {"year": 2024, "tags": ["llm", None], "ratio": 0.5},
        api_key="sk-live-abcdefghijklmnop",
        tool_call_id="c1",
    )
    (span,) = capture.spans()
    attributes = span["attributes"]
    arguments = json.loads(attributes["gen_ai.tool.call.arguments"])
    assert arguments == {
        "query": "rag",
        "filters": {"year": 2024, "tags": ["llm", None], "ratio": 0.5},
        "api_key": "***",
        "tool_call_id": "c1",
    }
    assert attributes["input.value"] == attributes["gen_ai.tool.call.arguments"]
    assert attributes["input.mime_type"] == "application/json"
    result = json.loads(attributes["gen_ai.tool.call.result"])
    assert result == {"hits": ["rag"] * 20 + ["…"], "token": "***"}
    assert (attributes["output.value"], attributes["output.mime_type"]) == (
        attributes["gen_ai.tool.call.result"],
        "application/json",
    )
    assert attributes["gen_ai.tool.call.id"] == "c1"


def test_content_without_a_json_form_or_too_long_is_plain_text(capture: Capture) -> None:
    @rfobs.task("librarian", "find", capture_args=True)
    def find(title: str) -> Paper:
        return Paper(title)

    @rfobs.task("librarian", "dump", capture_args=True)
    def dump(pages: list[str]) -> list[str]:
        return pages

    @rfobs.task("librarian", "pages", capture_args=True)
    def pages() -> Iterator[int]:
        yield 1

    find("Attention")
    dump(["x" * 390] * 5)
    assert list(pages()) == [1]
    found, dumped, paged = (s["attributes"] for s in capture.spans())
    assert found["input.value"] == '{"title": "Attention"}'  # an object argument is its repr, as a JSON string
    assert (found["output.value"], found["output.mime_type"]) == ("Paper(title='Attention')", "text/plain")
    assert dumped["input.mime_type"] == dumped["output.mime_type"] == "text/plain"  # cut: no longer JSON
    assert len(dumped["input.value"]) == 1024 and dumped["input.value"].endswith("…")
    assert paged["input.value"] == "{}" and "output.value" not in paged  # a generator's items are not its result
