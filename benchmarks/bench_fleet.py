"""Fleet rate limiting on Redis (#14): rfobs's Redis backend against the `limits` library, same run, same Redis.

Run: .venv/bin/python benchmarks/bench_fleet.py [--quick]

One throw-away `redis-server` (127.0.0.1, a free port, no persistence) serves four contenders: rfobs GCRA
(`algorithm="token_bucket"`) and rfobs sliding window (`RateLimiter(..., backend=RedisRateLimitBackend(store))`),
and `limits`'s moving window and sliding-window counter (`RedisStorage`). Each phase uses fresh keys.

- Throughput: sync decisions on one key whose limit is never reached (every decision is an admission, so the
  figure is the cost of a decision, not of waiting): one caller, 4 processes of one caller, 1 process of 16
  threads, 4 processes of 16 threads; decisions per second and p50/p99 latency per decision. A lone caller waits
  one round trip per decision whatever its client; callers at once let rfobs pipeline (the calls made while a
  batch is on the wire leave together, each still its own EVALSHA), where `limits` sends each alone. rfobs runs
  with real SDK providers installed (as after `rfobs.init()`) and `on_failure="fail_closed"`, so a decision made
  without Redis shows as a refusal instead of a free pass.
- Commands: `INFO commandstats` deltas over a fixed number of decisions (all commands, including those run inside
  Lua), and round trips as Redis saw them (`total_reads_processed`: one read per request that reached it alone),
  from one caller and from 16 threads sharing the client.
- Exactness: 4 processes x 8 threads on one 100/s limit; the most admissions inside any 1-second window, timed
  when the call returns. rfobs waits (`mode="wait"`; GCRA with `burst=1`, strict pacing); `limits` has no
  waiting, so its callers poll `hit()` every 5-15 ms.
- Memory: `MEMORY USAGE` (all samples) of the keys holding one limit of 100/s after 100 admissions.

The machine is shared (2 cores, which Redis and every client process share): compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the Redis launcher lives with the tests

from tests.e2e.redis_server import redis_server

EXACT_RATE = 100  # the 100/s limit of the exactness and memory phases
HUGE_RATE = 1_000_000  # the throughput phase's limit per second: never reached
PROCESSES = 4
EXACT_THREADS = 8  # threads per process in the exactness phase
CALLERS = 16  # threads per process in the concurrent throughput phases
COMMAND_DECISIONS = 500
TIMEOUT = 1.0  # seconds a Redis command may take, for every contender: a slow answer is measured, not dropped


@dataclass(frozen=True)
class Contender:
    label: str
    library: str  # "rfobs" or "limits"
    algorithm: str  # rfobs: token_bucket | sliding_window; limits: moving | counter


CONTENDERS = (
    Contender("rfobs GCRA", "rfobs", "token_bucket"),
    Contender("rfobs sliding window", "rfobs", "sliding_window"),
    Contender("limits moving window", "limits", "moving"),
    Contender("limits sliding counter", "limits", "counter"),
)


@dataclass(frozen=True)
class Phase:
    label: str
    processes: int
    threads: int  # callers per process


PHASES = (
    Phase("1 client", 1, 1),
    Phase(f"{PROCESSES} procs", PROCESSES, 1),
    Phase(f"1 proc x {CALLERS}", 1, CALLERS),
    Phase(f"{PROCESSES} x {CALLERS}", PROCESSES, CALLERS),
)


@dataclass(frozen=True)
class Rate:
    per_second: float
    p50: float  # µs
    p99: float
    refused: int


@dataclass
class Row:
    rates: dict[Phase, Rate] = field(default_factory=dict[Phase, Rate])
    evalsha: float = 0.0
    commands: float = 0.0
    round_trips: float = 0.0
    concurrent_evalsha: float = 0.0
    concurrent_round_trips: float = 0.0
    most_in_1s: int = 0
    admitted: int = 0
    memory: int = 0
    keys: int = 0
    error: str = ""


# -- building a decision in a process -------------------------------------------------------------------------


def install_sdk() -> None:
    """Real tracer and meter providers, as after `rfobs.init()`: rfobs's telemetry work is part of its cost."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(TracerProvider())
    metrics.set_meter_provider(MeterProvider([InMemoryMetricReader()]))


def decider(who: Contender, url: str, prefix: str, rate: int, *, wait: bool) -> Callable[[], bool]:
    """One decision on key "bench": True if admitted. With `wait`, block until admitted (always True)."""
    if who.library == "rfobs":
        return _rfobs_decider(who, url, prefix, rate, wait=wait)
    return _limits_decider(who, url, prefix, rate, wait=wait)


def _rfobs_decider(who: Contender, url: str, prefix: str, rate: int, *, wait: bool) -> Callable[[], bool]:
    from rfobs import RateLimiter
    from rfobs.exceptions import RateLimited
    from rfobs.fleet import RedisStore
    from rfobs.fleet.limiter import RedisRateLimitBackend

    store = RedisStore(url, timeout=TIMEOUT, connect_timeout=TIMEOUT, key_prefix=prefix)
    backend = RedisRateLimitBackend(store, on_failure="fail_closed")
    # Strict pacing for the exactness phase (burst=1); otherwise the default burst (one period's worth).
    burst = 1 if wait and who.algorithm == "token_bucket" else None
    limiter = RateLimiter(
        rate,
        per=1.0,
        algorithm=who.algorithm,  # pyright: ignore[reportArgumentType]
        burst=burst,
        name="bench",
        mode="wait" if wait else "reject",
        backend=backend,
    )

    def decide() -> bool:
        try:
            limiter.acquire_sync()
        except RateLimited:
            return False
        return True

    return decide


def _limits_decider(who: Contender, url: str, prefix: str, rate: int, *, wait: bool) -> Callable[[], bool]:
    from limits import RateLimitItemPerSecond
    from limits.storage import RedisStorage
    from limits.strategies import MovingWindowRateLimiter, RateLimiter, SlidingWindowCounterRateLimiter

    storage = RedisStorage(url, key_prefix=prefix, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    strategy: RateLimiter = (
        MovingWindowRateLimiter(storage) if who.algorithm == "moving" else SlidingWindowCounterRateLimiter(storage)
    )
    item = RateLimitItemPerSecond(rate)
    if not wait:
        return lambda: strategy.hit(item, "bench")

    def decide() -> bool:
        # `limits` decides, it never waits: its callers retry, here every 5-15 ms.
        while not strategy.hit(item, "bench"):
            time.sleep(random.uniform(0.005, 0.015))
        return True

    return decide


# -- worker processes ------------------------------------------------------------------------------------------


def throughput_worker(
    who: Contender, url: str, prefix: str, seconds: float, start: Barrier, out: Any, threads: int = 1
) -> None:
    """Decide as fast as `threads` sync callers can for `seconds`; put (decisions, refused, latencies in ns)."""
    try:
        if who.library == "rfobs":
            install_sdk()
        decide = decider(who, url, prefix, HUGE_RATE, wait=False)
        for _ in range(20):  # connect and load the script before the clock starts
            decide()
        latencies: list[int] = []
        refused = [0]
        lock = threading.Lock()

        def loop(deadline: int) -> None:
            mine: list[int] = []
            said_no = 0
            clock = time.perf_counter_ns
            while (began := clock()) < deadline:
                ok = decide()
                mine.append(clock() - began)
                said_no += not ok
            with lock:
                latencies.extend(mine)
                refused[0] += said_no

        start.wait(timeout=60)
        deadline = time.perf_counter_ns() + int(seconds * 1e9)
        if threads == 1:
            loop(deadline)
        else:
            callers = [threading.Thread(target=loop, args=(deadline,), daemon=True) for _ in range(threads)]
            for caller in callers:
                caller.start()
            for caller in callers:
                caller.join(timeout=seconds + 30)
        out.put(("ok", len(latencies), refused[0], latencies))
    except BaseException as error:  # the parent reports it instead of waiting for a result that never comes
        start.abort()
        out.put(("error", f"{type(error).__name__}: {error}", 0, []))


def exactness_worker(who: Contender, url: str, prefix: str, seconds: float, start: Barrier, out: Any) -> None:
    """`EXACT_THREADS` threads acquire one 100/s limit for `seconds`; put the monotonic times calls returned."""
    try:
        if who.library == "rfobs":
            install_sdk()
        decide = decider(who, url, prefix, EXACT_RATE, wait=True)
        times: list[float] = []
        lock = threading.Lock()
        start.wait(timeout=60)
        deadline = time.monotonic() + seconds

        def loop() -> None:
            while time.monotonic() < deadline:
                decide()
                returned = time.monotonic()  # system-wide clock: comparable across processes
                with lock:
                    times.append(returned)

        threads = [threading.Thread(target=loop, daemon=True) for _ in range(EXACT_THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=seconds + 30)
        out.put(("ok", len(times), 0, times))
    except BaseException as error:
        start.abort()
        out.put(("error", f"{type(error).__name__}: {error}", 0, []))


def in_processes(
    target: Callable[..., None], who: Contender, url: str, seconds: float, count: int, *extra: Any
) -> list[Any]:
    """Run `target` in `count` spawned processes started together; their results, or raise on an error."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(count + 1)
    out = context.Queue()
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    processes = [
        context.Process(target=target, args=(who, url, prefix, seconds, start, out, *extra)) for _ in range(count)
    ]
    for process in processes:
        process.start()
    try:
        try:
            start.wait(timeout=60)
        except threading.BrokenBarrierError:
            raise RuntimeError(out.get(timeout=10)[1]) from None
        results = [out.get(timeout=seconds + 60) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    errors = [result[1] for result in results if result[0] == "error"]
    if errors:
        raise RuntimeError(errors[0])
    return results


# -- measurements ----------------------------------------------------------------------------------------------


def percentile(sorted_values: list[int], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] / 1000  # µs


def throughput(who: Contender, url: str, seconds: float, phase: Phase) -> Rate:
    """Decisions per second (all callers together), p50 and p99 in µs, and refusals."""
    results = in_processes(throughput_worker, who, url, seconds, phase.processes, phase.threads)
    latencies = sorted(value for result in results for value in result[3])
    decisions = sum(result[1] for result in results)
    refused = sum(result[2] for result in results)
    return Rate(decisions / seconds, percentile(latencies, 0.50), percentile(latencies, 0.99), refused)


def most_in_one_second(times: list[float]) -> int:
    """The most timestamps inside any half-open 1-second window."""
    times = sorted(times)
    best = end = 0
    for begin, first in enumerate(times):
        while end < len(times) and times[end] < first + 1.0:
            end += 1
        best = max(best, end - begin)
    return best


class Admin:
    """The benchmark's own connection, for INFO, SCAN and MEMORY USAGE (redis-py's replies are untyped)."""

    def __init__(self, url: str) -> None:
        self._client: Any = redis.Redis.from_url(url)  # pyright: ignore[reportUnknownMemberType]

    def version(self) -> str:
        return str(self._client.info()["redis_version"])

    def command_stats(self) -> tuple[dict[str, int], int]:
        """Calls per command, and the reads Redis made from client sockets (a round trip's request is one read).

        Both from one INFO, whose own read and call the figures include.
        """
        info: dict[str, Any] = self._client.info("commandstats", "stats")
        calls = {
            name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in info.items()
            if name.startswith("cmdstat_")
        }
        return calls, int(info["total_reads_processed"])

    def scan(self, prefix: str = "") -> list[bytes]:
        return list(self._client.scan_iter(match=f"{prefix}*", count=1000))

    def memory(self, key: bytes) -> int:
        return int(self._client.memory_usage(key, samples=0) or 0)

    def has_ttl(self, key: bytes) -> bool:
        return int(self._client.pttl(key)) != -1

    def close(self) -> None:
        self._client.close()


def commands_per_decision(who: Contender, url: str, admin: Admin, threads: int = 1) -> tuple[float, float, float]:
    """EVALSHA calls, all commands Redis ran (including inside Lua), and client round trips, per decision.

    With `threads`, as many callers share the decisions (and the client, as threads of one agent do).
    """
    decide = decider(who, url, f"bench-{uuid.uuid4().hex[:8]}", HUGE_RATE, wait=False)
    for _ in range(20):
        decide()
    each = COMMAND_DECISIONS // threads

    def loop() -> None:
        for _ in range(each):
            decide()

    before, reads_before = admin.command_stats()
    callers = [threading.Thread(target=loop) for _ in range(threads)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=120)
    after, reads_after = admin.command_stats()
    decisions = each * threads
    delta = {name: calls - before.get(name, 0) for name, calls in after.items()}
    delta["info"] = delta.get("info", 0) - 1  # our own second INFO
    evalsha = delta.get("evalsha", 0) / decisions
    return evalsha, sum(delta.values()) / decisions, (reads_after - reads_before - 1) / decisions


def memory_per_key(who: Contender, url: str, admin: Admin) -> tuple[int, int, int]:
    """Admissions made, bytes (`MEMORY USAGE`, all samples) and keys holding a 100/s limit after 100 calls."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    decide = decider(who, url, prefix, EXACT_RATE, wait=False)
    admitted = sum(decide() for _ in range(EXACT_RATE))
    keys = admin.scan(prefix)
    return admitted, sum(admin.memory(key) for key in keys), len(keys)


def keys_without_ttl(admin: Admin) -> list[str]:
    return [key.decode() for key in admin.scan() if not admin.has_ttl(key)]


def measure(who: Contender, url: str, admin: Admin, quick: bool) -> Row:
    seconds = 1.5 if quick else 5.0
    row = Row()
    try:
        for phase in PHASES:
            row.rates[phase] = throughput(who, url, seconds, phase)
        row.evalsha, row.commands, row.round_trips = commands_per_decision(who, url, admin)
        row.concurrent_evalsha, _, row.concurrent_round_trips = commands_per_decision(who, url, admin, CALLERS)
        times = [
            t
            for result in in_processes(exactness_worker, who, url, 2.0 if quick else 3.0, PROCESSES)
            for t in result[3]
        ]
        row.most_in_1s = most_in_one_second(times)
        row.admitted, row.memory, row.keys = memory_per_key(who, url, admin)
    except Exception as error:  # an unavailable contender is reported, the others still run
        row.error = f"{type(error).__name__}: {error}"[:300]
    return row


# -- report ----------------------------------------------------------------------------------------------------


def print_table(rows: dict[Contender, Row]) -> None:
    header = f"{'decisions/s (p50/p99 µs)':<24}" + "".join(f"{phase.label:>22}" for phase in PHASES)
    print(header)
    print("-" * len(header))
    for who, row in rows.items():
        if row.error:
            print(f"{who.label:<24}unavailable: {row.error}")
            continue
        cells = (f"{rate.per_second:,.0f} ({rate.p50:.0f}/{rate.p99:.0f})" for rate in row.rates.values())
        print(f"{who.label:<24}" + "".join(f"{cell:>22}" for cell in cells))
    columns = f"{'EVALSHA':>8}{'cmds':>6}{'trips':>6}{'EVALSHA':>9}{'trips':>6}{'max/1s':>8}{'bytes/key':>10}"
    print(f"\n{'per decision':<24}{columns}")
    print(f"{'':<24}{'1 caller':>20}{f'{CALLERS} threads':>15}")
    for who, row in rows.items():
        if row.error:
            continue
        print(
            f"{who.label:<24}{row.evalsha:>8.2f}{row.commands:>6.1f}{row.round_trips:>6.2f}"
            f"{row.concurrent_evalsha:>9.2f}{row.concurrent_round_trips:>6.2f}{row.most_in_1s:>8}"
            f"{row.memory:>10,}" + (f" ({row.keys} keys)" if row.keys != 1 else "")
        )
    print(
        "\nEVALSHA, cmds (every command Redis ran, Lua's included) and trips (round trips: reads Redis made from client"
        "\nsockets, INFO's total_reads_processed) per decision, for one caller and for threads sharing a client;"
        f"\nmax/1s: most admissions in any 1-second window for a {EXACT_RATE}/s limit "
        f"({PROCESSES} processes x {EXACT_THREADS} threads); bytes/key after {EXACT_RATE} admissions."
    )
    for who, row in rows.items():
        refused = sum(rate.refused for rate in row.rates.values())
        if not row.error and (refused or row.admitted != EXACT_RATE):
            print(
                f"NOTE {who.label}: refused {refused} decisions under a limit never reached (decided without Redis?);"
                f" admitted {row.admitted}/{EXACT_RATE} in the memory phase"
            )


def print_ratios(rows: dict[Contender, Row]) -> None:
    print("\nThroughput ratios rfobs / limits (the issue asks for >= 2x):")
    for mine, ours in rows.items():
        if mine.library != "rfobs" or ours.error:
            continue
        for peer, theirs in rows.items():
            if peer.library != "limits" or theirs.error:
                continue
            ratios = {phase: ours.rates[phase].per_second / theirs.rates[phase].per_second for phase in PHASES}
            cells = ", ".join(f"{phase.label} {ratio:.2f}x" for phase, ratio in ratios.items())
            print(f"  {mine.label} / {peer.label}: {cells}")
        if ours.evalsha != 1 or ours.concurrent_evalsha != 1 or max(ours.round_trips, ours.concurrent_round_trips) > 1:
            print(f"  {mine.label}: NOT one EVALSHA per decision, or more than one round trip")
    print(
        "  One caller waits a round trip per decision whatever the client does; callers at once share round trips"
        "\n  (rfobs pipelines the calls made while one is on the wire), where the 2x is to be had."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter phases (under a minute)")
    parser.add_argument(
        "--profile",
        metavar="CONTENDER",
        choices=[who.label for who in CONTENDERS],
        help="only decide in a loop for 10 s as one client, for a profiler: py-spy record -- <this command>",
    )
    options = parser.parse_args()
    install_sdk()  # for rfobs's phases in this process (commands, memory); `limits` records no telemetry
    if options.profile:
        profile(next(who for who in CONTENDERS if who.label == options.profile))
        return
    began = time.monotonic()
    with redis_server() as server:
        admin = Admin(server.url)
        print(f"redis-server {admin.version()} on {server.url}; {library_versions()}")
        rows: dict[Contender, Row] = {}
        for who in CONTENDERS:
            rows[who] = measure(who, server.url, admin, options.quick)
            print(f"  measured {who.label} ({time.monotonic() - began:.0f}s)", flush=True)
        print()
        print_table(rows)
        print_ratios(rows)
        leftover = keys_without_ttl(admin)
        print(f"\nKeys left without a TTL: {len(leftover)}" + (f" {leftover[:5]}" if leftover else ""))
        admin.close()
    print(f"Total {time.monotonic() - began:.0f}s")


def profile(who: Contender, seconds: float = 10.0) -> None:
    with redis_server() as server:
        decide = decider(who, server.url, "profile", HUGE_RATE, wait=False)
        decisions = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            decide()
            decisions += 1
    print(f"{who.label}: {decisions / seconds:,.0f} decisions/s (one client, under the profiler)")


def library_versions() -> str:
    from importlib.metadata import version

    return f"rfobs {version('rfobs')}, limits {version('limits')}, redis-py {version('redis')}"


if __name__ == "__main__":
    main()
