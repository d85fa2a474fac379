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
