"""`/health/live` under `wrk` load while an agent's event loop keeps running `@rfobs.task` calls, in one process.

Run: .venv/bin/python benchmarks/health_load.py [--mode process|thread] [--duration 10] [--connections 32]

Needs Debian's `wrk` (`apt-get install -y --no-install-recommends wrk`). The agent's task throughput is measured
without load before and after the `wrk` run (their mean is the baseline) and during it. Targets (issue 5):
`/health/live` >= 5,000 requests/s, the agent's task throughput drops by < 10%, and a burst of 200 concurrent
`/health` requests within the cache TTL runs the checks once.

`--mode process` (the default) measures `HealthServer(live_process=True)`: `/health/live` answered by the helper
process. `--mode thread` measures the server thread alone, which behind this CPU-bound agent loop gets the GIL
only now and then (see rfobs/health/_wire.py), so it misses the request rate by design. The machine is shared:
run it more than once and compare.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import sys
import time
from typing import Any

import rfobs
from rfobs.health import CheckResult, HealthChecker, Status
from rfobs.health.server import HealthServer

WORKERS = 8


@rfobs.task("bench", "step")
async def step(value: int) -> int:
    await asyncio.sleep(0)
    return value + 1


class Agent:
    """Coroutines calling an `@rfobs.task` in a loop; `done` counts completed calls."""

    def __init__(self) -> None:
        self.done = 0
        self.stopping = False

    async def worker(self) -> None:
        value = 0
        while not self.stopping:
            value = await step(value)
            self.done += 1

    async def rate(self, seconds: float) -> float:
        """Task calls per second over the next `seconds`."""
        start_count, start = self.done, time.perf_counter()
        await asyncio.sleep(seconds)
        return (self.done - start_count) / (time.perf_counter() - start)


class CountingCheck:
    """A check that takes 50 ms and counts its runs."""

    name = "counted"
    critical = True

    def __init__(self) -> None:
        self.runs = 0

    async def run(self) -> CheckResult:
        self.runs += 1
        await asyncio.sleep(0.05)
        return CheckResult(self.name, Status.HEALTHY, "ok")


class CpuShares:
    """CPU time of this process, its children (wrk, the helper) and the whole machine, from now on."""

    def __init__(self) -> None:
        import psutil

        self.me = psutil.Process()
        self.children = self.me.children()
        self.start = time.perf_counter()
        self.times = self._times()

    def _times(self) -> dict[str, float]:
        import psutil

        def busy(times: Any) -> float:
            return float(times.user + times.system)

        times = {"agent process": busy(self.me.cpu_times())}
        for child in self.children:
            with contextlib.suppress(psutil.NoSuchProcess):
                times[child.name()] = busy(child.cpu_times())
        total = psutil.cpu_times()
        times["machine (all processes)"] = float(sum(total) - total.idle - getattr(total, "iowait", 0.0))
        return times

    def shares(self) -> dict[str, float]:
        elapsed, now = time.perf_counter() - self.start, self._times()
        return {name: (now[name] - self.times[name]) / elapsed for name in now if name in self.times}


async def run_wrk(url: str, duration: int, connections: int) -> tuple[float, str]:
    """wrk's requests/s, and its error lines (non-2xx answers, socket errors and timeouts), if any."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", url]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output = (await process.communicate())[0].decode()
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if process.returncode != 0 or match is None:
        sys.exit(f"wrk failed:\n{output}")
    errors = [line.strip() for line in output.splitlines() if "Non-2xx" in line or "Socket errors" in line]
    return float(match.group(1)), "; ".join(errors)


BURST = """
import sys, time, urllib.error, urllib.request
from concurrent.futures import ThreadPoolExecutor
def get(_):
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:  # no answer within the timeout: shown as status 0
        return 0
with ThreadPoolExecutor(200) as pool:
    started = time.perf_counter()
    statuses = list(pool.map(get, range(200)))
print(time.perf_counter() - started, *sorted(set(statuses)))
"""


async def burst(url: str) -> tuple[float, list[int]]:
    """200 concurrent GETs of `url` from a second process: (seconds, the distinct statuses; 0 is no answer)."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", BURST, url, stdout=asyncio.subprocess.PIPE)
    seconds, *statuses = (await process.communicate())[0].split()
    return float(seconds), [int(status) for status in statuses]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk load")
    parser.add_argument("--connections", type=int, default=32, help="wrk keep-alive connections")
    parser.add_argument("--mode", choices=["process", "thread"], default="process", help="HealthServer(live_process=)")
    parser.add_argument("--baseline", type=float, default=4.0, help="seconds of each unloaded measurement")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y --no-install-recommends wrk")

    telemetry = rfobs.init(
        metrics__prometheus_port=0, tracing__exporter="none", logging__enabled=False, health__enabled=False
    )
    # Generous limits: behind this CPU-bound loop the server thread waits long for the GIL (see HealthServer).
    checker = HealthChecker(timeout=30.0, cache_ttl=120.0)
    counted = CountingCheck()
    checker.register(counted)
    server = HealthServer(checker, live_process=args.mode == "process")
    url = server.start()
    agent = Agent()
    workers = [asyncio.create_task(agent.worker()) for _ in range(WORKERS)]
    try:
        await agent.rate(1.0)  # warm-up
        before = await agent.rate(args.baseline)
        wrk = asyncio.create_task(run_wrk(f"{url}/health/live", args.duration, args.connections))
        await asyncio.sleep(0.5)  # wrk connecting
        cpu = CpuShares()
        during = await agent.rate(args.duration - 1.0)
        shares = cpu.shares()
        requests, errors = await wrk
        after = await agent.rate(args.baseline)
        burst_seconds, statuses = await burst(f"{url}/health")
    finally:
        agent.stopping = True
        await asyncio.gather(*workers)
        server.stop()
        telemetry.shutdown(timeout=2)

    baseline = (before + after) / 2
    drop = (baseline - during) / baseline * 100
    load = f"wrk -t2 -c{args.connections} -d{args.duration}s"
    print(f"/health/live ({load}, live_process={args.mode == 'process'}): {requests:,.0f} requests/s (target >= 5,000)")
    if errors:
        print(f"  wrk: {errors}")
    print(f"agent @task throughput: {before:,.0f}/s before, {during:,.0f}/s under load, {after:,.0f}/s after")
    print(f"throughput drop under load: {drop:.1f}% (target < 10%)")
    print("CPU under load, in cores: " + ", ".join(f"{name} {share:.2f}" for name, share in shares.items()))
    print(
        f"200 concurrent GET /health within the TTL: statuses {statuses} in {burst_seconds:.2f}s, "
        f"check runs {counted.runs} (checker.runs {checker.runs}; target 1)"
    )


if __name__ == "__main__":
    asyncio.run(main())
