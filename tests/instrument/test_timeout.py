from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from typing import Any, cast

import pytest
from opentelemetry import trace

from rfobs.exceptions import ConfigError, TimeoutExceeded
from rfobs.instrument import _telemetry
from rfobs.instrument.timeout import Timeout, timeout, timeout_after, timeout_api_call
from rfobs.testing import Capture

DURATION = "researchflow_agents.timeout_operation_duration"
BOUNDS = list(_telemetry.DURATION_BUCKETS)
# Seconds past the deadline we accept for the loop (or the waiting thread) to notice, cancel and unwind. A loaded
# CI machine deschedules the process for hundreds of milliseconds at times; the lower bounds (never before the
# deadline) are exact, and a deadline missed outright still fails: the bodies run for 5 or 10 seconds.
TOLERANCE = 0.5
OK = {"code": "UNSET", "description": None}


def bucket_counts(seconds: float) -> list[int]:
    """One observation of `seconds` in the duration histogram's buckets."""
    counts = [0] * (len(BOUNDS) + 1)
    counts[next((i for i, bound in enumerate(BOUNDS) if seconds <= bound), len(BOUNDS))] += 1
    return counts


def single_point(capture: Capture) -> tuple[dict[str, Any], float]:
    (point,) = capture.metric(DURATION)
    return {k: v for k, v in point.items() if k != "sum"}, point["sum"]


def exception_event(operation: str) -> dict[str, Any]:
    """The exception event the SDK adds to a span that a TimeoutExceeded escapes."""
    return {
        "name": "exception",
        "attributes": {
            "exception.type": "rfobs.exceptions.TimeoutExceeded",
            "exception.message": f"{operation} did not finish within 0.1s",
            "exception.escaped": "False",
        },
    }


def timeout_event(operation: str, seconds: float) -> dict[str, Any]:
    return {"name": "timeout", "attributes": {"rfobs.timeout.operation": operation, "rfobs.timeout.seconds": seconds}}


def timer_handles(loop: asyncio.AbstractEventLoop) -> list[asyncio.TimerHandle]:
    # The loop's heap of scheduled callbacks is private; it is the only place a piled-up handle shows.
    return cast("list[asyncio.TimerHandle]", vars(loop)["_scheduled"])


async def test_a_coroutine_is_cancelled_at_the_deadline_and_its_finally_runs(capture: Capture) -> None:
    cleaned_up: list[str] = []

    @timeout(0.1, "fetch")
    async def fetch() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            cleaned_up.append("finally")

    tracer = trace.get_tracer("test")
    started = time.perf_counter()
    # The exception escapes the span: the span that owns the call records it (the policy only adds an event).
    with pytest.raises(TimeoutExceeded) as caught, tracer.start_as_current_span("parent"):
        await fetch()
    elapsed = time.perf_counter() - started

    assert 0.099 <= elapsed < 0.1 + TOLERANCE
    assert cleaned_up == ["finally"]
    assert (caught.value.operation, caught.value.seconds, str(caught.value)) == (
        "fetch",
        0.1,
        "fetch did not finish within 0.1s",
    )
    assert isinstance(caught.value, TimeoutError)
    assert type(caught.value.__cause__) is TimeoutError
    assert isinstance(caught.value.__cause__.__cause__, asyncio.CancelledError)
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert [h for h in timer_handles(asyncio.get_running_loop()) if not h.cancelled()] == []
    assert capture.spans() == [
        {"name": "parent", "trace_id": 1, "span_id": 1, "parent_id": None, "kind": "INTERNAL",
         "status": {"code": "ERROR", "description": "TimeoutExceeded: fetch did not finish within 0.1s"},
         "attributes": {}, "events": [timeout_event("fetch", 0.1), exception_event("fetch")]},
    ]  # fmt: skip
    point, total = single_point(capture)
    assert point == {
        "attributes": {"operation": "fetch", "outcome": "timed_out"},
        "count": 1,
        "bucket_counts": bucket_counts(total),
        "explicit_bounds": BOUNDS,
    }
    assert 0.099 <= total < 0.1 + TOLERANCE


async def test_a_call_that_finishes_in_time_returns_its_result_and_is_measured(capture: Capture) -> None:
    @timeout(1.0)
    async def quick(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("parent"):
        assert await quick(21) == 42
    (span,) = capture.spans()
    assert (span["status"], span["events"]) == (OK, [])
    point, total = single_point(capture)
    assert point == {
        "attributes": {"operation": "quick", "outcome": "completed"},
        "count": 1,
        "bucket_counts": bucket_counts(total),
        "explicit_bounds": BOUNDS,
    }
    assert 0 <= total < 1.0  # within its limit: it completed (how fast depends on the machine's load)


async def test_in_time_calls_leave_no_timer_handles_behind() -> None:
    # asyncio.timeout() schedules and cancels a handle per call; the cancelled ones stay in the loop's heap until
    # an iteration of the loop purges them, which a run of calls that never suspend does not give it.
    @timeout(5.0, "tight")
    async def tight() -> int:
        return 1

    loop = asyncio.get_running_loop()
    before = len(timer_handles(loop))
    assert sum([await tight() for _ in range(1000)]) == 1000
    assert len(timer_handles(loop)) - before <= 1
    for _ in range(10):
        async with asyncio.timeout(5.0):
            await tight()
    assert len(timer_handles(loop)) - before >= 10  # what plain asyncio.timeout leaves, for comparison


async def test_a_cancellation_from_outside_propagates_unchanged(capture: Capture) -> None:
    started = asyncio.Event()
    cleaned_up: list[str] = []

    @timeout(5.0, "slow")
    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        finally:
            cleaned_up.append("finally")

    running = asyncio.create_task(slow())
    await started.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert running.cancelled() and cleaned_up == ["finally"]
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert capture.metric(DURATION) == []  # cancelled from outside: neither completed nor timed out


async def test_an_outer_cancellation_after_the_deadline_still_wins(capture: Capture) -> None:
    deadline_hit = asyncio.Event()

    @timeout(0.05, "racing")
    async def racing() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            deadline_hit.set()
            await asyncio.sleep(10)  # still unwinding from the deadline when the caller cancels too
            raise

    running = asyncio.create_task(racing())
    await deadline_hit.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert running.cancelled()
    assert capture.metric(DURATION) == []


async def test_the_functions_own_errors_pass_through_as_completed(capture: Capture) -> None:
    @timeout(1.0, "flaky")
    async def flaky(error: Exception) -> None:
        raise error

    refused = ConnectionRefusedError("no")
    with pytest.raises(ConnectionRefusedError) as caught:
        await flaky(refused)
    assert caught.value is refused
    own_timeout = TimeoutError("the server said so")
    with pytest.raises(TimeoutError) as caught_timeout:
        await flaky(own_timeout)
    assert caught_timeout.value is own_timeout  # not turned into TimeoutExceeded: the deadline did not pass
    (point,) = capture.metric(DURATION)
    assert (point["attributes"], point["count"]) == ({"operation": "flaky", "outcome": "completed"}, 2)


async def test_timeout_after_cancels_its_block(capture: Capture) -> None:
    with pytest.raises(TimeoutExceeded, match=r"block did not finish within 0\.05s"):
        async with timeout_after(0.05, "block"):
            await asyncio.sleep(10)
    async with timeout_after(1, "block"):
        await asyncio.sleep(0)
    points = {p["attributes"]["outcome"]: p["count"] for p in capture.metric(DURATION)}
    assert points == {"timed_out": 1, "completed": 1}
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_one_timeout_object_serves_concurrent_tasks(capture: Capture) -> None:
    limit = Timeout(0.1, "shared")

    async def run(seconds: float) -> str:
        async with limit:
            await asyncio.sleep(seconds)
            return "done"

    # All three are inside the scope at once; the two quick ones finish at the first turn of the loop, so no
    # stall of the machine can carry them past the deadline.
    results = await asyncio.gather(run(0), run(1.0), run(0), return_exceptions=True)
    assert results[0] == "done" and results[2] == "done"
    assert isinstance(results[1], TimeoutExceeded)
    points = {p["attributes"]["outcome"]: p["count"] for p in capture.metric(DURATION)}
    assert points == {"completed": 2, "timed_out": 1}


async def test_the_object_called_directly() -> None:
    async def answer(x: int, *, plus: int) -> int:
        return x + plus

    limit = Timeout(1, "direct")
    assert await limit.acall(answer, (40,), {"plus": 2}) == 42
    assert limit.call(lambda: "sync") == "sync"
    assert (limit.seconds, limit.name, repr(limit)) == (1.0, "direct", "Timeout(1, name='direct')")
    assert limit.copy(seconds=2).seconds == 2.0 and limit.copy(seconds=2).name == "direct"


def test_a_sync_function_times_out_but_its_thread_runs_to_completion(capture: Capture) -> None:
    release = threading.Event()
    finished = threading.Event()
    seen: dict[str, Any] = {}

    @timeout(0.1, "crunch")
    def crunch() -> int:
        seen["thread"] = threading.current_thread()
        release.wait(5)
        finished.set()
        return 42

    tracer = trace.get_tracer("test")
    started = time.perf_counter()
    with pytest.raises(TimeoutExceeded) as caught, tracer.start_as_current_span("parent"):
        crunch()
    elapsed = time.perf_counter() - started

    assert 0.099 <= elapsed < 0.1 + TOLERANCE
    assert caught.value.__cause__ is None
    worker: threading.Thread = seen["thread"]
    assert worker is not threading.current_thread()
    assert worker.daemon and worker.name == "rfobs-timeout-crunch"
    assert worker.is_alive() and not finished.is_set()  # not killed: still running after the caller gave up
    release.set()
    worker.join(5)
    assert finished.is_set()  # it ran to completion; its result went nowhere
    (span,) = capture.spans()
    assert span["status"] == {"code": "ERROR", "description": "TimeoutExceeded: crunch did not finish within 0.1s"}
    assert span["events"] == [timeout_event("crunch", 0.1), exception_event("crunch")]
    point, _ = single_point(capture)
    assert point["attributes"] == {"operation": "crunch", "outcome": "timed_out"}


def test_a_sync_function_in_time_runs_in_a_worker_that_sees_the_callers_context(capture: Capture) -> None:
    tracer = trace.get_tracer("test")

    @timeout(1.0, "child")
    def child(x: int) -> str:
        with tracer.start_as_current_span("inner"):
            return f"{x}:{threading.current_thread().name}"

    with tracer.start_as_current_span("outer"):
        assert child(7) == "7:rfobs-timeout-child"
    inner, outer = capture.spans()
    assert (inner["name"], inner["parent_id"], outer["span_id"]) == ("inner", 1, 1)
    assert outer["events"] == [] and outer["status"] == OK
    point, _ = single_point(capture)
    assert point["attributes"] == {"operation": "child", "outcome": "completed"}


def test_a_sync_functions_exception_is_reraised_unchanged(capture: Capture) -> None:
    error = ValueError("bad input")

    @timeout(1.0)
    def parse() -> None:
        raise error

    with pytest.raises(ValueError) as caught:
        parse()
    assert caught.value is error
    point, _ = single_point(capture)
    assert point["attributes"] == {"operation": "parse", "outcome": "completed"}


class Client:
    @timeout(1.0)
    async def fetch(self, x: int) -> int:
        return x

    @timeout(1.0)
    @classmethod
    def build(cls, x: int) -> str:
        return f"{cls.__name__}:{x}"

    @timeout_api_call(1.0)
    @staticmethod
    async def ping() -> str:
        return "pong"


async def test_methods_keep_their_signature_and_kind(capture: Capture) -> None:
    client = Client()
    assert await client.fetch(3) == 3
    assert Client.build(4) == "Client:4"
    assert await Client.ping() == "pong"
    assert inspect.iscoroutinefunction(Client.fetch) and not inspect.iscoroutinefunction(Client.build)
    assert list(inspect.signature(Client.fetch).parameters) == ["self", "x"]
    operations = sorted(p["attributes"]["operation"] for p in capture.metric(DURATION))
    assert operations == ["build", "fetch", "ping"]


async def test_without_init_timeouts_work_and_record_nothing() -> None:
    assert _telemetry.current() is None

    @timeout(0.05)
    async def slow() -> None:
        await asyncio.sleep(10)

    @timeout(0.05)
    def quick() -> int:
        return 1

    with pytest.raises(TimeoutExceeded):
        await slow()
    assert quick() == 1
    assert not trace.get_current_span().is_recording()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: timeout(0), r"@timeout\(seconds=0\): expected a finite number of seconds > 0"),
        (lambda: timeout(-1.5), r"@timeout\(seconds=-1.5\)"),
        (lambda: timeout(float("nan")), r"@timeout\(seconds=nan\)"),
        (lambda: timeout(float("inf")), r"@timeout\(seconds=inf\)"),
        (lambda: timeout(True), r"@timeout\(seconds=True\)"),
        (lambda: timeout("5"), r"@timeout\(seconds='5'\)"),  # type: ignore[arg-type]
        (lambda: timeout(lambda: None), r"needs a limit in seconds.*did you mean @timeout\(30\)\?"),  # type: ignore[arg-type]
        (lambda: timeout(1, ""), r"@timeout\(name=''\): expected a non-empty string"),
        (lambda: Timeout(0), r"Timeout\(seconds=0\)"),
        (lambda: timeout_after(-1, "x"), r"timeout_after\(seconds=-1\)"),
        (lambda: timeout_after(1, ""), r"timeout_after\(name=''\)"),
        (lambda: timeout_api_call(0), r"@timeout\(seconds=0\)"),
    ],
)
def test_bad_arguments_fail_at_decoration(make: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()


async def test_finished_calls_behind_a_long_running_one_are_not_kept() -> None:
    import sys

    module = sys.modules["rfobs.instrument.timeout"]

    @timeout(600)
    async def quick() -> int:
        return 1

    @timeout(600)
    async def stuck() -> None:
        await asyncio.sleep(1000)

    pending = asyncio.create_task(stuck())
    await asyncio.sleep(0)
    for _ in range(10_000):
        await quick()
    queue = module._deadlines(asyncio.get_running_loop(), 600.0)
    assert len(queue._entries) < 200
    pending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pending
