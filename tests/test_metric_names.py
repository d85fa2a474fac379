"""Every metric in DESIGN.md's table appears on /metrics under exactly its name, type and labels."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import rfobs
from rfobs.instrument import CircuitBreaker, RateLimiter, RetryPolicy
from rfobs.instrument._clock import VirtualClock

pytestmark = pytest.mark.usefixtures("clean_globals")

GEN_AI = {"gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model"}
EXPECTED = {
    # name (as the Prometheus client library reports a family): (type, labels)
    "researchflow_agents_agent_tasks": ("counter", {"agent", "task", "status"}),
    "researchflow_agents_agent_task_duration_seconds": ("histogram", {"agent", "task", "status"}),
    "researchflow_agents_api_calls": ("counter", {"service", "endpoint", "status"}),
    "researchflow_agents_api_call_duration_seconds": ("histogram", {"service", "endpoint", "status"}),
    "researchflow_agents_circuit_breaker_state_transitions": ("counter", {"breaker", "from_state", "to_state"}),
    "researchflow_agents_retry_attempts": ("counter", {"operation", "outcome"}),
    "researchflow_agents_timeout_operation_duration_seconds": ("histogram", {"operation", "outcome"}),
    "researchflow_agents_timeout_abandoned_threads": ("gauge", set[str]()),
    "researchflow_agents_rate_limit_requests": ("counter", {"limiter", "decision"}),
    "researchflow_agents_circuit_breaker_state": ("gauge", {"breaker"}),
    # Prometheus spells the semantic conventions' dotted attribute names with underscores.
    "gen_ai_client_token_usage": ("histogram", {*GEN_AI, "gen_ai_token_type"}),
    "gen_ai_client_operation_duration_seconds": ("histogram", GEN_AI),
}


def test_metric_names_types_and_labels_on_the_metrics_endpoint(fast_waits: VirtualClock) -> None:
    telemetry = rfobs.init(metrics__prometheus_port=0, logging__enabled=False, tracing__exporter="none")
    breaker = CircuitBreaker("scholar", failure_threshold=1)
    calls = 0

    @rfobs.task(
        "researcher",
        "search",
        retry=RetryPolicy(max_attempts=2, base_delay=0.01, name="search"),
        timeout=1.0,
        rate_limit=RateLimiter(100, name="arxiv"),
    )
    async def search() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("reset")

    @rfobs.api_call("scholar", "lookup")
    @breaker
    def lookup() -> None:
        raise ConnectionError("down")

    @rfobs.llm_call("openai", "gpt-4o")
    def ask() -> dict[str, dict[str, int]]:
        return {"usage": {"prompt_tokens": 3, "completion_tokens": 5}}

    asyncio.run(search())
    with contextlib.suppress(ConnectionError):
        lookup()
    ask()
    assert telemetry.metrics_url is not None
    with urllib.request.urlopen(telemetry.metrics_url, timeout=5) as response:
        exposition = response.read().decode()
    families = {family.name: family for family in text_string_to_metric_families(exposition)}
    for name, (kind, labels) in EXPECTED.items():
        assert name in families, f"{name} missing from /metrics"
        family = families[name]
        assert family.type == kind, name
        sample_labels = {key for sample in family.samples for key in sample.labels} - {"le"}
        assert sample_labels - {"otel_scope_name", "otel_scope_version", "otel_scope_schema_url"} == labels, name
    assert 'researchflow_agents_circuit_breaker_state{breaker="scholar"' in exposition
    telemetry.shutdown(timeout=2)
