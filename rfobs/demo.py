"""The `rfobs demo` workload: a small research agent whose tasks, tools, API and LLM calls are instrumented.

Latency varies and calls fail on purpose, so the traces and metrics have something to show: retries of dropped
connections, timeouts, a shared rate limit on the search API, a circuit breaker that opens while the second
search backend has an outage and closes after it, and LLM calls with token counts and cost. With `--redis URL`
the limiter and the breaker keep their state in Redis, shared by every demo running against it.

Each question is an `@rfobs.agent` invocation inside `rfobs.conversation(...)` (one conversation, user and
session per worker), so every span carries `gen_ai.conversation.id`, `session.id` and `user.id`. Content capture
is on: the prompts are made up and hold no personal data. The planner is a non-streaming Anthropic call, the
summary a streamed OpenAI one (chunks with usage on the last); both name priced models, so with genai-prices
installed (`pip install 'rfobs[cost]'`) the spans carry `gen_ai.usage.cost`, and without it no cost at all.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import rfobs
from rfobs.instrument import CircuitBreaker, RateLimiter, RetryPolicy
from rfobs.instrument._cost import llm_cost

if TYPE_CHECKING:
    from rfobs.conversation import Conversation
    from rfobs.sdk import Telemetry

__all__ = ["DemoStats", "ask_once", "closing_lines", "opening_lines", "run_command", "run_demo"]

PLANNER_MODEL = "claude-3-5-haiku-latest"
PLANNER_SNAPSHOT = "claude-3-5-haiku-20241022"  # the model a real answer names
WRITER_MODEL = "gpt-4o-mini"
WRITER_SNAPSHOT = "gpt-4o-mini-2024-07-18"
_PLANNER_SYSTEM = "You plan literature searches. Answer with two search queries, one per line."
_WRITER_SYSTEM = "You summarise research notes in three sentences for an engineer."
_CAVEATS = ("Most results come from small benchmarks.", "Two papers report negative results.", "")


@dataclass
class DemoStats:
    """What the demo has done so far."""

    questions: int = 0
    failed_questions: int = 0
    api_calls: int = 0
    failed_api_calls: int = 0
    tokens: int = 0
    cost: float | None = None
    """Estimated US dollars of the LLM calls; None while no call has been priced (genai-prices not installed)."""
    breaker: str = "closed"
    conversations: list[str] = field(default_factory=list[str])


@dataclass(frozen=True)
class _Response:
    """An HTTP-like response: `@api_call` reads its status code."""

    status_code: int
    body: list[str]


class TransientAPIError(ConnectionError):
    """A search backend dropped the connection."""


class _Outage:
    """The second search backend is down between 35% and 60% of the run."""

    def __init__(self, duration: float) -> None:
        self._start = time.monotonic()
        self._duration = duration

    def now(self) -> bool:
        elapsed = (time.monotonic() - self._start) / self._duration
        return 0.35 <= elapsed < 0.6


def _tokens(text: str) -> int:
    """A tokenizer's count, roughly: four tokens for three words."""
    return max(1, len(text.split()) * 4 // 3)


def _chunk(completion_id: str, delta: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
    """An OpenAI `chat.completion.chunk`, as a mapping."""
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    return {"id": completion_id, "object": "chat.completion.chunk", "model": WRITER_SNAPSHOT, "choices": [choice]}


def _delta_text(chunk: dict[str, Any]) -> str:
    return "".join(choice["delta"].get("content", "") for choice in chunk["choices"])


class ResearchAgent:
    """Answers a question: plan with an LLM, search two sources, read papers, stream a summary from an LLM."""

    # Shared by every agent in the process: one API budget and one view of the second backend's health.
    arxiv_limit = RateLimiter(40, burst=5, name="arxiv")
    scholar_breaker = CircuitBreaker("semantic_scholar", failure_threshold=3, reset_timeout=1.0)
    transient = RetryPolicy(max_attempts=3, base_delay=0.02, max_delay=0.2, name="arxiv.search")

    def __init__(self, rng: random.Random, stats: DemoStats, outage: _Outage) -> None:
        self._rng = rng
        self._stats = stats
        self._outage = outage

    async def _latency(self, low: float, high: float) -> None:
        await asyncio.sleep(self._rng.uniform(low, high))

    def _spent(self, provider: str, model: str, input_tokens: int, output_tokens: int) -> None:
        self._stats.tokens += input_tokens + output_tokens
        cost = llm_cost(provider, model, input_tokens=input_tokens, output_tokens=output_tokens)
        if cost is not None:
            self._stats.cost = (self._stats.cost or 0.0) + cost

    @rfobs.api_call("arxiv", "search")
    @transient
    @rfobs.timeout(0.08, name="arxiv.search")
    @arxiv_limit
    async def search_arxiv(self, query: str) -> _Response:
        self._stats.api_calls += 1
        # Mostly quick, sometimes slow enough for the 80 ms timeout, sometimes a dropped connection.
        await self._latency(0.005, 0.05 if self._rng.random() > 0.05 else 0.2)
        if self._rng.random() < 0.1:
            self._stats.failed_api_calls += 1
            raise TransientAPIError("arxiv closed the connection")
        return _Response(200, [f"arxiv:{query}:{i}" for i in range(3)])

    @rfobs.api_call("semantic_scholar", "search")
    @scholar_breaker
    async def search_scholar(self, query: str) -> _Response:
        self._stats.api_calls += 1
        await self._latency(0.01, 0.06)
        if self._outage.now() or self._rng.random() < 0.03:
            self._stats.failed_api_calls += 1
            raise ConnectionError("semantic scholar is unavailable")
        return _Response(200, [f"s2:{query}:{i}" for i in range(2)])

    @rfobs.tool("read_paper", agent="researcher", capture_args=True)
    async def read_paper(self, paper: str) -> str:
        await self._latency(0.002, 0.02)
        return f"notes on {paper}"

    @rfobs.llm_call("anthropic", PLANNER_MODEL, capture_content=True)
    async def ask_planner(self, *, system: str, messages: list[dict[str, str]]) -> dict[str, Any]:
        """The planning model's answer, in the shape of an Anthropic Messages response."""
        await self._latency(0.01, 0.04)
        question = messages[-1]["content"]
        text = f"{question}\n{question} survey"
        usage = {"input_tokens": _tokens(system) + _tokens(question), "output_tokens": _tokens(text)}
        self._spent("anthropic", PLANNER_SNAPSHOT, usage["input_tokens"], usage["output_tokens"])
        return {
            "id": f"msg_{self._rng.getrandbits(64):016x}",
            "type": "message",
            "role": "assistant",
            "model": PLANNER_SNAPSHOT,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "usage": usage,
        }

    @rfobs.llm_call("openai", WRITER_MODEL, capture_content=True)
    async def stream_summary(self, *, messages: list[dict[str, str]]) -> AsyncGenerator[dict[str, Any]]:
        """The writing model's answer, streamed as OpenAI chunks; usage comes on the last (`include_usage`)."""
        completion_id = f"chatcmpl-{self._rng.getrandbits(64):016x}"
        topic = messages[-1]["content"].rsplit("Question: ", 1)[-1]
        words = f"The papers on {topic} agree on the main approach and disagree on how to evaluate it.".split()
        words += self._rng.choice(_CAVEATS).split()
        await self._latency(0.01, 0.03)  # the time to the first token
        yield _chunk(completion_id, {"role": "assistant", "content": ""})
        for index, word in enumerate(words):
            await self._latency(0.001, 0.005)
            yield _chunk(completion_id, {"content": word if index == 0 else " " + word})
        yield _chunk(completion_id, {}, "stop")
        prompt = sum(_tokens(message["content"]) for message in messages)
        completion = _tokens(" ".join(words))
        self._spent("openai", WRITER_SNAPSHOT, prompt, completion)
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        yield {**_chunk(completion_id, {}), "choices": [], "usage": usage}

    @rfobs.task("researcher", "plan", capture_args=True)
    async def plan(self, question: str) -> list[str]:
        answer = await self.ask_planner(system=_PLANNER_SYSTEM, messages=[{"role": "user", "content": question}])
        return [line for line in answer["content"][0]["text"].splitlines() if line.strip()]

    @rfobs.task("researcher", "summarize", capture_args=True)
    async def summarize(self, question: str, notes: list[str]) -> str:
        if not notes:
            raise ValueError("nothing to summarise: every search failed")
        messages = [
            {"role": "system", "content": _WRITER_SYSTEM},
            {"role": "user", "content": "Notes: " + " / ".join(notes) + f"\nQuestion: {question}"},
        ]
        return "".join([_delta_text(chunk) async for chunk in self.stream_summary(messages=messages)])

    @rfobs.agent("researcher", version="1", capture_content=True)
    async def answer(self, question: str) -> str:
        """Answers research questions from arXiv and Semantic Scholar papers."""
        queries = await self.plan(question)
        papers: list[str] = []
        for query in queries:
            results = await asyncio.gather(self.search_arxiv(query), self.search_scholar(query), return_exceptions=True)
            for result in results:
                if isinstance(result, _Response) and result.status_code == 200:
                    papers.extend(result.body[:1])
        notes = [await self.read_paper(paper) for paper in papers[:2]]
        return await self.summarize(question, notes)


_QUESTIONS = (
    "retrieval augmented generation",
    "tool use in language agents",
    "llm evaluation",
    "agent memory",
    "multi-agent debate",
)


def _conversation(rng: random.Random, number: int, stats: DemoStats) -> Conversation:
    """A new conversation of user `number`, in a session of its own, noted in `stats`."""
    conversation = f"research-{rng.getrandbits(32):08x}"
    stats.conversations.append(conversation)
    return rfobs.conversation(conversation, user=f"user-{number}", session=f"session-{conversation[9:]}")


async def ask_once(question: str = _QUESTIONS[1], *, seed: int | None = None) -> tuple[str, DemoStats]:
    """One question to one research agent in a conversation of its own: a single demo trace (tests, screenshots).

    No outage, but the search backends still fail at random: pick a `seed` whose run answers.
    """
    rng = random.Random(seed)
    stats = DemoStats(questions=1)
    async with _conversation(rng, 1, stats):
        answer = await ResearchAgent(rng, stats, _Outage(3600.0)).answer(question)
    return answer, stats


async def run_demo(
    duration: float, *, concurrency: int = 3, seed: int | None = None, on_progress: Callable[[DemoStats], None]
) -> DemoStats:
    """Run `concurrency` agents answering questions until `duration` seconds have passed.

    Each agent is one user in one session and conversation, whose ids (`research-…`) are in `DemoStats`.
    """
    rng = random.Random(seed)
    stats = DemoStats()
    outage = _Outage(duration)
    deadline = time.monotonic() + duration

    async def worker(number: int) -> None:
        agent = ResearchAgent(rng, stats, outage)
        async with _conversation(rng, number, stats):
            while time.monotonic() < deadline:
                stats.questions += 1
                try:
                    await agent.answer(rng.choice(_QUESTIONS))
                except ValueError:
                    stats.failed_questions += 1

    async def report() -> None:
        while time.monotonic() < deadline:
            stats.breaker = ResearchAgent.scholar_breaker.state
            on_progress(stats)
            await asyncio.sleep(0.25)

    await asyncio.gather(report(), *(worker(number) for number in range(1, concurrency + 1)))
    stats.breaker = ResearchAgent.scholar_breaker.state
    on_progress(stats)
    return stats


def opening_lines(telemetry: Telemetry, concurrency: int, duration: float) -> list[str]:
    """What `rfobs demo` prints as it starts: the workload, and the endpoints served while it runs."""
    settings = telemetry.settings
    lines = [f"rfobs demo: {concurrency} research agents for {duration:g}s (environment: {settings.env})"]
    if telemetry.metrics_url:
        lines.append(f"  metrics:  {telemetry.metrics_url} (while the demo runs)")
    if telemetry.health_url:
        lines.append(f"  health:   {telemetry.health_url}/health (while the demo runs)")
    traces_to = os.path.abspath(telemetry.trace_file) if telemetry.trace_file else settings.otlp.endpoint
    lines.append(f"  traces:   {traces_to or 'not kept'} ({settings.trace_exporter})")
    on_redis = [name for name in ("ratelimit", "breaker") if settings[name].backend == "redis"]
    if on_redis and settings.redis.url is not None:
        what = {"ratelimit": "limiters", "breaker": "breakers"}
        shared = " and ".join(what[name] for name in on_redis)
        lines.append(f"  fleet:    {shared} on {settings.redis.url!r} (prefix {settings.redis.key_prefix!r})")
    return lines


def closing_lines(telemetry: Telemetry, *, delivered: bool, stats: DemoStats | None = None) -> list[str]:
    """What `rfobs demo` prints once it has shut down: its conversations and cost, and where to read its telemetry.

    Not the `/metrics` or health URLs: they closed with the demo.
    """
    settings = telemetry.settings
    lines = ["done." if delivered else "done, but some telemetry could not be delivered before the shutdown deadline."]
    if stats is not None and stats.conversations:
        lines.append(f"  conversations: {', '.join(stats.conversations)} (gen_ai.conversation.id, session.id, user.id)")
    if stats is not None and stats.cost is not None:
        lines.append(f"  LLM cost:      ${stats.cost:.6f} estimated (gen_ai.usage.cost on the LLM and agent spans)")
    lines.append("Where to look:")
    if telemetry.trace_file:
        lines += [
            f"  traces:   {os.path.abspath(telemetry.trace_file)}",
            "  rfobs traces --last 3        span trees of the newest traces",
            "  rfobs traces --errors        only traces with a failure",
        ]
    elif settings.trace_exporter == "otlp":
        lines.append(f"  your OTLP backend at {settings.otlp.endpoint} (service research-agent-demo)")
    else:
        lines.append(f"  the traces were not kept (tracing.exporter={settings.trace_exporter})")
    if settings.metrics.prometheus_enabled:
        lines.append("  metrics:  /metrics closed with the demo; your agent serves it while it runs (rfobs.init())")
    return lines


def run_command(
    duration: float,
    *,
    concurrency: int = 3,
    seed: int | None = None,
    env: str | None = None,
    redis: str | None = None,
) -> int:
    """`rfobs demo`: run the workload under `rfobs.init()`, show progress, then say where to look. Returns 0 or 1.

    `redis`: a Redis URL the demo's limiters and breakers share (`ratelimit.backend` and `breaker.backend` =
    redis), so that several demos at once share one rate limit and one view of the failing backend.
    """
    from rfobs.exceptions import ConfigError

    fleet: dict[str, Any] = {}
    if redis is not None:
        fleet = {"redis": {"url": redis}, "ratelimit": {"backend": "redis"}, "breaker": {"backend": "redis"}}
    try:
        telemetry = rfobs.init(env, service={"name": "research-agent-demo"}, logging={"enabled": False}, **fleet)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    # Breaker transitions and the like are in the traces and metrics; keep them out of the progress display.
    logging.getLogger("rfobs").addHandler(logging.NullHandler())
    interactive = sys.stdout.isatty()
    print("\n".join(opening_lines(telemetry, concurrency, duration)))

    def cost(stats: DemoStats) -> str:
        return "" if stats.cost is None else f" (${stats.cost:.4f})"

    def summary(stats: DemoStats) -> str:
        return (
            f"  questions {stats.questions} ({stats.failed_questions} failed)   "
            f"api calls {stats.api_calls} ({stats.failed_api_calls} failed)   "
            f"llm tokens {stats.tokens}{cost(stats)}   breaker {stats.breaker}"
        )

    def progress(stats: DemoStats) -> None:
        if interactive:
            print(f"\r{summary(stats)}\x1b[K", end="", flush=True)

    stats = asyncio.run(run_demo(duration, concurrency=concurrency, seed=seed, on_progress=progress))
    print() if interactive else print(summary(stats))
    delivered = telemetry.shutdown()
    print("\n".join(closing_lines(telemetry, delivered=delivered, stats=stats)))
    return 0
