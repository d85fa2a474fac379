"""Checked by pyright, not run: decorated callables keep their exact signatures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import assert_type

import rfobs


@rfobs.task("researcher", "plan")
def plan(question: str, *, depth: int = 1) -> list[str]:
    return [question] * depth


@rfobs.task
def bare(x: int) -> int:
    return x


@rfobs.api_call("llm", "chat")
async def chat(prompt: str) -> str:
    return prompt


@rfobs.tool("search")
def stream(n: int) -> Iterator[int]:
    yield from range(n)


@rfobs.task("researcher", "tokens")
async def tokens() -> AsyncIterator[str]:
    yield "a"


class Agent:
    @rfobs.task("researcher", "method")
    def method(self, x: int) -> str:
        return str(x)

    @rfobs.task("researcher", "klass")
    @classmethod
    def klass(cls, x: int) -> int:
        return x


def check() -> None:
    assert_type(plan("q", depth=2), list[str])
    assert_type(bare(1), int)
    assert_type(stream(3), Iterator[int])
    assert_type(tokens(), AsyncIterator[str])
    assert_type(Agent().method(1), str)
    assert_type(Agent.klass(2), int)
    assert_type(rfobs.track_agent_task("a", "b")(plan)("q"), list[str])


async def check_async() -> None:
    assert_type(await chat("hi"), str)


@rfobs.retry(max_attempts=3)
@rfobs.timeout(5)
@rfobs.rate_limit(10)
@rfobs.circuit_breaker("arxiv")
async def guarded(query: str) -> list[str]:
    return [query]


@rfobs.retry
def bare_retry(x: int) -> int:
    return x


@rfobs.task("researcher", retry=3, timeout=30, rate_limit=5, breaker=True)
def stacked(x: int, *, flag: bool = False) -> float:
    return float(x)


@rfobs.llm_call("openai", "gpt-4o")
async def ask(prompt: str) -> dict[str, int]:
    return {"prompt_tokens": len(prompt)}


class Policies:
    @rfobs.retry(max_attempts=2)
    def method(self, x: int) -> str:
        return str(x)


async def check_policies() -> None:
    assert_type(await guarded("q"), list[str])
    assert_type(bare_retry(1), int)
    assert_type(stacked(1, flag=True), float)
    assert_type(await ask("hi"), dict[str, int])
    assert_type(Policies().method(3), str)
