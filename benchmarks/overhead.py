"""Per-call cost of the rfobs decorators against raw OpenTelemetry and peer libraries, in one process.

Run: .venv/bin/python benchmarks/overhead.py [--quick]

Every figure is nanoseconds per call, the best of several rounds (the machine is shared: compare ratios, not
absolute numbers). The SDK is set up as `rfobs.init()` does, with rfobs's batch span processor and an exporter
that discards, so the span path is real but no I/O competes with the measurement.
"""

from __future__ import annotations

import argparse
import asyncio
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
    telemetry.shutdown(timeout=5)


if __name__ == "__main__":
    main()
