"""Decorated calls with no OpenTelemetry SDK installed: one rfobs warning per process, and only then."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
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
