"""Sync calls that never return cannot pile up threads: abandoned workers are counted, capped and un-counted."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

import rfobs
from rfobs.config import load_config
from rfobs.exceptions import ConfigError, TimeoutExceeded
from rfobs.instrument import _workers
from rfobs.instrument.timeout import Timeout
from rfobs.testing import Capture

GAUGE = "researchflow_agents.timeout_abandoned_threads"


class Hang:
    """A function that blocks until released; counts the calls that started."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            self.calls += 1
        self.release.wait()
        return "late"


def workers(operation: str = "") -> list[threading.Thread]:
    prefix = f"rfobs-timeout-{operation}"
    return [thread for thread in threading.enumerate() if thread.name.startswith(prefix)]


@pytest.fixture(autouse=True)
def settled() -> Iterator[None]:
    """Workers abandoned by earlier tests have returned: the count starts at zero; the default cap at the end."""
    for thread in workers():
        thread.join(10)
    assert _workers.abandoned_threads() == 0
    yield
    _workers.set_max_abandoned_threads(None)


@pytest.fixture
def hang() -> Iterator[Hang]:
    """A hanging function, released (and its threads joined) at the end whatever the test did."""
    function = Hang()
    yield function
    function.release.set()
    for thread in workers("hang"):
        thread.join(10)


def test_a_timed_out_thread_is_counted_until_its_call_returns(hang: Hang) -> None:
    limit = Timeout(0.01, "hang")
    with pytest.raises(TimeoutExceeded) as raised:
        limit.call(hang)
    assert raised.value.reason is None
    assert str(raised.value) == "hang did not finish within 0.01s"
    assert _workers.abandoned_threads() == 1
    (thread,) = workers("hang")
    hang.release.set()
    thread.join(10)
    assert not thread.is_alive()
    assert _workers.abandoned_threads() == 0


def test_at_the_cap_a_sync_call_is_refused_without_starting_a_thread(hang: Hang) -> None:
    _workers.set_max_abandoned_threads(2)
    limit = Timeout(0.01, "hang")
    for _ in range(2):
        with pytest.raises(TimeoutExceeded):
            limit.call(hang)
    with pytest.raises(TimeoutExceeded) as raised:
        limit.call(hang)
    assert str(raised.value) == (
        "hang did not finish within 0.01s: refused without starting a thread: 2 worker threads of earlier "
        "timed-out calls are still running (timeouts.max_abandoned_threads = 2)"
    )
    assert raised.value.reason is not None and raised.value.operation == "hang"
    assert isinstance(raised.value, TimeoutError)
    assert (hang.calls, _workers.abandoned_threads(), len(workers("hang"))) == (2, 2, 2)  # no third thread
    hang.release.set()
    for thread in workers("hang"):
        thread.join(10)
    assert _workers.abandoned_threads() == 0
    assert Timeout(30, "hang").call(hang) == "late"  # released: calls run again
    assert hang.calls == 3


def test_a_thousand_calls_that_never_return_leave_at_most_the_cap_of_threads(hang: Hang) -> None:
    limit = Timeout(0.001, "hang")
    refused = 0
    for _ in range(1000):
        with pytest.raises(TimeoutExceeded) as raised:
            limit.call(hang)
        refused += raised.value.reason is not None
    assert _workers.max_abandoned_threads() == _workers.DEFAULT_MAX_ABANDONED_THREADS == 64
    assert (_workers.abandoned_threads(), len(workers("hang")), refused) == (64, 64, 936)


def test_the_gauge_reports_the_abandoned_threads(capture: Capture, hang: Hang) -> None:
    with pytest.raises(TimeoutExceeded):
        Timeout(0.01, "hang").call(hang)
    ((point,),) = [capture.metric(GAUGE)]
    assert (point["value"], point["attributes"]) == (1, {})
    hang.release.set()
    for thread in workers("hang"):
        thread.join(10)
    ((point,),) = [capture.metric(GAUGE)]
    assert point["value"] == 0


def test_a_call_that_returns_before_it_is_abandoned_is_not_counted() -> None:
    worker = _workers.Worker(lambda: "done", (), {})
    worker.start("rfobs-timeout-quick")
    assert worker.done.wait(10)
    worker.abandon()  # the caller's deadline passed just as the call returned
    assert _workers.abandoned_threads() == 0
    assert worker.result == "done"


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "8"])
def test_a_bad_cap_is_refused(value: object) -> None:
    with pytest.raises(ConfigError) as raised:
        _workers.set_max_abandoned_threads(value)  # pyright: ignore[reportArgumentType]
    assert str(raised.value) == f"timeouts.max_abandoned_threads = {value!r}: expected an integer >= 1"
    assert _workers.max_abandoned_threads() == 64


def test_the_setting_is_validated_with_the_others() -> None:
    assert load_config().timeouts.max_abandoned_threads == 64
    assert load_config(overrides={"timeouts__max_abandoned_threads": "8"}).timeouts.max_abandoned_threads == 8
    with pytest.raises(ConfigError) as raised:
        load_config(overrides={"timeouts": {"max_abandoned_threads": 0}})
    assert "timeouts.max_abandoned_threads = 0 (from init() keyword): expected an integer from 1 to 100000" in str(
        raised.value
    )


@pytest.mark.usefixtures("clean_globals")
def test_init_sets_the_cap() -> None:
    telemetry = rfobs.init(
        timeouts__max_abandoned_threads=5, metrics__prometheus_enabled=False, tracing__exporter="none"
    )
    try:
        assert _workers.max_abandoned_threads() == 5
    finally:
        telemetry.shutdown(timeout=2)
