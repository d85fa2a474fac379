"""HealthChecker: concurrency, timeouts, failures, overall status, the cached single-flight report, metrics."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from rfobs import ConfigError
from rfobs.health import CheckResult, HealthChecker, HealthReport, Status
from rfobs.health._model import Value
from rfobs.instrument._clock import VirtualClock
from rfobs.testing import Capture


@dataclass
class Probe:
    """A check whose verdict, delay and failure the test chooses; counts its runs.

    `delay` is slept on `clock` when there is one (a virtual clock: no real wait), else for real. Before that,
    the run waits at `meet` (with the other checks of a run) and for `gate` (set by another thread).
    """

    name: str
    status: Status = Status.HEALTHY
    delay: float = 0.0
    error: Exception | None = None
    critical: bool = False
    values: Mapping[str, Value] = field(default_factory=lambda: {})
    clock: VirtualClock | None = None
    meet: asyncio.Barrier | None = None
    gate: threading.Event | None = None
    runs: int = 0

    async def run(self) -> CheckResult:
        self.runs += 1
        if self.meet is not None:
            await self.meet.wait()
        if self.gate is not None:
            assert await asyncio.to_thread(self.gate.wait, 10)
        await (asyncio.sleep(self.delay) if self.clock is None else self.clock.asleep(self.delay))
        if self.error is not None:
            raise self.error
        return CheckResult(self.name, self.status, f"{self.name} is {self.status.value}", self.values)


def checker_with(
    *probes: Probe, timeout: float = 5.0, cache_ttl: float = 2.0, clock: VirtualClock | None = None
) -> HealthChecker:
    checker = HealthChecker(timeout=timeout, cache_ttl=cache_ttl, clock=clock)
    for probe in probes:
        checker.register(probe)
    return checker


def summary(report: HealthReport) -> list[tuple[str, Status, str, bool]]:
    return [(r.name, r.status, r.message, r.critical) for r in report.checks]


async def test_checks_run_concurrently() -> None:
    # Each check waits for the other at the barrier: run one after the other, the first would time out.
    clock, meet = VirtualClock(), asyncio.Barrier(2)
    checker = checker_with(
        Probe("a", delay=0.25, clock=clock, meet=meet), Probe("b", delay=0.25, clock=clock, meet=meet), clock=clock
    )
    report = await checker.check_all()
    assert report.status is Status.HEALTHY
    assert summary(report) == [
        ("a", Status.HEALTHY, "a is healthy", False),
        ("b", Status.HEALTHY, "b is healthy", False),
    ]
    # Both checks ran while the clock moved by both sleeps.
    assert [r.duration for r in report.checks] == [0.5, 0.5]
    assert report.duration == 0.5


async def test_durations_are_read_on_the_checkers_clock() -> None:
    clock = VirtualClock(start=100.0)
    slow = Probe("slow", delay=0.25, clock=clock)
    failing = Probe("failing", delay=0.5, clock=clock, error=ConnectionError("refused"))
    checker = checker_with(slow, clock=clock)
    report = await checker.check_all()
    assert [(r.name, r.duration) for r in report.checks] == [("slow", 0.25)]
    assert report.duration == 0.25
    checker.register(failing)
    result = await checker.check("failing")
    assert (result.status, result.message, result.duration) == (Status.UNHEALTHY, "ConnectionError: refused", 0.5)
    assert checker.clock is clock


async def test_a_hung_check_times_out_without_holding_the_caller() -> None:
    checker = checker_with(Probe("hung", delay=3600), Probe("quick"), timeout=0.2)
    started = time.perf_counter()
    report = await checker.check_all()
    # The timeout is real time. Held by the hung check, the caller would wait an hour; the 5 s bound leaves room
    # for a loaded machine (a 0.3 s margin did not) and still fails if the caller waited for the check.
    assert time.perf_counter() - started < 5
    assert summary(report) == [
        ("hung", Status.UNHEALTHY, "timed out after 0.2s", False),
        ("quick", Status.HEALTHY, "quick is healthy", False),
    ]
    assert report.status is Status.DEGRADED  # the hung check is not critical


async def test_a_raising_check_is_unhealthy_with_its_scrubbed_message() -> None:
    error = ConnectionError("refused for password=hunter2 with Bearer abcdefghijklmnop")
    checker = checker_with(Probe("db", error=error, critical=True))
    report = await checker.check_all()
    assert summary(report) == [
        ("db", Status.UNHEALTHY, "ConnectionError: refused for password=*** with Bearer ***", True)
    ]
    assert report.status is Status.UNHEALTHY
    assert not report.ready


@pytest.mark.parametrize(
    ("probes", "status", "ready"),
    [
        ([Probe("a"), Probe("b", Status.SKIPPED)], Status.HEALTHY, True),
        ([Probe("a"), Probe("b", Status.DEGRADED)], Status.DEGRADED, True),
        ([Probe("a"), Probe("b", Status.UNHEALTHY)], Status.DEGRADED, True),
        ([Probe("a", Status.DEGRADED, critical=True)], Status.DEGRADED, True),
        ([Probe("a", Status.DEGRADED), Probe("b", Status.UNHEALTHY, critical=True)], Status.UNHEALTHY, False),
    ],
    ids=[
        "skipped-is-healthy",
        "degraded",
        "non-critical-unhealthy-degrades",
        "critical-degraded",
        "critical-unhealthy",
    ],
)
async def test_overall_status_from_critical_and_other_checks(probes: list[Probe], status: Status, ready: bool) -> None:
    report = await checker_with(*probes).check_all()
    assert (report.status, report.ready) == (status, ready)
    assert report.to_dict()["status"] == status.value
    assert report.to_dict()["ready"] is ready


async def test_check_runs_one_check_by_name() -> None:
    a, b = Probe("a", Status.DEGRADED), Probe("b")
    checker = checker_with(a, b)
    result = await checker.check("a")
    assert (result.name, result.status, result.message) == ("a", Status.DEGRADED, "a is degraded")
    assert (a.runs, b.runs) == (1, 0)
    with pytest.raises(KeyError):
        await checker.check("nope")


def test_registry_rejects_duplicates_and_non_checks() -> None:
    checker = checker_with(Probe("a"))
    with pytest.raises(ConfigError, match="a check named 'a' is already registered"):
        checker.register(Probe("a"))
    with pytest.raises(ConfigError, match=r"expected an object with name, critical and run\(\)"):
        checker.register(object())  # pyright: ignore[reportArgumentType]
    checker.unregister("a")
    checker.unregister("never-registered")
    assert checker.checks == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout": 0}, r"HealthChecker\(timeout=0\): expected a number of seconds > 0"),
        ({"timeout": True}, r"HealthChecker\(timeout=True\)"),
        ({"cache_ttl": -1.0}, r"HealthChecker\(cache_ttl=-1.0\): expected a number of seconds >= 0"),
        (
            {"clock": time},
            r"HealthChecker\(clock=<module 'time' \(built-in\)>\): "
            r"expected an rfobs Clock \(monotonic, sleep, asleep\) or None",
        ),
    ],
)
def test_bad_constructor_arguments_name_the_argument(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HealthChecker(**kwargs)


async def test_report_is_cached_and_single_flight_across_coroutines() -> None:
    clock = VirtualClock()
    probe = Probe("a", delay=0.05, clock=clock)
    checker = checker_with(probe, cache_ttl=0.5, clock=clock)
    reports = await asyncio.gather(*(checker.report() for _ in range(200)))
    assert (checker.runs, probe.runs) == (1, 1)
    assert all(report is reports[0] for report in reports)
    clock.advance(0.5)  # exactly the TTL old: still served
    assert await checker.report() is reports[0]
    clock.advance(0.01)
    again = await asyncio.gather(*(checker.report() for _ in range(200)))
    assert (checker.runs, probe.runs) == (2, 2)
    assert again[0] is not reports[0] and all(report is again[0] for report in again)


def test_report_is_single_flight_across_threads_and_their_loops() -> None:
    # The run is held at the gate until every thread's 25 calls have asked for a report, so they all join it:
    # the cache alone cannot explain one run.
    clock, gate = VirtualClock(), threading.Event()
    probe = Probe("a", clock=clock, gate=gate)
    checker = checker_with(probe, cache_ttl=0.5, clock=clock)
    asked = threading.Semaphore(0)
    reports: list[HealthReport] = []
    lock = threading.Lock()

    async def many() -> list[HealthReport]:
        calls = [asyncio.ensure_future(checker.report()) for _ in range(25)]
        await asyncio.sleep(0)  # every call has run to its first wait: it owns the run or has joined it
        asked.release()
        return list(await asyncio.gather(*calls))

    def worker() -> None:
        got = asyncio.run(many())
        with lock:
            reports.extend(got)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    assert all(asked.acquire(timeout=10) for _ in threads)
    gate.set()
    for thread in threads:
        thread.join(10)
    assert len(reports) == 200
    assert (checker.runs, probe.runs) == (1, 1)
    assert len({id(report) for report in reports}) == 1
    clock.advance(0.51)
    assert checker.report_sync() is not reports[0]
    assert (checker.runs, probe.runs) == (2, 2)


async def test_report_sync_works_inside_a_running_event_loop() -> None:
    clock = VirtualClock()
    probe = Probe("a", Status.DEGRADED)
    checker = checker_with(probe, clock=clock)
    report = checker.report_sync()
    assert (report.status, summary(report), probe.runs) == (
        Status.DEGRADED,
        [("a", Status.DEGRADED, "a is degraded", False)],
        1,
    )
    assert checker.report_sync() is report  # from the cache
    assert await checker.report() is report
    clock.advance(2.5)
    assert checker.report_sync() is not report
    assert probe.runs == 2


@pytest.mark.timeout(30, method="thread")  # joining the run in progress would hang the test for good
async def test_report_sync_in_a_loop_does_not_wait_for_a_run_that_loop_owns() -> None:
    a, b = Probe("a"), Probe("b")
    checker = checker_with(a, b)
    in_progress = asyncio.ensure_future(checker.report())
    await asyncio.sleep(0)  # the report has started: this loop owns the run in progress
    report = checker.report_sync()  # blocks this loop: the run in progress cannot move meanwhile
    assert summary(report) == [
        ("a", Status.HEALTHY, "a is healthy", False),
        ("b", Status.HEALTHY, "b is healthy", False),
    ]
    assert (a.runs, b.runs, checker.runs) == (1, 1, 1)
    assert (await asyncio.wait_for(in_progress, 10)) is not report
    assert (a.runs, b.runs, checker.runs) == (2, 2, 2)


async def test_without_a_clock_the_checker_follows_fast_waits(fast_waits: VirtualClock) -> None:
    probe = Probe("a", delay=0.25, clock=fast_waits)
    checker = checker_with(probe, cache_ttl=2.0)
    report = await checker.report()
    assert (checker.clock, report.duration, report.checks[0].duration) == (fast_waits, 0.25, 0.25)
    fast_waits.advance(2.0)
    assert await checker.report() is report
    fast_waits.advance(0.01)
    assert await checker.report() is not report
    assert probe.runs == 2


async def test_metrics_count_runs_and_gauge_last_status(capture: Capture) -> None:
    gc.collect()  # checkers of earlier tests must not report in the gauges
    values: dict[str, Value] = {"used_percent": 42.5, "paths": 2, "mounted": True, "device": "sda"}
    checker = checker_with(
        Probe("cpu", values=values),
        Probe("disk", Status.DEGRADED),
        Probe("db", Status.UNHEALTHY, critical=True),
        Probe("gpu", Status.SKIPPED),
    )
    await checker.check_all()
    await checker.check_all()
    await checker.check("disk")
    assert sorted(
        (p["attributes"]["check"], p["attributes"]["status"], p["value"])
        for p in capture.metric("researchflow_agents.health_checks")
    ) == [("cpu", "healthy", 2), ("db", "unhealthy", 2), ("disk", "degraded", 3), ("gpu", "skipped", 2)]
    assert sorted(
        (p["attributes"]["check"], p["value"]) for p in capture.metric("researchflow_agents.health_check_status")
    ) == [("cpu", 1.0), ("db", 0.0), ("disk", 0.5), ("gpu", 1.0)]
    assert capture.metric("researchflow_agents.health_check_value") == [
        {"attributes": {"check": "cpu", "measure": "used_percent"}, "value": 42.5},
        {"attributes": {"check": "cpu", "measure": "paths"}, "value": 2},
    ]


async def test_the_status_gauge_follows_the_latest_run(capture: Capture) -> None:
    gc.collect()
    probe = Probe("db")
    checker = checker_with(probe)
    await checker.check_all()
    assert [p["value"] for p in capture.metric("researchflow_agents.health_check_status")] == [1.0]
    probe.status = Status.UNHEALTHY
    await checker.check("db")
    assert [p["value"] for p in capture.metric("researchflow_agents.health_check_status")] == [0.0]
    checker.unregister("db")
    assert capture.metric("researchflow_agents.health_check_status") == []
