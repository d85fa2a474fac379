"""Per-call cost of the rfobs decorators against raw OpenTelemetry and peer libraries, in one process.

Run: .venv/bin/python benchmarks/overhead.py [--quick]

Every figure is nanoseconds per call, the best of several rounds (the machine is shared: compare ratios, not
absolute numbers). The SDK is set up as `rfobs.init()` does, with rfobs's batch span processor and an exporter
that discards, so the span path is real but no I/O competes with the measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
import timeit
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

ROUNDS = 7


def per_call_ns(func: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(func, number=number, repeat=ROUNDS)) / number * 1e9


def async_per_call_ns(make: Callable[[], Awaitable[object]], number: int) -> float:
    async def run() -> float:
        best = float("inf")
        for _ in range(ROUNDS):
            start = time.perf_counter()
            for _ in range(number):
                await make()
            best = min(best, time.perf_counter() - start)
        return best / number * 1e9

    return asyncio.run(run())


def bare() -> int:
    return 1


async def abare() -> int:
    return 1


class NullExporter:
    """Accepts every batch and does nothing with it."""

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def llm_result() -> dict[str, Any]:
    """An OpenAI-shaped chat completion, as a client library's `model_dump()` gives it."""
    return {
        "id": "chatcmpl-1",
        "model": "bench-model-2025",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "An answer."}}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 30, "prompt_tokens_details": {"cached_tokens": 20}},
    }


MESSAGES = [{"role": "user", "content": "What is RAG?"}]
SYSTEM = "Be brief."


def genai_rows(telemetry: Any, n: int) -> tuple[list[tuple[str, float, float]], list[str]]:
    """`@llm_call` (content capture off and on) and `@agent`, each against hand-written OpenTelemetry.

    The hand-written code sets the same span attributes (GenAI and OpenInference) and records the same metric
    points, reading the same result dict; what it leaves out is rfobs's secret scrubbing of captured text.
    """
    import json

    from opentelemetry.trace import SpanKind

    import rfobs
    from rfobs.instrument._telemetry import DURATION_BUCKETS, GEN_AI_DURATION_BUCKETS, TOKEN_BUCKETS
    from rfobs.instrument.llm import llm_call

    tracer = telemetry.tracer_provider.get_tracer("raw.genai")
    meter = telemetry.meter_provider.get_meter("raw.genai")
    tokens = meter.create_histogram("raw.token.usage", "{token}", explicit_bucket_boundaries_advisory=TOKEN_BUCKETS)
    llm_seconds = meter.create_histogram(
        "raw.llm.duration", "s", explicit_bucket_boundaries_advisory=GEN_AI_DURATION_BUCKETS
    )
    calls = meter.create_counter("raw.api_calls")
    call_seconds = meter.create_histogram("raw.api_duration", "s", explicit_bucket_boundaries_advisory=DURATION_BUCKETS)
    unpriced = meter.create_counter("raw.llm_cost_unknown")
    base = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "bench-model"}
    start_attributes = {
        **base, "openinference.span.kind": "LLM", "llm.provider": "openai", "llm.system": "openai",
        "llm.model_name": "bench-model",
    }  # fmt: skip
    token_attributes = {kind: {**base, "gen_ai.token.type": kind} for kind in ("input", "output")}
    call_attributes = {"service": "openai", "endpoint": "chat", "status": "success"}
    unpriced_attributes = {"provider": "openai", "reason": "model"}

    def parts(message: dict[str, Any]) -> list[dict[str, str]]:
        return [{"type": "text", "content": message["content"]}]

    def raw_llm(capture: bool) -> Callable[[], object]:
        def call(**kwargs: Any) -> object:
            start = time.perf_counter()
            with tracer.start_as_current_span(
                "chat bench-model", kind=SpanKind.CLIENT, attributes=start_attributes
            ) as span:
                if capture:
                    system = {"role": "system", "content": kwargs["system"]}
                    text = json.dumps(
                        [{"role": m["role"], "parts": parts(m)} for m in kwargs["messages"]], separators=(",", ":")
                    )
                    span.set_attributes({
                        "gen_ai.system_instructions": json.dumps(parts(system), separators=(",", ":")),
                        "gen_ai.input.messages": text, "input.value": text, "input.mime_type": "application/json",
                        **{f"llm.input_messages.{i}.message.{k}": m[k]
                           for i, m in enumerate([system, *kwargs["messages"]]) for k in ("role", "content")},
                    })  # fmt: skip
                result = llm_result()
                usage, choices = result["usage"], result["choices"]
                span.set_attributes({
                    "gen_ai.response.id": result["id"], "gen_ai.response.model": result["model"],
                    "llm.model_name": result["model"],
                    "gen_ai.response.finish_reasons": [c["finish_reason"] for c in choices],
                    "gen_ai.usage.input_tokens": usage["prompt_tokens"],
                    "llm.token_count.prompt": usage["prompt_tokens"],
                    "gen_ai.usage.output_tokens": usage["completion_tokens"],
                    "llm.token_count.completion": usage["completion_tokens"],
                    "llm.token_count.total": usage["prompt_tokens"] + usage["completion_tokens"],
                    "gen_ai.usage.cache_read.input_tokens": usage["prompt_tokens_details"]["cached_tokens"],
                    "llm.token_count.prompt_details.cache_read": usage["prompt_tokens_details"]["cached_tokens"],
                })  # fmt: skip
                if capture:
                    out = [
                        {
                            "role": c["message"]["role"],
                            "parts": parts(c["message"]),
                            "finish_reason": c["finish_reason"],
                        }
                        for c in choices
                    ]
                    text = json.dumps(out, separators=(",", ":"))
                    span.set_attributes({
                        "gen_ai.output.messages": text, "output.value": text, "output.mime_type": "application/json",
                        "llm.output_messages.0.message.role": "assistant",
                        "llm.output_messages.0.message.content": choices[0]["message"]["content"],
                    })  # fmt: skip
                tokens.record(usage["prompt_tokens"], token_attributes["input"])
                tokens.record(usage["completion_tokens"], token_attributes["output"])
                unpriced.add(1, unpriced_attributes)
            elapsed = time.perf_counter() - start
            llm_seconds.record(elapsed, base)
            calls.add(1, call_attributes)
            call_seconds.record(elapsed, call_attributes)
            return result

        return functools.partial(call, messages=MESSAGES, system=SYSTEM)

    @llm_call("openai", "bench-model", capture_content=False)
    def ours_plain(messages: list[dict[str, str]], system: str) -> object:
        return llm_result()

    @llm_call("openai", "bench-model", capture_content=True)
    def ours_captured(messages: list[dict[str, str]], system: str) -> object:
        return llm_result()

    agent_start = {
        "gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": "rfobs", "gen_ai.agent.name": "bench",
        "gen_ai.agent.description": "Answers benchmark questions.", "openinference.span.kind": "AGENT",
        "rfobs.agent": "bench",
    }  # fmt: skip
    agent_metric = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.provider.name": "rfobs",
        "gen_ai.agent.name": "bench",
    }
    task_attributes = {"agent": "bench", "task": "bench", "status": "success"}
    agent_seconds = meter.create_histogram(
        "raw.agent.duration", "s", explicit_bucket_boundaries_advisory=GEN_AI_DURATION_BUCKETS
    )
    task_counter = meter.create_counter("raw.agent_tasks")
    task_seconds = meter.create_histogram(
        "raw.agent_task_duration", "s", explicit_bucket_boundaries_advisory=DURATION_BUCKETS
    )

    def raw_agent() -> int:
        start = time.perf_counter()
        with tracer.start_as_current_span("invoke_agent bench", attributes=agent_start):
            result = bare()
        elapsed = time.perf_counter() - start
        agent_seconds.record(elapsed, agent_metric)
        task_counter.add(1, task_attributes)
        task_seconds.record(elapsed, task_attributes)
        return result

    async def raw_agent_async() -> int:
        start = time.perf_counter()
        with tracer.start_as_current_span("invoke_agent bench", attributes=agent_start):
            result = await abare()
        elapsed = time.perf_counter() - start
        agent_seconds.record(elapsed, agent_metric)
        task_counter.add(1, task_attributes)
        task_seconds.record(elapsed, task_attributes)
        return result

    @rfobs.agent("bench")
    def agent_sync() -> int:
        """Answers benchmark questions."""
        return 1

    @rfobs.agent("bench")
    async def agent_async() -> int:
        """Answers benchmark questions."""
        return 1

    rows: list[tuple[str, float, float]] = []
    ratios: list[str] = []
    nan = float("nan")
    for label, ours, theirs in (
        ("capture off", functools.partial(ours_plain, messages=MESSAGES, system=SYSTEM), raw_llm(False)),
        ("capture on", functools.partial(ours_captured, messages=MESSAGES, system=SYSTEM), raw_llm(True)),
    ):
        raw_ns, ours_ns = per_call_ns(theirs, n), per_call_ns(ours, n)
        rows.append((f"raw OTel, same LLM span+metrics ({label})", raw_ns, nan))
        rows.append((f"@llm_call, OpenAI dict result ({label})", ours_ns, nan))
        ratios.append(f"{f'@llm_call ({label}) / raw OTel':<36}sync {ours_ns / raw_ns:.2f}x")
    raw_pair = (per_call_ns(raw_agent, n), async_per_call_ns(raw_agent_async, n))
    ours_pair = (per_call_ns(agent_sync, n), async_per_call_ns(agent_async, n))
    rows.append(("raw OTel, same agent span+metrics", *raw_pair))
    rows.append(("@agent", *ours_pair))
    sync_ratio, async_ratio = ours_pair[0] / raw_pair[0], ours_pair[1] / raw_pair[1]
    ratios.append(f"{'@agent / raw OTel':<36}sync {sync_ratio:.2f}x  async {async_ratio:.2f}x")
    return rows, ratios


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer calls per round")
    n = 5_000 if parser.parse_args().quick else 30_000

    import rfobs

    rows: list[tuple[str, float, float]] = []  # (name, sync ns, async ns)

    # Before init(): the no-op path.
    @rfobs.task("bench", "before_init")
    def before_sync() -> int:
        return 1

    @rfobs.task("bench", "before_init")
    async def before_async() -> int:
        return 1

    bare_sync, bare_async = per_call_ns(bare, n * 10), async_per_call_ns(abare, n * 10)
    rows.append(("bare call", bare_sync, bare_async))
    before = (per_call_ns(before_sync, n * 10), async_per_call_ns(before_async, n * 10))
    rows.append(("@task before rfobs.init()", *before))

    telemetry = rfobs.init(tracing__exporter="none", metrics__prometheus_port=0, logging__enabled=False)
    from rfobs._processor import BoundedBatchSpanProcessor

    assert telemetry.tracer_provider is not None and telemetry.meter_provider is not None
    telemetry.tracer_provider.add_span_processor(
        BoundedBatchSpanProcessor(NullExporter(), telemetry.drops, max_queue_size=1_000_000)  # type: ignore[arg-type]
    )

    # Raw OpenTelemetry written by hand: span + counter + histogram, instruments and attribute dicts made once.
    tracer = telemetry.tracer_provider.get_tracer("raw")
    meter = telemetry.meter_provider.get_meter("raw")
    counter = meter.create_counter("raw.calls")
    histogram = meter.create_histogram("raw.duration", unit="s")
    span_attributes = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "bench"}
    metric_attributes = {"agent": "bench", "task": "raw", "status": "success"}

    def raw_sync() -> int:
        start = time.perf_counter()
        with tracer.start_as_current_span("bench.raw", attributes=span_attributes):
            result = bare()
        counter.add(1, metric_attributes)
        histogram.record(time.perf_counter() - start, metric_attributes)
        return result

    async def raw_async() -> int:
        start = time.perf_counter()
        with tracer.start_as_current_span("bench.raw", attributes=span_attributes):
            result = await abare()
        counter.add(1, metric_attributes)
        histogram.record(time.perf_counter() - start, metric_attributes)
        return result

    @rfobs.task("bench", "task")
    def task_sync() -> int:
        return 1

    @rfobs.task("bench", "task")
    async def task_async() -> int:
        return 1

    raw = (per_call_ns(raw_sync, n), async_per_call_ns(raw_async, n))
    rows.append(("raw OpenTelemetry (span+counter+histogram)", *raw))
    task = (per_call_ns(task_sync, n), async_per_call_ns(task_async, n))
    rows.append(("@task", *task))

    # Policies on a call that succeeds at once, against the peer a user would otherwise pick.
    import tenacity

    from rfobs.instrument import RateLimiter

    @rfobs.retry(max_attempts=3)
    def retry_sync() -> int:
        return 1

    @rfobs.retry(max_attempts=3)
    async def retry_async() -> int:
        return 1

    @tenacity.retry(stop=tenacity.stop_after_attempt(3))
    def tenacity_sync() -> int:
        return 1

    @tenacity.retry(stop=tenacity.stop_after_attempt(3))
    async def tenacity_async() -> int:
        return 1

    retried = (per_call_ns(retry_sync, n), async_per_call_ns(retry_async, n))
    rows.append(("@retry, first try succeeds", *retried))
    rows.append(
        (
            "tenacity @retry(stop=stop_after_attempt(3))",
            per_call_ns(tenacity_sync, n),
            async_per_call_ns(tenacity_async, n),
        )
    )

    @rfobs.timeout(5)
    async def timeout_async() -> int:
        return 1

    async def asyncio_timeout() -> int:
        async with asyncio.timeout(5):  # noqa: ASYNC100 - the context manager's own cost is the point
            return 1

    timed = async_per_call_ns(timeout_async, n)
    plain_timeout = async_per_call_ns(asyncio_timeout, n)
    rows.append(("@timeout(5), finishes in time", float("nan"), timed))
    rows.append(("bare asyncio.timeout(5)", float("nan"), plain_timeout))

    never_reached = RateLimiter(1e9, name="bench")

    @rfobs.task("bench", "stack", retry=3, timeout=5, rate_limit=never_reached, breaker="bench")
    async def stack_async() -> int:
        return 1

    stack = async_per_call_ns(stack_async, n)
    rows.append(("@instrument: task+retry+timeout+rate_limit+breaker", float("nan"), stack))

    import aiolimiter

    peer = aiolimiter.AsyncLimiter(1e9, 1)
    limiter = RateLimiter(1e9, name="bench.acquire")
    ours = async_per_call_ns(limiter.acquire, n * 4)
    theirs = async_per_call_ns(peer.acquire, n * 4)
    rows.append(("RateLimiter.acquire(), limit never reached", float("nan"), ours))
    rows.append(("aiolimiter AsyncLimiter.acquire()", float("nan"), theirs))

    # GenAI decorators against hand-written OpenTelemetry doing the same work.
    genai, genai_ratios = genai_rows(telemetry, n)
    rows.extend(genai)

    # Sampled out: the same decorators on a provider whose sampler drops every trace (metrics still count).
    from rfobs.testing import reset_global_telemetry

    telemetry.shutdown(timeout=5)
    reset_global_telemetry()
    telemetry = rfobs.init(
        tracing__exporter="none", tracing__sampler="always_off", metrics__prometheus_port=0, logging__enabled=False
    )
    rows.append(("@task, trace sampled out", per_call_ns(task_sync, n), async_per_call_ns(task_async, n)))

    print(f"{'ns per call':<54}{'sync':>10}{'async':>10}")
    for name, sync_ns, async_ns in rows:
        print(f"{name:<54}{sync_ns:>10.0f}{async_ns:>10.0f}".replace("nan", "  -"))
    print()
    print(f"@task / raw OTel               sync {task[0] / raw[0]:.2f}x  async {task[1] / raw[1]:.2f}x  (<= 1.05x)")
    extra = (before[0] - bare_sync, before[1] - bare_async)
    print(f"@task before init - bare call  sync {extra[0]:.0f} ns  async {extra[1]:.0f} ns  (<= 1000 ns)")
    extra = (retried[0] - bare_sync, retried[1] - bare_async)
    print(f"@retry success - bare call     sync {extra[0]:.0f} ns  async {extra[1]:.0f} ns  (<= 2000 ns)")
    print(f"@timeout - asyncio.timeout     async {timed - plain_timeout:.0f} ns  (<= 1000 ns)")
    print(f"full stack / raw OTel          async {stack / raw[1]:.2f}x  (<= 1.3x)")
    print(f"RateLimiter / aiolimiter throughput  {theirs / ours:.2f}x  (>= 1.0x)")
    for line in genai_ratios:
        print(line)
    telemetry.shutdown(timeout=5)


if __name__ == "__main__":
    main()
