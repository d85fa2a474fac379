import tracemalloc

import pytest

from rfobs.exceptions import ConfigError
from rfobs.perf._benchmark import benchmark
from rfobs.perf._results import BenchmarkResult, LatencyHistogram


def test_benchmark_counts_errors_by_type_without_raising() -> None:
    calls = [0]

    def flaky() -> None:
        calls[0] += 1
        if calls[0] % 4 == 0:
            raise KeyError("x")

    result = benchmark(flaky, iterations=100, warmup=0, rounds=2, name="flaky")
    assert calls[0] == 200
    assert result.errors == 50
    assert result.errors_by_type == {"KeyError": 50}
    assert result.iterations == 100
    assert result.rounds == 2


async def test_benchmark_async_with_concurrency_inside_a_running_loop() -> None:
    import asyncio

    seen = [0]

    async def sleeper() -> None:
        seen[0] += 1
        await asyncio.sleep(0.001)

    result = benchmark(sleeper, iterations=40, warmup=4, concurrency=4, rounds=1)
    assert seen[0] == 44
    assert result.latency_s["p50"] >= 0.0009
    assert result.ops_per_s > 1 / 0.001  # 4 concurrent sleepers beat one at a time


def test_benchmark_result_round_trips_through_dict() -> None:
    result = benchmark(lambda: None, iterations=50, warmup=0, rounds=1, name="noop")
    document = result.to_dict()
    assert document["kind"] == "benchmark"
    assert set(document["latency_s"]) == {"mean", "stdev", "p50", "p90", "p95", "p99", "max"}
    assert BenchmarkResult.from_dict(document) == result
    assert result.text().splitlines()[0] == "benchmark noop"


@pytest.mark.parametrize(("argument", "value"), [("iterations", 0), ("warmup", -1), ("concurrency", 0), ("rounds", 0)])
def test_benchmark_rejects_bad_arguments(argument: str, value: int) -> None:
    arguments: dict[str, int] = {"iterations": 10, "warmup": 0, "concurrency": 1, "rounds": 1, argument: value}
    with pytest.raises(ConfigError, match=rf"benchmark\({argument}={value}\): expected an integer >= \d"):
        benchmark(
            lambda: None,
            arguments["iterations"],
            arguments["warmup"],
            arguments["concurrency"],
            rounds=arguments["rounds"],
        )


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
