import asyncio
import inspect
import tracemalloc

import pytest

from rfobs.exceptions import ConfigError
from rfobs.perf._benchmark import benchmark, benchmark_sync
from rfobs.perf._results import BenchmarkResult, LatencyHistogram

BENCHMARK_KEYS = [
    "name", "iterations", "rounds", "warmup", "concurrency", "operations_per_second", "avg_time", "stdev_time",
    "p50_time", "p90_time", "p95_time", "p99_time", "max_time", "errors", "errors_by_type", "cpu_percent",
    "rss_bytes", "timer_overhead",
]  # fmt: skip


def test_benchmark_counts_errors_by_type_without_raising() -> None:
    calls = [0]

    def flaky() -> None:
        calls[0] += 1
        if calls[0] % 4 == 0:
            raise KeyError("x")

    result = benchmark_sync(flaky, iterations=100, warmup=0, rounds=2, name="flaky")
    assert calls[0] == 200
    assert result.errors == 50
    assert result.errors_by_type == {"KeyError": 50}
    assert result.iterations == 100
    assert result.rounds == 2


async def test_awaited_benchmark_runs_an_async_function_on_the_callers_loop() -> None:
    loops: set[asyncio.AbstractEventLoop] = set()

    async def sleeper() -> None:
        loops.add(asyncio.get_running_loop())
        await asyncio.sleep(0.001)

    result = await benchmark(sleeper, iterations=40, warmup=4, concurrency=4, rounds=1)
    assert loops == {asyncio.get_running_loop()}
    assert result.latency_s["p50"] >= 0.0009
    assert result.ops_per_s > 1 / 0.001  # 4 concurrent sleepers beat one at a time
    assert (result.warmup, result.concurrency) == (4, 4)


def test_benchmark_is_a_coroutine_function_that_asyncio_run_accepts_as_the_seed_calls_it() -> None:
    calls = [0]

    def test() -> None:
        calls[0] += 1

    assert inspect.iscoroutinefunction(benchmark)
    result = asyncio.run(benchmark(test, iterations=1000, warmup=0, rounds=1))
    assert calls[0] == 1000
    assert result.operations_per_second == result.ops_per_s > 0


async def test_benchmark_sync_inside_a_running_loop_runs_an_async_function_on_a_loop_of_its_own() -> None:
    seen = [0]

    async def sleeper() -> None:
        seen[0] += 1
        await asyncio.sleep(0.001)

    result = benchmark_sync(sleeper, iterations=40, warmup=4, concurrency=4, rounds=1)
    assert seen[0] == 44
    assert result.latency_s["p50"] >= 0.0009


def test_benchmark_result_is_a_read_only_mapping_of_its_figures() -> None:
    result = benchmark_sync(lambda: None, iterations=50, warmup=3, rounds=2, name="noop")

    assert list(result.keys()) == BENCHMARK_KEYS
    assert len(result) == len(BENCHMARK_KEYS)
    assert result["operations_per_second"] == result.ops_per_s
    assert (result["iterations"], result["rounds"], result["warmup"], result["concurrency"]) == (50, 2, 3, 1)
    assert result["p95_time"] == result.latency_s["p95"]
    assert result["avg_time"] == result.latency_s["mean"]
    assert result["timer_overhead"] == result.timer_overhead_s
    with pytest.raises(KeyError, match="BenchmarkResult has no figure 'ops'; allowed: name, iterations, rounds"):
        result["ops"]
    with pytest.raises(TypeError):
        result["errors"] = 1  # type: ignore[index]  # read-only on purpose


def test_benchmark_result_round_trips_through_dict() -> None:
    result = benchmark_sync(lambda: None, iterations=50, warmup=0, rounds=1, name="noop")
    document = result.to_dict()
    assert document["kind"] == "benchmark"
    assert set(document["latency_s"]) == {"mean", "stdev", "p50", "p90", "p95", "p99", "max"}
    assert (document["warmup"], document["concurrency"]) == (0, 1)
    assert BenchmarkResult.from_dict(document) == result
    assert result.text().splitlines()[0] == "benchmark noop"


@pytest.mark.parametrize(("argument", "value"), [("iterations", 0), ("warmup", -1), ("concurrency", 0), ("rounds", 0)])
def test_benchmark_rejects_bad_arguments(argument: str, value: int) -> None:
    arguments: dict[str, int] = {"iterations": 10, "warmup": 0, "concurrency": 1, "rounds": 1, argument: value}
    message = rf"benchmark\({argument}={value}\): expected an integer >= \d"
    iterations, warmup, concurrency, rounds = (arguments[k] for k in ("iterations", "warmup", "concurrency", "rounds"))
    with pytest.raises(ConfigError, match=message):
        benchmark_sync(lambda: None, iterations, warmup, concurrency, rounds=rounds)
    with pytest.raises(ConfigError, match=message):
        asyncio.run(benchmark(lambda: None, iterations, warmup, concurrency, rounds=rounds))


def test_histogram_percentiles_within_stated_error_on_uniform_latencies() -> None:
    histogram = LatencyHistogram()
    for micros in range(1, 100_001):  # 1 µs .. 100 ms, uniform
        histogram.record(micros / 1e6)
    for percent in (50, 90, 95, 99):
        exact = percent / 100 * 0.1
        assert abs(histogram.percentile(percent) - exact) <= exact * 0.001 + 1e-6
    assert histogram.count == 100_000


def test_histogram_memory_is_bounded_at_a_million_samples() -> None:
    histogram = LatencyHistogram()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        record = histogram.record_us
        for index in range(1_000_000):
            record(1 + index % 50_000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert histogram.count == 1_000_000
    assert grown < 64 * 1024
