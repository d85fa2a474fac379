"""Decorated calls with no OpenTelemetry SDK installed: one rfobs warning per process, and only then."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import rfobs
from rfobs.testing import Capture, reset_global_telemetry

NO_SDK = (
    "rfobs: {function} ran, but no OpenTelemetry SDK is installed, so nothing was recorded (no span, no metric). "
    "Call rfobs.init() at start-up, before the first decorated call. (Reported once per process.)"
)


@pytest.fixture
def no_sdk() -> Iterator[None]:
    reset_global_telemetry()  # also re-arms the once-per-process warning
    yield
    reset_global_telemetry()


def rfobs_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "rfobs" and r.levelno == logging.WARNING]


@pytest.mark.usefixtures("no_sdk")
def test_the_first_decorated_call_without_an_sdk_warns_once_naming_the_function(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @rfobs.task("researcher", "plan")
    def plan() -> int:
        return 1

    @rfobs.api_call("arxiv", "search")
    async def search() -> int:
        return 2

    assert plan() + plan() == 2
    import asyncio

    assert asyncio.run(search()) == 2
    function = (
        f"@task {__name__}.test_the_first_decorated_call_without_an_sdk_warns_once_naming_the_function.<locals>.plan()"
    )
    assert rfobs_warnings(caplog) == [NO_SDK.format(function=function)]


@pytest.mark.usefixtures("no_sdk")
def test_no_warning_under_a_tracer_provider_installed_by_the_user(caplog: pytest.LogCaptureFixture) -> None:
    @rfobs.tool("web_search")
    def web_search() -> str:
        return "ok"

    trace.set_tracer_provider(TracerProvider())
    assert web_search() == "ok"
    assert rfobs_warnings(caplog) == []


def test_no_warning_under_the_testing_fixture(capture: Capture, caplog: pytest.LogCaptureFixture) -> None:
    @rfobs.llm_call("openai", "gpt-4o-mini")
    def complete() -> str:
        return "ok"

    assert complete() == "ok"
    assert [s["name"] for s in capture.spans()] == ["chat gpt-4o-mini"]
    assert rfobs_warnings(caplog) == []


@pytest.mark.usefixtures("no_sdk")
def test_no_warning_when_init_turned_the_sdk_off(caplog: pytest.LogCaptureFixture) -> None:
    @rfobs.task("researcher", "plan")
    def plan() -> int:
        return 1

    telemetry = rfobs.init(sdk__disabled=True)
    try:
        assert plan() == 1
    finally:
        telemetry.shutdown()
    assert rfobs_warnings(caplog) == []


SCRIPT = """
import rfobs

@rfobs.task("researcher", "early")
def early() -> None:
    pass

@rfobs.tool("web_search")
def web_search() -> None:
    pass

for _ in range(3):
    early()
    web_search()
"""


def test_a_program_that_never_calls_init_prints_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.stdout == ""
    assert result.stderr.splitlines() == [NO_SDK.format(function="@task __main__.early()")]


@pytest.mark.usefixtures("no_sdk")
@pytest.mark.parametrize(
    ("decorate", "call"),
    [
        (rfobs.retry_api_call(max_attempts=3, base_delay=1.0), "@retry fetch"),
        (rfobs.timeout_api_call(60.0), "@timeout fetch"),
        (rfobs.rate_limit_api_calls(requests_per_second=10.0), "@rate_limit fetch"),
    ],
)
async def test_a_policy_alone_without_an_sdk_warns_once_too(
    caplog: pytest.LogCaptureFixture,
    decorate: Callable[[Callable[[], Awaitable[int]]], Callable[[], Awaitable[int]]],
    call: str,
) -> None:
    # The seed's policy examples decorate with nothing else: no task span to warn first.
    async def fetch() -> int:
        return 1

    decorated = decorate(fetch)
    with caplog.at_level(logging.WARNING, logger="rfobs"):
        assert await decorated() == 1
        assert await decorated() == 1
    assert rfobs_warnings(caplog) == [NO_SDK.format(function=call)]


@pytest.mark.usefixtures("no_sdk")
async def test_a_timeout_block_without_an_sdk_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="rfobs"):
        async with rfobs.timeout_after(30.0, "data_processing"):
            pass
    assert rfobs_warnings(caplog) == [NO_SDK.format(function="@timeout data_processing")]


@pytest.mark.usefixtures("no_sdk")
def test_building_a_breaker_or_limiter_without_an_sdk_does_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="rfobs"):
        rfobs.CircuitBreaker("arxiv")
        rfobs.RateLimiter(5, name="arxiv")
    assert rfobs_warnings(caplog) == []
