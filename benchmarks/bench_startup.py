"""Import time of rfobs and the cost of rfobs.init(), each measured in fresh processes.

Run: .venv/bin/python benchmarks/bench_startup.py [--runs 15]
Prints medians and ratios against importing the OpenTelemetry SDK pieces directly, in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

IMPORT_PROBE = "import time; t = time.perf_counter(); import {module}; print((time.perf_counter() - t) * 1000)"
INIT_PROBE = """
import time
t0 = time.perf_counter()
import rfobs
t1 = time.perf_counter()
handle = rfobs.init(metrics__prometheus_port=0, logging__enabled=False)
t2 = time.perf_counter()
handle.shutdown(timeout=2)
print((t2 - t1) * 1000, (t2 - t0) * 1000)
"""
# init() with its imports done beforehand: what a second configuration would cost.
INIT_WARM_PROBE = """
import time
import rfobs, dynaconf, opentelemetry.sdk.trace, opentelemetry.sdk.metrics, prometheus_client
import opentelemetry.exporter.prometheus, rfobs._file_exporter, rfobs._processor
t1 = time.perf_counter()
handle = rfobs.init(metrics__prometheus_port=0, logging__enabled=False)
t2 = time.perf_counter()
handle.shutdown(timeout=2)
print((t2 - t1) * 1000)
"""


def run(code: str, runs: int) -> list[list[float]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RFOBS_", "OTEL_"))}
    results: list[list[float]] = []
    with tempfile.TemporaryDirectory() as cwd:
        for _ in range(runs):
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=cwd
            )
            results.append([float(x) for x in out.stdout.split()])
    return results


def median(rows: list[list[float]], column: int = 0) -> float:
    return statistics.median(row[column] for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    imports = {
        module: median(run(IMPORT_PROBE.format(module=module), runs))
        for module in ("rfobs", "opentelemetry.trace", "opentelemetry.sdk.trace", "dynaconf")
    }
    everything = ", ".join(
        (
            "opentelemetry.sdk.trace",
            "opentelemetry.sdk.metrics",
            "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
            "opentelemetry.exporter.prometheus",
            "dynaconf",
            "tenacity",
            "psutil",
        )
    )
    imports["SDK + exporters + dynaconf + tenacity + psutil"] = median(
        run(IMPORT_PROBE.format(module=everything), runs)
    )
    print(f"import time, median of {runs} fresh processes (ms):")
    for module, ms in imports.items():
        print(f"  {module:<52} {ms:7.1f}")
    print(f"  rfobs / opentelemetry.sdk.trace: {imports['rfobs'] / imports['opentelemetry.sdk.trace']:.2f}x")
    cold = run(INIT_PROBE, runs)
    warm = run(INIT_WARM_PROBE, runs)
    print(f"rfobs.init(), median of {runs} (ms):")
    print(f"  imports excluded (warm) {median(warm):7.1f}")
    print(f"  first call, lazy imports included {median(cold, 0):7.1f}")
    print(f"  import rfobs + init() {median(cold, 1):7.1f}")


if __name__ == "__main__":
    main()
