"""`@llm_call` on the real response types of the openai and anthropic SDKs: the GenAI and OpenInference attributes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from anthropic.types import Message, TextBlock, Usage
from openai.types import CompletionUsage, CreateEmbeddingResponse, Embedding
from openai.types.chat import ChatCompletion, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.completion_usage import CompletionTokensDetails, PromptTokensDetails
from openai.types.create_embedding_response import Usage as EmbeddingUsage

import rfobs
from rfobs.instrument._capture import CAPTURE_CONTENT_ENV, MAX_CAPTURE_LENGTH
from rfobs.instrument._cost import llm_cost
from rfobs.instrument.llm import LLMUsage, llm_call, llm_usage, token_usage
from rfobs.testing import Capture

pytestmark = pytest.mark.timeout(60)

OPENAI_USAGE = CompletionUsage(
    prompt_tokens=100,
    completion_tokens=50,
    total_tokens=150,
    prompt_tokens_details=PromptTokensDetails(cached_tokens=40),
    completion_tokens_details=CompletionTokensDetails(reasoning_tokens=20),
)
ANTHROPIC_USAGE = Usage(input_tokens=10, output_tokens=5, cache_read_input_tokens=200, cache_creation_input_tokens=30)


def completion(*reasons: str, usage: CompletionUsage = OPENAI_USAGE) -> ChatCompletion:
    choices = [
        Choice(finish_reason=reason, index=i, message=ChatCompletionMessage(role="assistant", content=f"answer {i}"))  # type: ignore[arg-type]
        for i, reason in enumerate(reasons)
    ]
    return ChatCompletion(
        id="chatcmpl-1",
        choices=choices,
        created=0,
        model="gpt-4o-2024-08-06",
        object="chat.completion",
        usage=usage,
    )


def message(text: str = "Hello") -> Message:
    return Message(
        id="msg_1",
        content=[TextBlock(type="text", text=text)],
        model="claude-sonnet-4-5-20250929",
        role="assistant",
        stop_reason="end_turn",
        stop_sequence=None,
        type="message",
        usage=ANTHROPIC_USAGE,
    )


def token_points(capture: Capture) -> list[tuple[str, int, int]]:
    return [
        (p["attributes"]["gen_ai.token.type"], p["count"], p["sum"])
        for p in capture.metric("gen_ai.client.token.usage")
    ]


def test_openai_completion_gives_response_fields_cache_and_reasoning_tokens(capture: Capture) -> None:
    @llm_call("openai", "gpt-4o")
    def ask() -> ChatCompletion:
        return completion("stop", "length")

    ask()
    (span,) = capture.spans()
    assert (span["name"], span["kind"]) == ("chat gpt-4o", "CLIENT")
    assert span["attributes"] == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "openinference.span.kind": "LLM",
        "llm.provider": "openai",
        "llm.system": "openai",
        "llm.model_name": "gpt-4o-2024-08-06",
        "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.response.finish_reasons": ("stop", "length"),
        # prompt_tokens already includes the 40 cached tokens; completion_tokens the 20 reasoning ones.
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.output_tokens": 50,
        "gen_ai.usage.cache_read.input_tokens": 40,
        "gen_ai.usage.reasoning.output_tokens": 20,
        "llm.token_count.prompt": 100,
        "llm.token_count.completion": 50,
        "llm.token_count.total": 150,
        "llm.token_count.prompt_details.cache_read": 40,
        "llm.token_count.completion_details.reasoning": 20,
        # Priced from the same counts: 60 uncached and 40 cached input tokens, 50 output (reasoning included).
        "gen_ai.usage.cost": pytest.approx(
            llm_cost("openai", "gpt-4o-2024-08-06", input_tokens=100, output_tokens=50, cache_read_tokens=40)
        ),
    }
    assert token_points(capture) == [("input", 1, 100), ("output", 1, 50)]


def test_anthropic_input_tokens_add_the_cached_ones(capture: Capture) -> None:
    @llm_call("anthropic", "claude-sonnet-4-5")
    def ask() -> Message:
        return message()

    ask()
    attributes = capture.spans()[0]["attributes"]
    picked = {key: value for key, value in attributes.items() if "token" in key or key.startswith("gen_ai.response")}
    assert picked == {
        "gen_ai.response.id": "msg_1",
        "gen_ai.response.model": "claude-sonnet-4-5-20250929",
        "gen_ai.response.finish_reasons": ("end_turn",),
        "gen_ai.usage.input_tokens": 240,  # 10 uncached + 200 read from the cache + 30 written to it
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.usage.cache_read.input_tokens": 200,
        "gen_ai.usage.cache_creation.input_tokens": 30,
        "llm.token_count.prompt": 240,
        "llm.token_count.completion": 5,
        "llm.token_count.total": 245,
        "llm.token_count.prompt_details.cache_read": 200,
        "llm.token_count.prompt_details.cache_write": 30,
    }
    assert token_points(capture) == [("input", 1, 240), ("output", 1, 5)]


def test_llm_usage_is_a_frozen_record_of_the_convention_counts() -> None:
    assert llm_usage(message()) == LLMUsage(input=240, output=5, cache_read=200, cache_creation=30)
    assert llm_usage(message()).uncached_input == 10
    assert llm_usage(completion("stop")) == LLMUsage(input=100, output=50, cache_read=40, reasoning=20)
    assert llm_usage(completion("stop")).total == 150
    assert llm_usage({"usage": {"input_tokens": 7, "input_tokens_details": {"cached_tokens": 3}}}) == LLMUsage(
        input=7, cache_read=3
    )  # OpenAI Responses: input_tokens already includes the cached ones
    assert llm_usage("no usage") == LLMUsage()
    assert token_usage(message()) == (240, 5)
    with pytest.raises(AttributeError):
        llm_usage(message()).input = 1  # type: ignore[misc]


def test_response_fields_from_mappings_of_the_same_shapes(capture: Capture) -> None:
    @llm_call("anthropic", "claude")
    def anthropic_dict() -> dict[str, Any]:
        return message().model_dump()

    @llm_call("openai", "gpt")
    def openai_dict() -> dict[str, Any]:
        return completion("tool_calls").model_dump()

    anthropic_dict()
    openai_dict()
    first, second = (span["attributes"] for span in capture.spans())
    assert (first["gen_ai.response.finish_reasons"], first["gen_ai.usage.input_tokens"]) == (("end_turn",), 240)
    assert (second["gen_ai.response.finish_reasons"], second["gen_ai.usage.cache_read.input_tokens"]) == (
        ("tool_calls",),
        40,
    )


def test_model_of_each_call_names_the_span_when_the_decorator_has_none(capture: Capture) -> None:
    @llm_call("openai")
    def ask(*, model: str, messages: list[dict[str, str]]) -> ChatCompletion:
        return completion("stop")

    ask(model="gpt-4o-mini", messages=[])
    ask(model="o3", messages=[])
    ask(model="gpt-4o-mini", messages=[])
    spans = capture.spans()
    assert [span["name"] for span in spans] == ["chat gpt-4o-mini", "chat o3", "chat gpt-4o-mini"]
    assert [span["attributes"]["gen_ai.request.model"] for span in spans] == ["gpt-4o-mini", "o3", "gpt-4o-mini"]
    durations = {
        p["attributes"]["gen_ai.request.model"]: p["count"] for p in capture.metric("gen_ai.client.operation.duration")
    }
    assert durations == {"gpt-4o-mini": 2, "o3": 1}


def test_decorator_model_wins_over_the_call_model(capture: Capture) -> None:
    @llm_call("openai", "gpt-4o")
    def ask(*, model: str) -> None:
        return None

    ask(model="o3")
    assert capture.spans()[0]["name"] == "chat gpt-4o"


@pytest.mark.parametrize("operation", ["text_completion", "generate_content"])
def test_operation_names_the_span_and_the_endpoint(capture: Capture, operation: str) -> None:
    @llm_call("gcp.gemini", "gemini-2.5-flash", operation=operation, server_address="example.test", server_port=443)
    def ask() -> None:
        return None

    ask()
    (span,) = capture.spans()
    assert span["name"] == f"{operation} gemini-2.5-flash"
    attributes = span["attributes"]
    assert (attributes["gen_ai.operation.name"], attributes["server.address"], attributes["server.port"]) == (
        operation,
        "example.test",
        443,
    )
    assert (attributes["llm.provider"], attributes["llm.system"]) == ("google", "vertexai")
    (duration,) = capture.metric("gen_ai.client.operation.duration")
    assert duration["attributes"] == {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": "gcp.gemini",
        "gen_ai.request.model": "gemini-2.5-flash",
        "server.address": "example.test",
        "server.port": 443,
    }
    assert capture.metric("researchflow_agents.api_calls") == [
        {"attributes": {"service": "gcp.gemini", "endpoint": operation, "status": "success"}, "value": 1},
        {"attributes": {"service": "gcp.gemini", "endpoint": operation, "status": "error"}, "value": 0},
    ]


def test_embeddings_read_input_tokens_dimensions_and_encoding_formats(capture: Capture) -> None:
    @llm_call("openai", operation="embeddings")
    def embed(*, model: str, input: str, encoding_format: str) -> CreateEmbeddingResponse:
        return CreateEmbeddingResponse(
            data=[Embedding(embedding=[0.1, 0.2, 0.3], index=0, object="embedding")],
            model="text-embedding-3-small",
            object="list",
            usage=EmbeddingUsage(prompt_tokens=8, total_tokens=8),
        )

    embed(model="text-embedding-3-small", input="hello", encoding_format="float")
    (span,) = capture.spans()
    assert span["name"] == "embeddings text-embedding-3-small"
    assert span["attributes"] == {
        "gen_ai.operation.name": "embeddings",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "text-embedding-3-small",
        "gen_ai.request.encoding_formats": ("float",),
        "openinference.span.kind": "EMBEDDING",
        "llm.provider": "openai",
        "llm.system": "openai",
        "embedding.model_name": "text-embedding-3-small",
        "gen_ai.response.model": "text-embedding-3-small",
        "gen_ai.embeddings.dimension.count": 3,
        "gen_ai.usage.input_tokens": 8,
        "llm.token_count.prompt": 8,
        "llm.token_count.total": 8,
    }
    assert token_points(capture) == [("input", 1, 8)]


def test_content_follows_the_conventions_json_schema_scrubbed_and_bounded(capture: Capture) -> None:
    @llm_call("openai", "gpt-4o", capture_content=True)
    def ask(*, messages: list[dict[str, Any]]) -> ChatCompletion:
        return completion("stop")

    ask(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "my password=hunter2"}, {"type": "image_url"}]},
            {"role": "user", "content": "y" * 5000},
        ]
    )
    attributes = capture.spans()[0]["attributes"]
    long = "y" * (MAX_CAPTURE_LENGTH - 1) + "…"
    expected_input = [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "my password=***"}]},
        {"role": "user", "parts": [{"type": "text", "content": long}]},
    ]
    assert json.loads(attributes["gen_ai.input.messages"]) == expected_input
    assert attributes["input.value"] == attributes["gen_ai.input.messages"]
    assert attributes["input.mime_type"] == "application/json"
    assert json.loads(attributes["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "answer 0"}], "finish_reason": "stop"}
    ]
    assert (attributes["output.value"], attributes["output.mime_type"]) == (
        attributes["gen_ai.output.messages"],
        "application/json",
    )
    flattened = {key: value for key, value in attributes.items() if key.startswith("llm.") and "messages" in key}
    assert flattened == {
        "llm.input_messages.0.message.role": "system",
        "llm.input_messages.0.message.content": "Be brief.",
        "llm.input_messages.1.message.role": "user",
        "llm.input_messages.1.message.content": "my password=***",
        "llm.input_messages.2.message.role": "user",
        "llm.input_messages.2.message.content": long,
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.content": "answer 0",
    }


def test_anthropic_system_prompt_and_content_blocks(capture: Capture) -> None:
    @llm_call("anthropic", "claude-sonnet-4-5", capture_content=True)
    def ask(*, system: str, messages: list[dict[str, Any]]) -> Message:
        return message("Paris.")

    ask(system="You answer geography questions.", messages=[{"role": "user", "content": "Capital of France?"}])
    attributes = capture.spans()[0]["attributes"]
    assert json.loads(attributes["gen_ai.system_instructions"]) == [
        {"type": "text", "content": "You answer geography questions."}
    ]
    assert json.loads(attributes["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Paris."}], "finish_reason": "end_turn"}
    ]
    assert attributes["llm.input_messages.0.message.role"] == "system"
    assert attributes["llm.input_messages.1.message.content"] == "Capital of France?"


def test_only_the_most_recent_messages_are_kept(capture: Capture) -> None:
    @llm_call("openai", "gpt-4o", capture_content=True)
    def ask(*, messages: list[dict[str, Any]]) -> None:
        return None

    ask(messages=[{"role": "user", "content": str(i)} for i in range(40)])
    attributes = capture.spans()[0]["attributes"]
    kept = json.loads(attributes["gen_ai.input.messages"])
    assert [m["parts"][0]["content"] for m in kept] == [str(i) for i in range(24, 40)]
    assert "llm.input_messages.16.message.role" not in attributes


CONTENT_KEYS = {
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "input.value",
    "input.mime_type",
    "output.value",
    "output.mime_type",
    "llm.input_messages.0.message.content",
    "llm.output_messages.0.message.content",
}


def test_no_content_unless_asked(capture: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, "true")

    @llm_call("anthropic", "claude", capture_content=False)
    def refused(*, system: str, messages: list[dict[str, str]]) -> Message:
        return message()

    @llm_call("anthropic", "claude")
    def by_environment(*, system: str, messages: list[dict[str, str]]) -> Message:
        return message()

    monkeypatch.delenv(CAPTURE_CONTENT_ENV)

    @llm_call("anthropic", "claude")
    def by_default(*, system: str, messages: list[dict[str, str]]) -> Message:
        return message()

    for ask in (refused, by_environment, by_default):
        ask(system="be nice", messages=[{"role": "user", "content": "hi"}])
    off, on, default = (set(span["attributes"]) for span in capture.spans())
    assert off & CONTENT_KEYS == set()
    assert on >= CONTENT_KEYS
    assert default & CONTENT_KEYS == set()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"operation": "completion"}, "operation='completion'.*one of 'chat', 'text_completion', 'generate_content'"),
        ({"server_port": 0}, r"server_port=0"),
        ({"server_address": " "}, r"server_address=' '"),
        ({"capture_content": "yes"}, r"capture_content='yes'\): expected True or False"),
    ],
)
def test_bad_arguments_are_refused_by_name(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(rfobs.ConfigError, match=message):
        llm_call("openai", "gpt-4o", **arguments)
