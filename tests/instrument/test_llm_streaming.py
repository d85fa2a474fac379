"""`@llm_call` on generators of stream chunks: usage, response fields and text read from the chunks as they pass."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, Generator, Iterable
from typing import Any

import pytest
from anthropic.types import (
    Message,
    MessageDeltaUsage,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    TextBlock,
    TextDelta,
    Usage,
)
from anthropic.types.raw_message_delta_event import Delta
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletionChunk
from openai.types.chat.chat_completion_chunk import Choice, ChoiceDelta
from openai.types.completion_usage import CompletionTokensDetails, PromptTokensDetails

from rfobs.instrument._cost import llm_cost
from rfobs.instrument.llm import llm_call
from rfobs.testing import Capture

pytestmark = pytest.mark.timeout(60)

FIRST_CHUNK_DELAY = 0.02


def openai_chunk(
    content: str | None, finish: str | None = None, usage: CompletionUsage | None = None
) -> ChatCompletionChunk:
    choices = (
        []
        if usage is not None
        else [
            Choice(index=0, delta=ChoiceDelta(role="assistant", content=content), finish_reason=finish)  # type: ignore[arg-type]
        ]
    )
    return ChatCompletionChunk(
        id="chatcmpl-9",
        choices=choices,
        created=0,
        model="gpt-4o-mini-2024-07-18",
        object="chat.completion.chunk",
        usage=usage,
    )


OPENAI_STREAM = [
    openai_chunk("Hel"),
    openai_chunk("lo"),
    openai_chunk(None, finish="stop"),
    # stream_options={"include_usage": True}: a last chunk with no choices and the usage.
    openai_chunk(
        None,
        usage=CompletionUsage(
            prompt_tokens=30,
            completion_tokens=12,
            total_tokens=42,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=10),
            completion_tokens_details=CompletionTokensDetails(reasoning_tokens=4),
        ),
    ),
]


def anthropic_stream() -> list[Any]:
    start = Message(
        id="msg_9",
        content=[],
        model="claude-sonnet-4-5-20250929",
        role="assistant",
        stop_reason=None,
        stop_sequence=None,
        type="message",
        usage=Usage(input_tokens=10, output_tokens=1, cache_read_input_tokens=200, cache_creation_input_tokens=30),
    )
    return [
        RawMessageStartEvent(type="message_start", message=start),
        RawContentBlockStartEvent(type="content_block_start", index=0, content_block=TextBlock(type="text", text="")),
        RawContentBlockDeltaEvent(type="content_block_delta", index=0, delta=TextDelta(type="text_delta", text="Par")),
        RawContentBlockDeltaEvent(type="content_block_delta", index=0, delta=TextDelta(type="text_delta", text="is.")),
        RawContentBlockStopEvent(type="content_block_stop", index=0),
        RawMessageDeltaEvent(
            type="message_delta",
            delta=Delta(stop_reason="end_turn", stop_sequence=None),
            usage=MessageDeltaUsage(output_tokens=42),
        ),
        RawMessageStopEvent(type="message_stop"),
    ]


def picked(attributes: dict[str, Any]) -> dict[str, Any]:
    """The attributes read from the chunks (time to first chunk checked separately)."""
    prefixes = (
        "gen_ai.response.id",
        "gen_ai.response.model",
        "gen_ai.response.finish",
        "gen_ai.usage",
        "gen_ai.request.stream",
    )
    return {key: value for key, value in attributes.items() if key.startswith(prefixes)}


def assert_first_chunk_timed(capture: Capture, span: dict[str, Any]) -> None:
    first_chunk = span["attributes"]["gen_ai.response.time_to_first_chunk"]
    assert FIRST_CHUNK_DELAY <= first_chunk < 5
    (point,) = capture.metric("gen_ai.client.operation.time_to_first_chunk")
    assert (point["count"], point["sum"]) == (1, first_chunk)


def test_openai_stream_with_usage_on_the_last_chunk(capture: Capture) -> None:
    @llm_call("openai", "gpt-4o-mini", capture_content=True)
    def stream() -> Generator[ChatCompletionChunk]:
        time.sleep(FIRST_CHUNK_DELAY)
        yield from OPENAI_STREAM

    assert list(stream()) == OPENAI_STREAM
    (span,) = capture.spans()
    assert span["name"] == "chat gpt-4o-mini"
    assert picked(span["attributes"]) == {
        "gen_ai.request.stream": True,
        "gen_ai.response.id": "chatcmpl-9",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 12,
        "gen_ai.usage.cache_read.input_tokens": 10,
        "gen_ai.usage.reasoning.output_tokens": 4,
        "gen_ai.usage.cost": pytest.approx(
            llm_cost("openai", "gpt-4o-mini-2024-07-18", input_tokens=30, output_tokens=12, cache_read_tokens=10)
        ),
    }
    assert json.loads(span["attributes"]["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Hello"}], "finish_reason": "stop"}
    ]
    assert span["attributes"]["llm.token_count.total"] == 42
    assert_first_chunk_timed(capture, span)
    usage = capture.metric("gen_ai.client.token.usage")
    assert [(p["attributes"]["gen_ai.token.type"], p["sum"]) for p in usage] == [("input", 30), ("output", 12)]
    (duration,) = capture.metric("gen_ai.client.operation.duration")
    assert duration["count"] == 1 and duration["sum"] >= span["attributes"]["gen_ai.response.time_to_first_chunk"]


async def test_anthropic_async_stream_sums_cached_input_and_takes_the_last_output_count(capture: Capture) -> None:
    @llm_call("anthropic", "claude-sonnet-4-5", capture_content=True)
    async def stream() -> AsyncGenerator[Any]:
        await asyncio.sleep(FIRST_CHUNK_DELAY)
        for event in anthropic_stream():
            yield event

    assert len([event async for event in stream()]) == 7
    (span,) = capture.spans()
    assert picked(span["attributes"]) == {
        "gen_ai.request.stream": True,
        "gen_ai.response.id": "msg_9",
        "gen_ai.response.model": "claude-sonnet-4-5-20250929",
        "gen_ai.response.finish_reasons": ("end_turn",),
        "gen_ai.usage.input_tokens": 240,
        "gen_ai.usage.output_tokens": 42,
        "gen_ai.usage.cache_read.input_tokens": 200,
        "gen_ai.usage.cache_creation.input_tokens": 30,
        "gen_ai.usage.cost": pytest.approx(
            llm_cost(
                "anthropic",
                "claude-sonnet-4-5-20250929",
                input_tokens=240,
                output_tokens=42,
                cache_read_tokens=200,
                cache_creation_tokens=30,
            )
        ),
    }
    assert json.loads(span["attributes"]["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Paris."}], "finish_reason": "end_turn"}
    ]
    assert_first_chunk_timed(capture, span)


@pytest.mark.parametrize(
    ("provider", "chunks", "tokens"),
    [
        ("openai", [chunk.model_dump() for chunk in OPENAI_STREAM], (30, 12)),
        ("anthropic", [event.model_dump() for event in anthropic_stream()], (240, 42)),
    ],
)
def test_streams_of_plain_mappings(
    capture: Capture, provider: str, chunks: list[dict[str, Any]], tokens: tuple[int, int]
) -> None:
    @llm_call(provider)
    def stream(*, model: str) -> Iterable[dict[str, Any]]:
        yield from chunks

    assert list(stream(model="m1")) == chunks
    (span,) = capture.spans()
    assert span["name"] == "chat m1"
    attributes = span["attributes"]
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == tokens
    assert "gen_ai.output.messages" not in attributes  # content capture is off


def no_detach_errors(caplog: pytest.LogCaptureFixture) -> bool:
    return not [r for r in caplog.records if "detach" in r.getMessage().lower()]


def test_sync_stream_closed_early_ends_its_span_cleanly(capture: Capture, caplog: pytest.LogCaptureFixture) -> None:
    closed: list[bool] = []

    @llm_call("openai", "gpt-4o-mini", capture_content=True)
    def stream() -> Generator[ChatCompletionChunk]:
        try:
            yield from OPENAI_STREAM
        finally:
            closed.append(True)

    caplog.set_level(logging.DEBUG)
    chunks = stream()
    for _ in chunks:
        break
    assert capture.open_spans() == ["chat gpt-4o-mini"]
    chunks.close()
    assert closed == [True]
    assert capture.open_spans() == []
    (span,) = capture.spans()
    assert span["status"] == {"code": "UNSET", "description": None}
    assert json.loads(span["attributes"]["gen_ai.output.messages"]) == [
        # No finish reason came before the close: the conventions' schema requires one, so "unknown".
        {"role": "assistant", "parts": [{"type": "text", "content": "Hel"}], "finish_reason": "unknown"}
    ]
    assert "gen_ai.usage.input_tokens" not in span["attributes"]
    assert span["attributes"]["gen_ai.response.time_to_first_chunk"] > 0
    assert no_detach_errors(caplog)


async def test_async_stream_closed_early_ends_its_span_cleanly(
    capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    closed: list[bool] = []

    @llm_call("anthropic", "claude")
    async def stream() -> AsyncGenerator[Any]:
        try:
            for event in anthropic_stream():
                yield event
        finally:
            closed.append(True)

    caplog.set_level(logging.DEBUG)
    events = stream()
    async for _ in events:
        break
    await events.aclose()
    assert closed == [True]
    assert capture.open_spans() == []
    (span,) = capture.spans()
    assert span["status"] == {"code": "UNSET", "description": None}
    # message_start came through: its model, id and input usage are on the span, the output count is its first.
    assert picked(span["attributes"])["gen_ai.usage.input_tokens"] == 240
    assert span["attributes"]["gen_ai.response.id"] == "msg_9"
    assert no_detach_errors(caplog)


async def test_async_stream_closed_by_another_task(capture: Capture, caplog: pytest.LogCaptureFixture) -> None:
    @llm_call("openai", "gpt-4o-mini")
    async def stream() -> AsyncGenerator[ChatCompletionChunk]:
        for chunk in OPENAI_STREAM:
            yield chunk

    caplog.set_level(logging.DEBUG)
    chunks = stream()
    assert await asyncio.create_task(anext(chunks)) == OPENAI_STREAM[0]
    await asyncio.create_task(chunks.aclose())
    assert capture.open_spans() == []
    assert no_detach_errors(caplog)


def test_error_mid_stream_marks_the_span(capture: Capture) -> None:
    @llm_call("openai", "gpt-4o-mini")
    def stream() -> Generator[ChatCompletionChunk]:
        yield OPENAI_STREAM[0]
        raise ConnectionError("stream reset")

    with pytest.raises(ConnectionError):
        list(stream())
    (span,) = capture.spans()
    assert span["status"] == {"code": "ERROR", "description": "ConnectionError: stream reset"}
    assert span["attributes"]["gen_ai.response.time_to_first_chunk"] > 0
    (duration,) = capture.metric("gen_ai.client.operation.duration")
    assert duration["attributes"]["error.type"] == "ConnectionError"


def test_values_sent_into_the_stream_reach_the_generator(capture: Capture) -> None:
    @llm_call("openai", "gpt-4o-mini")
    def stream() -> Generator[ChatCompletionChunk, str, str]:
        reply = yield OPENAI_STREAM[0]
        yield openai_chunk(reply)
        return "done"

    chunks = stream()
    next(chunks)
    assert chunks.send("echo").choices[0].delta.content == "echo"
    with pytest.raises(StopIteration) as stopped:
        next(chunks)
    assert stopped.value.value == "done"
    assert capture.spans()[0]["attributes"]["gen_ai.response.id"] == "chatcmpl-9"


def test_each_call_reads_only_its_own_stream(capture: Capture) -> None:
    @llm_call("anthropic", "claude")
    def stream() -> Generator[Any]:
        yield from anthropic_stream()

    first, second = stream(), stream()
    for a, b in zip(first, second, strict=True):
        assert a == b
    assert [span["attributes"]["gen_ai.usage.output_tokens"] for span in capture.spans()] == [42, 42]
    assert [p["count"] for p in capture.metric("gen_ai.client.operation.time_to_first_chunk")] == [2]


def test_a_stream_method_decorated_above_classmethod(capture: Capture) -> None:
    class Client:
        @llm_call("openai", "gpt-4o-mini")
        @classmethod
        def stream(cls) -> Generator[ChatCompletionChunk]:
            yield from OPENAI_STREAM

    assert len(list(Client.stream())) == 4
    assert capture.spans()[0]["attributes"]["gen_ai.usage.input_tokens"] == 30


def test_a_plain_function_is_no_stream(capture: Capture) -> None:
    @llm_call("openai", "gpt-4o-mini")
    def ask() -> None:
        return None

    ask()
    attributes = capture.spans()[0]["attributes"]
    assert "gen_ai.request.stream" not in attributes and "gen_ai.response.time_to_first_chunk" not in attributes
    assert capture.metric("gen_ai.client.operation.time_to_first_chunk") == []


@pytest.mark.usefixtures("clean_globals")
async def test_streams_run_untouched_with_no_sdk(caplog: pytest.LogCaptureFixture) -> None:
    @llm_call("openai", "gpt-4o-mini")
    def stream() -> Generator[ChatCompletionChunk]:
        yield from OPENAI_STREAM

    @llm_call("anthropic", "claude")
    async def astream() -> AsyncGenerator[Any]:
        for event in anthropic_stream():
            yield event

    caplog.set_level(logging.WARNING, logger="rfobs")
    assert list(stream()) == OPENAI_STREAM
    assert [event async for event in astream()] == anthropic_stream()
    assert [r.getMessage() for r in caplog.records if "internal error" in r.getMessage()] == []
