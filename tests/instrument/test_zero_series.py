"""Failure series exist at 0 from an operation's first call on: error ratios read 0 for a healthy agent, not empty."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.metrics import CallbackOptions

import rfobs
from rfobs.exceptions import RateLimited
from rfobs.instrument import _telemetry as t
from rfobs.instrument.ratelimit import RateLimiter
from rfobs.instrument.retry import retry
from rfobs.testing import Capture

pytestmark = pytest.mark.timeout(60)

TASKS = "researchflow_agents.agent_tasks"
API_CALLS = "researchflow_agents.api_calls"


def point(value: int, **attributes: str) -> dict[str, Any]:
    return {"attributes": attributes, "value": value}


@rfobs.task("researcher", "plan")
def plan(fail: bool = False) -> str:
    if fail:
        raise ValueError("no plan")
    return "plan"


@rfobs.tool("lookup", agent="researcher")
def lookup() -> str:
    return "found"


@rfobs.api_call("arxiv", "search")
def search(fail: bool = False) -> str:
    if fail:
        raise ConnectionError("reset")
    return "papers"


@rfobs.llm_call("openai")
def chat(model: str) -> dict[str, object]:
    return {"model": model, "usage": {"prompt_tokens": 3, "completion_tokens": 5}}


def test_a_tasks_first_success_brings_its_error_series_at_zero(capture: Capture) -> None:
    assert capture.metric(TASKS) == []
    plan()
    assert capture.metric(TASKS) == [
        point(1, agent="researcher", task="plan", status="success"),
        point(0, agent="researcher", task="plan", status="error"),
    ]
    plan()
    lookup()
    assert capture.metric(TASKS) == [
        point(2, agent="researcher", task="plan", status="success"),
        point(0, agent="researcher", task="plan", status="error"),
        point(1, agent="researcher", task="lookup", status="success"),
        point(0, agent="researcher", task="lookup", status="error"),
    ]


def test_a_later_error_counts_once_on_the_zero_series(capture: Capture) -> None:
    plan()
    with pytest.raises(ValueError, match="no plan"):
        plan(fail=True)
    with pytest.raises(ValueError, match="no plan"):
        plan(fail=True)
    assert capture.metric(TASKS) == [
        point(1, agent="researcher", task="plan", status="success"),
        point(2, agent="researcher", task="plan", status="error"),
    ]


def test_an_error_first_is_counted_without_a_zero_success_series(capture: Capture) -> None:
    with pytest.raises(ConnectionError):
        search(fail=True)
    assert capture.metric(API_CALLS) == [point(1, service="arxiv", endpoint="search", status="error")]
    search()
    assert capture.metric(API_CALLS) == [
        point(1, service="arxiv", endpoint="search", status="error"),
        point(1, service="arxiv", endpoint="search", status="success"),
    ]


def test_llm_calls_of_several_models_share_one_error_series(capture: Capture) -> None:
    chat("gpt-4o")
    chat("gpt-4o-mini")
    assert capture.metric(API_CALLS) == [
        point(2, service="openai", endpoint="chat", status="success"),
        point(0, service="openai", endpoint="chat", status="error"),
    ]


def observed(counts: t.Counts) -> list[tuple[dict[str, object], float]]:
    return [(dict(o.attributes or {}), o.value) for o in counts.observe(CallbackOptions())]


def test_the_zero_series_is_added_once_per_label_set() -> None:
    counts = t.Counts(("status", "error"))
    counts.add((("task", "plan"), ("status", "success")))
    counts.add((("task", "plan"), ("status", "error")))
    counts.add((("task", "plan"), ("status", "success")))  # not its first time: the error count stays 1
    assert observed(counts) == [({"task": "plan", "status": "success"}, 2), ({"task": "plan", "status": "error"}, 1)]
    without_the_key = t.Counts(("status", "error"))
    without_the_key.add((("task", "plan"),))
    assert observed(without_the_key) == [({"task": "plan"}, 1)]
    no_rule = t.Counts()
    no_rule.add((("task", "plan"), ("status", "success")))
    assert observed(no_rule) == [({"task": "plan", "status": "success"}, 1)]


def test_a_retry_policys_first_outcome_brings_exhausted_at_zero(capture: Capture, fast_waits: object) -> None:
    attempts: list[int] = []

    @retry(max_attempts=2, base_delay=0.1, jitter="none", name="fetch")
    def fetch(fail: bool) -> str:
        attempts.append(1)
        if fail:
            raise ConnectionError("reset")
        return "ok"

    assert fetch(False) == "ok"
    metric = "researchflow_agents.retry_attempts"
    assert capture.metric(metric) == [
        point(1, operation="fetch", outcome="success"),
        point(0, operation="fetch", outcome="exhausted"),
    ]
    with pytest.raises(ConnectionError):
        fetch(True)
    assert capture.metric(metric) == [
        point(1, operation="fetch", outcome="success"),
        point(1, operation="fetch", outcome="exhausted"),
        point(1, operation="fetch", outcome="retry"),
    ]


def test_a_limiters_first_decision_brings_rejected_at_zero(capture: Capture, fast_waits: object) -> None:
    limiter = RateLimiter(1, burst=1, name="search", mode="reject")
    metric = "researchflow_agents.rate_limit_requests"
    assert capture.metric(metric) == []
    limiter.acquire_sync()
    assert capture.metric(metric) == [
        point(1, limiter="search", decision="allowed"),
        point(0, limiter="search", decision="rejected"),
    ]
    with pytest.raises(RateLimited):
        limiter.acquire_sync()
    assert capture.metric(metric) == [
        point(1, limiter="search", decision="allowed"),
        point(1, limiter="search", decision="rejected"),
    ]
