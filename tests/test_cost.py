"""LLM cost from the genai-prices table: exact prices, cache and reasoning tokens, unknown models, the metrics."""

from __future__ import annotations

import logging
import sys
import urllib.request
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from genai_prices import data_snapshot
from prometheus_client.parser import text_string_to_metric_families

import rfobs
from rfobs.instrument import _cost
from rfobs.instrument import _telemetry as t
from rfobs.instrument._clock import VirtualClock
from rfobs.instrument._cost import GEN_AI_USAGE_COST, llm_cost, record_cost
from rfobs.testing import Capture

pytestmark = pytest.mark.timeout(60)

UNKNOWN = "researchflow_agents.llm_cost_unknown"
COST = "researchflow_agents.llm_cost_usd"


def rates(provider: str, model: str) -> dict[str, object]:
    """The per-million-token rates genai-prices holds now: the premise of the hand-computed costs below."""
    snapshot = data_snapshot.get_snapshot()
    _, info = snapshot.find_provider_model(model, None, provider, None)
    price = info.get_prices(datetime.now(UTC))
    return {
        "input": price.input_mtok,
        "cache_read": price.cache_read_mtok,
        "cache_write": price.cache_write_mtok,
        "output": price.output_mtok,
        "reasoning": price.output_reasoning_mtok,
    }


def test_openai_cache_reads_are_priced_at_their_own_rate_and_reasoning_as_output(capture: Capture) -> None:
    assert rates("openai", "gpt-4o") == {
        "input": Decimal("2.5"),
        "cache_read": Decimal("1.25"),
        "cache_write": None,
        "output": 10,
        "reasoning": None,
    }
    # 6,000 uncached x $2.50/M + 4,000 cached x $1.25/M + 1,000 output (200 of them reasoning) x $10/M.
    cost = llm_cost(
        "openai", "gpt-4o", input_tokens=10_000, output_tokens=1_000, cache_read_tokens=4_000, reasoning_tokens=200
    )
    assert cost == 0.015 + 0.005 + 0.01
    # A dated snapshot is priced as its model.
    assert llm_cost("openai", "gpt-4o-2024-08-06", input_tokens=1_000_000, output_tokens=0) == 2.5
    assert capture.metric(UNKNOWN) == []


def test_anthropic_cache_reads_and_writes_are_priced_once_each(capture: Capture) -> None:
    assert rates("anthropic", "claude-sonnet-4-20250514") == {
        "input": 3,
        "cache_read": Decimal("0.3"),
        "cache_write": Decimal("3.75"),
        "output": 15,
        "reasoning": None,
    }
    # 5,000 uncached x $3/M + 3,000 read x $0.30/M + 2,000 written x $3.75/M + 500 output x $15/M.
    cost = llm_cost(
        "anthropic",
        "claude-sonnet-4-20250514",
        input_tokens=10_000,
        output_tokens=500,
        cache_read_tokens=3_000,
        cache_creation_tokens=2_000,
    )
    assert cost == 0.0309
    assert cost == pytest.approx(0.015 + 0.0009 + 0.0075 + 0.0075)
    assert capture.metric(UNKNOWN) == []


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("gcp.gemini", "gemini-2.5-pro"),
        ("gcp.vertex_ai", "gemini-2.5-pro"),
        ("aws.bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
        ("x_ai", "grok-3"),
        ("mistral_ai", "mistral-large-latest"),
    ],
)
def test_opentelemetry_provider_names_map_to_the_price_table(capture: Capture, provider: str, model: str) -> None:
    cost = llm_cost(provider, model, input_tokens=1000, output_tokens=100)
    assert cost is not None
    assert cost > 0
    assert capture.metric(UNKNOWN) == []


def test_unknown_models_and_providers_give_none_and_are_counted_without_the_model(capture: Capture) -> None:
    assert llm_cost("openai", "ft:gpt-4o-mini:acme::abc123", input_tokens=10, output_tokens=1) is None
    assert llm_cost("openai", "my-own-model", input_tokens=10, output_tokens=1) is None
    assert llm_cost("ibm.watsonx.ai", "granite-13b", input_tokens=10, output_tokens=1) is None
    assert sorted(capture.metric(UNKNOWN), key=str) == [
        {"attributes": {"provider": "ibm.watsonx.ai", "reason": "provider"}, "value": 1},
        {"attributes": {"provider": "openai", "reason": "model"}, "value": 2},
    ]


@pytest.mark.parametrize(
    "counts",
    [
        {"input_tokens": 100, "output_tokens": 10, "cache_read_tokens": 80, "cache_creation_tokens": 30},
        {"input_tokens": 100, "output_tokens": 10, "reasoning_tokens": 11},
        {"input_tokens": -1, "output_tokens": 10},
        {"input_tokens": "100", "output_tokens": 10},
        {"input_tokens": True, "output_tokens": 10},
    ],
)
def test_token_counts_that_do_not_add_up_give_none_never_an_error(capture: Capture, counts: dict[str, int]) -> None:
    assert llm_cost("openai", "gpt-4o", **counts) is None
    assert capture.metric(UNKNOWN) == [{"attributes": {"provider": "openai", "reason": "usage"}, "value": 1}]
    assert capture.internal_errors() == 0


def test_record_cost_sets_the_span_attribute_and_adds_to_the_counter(capture: Capture) -> None:
    instruments = t.current()
    assert instruments is not None
    with instruments.tracer.start_as_current_span("chat gpt-4o") as span:
        first = record_cost(span, instruments, "openai", "gpt-4o", input_tokens=1_000_000, output_tokens=100_000)
    with instruments.tracer.start_as_current_span("chat gpt-4o-2024-08-06") as span:
        second = record_cost(span, instruments, "openai", "gpt-4o-2024-08-06", input_tokens=200_000, output_tokens=0)
    with instruments.tracer.start_as_current_span("chat mystery") as span:
        third = record_cost(span, instruments, "openai", "mystery", input_tokens=1, output_tokens=1)
    assert (first, second, third) == (3.5, 0.5, None)
    assert [s["attributes"] for s in capture.spans()] == [{GEN_AI_USAGE_COST: 3.5}, {GEN_AI_USAGE_COST: 0.5}, {}]
    assert capture.metric(COST) == [{"attributes": {"provider": "openai", "model": "gpt-4o"}, "value": 4.0}]
    assert capture.metric(UNKNOWN) == [{"attributes": {"provider": "openai", "reason": "model"}, "value": 1}]


def test_without_genai_prices_cost_is_absent_and_logged_once(
    capture: Capture, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "genai_prices", None)  # what `import genai_prices` meets when not installed
    _cost._forget()  # pyright: ignore[reportPrivateUsage]
    try:
        with caplog.at_level(logging.INFO, logger="rfobs"):
            assert llm_cost("openai", "gpt-4o", input_tokens=10, output_tokens=1) is None
            assert llm_cost("openai", "gpt-4o", input_tokens=10, output_tokens=1) is None
        assert [r.getMessage() for r in caplog.records] == [
            "rfobs: LLM calls are recorded without their cost in US dollars: pip install 'rfobs[cost]' for the "
            "genai-prices price table. (Reported once per process.)"
        ]
        assert capture.metric(UNKNOWN) == []
        assert capture.internal_errors() == 0
    finally:
        _cost._forget()  # pyright: ignore[reportPrivateUsage]


def test_a_newer_price_snapshot_replaces_the_cached_lookups(capture: Capture) -> None:
    assert llm_cost("openai", "gpt-4o", input_tokens=1_000_000, output_tokens=0) == 2.5
    bundled = data_snapshot.get_snapshot()
    empty = data_snapshot.DataSnapshot(providers=[], from_auto_update=True)
    data_snapshot.set_custom_snapshot(empty)  # as `genai_prices.UpdatePrices` does with fetched prices
    try:
        assert llm_cost("openai", "gpt-4o", input_tokens=1_000_000, output_tokens=0) is None
    finally:
        data_snapshot.set_custom_snapshot(None)
    assert data_snapshot.get_snapshot() is bundled
    assert capture.metric(UNKNOWN) == [{"attributes": {"provider": "openai", "reason": "provider"}, "value": 1}]


@pytest.mark.usefixtures("clean_globals")
def test_prometheus_exposes_the_cost_counter_as_llm_cost_usd_total() -> None:
    telemetry = rfobs.init(metrics__prometheus_port=0, logging__enabled=False, tracing__exporter="none")
    try:
        instruments = t.current()
        assert instruments is not None
        with instruments.tracer.start_as_current_span("chat") as span:
            record_cost(span, instruments, "anthropic", "claude-sonnet-4-20250514", input_tokens=0, output_tokens=1000)
        llm_cost("openai", "no-such-model", input_tokens=1, output_tokens=1)
        assert telemetry.metrics_url is not None
        with urllib.request.urlopen(telemetry.metrics_url, timeout=5) as response:
            exposition = response.read().decode()
    finally:
        telemetry.shutdown(timeout=2)
    samples = {
        sample.name: (
            {k: v for k, v in sample.labels.items() if not k.startswith("otel_scope_")},
            sample.value,
        )
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if "llm_cost" in sample.name
    }
    assert samples == {
        "researchflow_agents_llm_cost_usd_total": ({"provider": "anthropic", "model": "claude-sonnet-4-0"}, 0.015),
        "researchflow_agents_llm_cost_unknown_total": ({"provider": "openai", "reason": "model"}, 1.0),
    }


async def test_a_rate_limiter_in_dollars_is_a_spend_limit() -> None:
    """`acquire(cost=dollars)` spends from the bucket: $0.50 a minute, after a first burst of one unit ($1)."""
    clock = VirtualClock()
    limiter = rfobs.RateLimiter(0.50, per=60, clock=clock)
    waits = [await limiter.acquire(cost=0.25) for _ in range(10)]
    # The bucket holds max(1, rate) units: $1.00 goes at once, then $0.25 every 30 s.
    assert waits == pytest.approx([0, 0, 0, 0, 30, 30, 30, 30, 30, 30])
    assert clock.monotonic() == pytest.approx(180)  # $2.50 in 3 minutes: $1.00 burst + $1.50 at $0.50 a minute
    # In cents the burst is the budget itself: no 60 s ever spends more than 50 cents plus what refilled.
    clock = VirtualClock()
    cents = rfobs.RateLimiter(50, per=60, clock=clock)
    admitted: list[float] = []
    for _ in range(6):
        await cents.acquire(cost=25)
        admitted.append(clock.monotonic())
    assert admitted == pytest.approx([0, 0, 30, 60, 90, 120])
