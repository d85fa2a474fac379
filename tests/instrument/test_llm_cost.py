"""`@llm_call` prices each call it can (genai-prices) and the agent around it carries the sum."""

from __future__ import annotations

import pytest

import rfobs
from rfobs.instrument._cost import llm_cost
from rfobs.testing import Capture

pytestmark = pytest.mark.timeout(30)


@rfobs.llm_call("openai")
def ask(prompt: str, model: str) -> dict[str, object]:
    return {
        "id": "chatcmpl-1",
        "model": "gpt-4o-2024-08-06",
        "usage": {"prompt_tokens": 1_200, "completion_tokens": 300, "prompt_tokens_details": {"cached_tokens": 1_000}},
    }


@rfobs.llm_call("openai", "no-such-model-xyz")
def ask_unknown(prompt: str) -> dict[str, object]:
    return {"usage": {"prompt_tokens": 10, "completion_tokens": 5}}


@rfobs.agent("researcher")
def research() -> None:
    ask("a", model="gpt-4o")
    ask("b", model="gpt-4o")
    ask_unknown("c")


def test_each_priced_call_carries_its_cost_and_the_agent_their_sum(capture: Capture) -> None:
    research()
    one = llm_cost("openai", "gpt-4o-2024-08-06", input_tokens=1_200, output_tokens=300, cache_read_tokens=1_000)
    assert one is not None
    # 200 uncached input tokens at $2.50/M, 1,000 cached at $1.25/M, 300 output at $10/M.
    assert one == pytest.approx(200 * 2.5e-6 + 1_000 * 1.25e-6 + 300 * 10e-6)
    spans = {s["name"]: s for s in capture.spans() if s["name"] != "chat gpt-4o"}
    priced = [s for s in capture.spans() if s["name"] == "chat gpt-4o"]
    assert [s["attributes"]["gen_ai.usage.cost"] for s in priced] == [pytest.approx(one), pytest.approx(one)]
    assert "gen_ai.usage.cost" not in spans["chat no-such-model-xyz"]["attributes"]
    assert spans["invoke_agent researcher"]["attributes"]["gen_ai.usage.cost"] == pytest.approx(2 * one)
