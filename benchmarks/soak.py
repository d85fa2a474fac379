"""Soak test: the `rfobs demo` research agents under steady load for minutes, watching the process for leaks.

Run: .venv/bin/python benchmarks/soak.py [--minutes 10] [--loops 2] [--agents 4] [--sync-threads 2]
Quick check: .venv/bin/python benchmarks/soak.py --minutes 0.2

Not part of the test run. Everything runs in this one process, on `rfobs.init()`'s embedded default: spans go to a
rotating OTLP/JSON file in a temporary directory (removed at the end), `/metrics` is served on a free port.

- `--loops` threads, each with its own asyncio event loop running `rfobs.demo.run_demo` (the agents of
  `rfobs demo`: retries, timeouts, a shared rate limit, a breaker opened by an outage in every round) in rounds of
  `--round-seconds`, `--agents` agents at a time;
- `--sync-threads` threads calling a synchronous `@rfobs.task` in a loop that carries its trace and baggage across
  the propagation helpers (`inject` / `continue_trace`, and `with_context` into a thread pool), checking that the
  baggage arrives;
- a scraper reading `/metrics` every `--scrape-every` seconds, as Prometheus would.

Every `--every` seconds (default: a twentieth of the run, between 1 and 10 s) the main thread runs `gc.collect()` and
samples RSS (psutil), open file descriptors, OS threads, and asyncio tasks across the event loops. The start
sample is taken 1 s in, once every worker is up; the end sample at the deadline, while the load still runs.
Growth is end - start; the slope is a least-squares fit, per minute, over the samples after the warm-up (the
first quarter of the run, at most 2 minutes).

Exit status 1 when any of these thresholds is exceeded (0 otherwise):

- RSS: growth over 64 MiB, or a slope over 2 MiB/min (the slope only once >= 30 s and >= 5 samples follow the
  warm-up; shorter runs are judged on growth alone);
- open file descriptors: growth over 4;
- threads: growth over 2;
- asyncio tasks: growth over 3 per agent (the number in flight varies from sample to sample; a leak does not stop);
- any rfobs internal error, a baggage entry that did not arrive, a failed `/metrics` scrape, a worker that died
  or did not stop within 10 s.

Spans dropped by the bounded export queue are reported, not judged.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
from opentelemetry import baggage

import rfobs
from rfobs import _guard
from rfobs.demo import DemoStats, run_demo

MIB = 1024 * 1024
RSS_GROWTH_MIB = 64.0
RSS_SLOPE_MIB_PER_MIN = 2.0
FD_GROWTH = 4
THREAD_GROWTH = 2
TASK_GROWTH_PER_AGENT = 3
SLOPE_MIN_WINDOW_S = 30.0
SLOPE_MIN_SAMPLES = 5
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Sample:
    seconds: float
    rss_mib: float
    fds: int
    threads: int
    tasks: int
    questions: int
    sync_calls: int


class DemoLoop:
    """A thread with its own event loop, running demo rounds until stopped."""

    def __init__(self, index: int, agents: int, round_seconds: float, seed: int) -> None:
        self.agents = agents
        self.round_seconds = round_seconds
        self.seed = seed
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=f"soak-loop-{index}", daemon=True)
        self.finished_questions = 0
        self.live: DemoStats | None = None
        self.error: BaseException | None = None
        self._main: asyncio.Task[None] | None = None

    @property
    def questions(self) -> int:
        live = self.live
        return self.finished_questions + (live.questions if live is not None else 0)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self._main = self.loop.create_task(self._rounds())
            self.loop.run_until_complete(self._main)
        except asyncio.CancelledError:
            pass
        except BaseException as error:
            self.error = error
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    async def _rounds(self) -> None:
        number = 0
        while True:
            stats = await run_demo(
                self.round_seconds, concurrency=self.agents, seed=self.seed + number, on_progress=self._progress
            )
            self.finished_questions += stats.questions
            self.live = None
            number += 1

    def _progress(self, stats: DemoStats) -> None:
        self.live = stats

    def task_count(self) -> int:
        """Tasks on this loop, counted on the loop itself (less the counting task)."""

        async def count() -> int:
            return len(asyncio.all_tasks()) - 1

        if self.loop.is_closed() or not self.loop.is_running():
            return 0
        return asyncio.run_coroutine_threadsafe(count(), self.loop).result(timeout=5)

    def stop(self) -> None:
        main = self._main
        if main is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(main.cancel)


@rfobs.tool("lookup", agent="soak")
def lookup(value: int) -> tuple[int, object]:
    return value * 2, baggage.get_baggage("tenant")


@rfobs.task("soak", "dispatch")
def dispatch(executor: ThreadPoolExecutor, value: int, tenant: str) -> bool:
    """One unit of sync work: a hop through headers, and one through a thread pool. True if the baggage arrived."""
    headers = rfobs.inject()
    with rfobs.continue_trace(headers):
        _, here = lookup(value)
    _, there = executor.submit(rfobs.with_context(lookup), value).result(timeout=10)
    return here == tenant and there == tenant


class SyncWorker:
    """A thread calling `dispatch` in a loop, with a short pause between calls."""

    def __init__(self, index: int, executor: ThreadPoolExecutor, stopping: threading.Event, pause: float) -> None:
        self.tenant = f"tenant-{index}"
        self.executor = executor
        self.stopping = stopping
        self.pause = pause
        self.calls = 0
        self.lost_baggage = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"soak-sync-{index}", daemon=True)

    def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                with rfobs.using_baggage(tenant=self.tenant):
                    arrived = dispatch(self.executor, self.calls, self.tenant)
                self.calls += 1
                self.lost_baggage += not arrived
                self.stopping.wait(self.pause)
        except BaseException as error:
            self.error = error


class Scraper:
    """Reads `/metrics` every `every` seconds until stopped."""

    def __init__(self, url: str | None, every: float, stopping: threading.Event) -> None:
        self.url = url
        self.every = every
        self.stopping = stopping
        self.scrapes = 0
        self.failures = 0
        self.thread = threading.Thread(target=self._run, name="soak-scraper", daemon=True)

    def _run(self) -> None:
        while self.url is not None and not self.stopping.wait(self.every):
            try:
                with urllib.request.urlopen(self.url, timeout=10) as response:
                    response.read()
                self.scrapes += 1
            except OSError:
                self.failures += 1


def take_sample(seconds: float, loops: Sequence[DemoLoop], workers: Sequence[SyncWorker]) -> Sample:
    gc.collect()
    process = psutil.Process()
    return Sample(
        seconds=seconds,
        rss_mib=process.memory_info().rss / MIB,
        fds=process.num_fds(),
        threads=process.num_threads(),
        tasks=sum(loop.task_count() for loop in loops),
        questions=sum(loop.questions for loop in loops),
        sync_calls=sum(worker.calls for worker in workers),
    )


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    count = len(points)
    mean_x = sum(x for x, _ in points) / count
    mean_y = sum(y for _, y in points) / count
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return 0.0
    return 60 * sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


HEADER = f"{'seconds':>8} {'rss MiB':>9} {'fds':>5} {'threads':>8} {'tasks':>6} {'questions':>10} {'sync calls':>11}"


def print_row(sample: Sample) -> None:
    print(
        f"{sample.seconds:8.1f} {sample.rss_mib:9.1f} {sample.fds:5d} {sample.threads:8d} {sample.tasks:6d} "
        f"{sample.questions:10d} {sample.sync_calls:11d}",
        flush=True,
    )


def judge(samples: Sequence[Sample], warmup: float, agents: int) -> list[str]:
    """Print growth and slopes; return the thresholds exceeded."""
    start, end = samples[0], samples[-1]
    after = [s for s in samples if s.seconds >= warmup]
    judged_slope = len(after) >= SLOPE_MIN_SAMPLES and after[-1].seconds - after[0].seconds >= SLOPE_MIN_WINDOW_S
    slope_note = "" if judged_slope else " (not judged: too few samples after the warm-up)"
    print(f"\ngrowth (end - start) and slope per minute after the warm-up ({warmup:.0f} s){slope_note}:")
    failures: list[str] = []
    measures: list[tuple[str, str, float, float | None]] = [
        ("rss MiB", "rss_mib", RSS_GROWTH_MIB, RSS_SLOPE_MIB_PER_MIN),
        ("open fds", "fds", FD_GROWTH, None),
        ("threads", "threads", THREAD_GROWTH, None),
        ("asyncio tasks", "tasks", TASK_GROWTH_PER_AGENT * agents, None),
    ]
    for label, attribute, growth_limit, slope_limit in measures:
        growth = float(getattr(end, attribute)) - float(getattr(start, attribute))
        slope = slope_per_minute([(s.seconds, float(getattr(s, attribute))) for s in after]) if len(after) > 1 else 0.0
        limits = f"limit +{growth_limit:g}" + (f", +{slope_limit:g}/min" if slope_limit is not None else "")
        print(f"  {label:14} {growth:+9.1f} {slope:+9.2f}/min   ({limits})")
        if growth > growth_limit:
            failures.append(f"{label} grew by {growth:+.1f} (limit +{growth_limit:g})")
        if slope_limit is not None and judged_slope and slope > slope_limit:
            failures.append(f"{label} grew by {slope:+.2f}/min after the warm-up (limit +{slope_limit:g}/min)")
    return failures


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to run (default 10)")
    parser.add_argument("--loops", type=int, default=2, help="threads with an event loop of demo agents (default 2)")
    parser.add_argument("--agents", type=int, default=4, help="concurrent demo agents per loop (default 4)")
    parser.add_argument("--sync-threads", type=int, default=2, help="threads of synchronous work (default 2)")
    parser.add_argument("--pause", type=float, default=0.002, help="seconds between sync calls (default 0.002)")
    parser.add_argument("--round-seconds", type=float, default=30.0, help="length of a demo round (default 30)")
    parser.add_argument("--scrape-every", type=float, default=5.0, help="seconds between /metrics scrapes")
    parser.add_argument("--every", type=float, default=None, help="seconds between samples")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the demo agents")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.loops < 1 or args.agents < 1 or args.sync_threads < 0 or args.round_seconds <= 0:
        parser.error("--minutes and --round-seconds must be > 0, --loops and --agents >= 1, --sync-threads >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    duration = args.minutes * 60
    every = args.every if args.every is not None else min(10.0, max(1.0, duration / 20))
    warmup = min(120.0, duration / 4)
    logging.getLogger("rfobs").addHandler(logging.NullHandler())  # breaker transitions: they are in the traces
    with tempfile.TemporaryDirectory(prefix="rfobs-soak-") as directory:
        trace_file = Path(directory) / "traces.jsonl"
        telemetry = rfobs.init(
            service={"name": "rfobs-soak"},
            logging={"enabled": False},
            tracing__exporter="file",
            tracing__file_path=str(trace_file),
            tracing__file_max_bytes=16 * MIB,
            tracing__file_backup_count=1,
            metrics__prometheus_port=0,
        )
        print(
            f"rfobs soak: {args.minutes:g} min, {args.loops} event loops x {args.agents} agents, "
            f"{args.sync_threads} sync threads; a sample every {every:g} s\n"
            f"  traces:  {trace_file} (rotating, 16 MiB)\n  metrics: {telemetry.metrics_url}\n"
        )
        stopping = threading.Event()
        executor = ThreadPoolExecutor(2, thread_name_prefix="soak-pool")
        loops = [DemoLoop(i, args.agents, args.round_seconds, args.seed + 1000 * i) for i in range(args.loops)]
        workers = [SyncWorker(i, executor, stopping, args.pause) for i in range(args.sync_threads)]
        scraper = Scraper(telemetry.metrics_url, args.scrape_every, stopping)
        threads = [loop.thread for loop in loops] + [worker.thread for worker in workers] + [scraper.thread]
        for thread in threads:
            thread.start()

        print(
            f"{'seconds':>8} {'rss MiB':>9} {'fds':>5} {'threads':>8} {'tasks':>6} {'questions':>10} {'sync calls':>11}"
        )
        began = time.monotonic()
        samples: list[Sample] = []
        due = min(1.0, duration)
        while True:
            time.sleep(max(0.0, began + due - time.monotonic()))
            samples.append(take_sample(time.monotonic() - began, loops, workers))
            print_row(samples[-1])
            if due >= duration or not all(thread.is_alive() for thread in threads):
                break
            due = min(due + every, duration)

        stopping.set()
        for loop in loops:
            loop.stop()
        stop_by = time.monotonic() + STOP_TIMEOUT_S
        for thread in threads:
            thread.join(max(0.0, stop_by - time.monotonic()))
        executor.shutdown(wait=True, cancel_futures=True)
        delivered = telemetry.shutdown(timeout=10)
        trace_bytes = sum(path.stat().st_size for path in Path(directory).glob("traces.jsonl*"))

    failures = judge(samples, warmup, args.loops * args.agents)
    print(
        f"\nwork: {samples[-1].questions} questions, {samples[-1].sync_calls} sync calls, "
        f"{scraper.scrapes} /metrics scrapes; traces on disk at the end {trace_bytes / MIB:.1f} MiB; "
        f"spans dropped {telemetry.drops.get('spans')}; telemetry delivered at shutdown: {delivered}"
    )
    if errors := _guard.count():
        failures.append(f"{errors} rfobs internal error(s)")
    if lost := sum(worker.lost_baggage for worker in workers):
        failures.append(f"baggage did not arrive in {lost} sync call(s)")
    if scraper.failures:
        failures.append(f"{scraper.failures} /metrics scrape(s) failed")
    for name, error in [(t.thread.name, t.error) for t in loops] + [(w.thread.name, w.error) for w in workers]:
        if error is not None:
            failures.append(f"{name} died: {error!r}")
    if stuck := [thread.name for thread in threads if thread.is_alive()]:
        failures.append(f"did not stop within {STOP_TIMEOUT_S:g} s: {', '.join(stuck)}")
    if samples[-1].seconds < duration - every:
        failures.append(f"stopped early, at {samples[-1].seconds:.0f} s of {duration:.0f} s")
    print("\n".join(["PASS"] if not failures else ["FAIL:", *(f"  - {failure}" for failure in failures)]))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
