"""Benchmarks and load tests that report into the same telemetry: latency percentiles, throughput, errors.

The seed's names stay: `benchmark`, `load_test`, `LoadTestConfig`. HDR histograms and the HTML report need the
`perf` extra (`pip install 'rfobs[perf]'`).
"""

from rfobs.perf._benchmark import benchmark
from rfobs.perf._compare import Comparison, Delta, compare
from rfobs.perf._html import render_html
from rfobs.perf._loadtest import LoadTestConfig, Progress, load_test, load_test_async
from rfobs.perf._results import BenchmarkResult, LatencyHistogram, LoadTestResult, save_as_baseline

__all__ = [
    "BenchmarkResult",
    "Comparison",
    "Delta",
    "LatencyHistogram",
    "LoadTestConfig",
    "LoadTestResult",
    "Progress",
    "benchmark",
    "compare",
    "load_test",
    "load_test_async",
    "render_html",
    "save_as_baseline",
]
