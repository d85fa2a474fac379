"""`benchmark`: time many calls of a sync or async function and report the median of several rounds."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar, cast

from rfobs import _check
from rfobs._latency import percentile
from rfobs.exceptions import ConfigError
from rfobs.instrument._wrap import is_coroutine_callable
from rfobs.perf._results import BenchmarkResult

__all__ = ["benchmark", "benchmark_sync", "run_blocking"]

T = TypeVar("T")

_CALIBRATION_PAIRS = 20_000

_Round = tuple[list[float], float, dict[str, int]]  # latencies, wall seconds, errors by type


async def benchmark(
    fn: Callable[[], Any],
    iterations: int = 1000,
    warmup: int = 100,
    concurrency: int = 1,
    *,
    rounds: int = 5,
    name: str | None = None,
) -> BenchmarkResult:
    """Call `fn` `iterations` times per round, `rounds` times, and report the median round's figures.

    A coroutine function, as the seed programme calls it: `await benchmark(fn)` inside a running event loop, or
    `asyncio.run(benchmark(fn))` from plain code. `benchmark_sync` is the same measurement as a plain call.

    Each call is timed with a `time.perf_counter` pair. The cost of an empty timed region (the two timer calls
    alone, measured first) is subtracted from every call, so a no-op function reports what `timeit` reports for
    it: the cost of calling it. Exceptions are counted by class name, not raised. CPU percent and RSS are the
    process's during the timed rounds (psutil).

    A coroutine function `fn` runs on the awaiting event loop (so it may use clients bound to that loop), with
    `concurrency` tasks sharing the iterations. A plain function runs in a worker thread (the loop keeps
    serving meanwhile), itself spread over `concurrency` threads.

    Example:
        >>> import asyncio
        >>> result = asyncio.run(benchmark(lambda: None, iterations=100, warmup=10, rounds=3))
        >>> result.iterations, result["iterations"]
        (100, 100)

    Args:
        fn: The function to time; it is called without arguments.
        iterations: Calls per round (>= 1).
        warmup: Untimed calls before the first round (>= 0).
        concurrency: Calls in flight at once (>= 1, at most `iterations`).
        rounds: Timed rounds (>= 1); each figure is the median over rounds.
        name: The result's name (default: the function's qualified name).

    Returns:
        The measured `BenchmarkResult` (`result.operations_per_second`, or `result["operations_per_second"]`).

    Raises:
        ConfigError: An argument is out of range (a `ValueError`).
    """
    _check_arguments(iterations, warmup, concurrency, rounds)
    if not is_coroutine_callable(fn):
        return await asyncio.to_thread(_benchmark_plain, fn, iterations, warmup, concurrency, rounds, name)
    function = cast(Callable[[], Awaitable[object]], fn)
    probe = _Probe()
    await _async_worker(function, warmup, [], {})
    results = [await _async_round(function, iterations, concurrency) for _ in range(rounds)]
    return probe.result(_name(fn, name), iterations, warmup, concurrency, results)


def benchmark_sync(
    fn: Callable[[], Any],
    iterations: int = 1000,
    warmup: int = 100,
    concurrency: int = 1,
    *,
    rounds: int = 5,
    name: str | None = None,
) -> BenchmarkResult:
    """`benchmark` as a plain call, for synchronous code: the same arguments, measurement and result.

    A coroutine function `fn` runs on a fresh event loop (in a worker thread when this thread already runs
    one); inside a running loop prefer `await benchmark(...)`, which uses that loop.

    Example:
        >>> benchmark_sync(lambda: None, iterations=100, warmup=10, rounds=3).iterations
        100

    Raises:
        ConfigError: An argument is out of range (a `ValueError`).
    """
    if is_coroutine_callable(fn):
        return run_blocking(benchmark(fn, iterations, warmup, concurrency, rounds=rounds, name=name))
    _check_arguments(iterations, warmup, concurrency, rounds)
    return _benchmark_plain(fn, iterations, warmup, concurrency, rounds, name)


def run_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to completion from synchronous code, in a worker thread if this thread runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(1) as executor:  # asyncio.run cannot nest in the caller's loop
        return executor.submit(asyncio.run, coroutine).result()


def _check_arguments(iterations: int, warmup: int, concurrency: int, rounds: int) -> None:
    _check.integer("benchmark", "iterations", iterations, ge=1)
    _check.integer("benchmark", "warmup", warmup, ge=0)
    _check.integer("benchmark", "concurrency", concurrency, ge=1)
    _check.integer("benchmark", "rounds", rounds, ge=1)
    if concurrency > iterations:
        raise ConfigError(f"benchmark(concurrency={concurrency!r}): expected at most iterations ({iterations})")


def _name(fn: Callable[[], Any], name: str | None) -> str:
    return name or getattr(fn, "__qualname__", repr(fn))


def _benchmark_plain(
    fn: Callable[[], Any], iterations: int, warmup: int, concurrency: int, rounds: int, name: str | None
) -> BenchmarkResult:
    probe = _Probe()
    _sync_worker(fn, warmup, [], {})
    results = [_sync_round(fn, iterations, concurrency) for _ in range(rounds)]
    return probe.result(_name(fn, name), iterations, warmup, concurrency, results)


class _Probe:
    """The process's CPU and memory over a benchmark, and the timer overhead measured just before it."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process()
        self.overhead = _timer_overhead()
        self.process.cpu_percent(None)
        self.started = time.perf_counter()

    def result(
        self, name: str, iterations: int, warmup: int, concurrency: int, results: list[_Round]
    ) -> BenchmarkResult:
        cpu = self.process.cpu_percent(None) if time.perf_counter() - self.started > 0 else 0.0
        rss = self.process.memory_info().rss
        summary = _summarise(name, iterations, concurrency, results, self.overhead, cpu, rss)
        return replace(summary, warmup=warmup, concurrency=concurrency)


def _timer_overhead() -> float:
    """The median cost of an empty `perf_counter` pair: what timing adds to every measured call."""
    clock = time.perf_counter
    costs = [0.0] * _CALIBRATION_PAIRS
    for index in range(_CALIBRATION_PAIRS):
        start = clock()
        costs[index] = clock() - start
    return statistics.median(costs)


def _sync_worker(fn: Callable[[], Any], calls: int, out: list[float], errors: dict[str, int]) -> None:
    clock = time.perf_counter
    append = out.append
    for _ in range(calls):
        start = clock()
        try:
            fn()
        except Exception as error:
            end = clock()
            errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
        else:
            end = clock()
        append(end - start)


def _sync_round(fn: Callable[[], Any], iterations: int, concurrency: int) -> _Round:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    if concurrency == 1:
        started = time.perf_counter()
        _sync_worker(fn, iterations, latencies, errors)
        return latencies, time.perf_counter() - started, errors
    shares = _shares(iterations, concurrency)
    outs: list[list[float]] = [[] for _ in shares]
    errs: list[dict[str, int]] = [{} for _ in shares]
    barrier = threading.Barrier(concurrency + 1)

    def worker(index: int) -> None:
        barrier.wait()
        _sync_worker(fn, shares[index], outs[index], errs[index])

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(concurrency)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    for out, err in zip(outs, errs, strict=True):
        latencies += out
        for key, n in err.items():
            errors[key] = errors.get(key, 0) + n
    return latencies, wall, errors


async def _async_worker(
    fn: Callable[[], Awaitable[object]], calls: int, out: list[float], errors: dict[str, int]
) -> None:
    clock = time.perf_counter
    append = out.append
    for _ in range(calls):
        start = clock()
        try:
            await fn()
        except Exception as error:
            end = clock()
            errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
        else:
            end = clock()
        append(end - start)


async def _async_round(fn: Callable[[], Awaitable[object]], iterations: int, concurrency: int) -> _Round:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for share in _shares(iterations, concurrency):
            group.create_task(_async_worker(fn, share, latencies, errors))
    return latencies, time.perf_counter() - started, errors


def _shares(iterations: int, concurrency: int) -> list[int]:
    base, extra = divmod(iterations, concurrency)
    return [base + (1 if index < extra else 0) for index in range(concurrency)]


def _summarise(
    name: str, iterations: int, concurrency: int, results: list[_Round], overhead: float, cpu: float, rss: int
) -> BenchmarkResult:
    figures: dict[str, list[float]] = {}
    for latencies, wall, _ in results:
        corrected = sorted(max(value - overhead, 0.0) for value in latencies)
        busy = max(wall - overhead * len(latencies) / concurrency, 1e-12)
        round_figures = {
            "ops_per_s": len(latencies) / busy,
            "mean": statistics.fmean(corrected),
            "stdev": statistics.pstdev(corrected),
            "p50": percentile(corrected, 0.50),
            "p90": percentile(corrected, 0.90),
            "p95": percentile(corrected, 0.95),
            "p99": percentile(corrected, 0.99),
            "max": corrected[-1],
        }
        for key, value in round_figures.items():
            figures.setdefault(key, []).append(value)
    median = {key: statistics.median(values) for key, values in figures.items()}
    errors_by_type: dict[str, int] = {}
    for _, _, errors in results:
        for key, n in errors.items():
            errors_by_type[key] = errors_by_type.get(key, 0) + n
    ops = median.pop("ops_per_s")
    return BenchmarkResult(
        name=name,
        iterations=iterations,
        ops_per_s=ops,
        latency_s=median,
        errors=sum(errors_by_type.values()),
        errors_by_type=dict(sorted(errors_by_type.items())),
        cpu_percent=cpu,
        rss_bytes=rss,
        rounds=len(results),
        timer_overhead_s=overhead,
    )
