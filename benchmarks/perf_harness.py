"""Is rfobs.perf's harness fast enough not to be the bottleneck? Two checks from issue 6, each against a reference.

Run: .venv/bin/python benchmarks/perf_harness.py [--duration SECONDS] [--users N] [--no-pin]

(a) `load_test` against a no-op async target, on one core: requests/s (the target is at least 50,000), next to
    what locust reaches with a no-op task in the same run (`pip install 'rfobs[bench]'`). Locust monkey-patches
    the standard library with gevent when imported, so it runs in a child process pinned to the same core.
(b) `benchmark(lambda: None)` per-call cost next to what `timeit` reports for the same lambda in the same run
    (the target is within 50 ns).

The machine is shared: run it twice and compare ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
import timeit
from typing import Any

LOAD_TARGET_RPS = 50_000
BENCH_TARGET_NS = 50.0


def pin_to_one_core() -> str:
    """Pin this process (and the children it starts) to the first allowed CPU, so the figures are per core."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity on this platform)"
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return f"pinned to CPU {core}"


async def noop() -> None:
    return None


def rfobs_load_test(duration: float, users: int) -> dict[str, Any]:
    from rfobs.perf import LoadTestConfig, load_test_sync

    started = time.perf_counter()
    result = load_test_sync(noop, LoadTestConfig(concurrent_users=users, duration=duration, name="noop"))
    wall = time.perf_counter() - started
    report: dict[str, Any] = result.to_dict()
    return {"rps": float(report["throughput_rps"]), "requests": int(report["requests"]), "wall_s": wall}


def locust_child(duration: float, users: int) -> None:
    """Run in a child process: a locust User whose task is a no-op, driven by a LocalRunner; print JSON."""
    # Imported by name: locust is a benchmark-only dependency (the `bench` extra), absent where CI type-checks.
    gevent: Any = importlib.import_module("gevent")
    locust: Any = importlib.import_module("locust")
    environment: Any = importlib.import_module("locust.env")

    class NoopUser(locust.User):
        wait_time = locust.constant(0)

        @locust.task
        def noop(self) -> None:
            # What a custom locust client does per request: time it and fire the request event that the stats count.
            start = time.perf_counter()
            events: Any = self.environment.events
            events.request.fire(
                request_type="noop",
                name="noop",
                response_time=(time.perf_counter() - start) * 1000,
                response_length=0,
                exception=None,
                context={},
            )

    env: Any = environment.Environment(user_classes=[NoopUser])
    runner: Any = env.create_local_runner()
    runner.start(users, spawn_rate=users * 1000)
    gevent.sleep(0.2)  # let every user spawn before counting
    env.stats.reset_all()
    started = time.perf_counter()
    gevent.sleep(duration)
    requests = int(env.stats.total.num_requests)
    elapsed = time.perf_counter() - started
    runner.quit()
    print(json.dumps({"rps": requests / elapsed, "requests": requests, "wall_s": elapsed}))


def locust_reference(duration: float, users: int) -> dict[str, Any] | str:
    """Locust's no-op requests/s, or why it could not run."""
    command = [sys.executable, __file__, "--locust-child", "--duration", str(duration), "--users", str(users)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 120, check=False)
    except subprocess.TimeoutExpired:
        return "locust did not finish in time"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"locust could not run: {last}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def benchmark_vs_timeit(iterations: int, rounds: int) -> dict[str, float]:
    from rfobs.perf import benchmark_sync

    def target() -> None:
        return None

    timeit_rounds = timeit.repeat(target, number=iterations, repeat=rounds)
    result = benchmark_sync(target, iterations=iterations, warmup=iterations // 10, rounds=rounds, name="noop")
    mean: float = result.to_dict()["latency_s"]["mean"]
    return {
        "benchmark_mean_ns": mean * 1e9,
        "timeit_min_ns": min(timeit_rounds) / iterations * 1e9,
        "timeit_median_ns": statistics.median(timeit_rounds) / iterations * 1e9,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of each load run (default 5)")
    parser.add_argument("--users", type=int, default=10, help="virtual users in each load run (default 10)")
    parser.add_argument("--iterations", type=int, default=200_000, help="calls per benchmark round")
    parser.add_argument("--rounds", type=int, default=7, help="benchmark and timeit rounds")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one CPU")
    parser.add_argument("--locust-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.locust_child:
        locust_child(args.duration, args.users)
        return 0

    pinned = "not pinned (--no-pin)" if args.no_pin else pin_to_one_core()
    print(f"rfobs.perf harness check ({pinned}; {args.users} users, {args.duration:g} s per load run)")

    ours = rfobs_load_test(args.duration, args.users)
    verdict = "ok" if ours["rps"] >= LOAD_TARGET_RPS else f"BELOW the {LOAD_TARGET_RPS:,} target"
    print(
        f"(a) load_test, no-op async target: {ours['rps']:>12,.0f} requests/s ({ours['requests']:,} requests) {verdict}"
    )
    reference = locust_reference(args.duration, args.users)
    if isinstance(reference, str):
        print(f"    locust, no-op task:             {reference}")
    else:
        ratio = ours["rps"] / reference["rps"] if reference["rps"] else float("inf")
        print(
            f"    locust, no-op task:             {reference['rps']:>12,.0f} requests/s "
            f"({reference['requests']:,} requests); rfobs is {ratio:.1f}x"
        )

    bench = benchmark_vs_timeit(args.iterations, args.rounds)
    gap = bench["benchmark_mean_ns"] - bench["timeit_min_ns"]
    verdict = "ok" if abs(gap) <= BENCH_TARGET_NS else f"OUTSIDE the {BENCH_TARGET_NS:g} ns target"
    print(f"(b) benchmark(lambda: None) mean:   {bench['benchmark_mean_ns']:>8.1f} ns per call")
    print(
        f"    timeit, same function:          {bench['timeit_min_ns']:>8.1f} ns per call (min of rounds; "
        f"median {bench['timeit_median_ns']:.1f} ns); difference {gap:+.1f} ns {verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
