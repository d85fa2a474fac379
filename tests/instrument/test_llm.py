from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

import rfobs
from rfobs.instrument.llm import llm_call, token_usage
from rfobs.testing import Capture


@dataclass
class OpenAIUsage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass
class OpenAIResponse:
    model: str
    usage: OpenAIUsage


@dataclass
class AnthropicUsage:
    input_tokens: int
    output_tokens: int


@dataclass
class AnthropicMessage:
    model: str
    usage: AnthropicUsage


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (OpenAIResponse("gpt-4o-2024-08-06", OpenAIUsage(12, 30, 42)), (12, 30)),
        (AnthropicMessage("claude-sonnet", AnthropicUsage(7, 9)), (7, 9)),
        ({"usage": {"prompt_tokens": 3, "completion_tokens": 4}}, (3, 4)),
        ({"input_tokens": 5, "output_tokens": 6}, (5, 6)),
        ({"usage": {"input_tokens": 8}}, (8, None)),
        ("plain text", (None, None)),
        ({"usage": {"prompt_tokens": "many"}}, (None, None)),
        (None, (None, None)),
    ],
)
def test_token_usage_is_read_by_shape(result: object, expected: tuple[int | None, int | None]) -> None:
    assert token_usage(result) == expected


def test_llm_span_attributes_and_genai_metrics(capture: Capture) -> None:
    @llm_call("openai", "gpt-4o")
    def ask(prompt: str) -> OpenAIResponse:
        return OpenAIResponse("gpt-4o-2024-08-06", OpenAIUsage(12, 30, 42))

    ask("hello, my password=hunter2")
    (span,) = capture.spans()
    assert span == {
        "name": "chat gpt-4o",
        "trace_id": 1,
        "span_id": 1,
        "parent_id": None,
        "kind": "CLIENT",
        "status": {"code": "UNSET", "description": None},
        "attributes": {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "openinference.span.kind": "LLM",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.output_tokens": 30,
            "llm.provider": "openai",
            "llm.system": "openai",
            "llm.model_name": "gpt-4o-2024-08-06",
            "llm.token_count.prompt": 12,
            "llm.token_count.completion": 30,
            "llm.token_count.total": 42,
            # gpt-4o-2024-08-06: $2.50 per million input tokens, $10 per million output tokens.
            "gen_ai.usage.cost": pytest.approx(12 * 2.5e-6 + 30 * 10e-6),
        },
        "events": [],
    }
    base = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"}
    usage = capture.metric("gen_ai.client.token.usage")
    assert [(p["attributes"], p["count"], p["sum"]) for p in usage] == [
        ({**base, "gen_ai.token.type": "input"}, 1, 12),
        ({**base, "gen_ai.token.type": "output"}, 1, 30),
    ]
    (duration,) = capture.metric("gen_ai.client.operation.duration")
    assert (duration["attributes"], duration["count"]) == (base, 1)
    assert capture.metric("researchflow_agents.api_calls") == [
        {"attributes": {"service": "openai", "endpoint": "chat", "status": "success"}, "value": 1},
        {"attributes": {"service": "openai", "endpoint": "chat", "status": "error"}, "value": 0},
    ]


def test_nothing_recorded_from_a_result_without_usage(capture: Capture) -> None:
    @llm_call("anthropic")
    async def ask() -> str:
        return "no usage here"

    assert asyncio.run(ask()) == "no usage here"
    (span,) = capture.spans()
    assert span["name"] == "chat"
    assert "gen_ai.usage.input_tokens" not in span["attributes"]
    assert capture.metric("gen_ai.client.token.usage") == []


def test_failed_llm_call_records_error_type_on_the_duration(capture: Capture) -> None:
    @llm_call("openai", "gpt-4o")
    def ask() -> None:
        raise TimeoutError("model overloaded")

    with pytest.raises(TimeoutError):
        ask()
    (duration,) = capture.metric("gen_ai.client.operation.duration")
    assert duration["attributes"]["error.type"] == "TimeoutError"
    assert capture.spans()[0]["status"] == {"code": "ERROR", "description": "TimeoutError: model overloaded"}


def test_content_is_recorded_only_when_asked_and_then_scrubbed(capture: Capture) -> None:
    @llm_call("openai", "gpt-4o", capture_content=True)
    def ask(prompt: str, api_key: str) -> dict[str, Any]:
        return {"text": "sure, token=abcdef123456"}

    ask("x" * 5000, api_key="sk-live-abcdefghijklmnopqrstuvwxyz")
    attributes = capture.spans()[0]["attributes"]
    # No `messages=` and no response messages: OpenInference's input and output values hold the rendered call.
    assert attributes["input.value"].startswith("prompt='xxxx")
    assert attributes["input.value"].endswith(", api_key=***")
    assert len(attributes["input.value"]) < 500
    assert attributes["input.mime_type"] == "text/plain"
    assert attributes["output.value"] == "{'text': 'sure, token=***'}"
    assert "rfobs.input" not in attributes and "rfobs.output" not in attributes


def test_task_capture_args(capture: Capture) -> None:
    class Agent:
        @rfobs.task("researcher", "search", capture_args=True)
        def search(self, query: str, limit: int = 3) -> list[str]:
            return [query] * limit

    Agent().search("rag", limit=2)
    attributes = capture.spans()[0]["attributes"]
    assert (attributes["input.value"], attributes["output.value"]) == ('{"query": "rag", "limit": 2}', '["rag", "rag"]')


def test_bad_llm_arguments() -> None:
    with pytest.raises(rfobs.ConfigError, match=r"@llm_call\(provider=''\)"):
        llm_call("")
