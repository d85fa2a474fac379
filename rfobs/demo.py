"""The `rfobs demo` workload: a small research agent whose tasks, tools and API calls are instrumented.

Latency varies and some calls fail on purpose, so the traces and metrics have something to show.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import rfobs

__all__ = ["DemoStats", "run_demo"]


@dataclass
class DemoStats:
    """What the demo has done so far."""

    questions: int = 0
    failed_questions: int = 0
    api_calls: int = 0
    failed_api_calls: int = 0


@dataclass(frozen=True)
class _Response:
    """An HTTP-like response: `@api_call` reads its status code."""

    status_code: int
    body: list[str]


class TransientAPIError(ConnectionError):
    """A search backend dropped the connection."""


class ResearchAgent:
    """Answers a question: plan, search two sources, read a paper, summarise."""

    def __init__(self, rng: random.Random, stats: DemoStats) -> None:
        self._rng = rng
        self._stats = stats

    async def _latency(self, low: float, high: float) -> None:
        await asyncio.sleep(self._rng.uniform(low, high))

    @rfobs.api_call("arxiv", "search")
    async def search_arxiv(self, query: str) -> _Response:
        self._stats.api_calls += 1
        await self._latency(0.005, 0.06)
        if self._rng.random() < 0.08:
            self._stats.failed_api_calls += 1
            raise TransientAPIError("arxiv closed the connection")
        return _Response(200, [f"arxiv:{query}:{i}" for i in range(3)])

    @rfobs.api_call("semantic_scholar", "search")
    async def search_scholar(self, query: str) -> _Response:
        self._stats.api_calls += 1
        await self._latency(0.01, 0.09)
        if self._rng.random() < 0.06:
            self._stats.failed_api_calls += 1
            return _Response(503, [])
        return _Response(200, [f"s2:{query}:{i}" for i in range(2)])

    @rfobs.tool("read_paper", agent="researcher")
    async def read_paper(self, paper: str) -> str:
        await self._latency(0.002, 0.02)
        return f"notes on {paper}"

    @rfobs.task("researcher", "plan")
    async def plan(self, question: str) -> list[str]:
        await self._latency(0.001, 0.01)
        return [question, f"{question} survey"]

    @rfobs.task("researcher", "summarize")
    async def summarize(self, notes: list[str]) -> str:
        await self._latency(0.01, 0.04)
        if not notes:
            raise ValueError("nothing to summarise: every search failed")
        return " / ".join(notes)

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
    deadline = time.monotonic() + duration

    async def worker() -> None:
        agent = ResearchAgent(rng, stats)
        while time.monotonic() < deadline:
            stats.questions += 1
            try:
                await agent.answer(rng.choice(_QUESTIONS))
            except ValueError:
                stats.failed_questions += 1

    async def report() -> None:
        while time.monotonic() < deadline:
            on_progress(stats)
            await asyncio.sleep(0.25)

    await asyncio.gather(report(), *(worker() for _ in range(concurrency)))
    on_progress(stats)
    return stats
