"""The `rfobs demo` workload: a small research agent whose tasks, tools, API and LLM calls are instrumented.

Latency varies and calls fail on purpose, so the traces and metrics have something to show: retries of dropped
connections, timeouts, a shared rate limit on the search API, a circuit breaker that opens while the second
search backend has an outage and closes after it, and an LLM call with token counts. With `--redis URL` the
limiter and the breaker keep their state in Redis, shared by every demo running against it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import rfobs
from rfobs.instrument import CircuitBreaker, RateLimiter, RetryPolicy

if TYPE_CHECKING:
    from rfobs.sdk import Telemetry

__all__ = ["DemoStats", "closing_lines", "opening_lines", "run_command", "run_demo"]


@dataclass
class DemoStats:
    """What the demo has done so far."""

    questions: int = 0
    failed_questions: int = 0
    api_calls: int = 0
    failed_api_calls: int = 0
    tokens: int = 0
    breaker: str = "closed"


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


class ResearchAgent:
    """Answers a question: plan, search two sources, read a paper, ask an LLM to summarise."""

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

    @rfobs.tool("read_paper", agent="researcher")
    async def read_paper(self, paper: str) -> str:
        await self._latency(0.002, 0.02)
        return f"notes on {paper}"

    @rfobs.task("researcher", "plan")
    async def plan(self, question: str) -> list[str]:
        await self._latency(0.001, 0.01)
        return [question, f"{question} survey"]

    @rfobs.llm_call("openai", "gpt-4o-mini")
    async def complete(self, prompt: str) -> dict[str, object]:
        await self._latency(0.02, 0.08)
        usage = {"prompt_tokens": len(prompt.split()) * 4, "completion_tokens": self._rng.randint(60, 240)}
        self._stats.tokens += usage["prompt_tokens"] + usage["completion_tokens"]
        return {"model": "gpt-4o-mini-2024-07-18", "usage": usage, "text": "a summary"}

    @rfobs.task("researcher", "summarize")
    async def summarize(self, notes: list[str]) -> str:
        if not notes:
            raise ValueError("nothing to summarise: every search failed")
        response = await self.complete("Summarise: " + " / ".join(notes))
        return str(response["text"])

    @rfobs.task("researcher", "answer_question")
    async def answer(self, question: str) -> str:
        queries = await self.plan(question)
        papers: list[str] = []
        for query in queries:
            results = await asyncio.gather(self.search_arxiv(query), self.search_scholar(query), return_exceptions=True)
            for result in results:
                if isinstance(result, _Response) and result.status_code == 200:
                    papers.extend(result.body[:1])
        notes = [await self.read_paper(paper) for paper in papers[:2]]
        return await self.summarize(notes)


_QUESTIONS = (
    "retrieval augmented generation",
    "tool use in language agents",
    "llm evaluation",
    "agent memory",
    "multi-agent debate",
)


async def run_demo(
    duration: float, *, concurrency: int = 3, seed: int | None = None, on_progress: Callable[[DemoStats], None]
) -> DemoStats:
    """Run `concurrency` agents answering questions until `duration` seconds have passed."""
    rng = random.Random(seed)
    stats = DemoStats()
    outage = _Outage(duration)
    deadline = time.monotonic() + duration

    async def worker() -> None:
        agent = ResearchAgent(rng, stats, outage)
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

    await asyncio.gather(report(), *(worker() for _ in range(concurrency)))
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


def closing_lines(telemetry: Telemetry, *, delivered: bool) -> list[str]:
    """What `rfobs demo` prints once it has shut down: where the telemetry it left can be read now.

    Not the `/metrics` or health URLs: they closed with the demo.
    """
    settings = telemetry.settings
    lines = ["done." if delivered else "done, but some telemetry could not be delivered before the shutdown deadline."]
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

    def summary(stats: DemoStats) -> str:
        return (
            f"  questions {stats.questions} ({stats.failed_questions} failed)   "
            f"api calls {stats.api_calls} ({stats.failed_api_calls} failed)   "
            f"llm tokens {stats.tokens}   breaker {stats.breaker}"
        )

    def progress(stats: DemoStats) -> None:
        if interactive:
            print(f"\r{summary(stats)}\x1b[K", end="", flush=True)

    stats = asyncio.run(run_demo(duration, concurrency=concurrency, seed=seed, on_progress=progress))
    print() if interactive else print(summary(stats))
    delivered = telemetry.shutdown()
    print("\n".join(closing_lines(telemetry, delivered=delivered)))
    return 0
