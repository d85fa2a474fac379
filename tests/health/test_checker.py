"""HealthChecker: concurrency, timeouts, failures, overall status, the cached single-flight report, metrics."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from rfobs import ConfigError
from rfobs.health import CheckResult, HealthChecker, HealthReport, Status
from rfobs.health._model import Value
from rfobs.testing import Capture


@dataclass
class Probe:
    """A check whose verdict, delay and failure the test chooses; counts its runs."""

    name: str
    status: Status = Status.HEALTHY
    delay: float = 0.0
    error: Exception | None = None
    critical: bool = False
    values: Mapping[str, Value] = field(default_factory=lambda: {})
    runs: int = 0

    async def run(self) -> CheckResult:
        self.runs += 1
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return CheckResult(self.name, self.status, f"{self.name} is {self.status.value}", self.values)


def checker_with(*probes: Probe, timeout: float = 5.0, cache_ttl: float = 2.0) -> HealthChecker:
    checker = HealthChecker(timeout=timeout, cache_ttl=cache_ttl)
    for probe in probes:
        checker.register(probe)
    return checker


def summary(report: HealthReport) -> list[tuple[str, Status, str, bool]]:
    return [(r.name, r.status, r.message, r.critical) for r in report.checks]


async def test_checks_run_concurrently() -> None:
    checker = checker_with(Probe("a", delay=0.2), Probe("b", delay=0.2))
    started = time.perf_counter()
    report = await checker.check_all()
    elapsed = time.perf_counter() - started
    assert 0.2 <= elapsed < 0.38  # sequential would take 0.4 s
    assert report.status is Status.HEALTHY
    assert summary(report) == [
        ("a", Status.HEALTHY, "a is healthy", False),
        ("b", Status.HEALTHY, "b is healthy", False),
    ]
    assert all(0.2 <= r.duration < 0.38 for r in report.checks)
    assert 0.2 <= report.duration < 0.38


async def test_a_hung_check_times_out_without_holding_the_caller() -> None:
    checker = checker_with(Probe("hung", delay=3600), Probe("quick"), timeout=0.2)
    started = time.perf_counter()
    report = await checker.check_all()
    assert time.perf_counter() - started < 0.2 + 0.3
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
    ],
)
def test_bad_constructor_arguments_name_the_argument(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HealthChecker(**kwargs)


async def test_report_is_cached_and_single_flight_across_coroutines() -> None:
    probe = Probe("a", delay=0.05)
    checker = checker_with(probe, cache_ttl=0.5)
    reports = await asyncio.gather(*(checker.report() for _ in range(200)))
    assert (checker.runs, probe.runs) == (1, 1)
    assert all(report is reports[0] for report in reports)
    assert await checker.report() is reports[0]
    await asyncio.sleep(0.55)
    again = await asyncio.gather(*(checker.report() for _ in range(200)))
    assert (checker.runs, probe.runs) == (2, 2)
    assert again[0] is not reports[0] and all(report is again[0] for report in again)


def test_report_is_single_flight_across_threads_and_their_loops() -> None:
    probe = Probe("a", delay=0.05)
    checker = checker_with(probe, cache_ttl=0.5)
    barrier = threading.Barrier(8)
    reports: list[HealthReport] = []
    lock = threading.Lock()

    async def many() -> list[HealthReport]:
        return list(await asyncio.gather(*(checker.report() for _ in range(25))))

    def worker() -> None:
        barrier.wait()
        got = asyncio.run(many())
        with lock:
            reports.extend(got)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(reports) == 200
    assert (checker.runs, probe.runs) == (1, 1)
    assert len({id(report) for report in reports}) == 1
    time.sleep(0.55)
    assert checker.report_sync() is not reports[0]
    assert (checker.runs, probe.runs) == (2, 2)


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
