"""Benchmarks and load tests that report into the same telemetry: latency percentiles, throughput, errors.

The seed's names stay: `benchmark`, `load_test`, `LoadTestConfig`. `benchmark` and `load_test` are coroutine
functions (`await benchmark(fn)` in a running loop, `asyncio.run(benchmark(fn))` in plain code);
`benchmark_sync` and `load_test_sync` are the same as plain calls. HDR histograms and the HTML report need the
`perf` extra (`pip install 'rfobs[perf]'`).
"""

from rfobs.perf._benchmark import benchmark, benchmark_sync
from rfobs.perf._compare import Comparison, Delta, compare
from rfobs.perf._html import render_html
from rfobs.perf._loadtest import LoadTestConfig, LoadTestSettings, Progress, load_test, load_test_async, load_test_sync
from rfobs.perf._results import BenchmarkResult, LatencyHistogram, LoadTestResult, save_as_baseline

__all__ = [
    "BenchmarkResult",
    "Comparison",
    "Delta",
    "LatencyHistogram",
    "LoadTestConfig",
    "LoadTestResult",
    "LoadTestSettings",
    "Progress",
    "benchmark",
    "benchmark_sync",
    "compare",
    "load_test",
    "load_test_async",
    "load_test_sync",
    "render_html",
    "save_as_baseline",
]
