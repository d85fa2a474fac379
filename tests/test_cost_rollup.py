"""The cost roll-up: each LLM call's `gen_ai.usage.cost` is added once to the nearest open agent span around it."""

from __future__ import annotations

import threading
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Span, Tracer

import rfobs
from rfobs._cost_rollup import CostRollupProcessor
from rfobs.instrument._cost import GEN_AI_USAGE_COST
from rfobs.testing import Capture, SequentialIds

pytestmark = pytest.mark.timeout(60)

KIND = "openinference.span.kind"


def tracer_of(capture: Capture) -> Tracer:
    return capture.tracer_provider.get_tracer("test")


@contextmanager
def agent(tracer: Tracer, name: str) -> Generator[Span]:
    with tracer.start_as_current_span(name, attributes={KIND: "AGENT"}) as span:
        yield span


def llm(tracer: Tracer, name: str, cost: float | None) -> None:
    with tracer.start_as_current_span(name, attributes={KIND: "LLM"}) as span:
        if cost is not None:
            span.set_attribute(GEN_AI_USAGE_COST, cost)  # as `record_cost` does once the usage is known


def costs(capture: Capture) -> dict[str, Any]:
    return {s["name"]: s["attributes"].get(GEN_AI_USAGE_COST) for s in capture.spans()}


def test_an_agent_span_carries_the_sum_of_its_calls_including_those_under_tools(capture: Capture) -> None:
    tracer = tracer_of(capture)
    with agent(tracer, "researcher"):
        llm(tracer, "plan", 0.25)
        with tracer.start_as_current_span("search", attributes={KIND: "TOOL"}):
            llm(tracer, "summarise", 0.125)
            llm(tracer, "free", None)
    llm(tracer, "outside", 1.0)
    assert costs(capture) == {
        "plan": 0.25,
        "summarise": 0.125,
        "free": None,
        "search": None,
        "researcher": 0.375,
        "outside": 1.0,
    }


def test_an_agent_without_priced_calls_has_no_cost(capture: Capture) -> None:
    tracer = tracer_of(capture)
    with agent(tracer, "idle"):
        llm(tracer, "unpriced", None)
    assert costs(capture) == {"unpriced": None, "idle": None}


def test_nested_agents_each_get_their_total_and_the_outer_counts_the_inner_once(capture: Capture) -> None:
    tracer = tracer_of(capture)
    with agent(tracer, "outer"):
        llm(tracer, "outer.plan", 0.5)
        with agent(tracer, "inner"):
            llm(tracer, "inner.a", 0.25)
            with tracer.start_as_current_span("inner.tool"), agent(tracer, "innermost"):
                llm(tracer, "innermost.a", 0.0625)
            llm(tracer, "inner.b", 0.125)
        llm(tracer, "outer.report", 1.0)
    assert costs(capture) == {
        "outer.plan": 0.5,
        "inner.a": 0.25,
        "innermost.a": 0.0625,
        "innermost": 0.0625,
        "inner.tool": None,
        "inner.b": 0.125,
        "inner": 0.4375,
        "outer.report": 1.0,
        "outer": 1.9375,
    }


def test_a_call_ending_after_its_agent_goes_to_the_next_open_agent(capture: Capture) -> None:
    tracer = tracer_of(capture)
    with agent(tracer, "outer"):
        inner = tracer.start_span("inner", attributes={KIND: "AGENT"})
        late = tracer.start_span("late", context=trace.set_span_in_context(inner))
        inner.end()
        late.set_attribute(GEN_AI_USAGE_COST, 0.5)
        late.end()
    assert costs(capture) == {"inner": None, "late": 0.5, "outer": 0.5}


def test_calls_in_many_threads_add_up_exactly(capture: Capture) -> None:
    tracer = tracer_of(capture)
    threads_n, calls_n = 8, 50
    with agent(tracer, "fan-out") as parent:
        context = trace.set_span_in_context(parent)

        def work() -> None:
            for _ in range(calls_n):
                with tracer.start_as_current_span("call", context=context) as span:
                    span.set_attribute(GEN_AI_USAGE_COST, 0.125)

        threads = [threading.Thread(target=work) for _ in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    (root,) = [s for s in capture.spans() if s["name"] == "fan-out"]
    assert root["attributes"][GEN_AI_USAGE_COST] == threads_n * calls_n * 0.125


def test_spans_are_forgotten_when_they_end_and_tracking_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    processor = CostRollupProcessor(max_tracked=2)
    exporter = InMemorySpanExporter()
    provider = TracerProvider(id_generator=SequentialIds(), shutdown_on_exit=False)
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    try:
        with agent(tracer, "root"):
            with tracer.start_as_current_span("outside-budget-parent"):
                assert processor.tracked() == 2
                llm(tracer, "untracked", 0.25)
            llm(tracer, "tracked", 0.5)
            assert processor.tracked() == 1
        llm(tracer, "no agent", 1.0)
        assert processor.tracked() == 0
    finally:
        provider.shutdown()
    assert {s.name: (s.attributes or {}).get(GEN_AI_USAGE_COST) for s in exporter.get_finished_spans()} == {
        "untracked": 0.25,
        "outside-budget-parent": None,
        "tracked": 0.5,
        "root": 0.5,
        "no agent": 1.0,
    }
    assert [r.getMessage() for r in caplog.records if r.name == "rfobs"] == [
        "rfobs: 2 spans inside agents are open at once; the costs of newer ones are not added to their agent "
        "spans until some end"
    ]


@pytest.mark.usefixtures("clean_globals")
def test_init_installs_the_roll_up() -> None:
    telemetry = rfobs.init(logging__enabled=False, tracing__exporter="none", metrics__prometheus_port=0)
    exporter = InMemorySpanExporter()
    try:
        assert telemetry.tracer_provider is not None
        telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = telemetry.tracer_provider.get_tracer("test")
        with agent(tracer, "researcher"):
            llm(tracer, "plan", 0.25)
            llm(tracer, "write", 0.5)
    finally:
        telemetry.shutdown(timeout=2)
    assert {s.name: (s.attributes or {}).get(GEN_AI_USAGE_COST) for s in exporter.get_finished_spans()} == {
        "plan": 0.25,
        "write": 0.5,
        "researcher": 0.75,
    }
