"""The health server runs the checks on a schedule of its own, so the health metrics exist without any probe."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

import rfobs
from rfobs.exceptions import ConfigError
from rfobs.health import CheckResult, HealthChecker, Status
from rfobs.health.server import HealthServer
from rfobs.testing import Capture

pytestmark = pytest.mark.timeout(60)

STATUS = "researchflow_agents.health_check_status"
RUNS = "researchflow_agents.health_checks"


@dataclass
class Counted:
    """A healthy check that counts its runs, or one that never finishes (`hang`)."""

    name: str
    critical: bool = False
    hang: bool = False
    runs: int = 0

    async def run(self) -> CheckResult:
        self.runs += 1
        if self.hang:
            await asyncio.Event().wait()
        return CheckResult(self.name, Status.HEALTHY, "ok")


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def health_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("rfobs-health")]


def test_scheduled_runs_fill_the_health_metrics_without_a_request(capture: Capture) -> None:
    check = Counted("queue")
    checker = HealthChecker(cache_ttl=0.0)
    checker.register(check)
    server = HealthServer(checker, port=0, check_interval=0.2)
    server.start()
    try:
        # Nothing ever connects to the server: the points come from its schedule alone.
        assert wait_for(lambda: capture.metric(STATUS) != [])
        assert capture.metric(STATUS) == [{"attributes": {"check": "queue"}, "value": 1.0}]
        assert wait_for(lambda: check.runs >= 3)  # and it keeps running: the metrics stay fresh
    finally:
        server.stop()
    (runs,) = capture.metric(RUNS)
    assert runs["attributes"] == {"check": "queue", "status": "healthy"}
    assert runs["value"] == check.runs == checker.runs


def test_interval_zero_schedules_nothing(capture: Capture) -> None:
    check = Counted("queue")
    checker = HealthChecker()
    checker.register(check)
    with HealthServer(checker, port=0, check_interval=0):
        time.sleep(0.6)
    assert (check.runs, capture.metric(STATUS), capture.metric(RUNS)) == (0, [], [])


def test_a_hung_check_is_bounded_by_the_checker_timeout_and_stop_stays_quick(capture: Capture) -> None:
    checker = HealthChecker(timeout=0.2, cache_ttl=0.0)
    checker.register(hung := Counted("stuck", hang=True))
    server = HealthServer(checker, port=0, check_interval=0.1)
    server.start()
    try:
        assert wait_for(lambda: hung.runs >= 2)  # each run times out, then the next one starts
        ((result),) = checker.last_results()
        assert (result.status, result.message) == (Status.UNHEALTHY, "timed out after 0.2s")
    finally:
        started = time.monotonic()
        server.stop()
    assert time.monotonic() - started < 1.5
    assert not server.running


def test_stop_does_not_wait_for_the_interval_and_leaves_no_thread(capture: Capture) -> None:
    before = health_threads()
    checker = HealthChecker()
    checker.register(check := Counted("queue"))
    server = HealthServer(checker, port=0, check_interval=3600)
    server.start()
    try:
        assert wait_for(lambda: check.runs == 1)  # the first run comes right after start
    finally:
        started = time.monotonic()
        server.stop()
    assert time.monotonic() - started < 1.5
    assert wait_for(lambda: health_threads() == before, timeout=5)


@pytest.mark.parametrize("bad", [-1, "soon", float("nan"), True])
def test_a_bad_check_interval_is_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="check_interval"):
        HealthServer(HealthChecker(), check_interval=bad)  # pyright: ignore[reportArgumentType]


@pytest.mark.usefixtures("clean_globals")
@pytest.mark.parametrize("bad", [-1, "soon", 86_401, 0.2])
def test_a_bad_health_interval_setting_is_refused_at_init(bad: object) -> None:
    with pytest.raises(ConfigError) as caught:
        rfobs.init(health__interval=bad)
    assert f"health.interval = {bad!r}" in str(caught.value)
    # Under a second would run every check (dependency probes too) in a busy loop.
    assert "expected 0 (off) or a number from 1 to 86400" in str(caught.value)


@pytest.mark.usefixtures("clean_globals")
def test_init_with_the_server_on_runs_the_checks_on_its_schedule() -> None:
    before = health_threads()
    telemetry = rfobs.init(
        metrics__prometheus_enabled=False,
        tracing__exporter="none",
        logging__enabled=False,
        health__server_enabled=True,
        health__live_process=False,
        health__port=0,
        health__interval=1,
        health__cache_ttl=0,
        health__discover=False,
    )
    checker = telemetry.health
    assert checker is not None and telemetry.health_url is not None
    try:
        assert wait_for(lambda: checker.runs >= 2, timeout=10)
        assert {result.name for result in checker.last_results()} >= {"cpu", "memory"}
    finally:
        assert telemetry.shutdown(timeout=5) is True
    assert wait_for(lambda: health_threads() == before, timeout=5)
    runs = checker.runs
    time.sleep(1.5)
    assert checker.runs == runs  # the schedule ended with the server


@pytest.mark.usefixtures("clean_globals")
def test_init_without_the_server_schedules_nothing() -> None:
    telemetry = rfobs.init(
        metrics__prometheus_enabled=False, tracing__exporter="none", logging__enabled=False, health__interval=1
    )
    try:
        time.sleep(0.4)
        assert telemetry.health is not None and telemetry.health.runs == 0
    finally:
        telemetry.shutdown(timeout=5)
