"""Streaming LLM calls: read usage, response fields and text from the chunks a decorated generator yields.

`@llm_call` on a generator (or async generator) of provider chunks goes through `wrap` like any generator, with
one more layer inside: the generator is wrapped so each chunk it yields passes a `StreamState` first. The state
is handed from `begin` (which makes it with the span) to that layer through a context variable: `wrap` calls the
function right after `begin`, in the same context, and the layer checks that the current span is the state's.

Chunk shapes: OpenAI `ChatCompletionChunk` (`choices[].delta`, `finish_reason`, `usage` on the last chunk with
`stream_options={"include_usage": True}`); Anthropic stream events (`message_start` with the model, id and input
usage, `content_block_start` / `content_block_delta` with text, `message_delta` with `stop_reason` and the output
usage); objects or mappings alike.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncGenerator, Callable, Generator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.trace import Span

from rfobs._guard import internal_error
from rfobs.instrument._capture import MAX_CAPTURE_LENGTH
from rfobs.instrument._llm_response import OutputMessage, Response, items
from rfobs.instrument._llm_usage import NO_USAGE, LLMUsage, count, field, llm_usage
from rfobs.instrument._wrap import Call

__all__ = [
    "GEN_AI_REQUEST_STREAM",
    "GEN_AI_TIME_TO_FIRST_CHUNK",
    "StreamCall",
    "StreamOutcome",
    "StreamState",
    "observe_async_generator",
    "observe_generator",
]

GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"

# Usage fields kept from the chunks, the latest value of each winning (Anthropic's output count is cumulative).
_USAGE_FIELDS: Final = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_tokens_details",
    "completion_tokens_details",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "input_tokens_details",
    "output_tokens_details",
)
_MAX_TEXT: Final = MAX_CAPTURE_LENGTH * 2  # assembled beyond what capture keeps, so the cut is marked


@dataclass(frozen=True, slots=True)
class StreamOutcome:
    """What a finished (or early-closed) stream showed: the result `@llm_call`'s result hook reads for a stream."""

    response: Response
    usage: LLMUsage
    time_to_first_chunk: float | None


class StreamState:
    """The chunks of one streaming call, read as they pass."""

    __slots__ = ("_fields", "_finish", "_id", "_model", "_roles", "_start", "_texts", "capture", "first_chunk", "span")

    def __init__(self, span: Span, capture: bool) -> None:
        self.span = span
        self.capture = capture
        self.first_chunk: float | None = None
        self._start = time.perf_counter()
        self._id: str | None = None
        self._model: str | None = None
        self._fields: dict[str, object] = {}
        self._finish: dict[int, str] = {}
        self._texts: dict[int, list[str]] = {}
        self._roles: dict[int, str] = {}

    def seen(self, chunk: Any) -> Any:
        """Read `chunk` (never raises) and return it."""
        try:
            self._read(chunk)
        except Exception:
            internal_error("reading a streamed LLM chunk")
        return chunk

    def _read(self, chunk: object) -> None:
        if self.first_chunk is None:
            self.first_chunk = time.perf_counter() - self._start
            self.span.set_attribute(GEN_AI_TIME_TO_FIRST_CHUNK, self.first_chunk)
        kind = field(chunk, "type")
        if kind == "message_start":
            message = field(chunk, "message")
            self._identify(message)
            self._add_usage(field(message, "usage"))
        elif kind == "message_delta":
            if isinstance(reason := field(field(chunk, "delta"), "stop_reason"), str):
                self._finish[0] = reason
            self._add_usage(field(chunk, "usage"))
        elif kind == "content_block_start":
            block = field(chunk, "content_block")
            if self.capture and field(block, "type") == "text":
                self._add_text(0, field(block, "text"))
        elif kind == "content_block_delta":
            delta = field(chunk, "delta")
            if self.capture and field(delta, "type") == "text_delta":
                self._add_text(0, field(delta, "text"))
        elif kind is None:
            self._read_openai(chunk)

    def _read_openai(self, chunk: object) -> None:
        self._identify(chunk)
        for choice in items(field(chunk, "choices")):
            index = count(choice, "index") or 0
            if isinstance(reason := field(choice, "finish_reason"), str):
                self._finish[index] = reason
            if self.capture:
                delta = field(choice, "delta")
                if isinstance(role := field(delta, "role"), str):
                    self._roles[index] = role
                self._add_text(index, field(delta, "content"))
        self._add_usage(field(chunk, "usage"))

    def _identify(self, source: object) -> None:
        if self._id is None and isinstance(found := field(source, "id"), str):
            self._id = found
        if self._model is None and isinstance(found := field(source, "model"), str):
            self._model = found

    def _add_usage(self, usage: object) -> None:
        if usage is None:
            return
        for name in _USAGE_FIELDS:
            if (value := field(usage, name)) is not None:
                self._fields[name] = value

    def _add_text(self, index: int, text: object) -> None:
        if not isinstance(text, str) or not text:
            return
        texts = self._texts.setdefault(index, [])
        if sum(map(len, texts)) < _MAX_TEXT:
            texts.append(text[:_MAX_TEXT])

    def outcome(self) -> StreamOutcome:
        """What the chunks read so far show."""
        indexes = sorted(self._finish.keys() | self._texts.keys())
        outputs = tuple(
            OutputMessage(
                self._roles.get(index, "assistant"),
                "".join(self._texts[index]) if index in self._texts else None,
                self._finish.get(index),
            )
            for index in indexes
        )
        reasons = tuple(self._finish[index] for index in sorted(self._finish))
        usage = llm_usage(self._fields) if self._fields else NO_USAGE
        return StreamOutcome(Response(self._id, self._model, reasons, outputs), usage, self.first_chunk)


class StreamCall:
    """The `Call` of a streaming LLM call: reads the chunks, then finishes the inner call with their `StreamOutcome`.

    Making one offers its `StreamState` to the observing layer of the generator `wrap` starts next.
    """

    __slots__ = ("_call", "_state", "span")

    def __init__(self, call: Call, capture: bool) -> None:
        self._call, self.span = call, call.span
        self._state = StreamState(call.span, capture)
        # Offered to the generator's observing layer, which `wrap` starts next, in this same context.
        _offered.set(self._state)

    def finish(self, result: object, error: BaseException | None) -> None:
        """End the call: the outcome read from the chunks stands for the result (the generator's return value)."""
        outcome: StreamOutcome | None = None
        if error is None:
            try:
                outcome = self._state.outcome()
            except Exception:
                internal_error("summing up a streamed LLM response")
        self._call.finish(outcome, error)


_offered: ContextVar[StreamState | None] = ContextVar("rfobs_llm_stream", default=None)


def _claim() -> StreamState | None:
    state = _offered.get()
    if state is None:
        return None
    _offered.set(None)
    return state if state.span is trace.get_current_span() else None


class _Observed(Generator[Any, Any, Any]):
    """Passes each item of a generator through `state.seen`; `yield from` it to forward `send`, `throw`, `close`.

    A class for the reason `_wrap._InSpan` is one: the wrapped generator's `StopIteration` must reach `yield from`.
    """

    __slots__ = ("_generator", "_state")

    def __init__(self, generator: Generator[Any, Any, Any], state: StreamState) -> None:
        self._generator, self._state = generator, state

    def __next__(self) -> Any:
        return self._state.seen(next(self._generator))

    def send(self, value: Any) -> Any:
        return self._state.seen(self._generator.send(value))

    def throw(self, *error: Any) -> Any:
        return self._state.seen(self._generator.throw(*error))

    def close(self) -> None:
        self._generator.close()


def observe_generator(func: Callable[..., Generator[Any, Any, Any]]) -> Callable[..., Generator[Any, Any, Any]]:
    """`func` with each yielded chunk read by the `StreamState` its call's `begin` offered."""

    @functools.wraps(func)
    def observed(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        state = _claim()
        generator = func(*args, **kwargs)
        if state is None:
            return (yield from generator)
        return (yield from _Observed(generator, state))

    return observed


def observe_async_generator(func: Callable[..., AsyncGenerator[Any, Any]]) -> Callable[..., AsyncGenerator[Any, Any]]:
    """The async `observe_generator`: forwards `asend`, `athrow` and `aclose` by hand (no async `yield from`)."""

    @functools.wraps(func)
    async def observed(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        state = _claim()
        generator = func(*args, **kwargs)
        step = generator.__anext__()
        while True:
            try:
                value = await step
            except StopAsyncIteration:
                return
            if state is not None:
                state.seen(value)
            try:
                sent = yield value
            except GeneratorExit:
                await generator.aclose()
                raise
            except BaseException as thrown:  # thrown in by the consumer: hand it to the generator
                step = generator.athrow(thrown)
            else:
                step = generator.asend(sent)

    return observed
