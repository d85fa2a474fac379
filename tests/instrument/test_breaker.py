from __future__ import annotations

import asyncio
import gc
import inspect
import threading
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import trace

from rfobs.exceptions import CircuitOpen, ConfigError
from rfobs.instrument import _telemetry
from rfobs.instrument._breaker_state import Admission, Move, Rules, Ticket
from rfobs.instrument._clock import VirtualClock
from rfobs.instrument.breaker import CircuitBreaker, MemoryBreakerBackend, circuit_breaker
from rfobs.testing import Capture

TRANSITIONS = "researchflow_agents.circuit_breaker_state_transitions"
STATE = "researchflow_agents.circuit_breaker_state"


class Service:
    """A fake dependency: each call fails with the next queued exception, or succeeds."""

    def __init__(self) -> None:
        self.calls = 0
        self.errors: list[BaseException] = []

    def __call__(self, value: str = "ok") -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return value


def outcome(breaker: CircuitBreaker, service: Service, error: BaseException | None = None) -> str:
    """Call `service` through `breaker`, queuing `error` first; say what happened."""
    if error is not None:
        service.errors.append(error)
    try:
        breaker.call(service)
    except CircuitOpen as refused:
        service.errors.clear()
        return f"refused {refused.retry_after:g}"
    except BaseException as raised:
        return type(raised).__name__
    return "ok"


def transitions(capture: Capture, name: str) -> list[tuple[str, str, int]]:
    return [
        (p["attributes"]["from_state"], p["attributes"]["to_state"], p["value"])
        for p in capture.metric(TRANSITIONS)
        if p["attributes"]["breaker"] == name
    ]


def gauge(capture: Capture, name: str) -> list[float]:
    return [p["value"] for p in capture.metric(STATE) if p["attributes"] == {"breaker": name}]


def test_consecutive_failures_open_the_breaker_and_it_refuses_fast(capture: Capture) -> None:
    clock = VirtualClock()
    breaker = CircuitBreaker("arxiv", failure_threshold=3, reset_timeout=10, clock=clock)
    service = Service()
    boom = ConnectionError("reset")
    assert [outcome(breaker, service, boom) for _ in range(2)] == ["ConnectionError", "ConnectionError"]
    assert breaker.state == "closed" and gauge(capture, "arxiv") == [0.0]
    assert outcome(breaker, service, boom) == "ConnectionError"
    assert breaker.state == "open" and gauge(capture, "arxiv") == [2.0]
    clock.advance(4)
    assert outcome(breaker, service) == "refused 6"
    assert service.calls == 3  # refused without being called
    assert transitions(capture, "arxiv") == [("closed", "open", 1)]
    with pytest.raises(CircuitOpen) as caught:
        breaker.call(service)
    assert (caught.value.breaker, caught.value.retry_after) == ("arxiv", 6.0)
    assert str(caught.value) == "circuit breaker 'arxiv' is open; next probe in 6s"


def test_a_success_resets_the_consecutive_count() -> None:
    breaker = CircuitBreaker("b", failure_threshold=3, clock=VirtualClock())
    service = Service()
    boom = ConnectionError()
    results = [outcome(breaker, service, e) for e in (boom, boom, None, boom, boom)]
    assert results == ["ConnectionError", "ConnectionError", "ok", "ConnectionError", "ConnectionError"]
    assert breaker.state == "closed"
    assert outcome(breaker, service, boom) == "ConnectionError"
    assert breaker.state == "open"


def test_the_failure_ratio_over_a_sliding_window_opens_the_breaker(capture: Capture) -> None:
    breaker = CircuitBreaker(
        "ratio", failure_threshold=None, failure_ratio=0.5, window=4, minimum_calls=4, clock=VirtualClock()
    )
    service = Service()
    boom = ConnectionError()
    # Below minimum_calls the ratio does not apply, even at 3 failures out of 3.
    assert [outcome(breaker, service, boom) for _ in range(3)] == ["ConnectionError"] * 3
    assert breaker.state == "closed"
    # The window slides: the 3 failures drop out as successes come in (window [F, F, F, S] -> ... -> [S, S, S, S]).
    assert [outcome(breaker, service) for _ in range(4)] == ["ok"] * 4
    assert breaker.state == "closed"
    # [S, S, S, F] is 25%, [S, S, F, F] is 50%: open.
    assert outcome(breaker, service, boom) == "ConnectionError"
    assert breaker.state == "closed"
    assert outcome(breaker, service, boom) == "ConnectionError"
    assert breaker.state == "open"
    assert transitions(capture, "ratio") == [("closed", "open", 1)]


def test_reset_timeout_then_a_probe_success_closes(capture: Capture) -> None:
    clock = VirtualClock()
    breaker = CircuitBreaker("probe", failure_threshold=1, reset_timeout=10, clock=clock)
    service = Service()
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("opening"):
        assert outcome(breaker, service, ConnectionError()) == "ConnectionError"
    clock.advance(9.5)
    with tracer.start_as_current_span("refused"):
        assert outcome(breaker, service) == "refused 0.5"
    clock.advance(0.5)
    with tracer.start_as_current_span("probing"):
        assert outcome(breaker, service) == "ok"
    assert breaker.state == "closed" and gauge(capture, "probe") == [0.0]
    assert transitions(capture, "probe") == [
        ("closed", "open", 1),
        ("open", "half_open", 1),
        ("half_open", "closed", 1),
    ]

    def event(from_state: str, to_state: str) -> dict[str, Any]:
        return {
            "name": "circuit_breaker.transition",
            "attributes": {
                "rfobs.circuit_breaker.name": "probe",
                "rfobs.circuit_breaker.from_state": from_state,
                "rfobs.circuit_breaker.to_state": to_state,
            },
        }

    rejected = {
        "name": "circuit_breaker.rejected",
        "attributes": {
            "rfobs.circuit_breaker.name": "probe",
            "rfobs.circuit_breaker.state": "open",
            "rfobs.circuit_breaker.retry_after_s": 0.5,
        },
    }
    assert [(s["name"], s["events"]) for s in capture.spans()] == [
        ("opening", [event("closed", "open")]),
        ("refused", [rejected]),
        ("probing", [event("open", "half_open"), event("half_open", "closed")]),
    ]


def test_a_probe_failure_reopens_for_a_full_reset_timeout(capture: Capture) -> None:
    clock = VirtualClock()
    breaker = CircuitBreaker("reopen", failure_threshold=1, reset_timeout=10, clock=clock)
    service = Service()
    assert outcome(breaker, service, ConnectionError()) == "ConnectionError"
    clock.advance(10)
    assert outcome(breaker, service, ConnectionError()) == "ConnectionError"
    assert breaker.state == "open" and gauge(capture, "reopen") == [2.0]
    clock.advance(9)
    assert outcome(breaker, service) == "refused 1"
    assert transitions(capture, "reopen") == [
        ("closed", "open", 1),
        ("open", "half_open", 1),
        ("half_open", "open", 1),
    ]


def test_success_threshold_needs_that_many_probe_successes(capture: Capture) -> None:
    clock = VirtualClock()
    breaker = CircuitBreaker("two", failure_threshold=1, reset_timeout=1, success_threshold=2, clock=clock)
    service = Service()
    outcome(breaker, service, ConnectionError())
    clock.advance(1)
    assert outcome(breaker, service) == "ok"
    assert breaker.state == "half_open" and gauge(capture, "two") == [1.0]
    assert outcome(breaker, service) == "ok"
    assert breaker.state == "closed"


def open_breaker(name: str, max_probes: int, clock: VirtualClock) -> CircuitBreaker:
    breaker = CircuitBreaker(name, failure_threshold=1, reset_timeout=5, half_open_max_calls=max_probes, clock=clock)
    outcome(breaker, Service(), ConnectionError())
    clock.advance(5)
    return breaker


def test_concurrent_half_open_probes_from_threads_are_bounded(capture: Capture) -> None:
    clock = VirtualClock()
    breaker = open_breaker("threads", 2, clock)
    inside = threading.Semaphore(0)
    release = threading.Event()
    results: list[str] = []
    lock = threading.Lock()

    @breaker
    def probe() -> str:
        inside.release()
        release.wait(5)
        return "ok"

    def worker() -> None:
        try:
            result = probe()
        except CircuitOpen as refused:
            result = f"refused {refused.retry_after:g}"
        with lock:
            results.append(result)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads[:2]:
        thread.start()
    assert inside.acquire(timeout=5) and inside.acquire(timeout=5)  # both probe slots are taken and held
    for thread in threads[2:]:
        thread.start()
        thread.join(5)
    assert results == ["refused 0"] * 4  # refused at once while the probes are held
    release.set()
    for thread in threads[:2]:
        thread.join(5)
    assert sorted(results) == ["ok", "ok"] + ["refused 0"] * 4
    assert breaker.state == "closed"
    assert transitions(capture, "threads") == [
        ("closed", "open", 1),
        ("open", "half_open", 1),
        ("half_open", "closed", 1),
    ]


async def test_concurrent_half_open_probes_from_tasks_are_bounded() -> None:
    clock = VirtualClock()
    breaker = open_breaker("tasks", 1, clock)
    release = asyncio.Event()
    entered = 0

    @breaker
    async def probe() -> str:
        nonlocal entered
        entered += 1
        await asyncio.wait_for(release.wait(), 5)  # bounded, so a broken limit fails instead of hanging
        raise ConnectionError("still down")

    first = asyncio.create_task(probe())
    await asyncio.sleep(0)
    others = await asyncio.gather(*(probe() for _ in range(5)), return_exceptions=True)
    assert entered == 1
    assert [type(e).__name__ for e in others] == ["CircuitOpen"] * 5
    release.set()
    with pytest.raises(ConnectionError):
        await first
    assert breaker.state == "open"  # the one probe failed: open again


def test_only_the_configured_exceptions_count() -> None:
    breaker = CircuitBreaker("types", failure_threshold=2, counts_as_failure=(ConnectionError,), clock=VirtualClock())
    service = Service()
    # A ValueError means the service answered: a success, which resets the consecutive count.
    results = [outcome(breaker, service, e) for e in (ConnectionError(), ValueError(), ConnectionError())]
    assert results == ["ConnectionError", "ValueError", "ConnectionError"]
    assert breaker.state == "closed"
    assert outcome(breaker, service, ConnectionResetError()) == "ConnectionResetError"  # a subclass counts
    assert breaker.state == "open"


class HTTPError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def test_a_predicate_decides_what_counts() -> None:
    def server_side(error: BaseException) -> bool:
        return isinstance(error, HTTPError) and error.status >= 500

    breaker = CircuitBreaker("http", failure_threshold=2, counts_as_failure=server_side, clock=VirtualClock())
    service = Service()
    results = [outcome(breaker, service, HTTPError(s)) for s in (503, 404, 500)]
    assert breaker.state == "closed" and results == ["HTTPError"] * 3
    outcome(breaker, service, HTTPError(502))
    assert breaker.state == "open"


def test_ignored_exceptions_and_cancellation_count_neither_way() -> None:
    clock = VirtualClock()
    breaker = CircuitBreaker("ignore", failure_threshold=2, ignore=(KeyError,), clock=clock)
    service = Service()
    # KeyError is ignored: it neither counts as a failure nor resets the count like a success would.
    results = [outcome(breaker, service, e) for e in (RuntimeError(), KeyError(), KeyboardInterrupt())]
    assert results == ["RuntimeError", "KeyError", "KeyboardInterrupt"] and breaker.state == "closed"
    assert outcome(breaker, service, RuntimeError()) == "RuntimeError"
    assert breaker.state == "open"
    # A cancelled probe frees its slot without deciding anything.
    clock.advance(30)
    assert outcome(breaker, service, asyncio.CancelledError()) == "CancelledError"
    assert breaker.state == "half_open"
    assert outcome(breaker, service) == "ok"
    assert breaker.state == "closed"


def test_a_result_from_before_a_transition_is_not_counted() -> None:
    clock = VirtualClock()
    breaker = CircuitBreaker("late", failure_threshold=1, reset_timeout=1, clock=clock)
    service = Service()
    with pytest.raises(ConnectionError), breaker:  # a slow call, admitted while closed
        assert outcome(breaker, service, ConnectionError()) == "ConnectionError"  # a sibling call opens it
        clock.advance(1)
        with breaker:  # a probe, admitted while half-open
            assert breaker.state == "half_open"
            raise_later = ConnectionError("the slow call fails now")
        # The probe succeeded and closed the breaker; the slow call's failure belongs to the old closed state.
        assert breaker.state == "closed"
        raise raise_later
    assert breaker.state == "closed"


def test_with_async_with_and_decorator_forms(capture: Capture) -> None:
    breaker = CircuitBreaker("forms", failure_threshold=1, clock=VirtualClock())
    with breaker:
        pass
    with pytest.raises(ConnectionError), breaker:
        raise ConnectionError
    with pytest.raises(CircuitOpen), breaker:
        raise AssertionError("never runs")

    async def main() -> None:
        async with breaker:
            raise AssertionError("never runs")

    with pytest.raises(CircuitOpen):
        asyncio.run(main())
    assert transitions(capture, "forms") == [("closed", "open", 1)]


async def test_async_with_counts_failures() -> None:
    breaker = CircuitBreaker("async", failure_threshold=1, clock=VirtualClock())
    with pytest.raises(ConnectionError):
        async with breaker:
            raise ConnectionError
    assert breaker.state == "open"


async def test_decorating_functions_and_methods(capture: Capture) -> None:
    class Client:
        breaker = CircuitBreaker("client", failure_threshold=1, clock=VirtualClock())

        @breaker
        async def fetch(self, x: int) -> int:
            if x < 0:
                raise ConnectionError
            return x

        @circuit_breaker
        def plain(self) -> str:
            return "plain"

        @circuit_breaker("built", failure_threshold=2)
        @classmethod
        def build(cls) -> str:
            return cls.__name__

    client = Client()
    assert await client.fetch(1) == 1
    assert client.plain() == "plain" and Client.build() == "Client"
    assert inspect.iscoroutinefunction(Client.fetch)
    assert list(inspect.signature(Client.fetch).parameters) == ["self", "x"]
    with pytest.raises(ConnectionError):
        await client.fetch(-1)
    with pytest.raises(CircuitOpen):
        await client.fetch(1)
    assert gauge(capture, "client") == [2.0]
    assert gauge(capture, "plain") == [0.0] and gauge(capture, "built") == [0.0]
    # Live breakers stay in the process-wide state gauge; a class is cyclic garbage, so collect it now rather than
    # leave its three breakers to show up in later tests' metrics.
    del client, Client
    gc.collect()
    assert gauge(capture, "client") == []


def test_reset_copy_and_shared_backends() -> None:
    clock = VirtualClock()
    breaker = CircuitBreaker("ops", failure_threshold=1, clock=clock)
    outcome(breaker, Service(), ConnectionError())
    twin = breaker.copy()
    assert (breaker.state, twin.state, twin.name) == ("open", "closed", "ops")
    breaker.reset()
    assert breaker.state == "closed"
    store = MemoryBreakerBackend()
    first = CircuitBreaker("shared", failure_threshold=1, backend=store, clock=clock)
    second = CircuitBreaker("shared", failure_threshold=1, backend=store, clock=clock)
    outcome(first, Service(), ConnectionError())
    assert second.state == "open"
    assert breaker.copy("renamed").name == "renamed"


def test_without_init_the_breaker_works_and_emits_nothing() -> None:
    assert _telemetry.current() is None
    breaker = CircuitBreaker("offline", failure_threshold=1, clock=VirtualClock())
    assert outcome(breaker, Service(), ConnectionError()) == "ConnectionError"
    assert outcome(breaker, Service()) == "refused 30"


def test_the_default_clock_is_read_at_call_time() -> None:
    from rfobs.instrument import _clock

    breaker = CircuitBreaker("default-clock", failure_threshold=1, reset_timeout=60)
    clock = VirtualClock(1000.0)
    _clock.set_default_clock(clock)
    try:
        outcome(breaker, Service(), ConnectionError())
        clock.advance(60)
        assert outcome(breaker, Service()) == "ok"
    finally:
        _clock.set_default_clock(None)


def bad(**options: Any) -> Callable[[], object]:
    return lambda: CircuitBreaker("x", **options)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (bad(failure_threshold=0), r"CircuitBreaker\(failure_threshold=0\): expected an integer >= 1 or None"),
        (bad(failure_threshold=2.5), r"failure_threshold=2\.5"),
        (bad(failure_ratio=0), r"failure_ratio=0\): expected a number in \(0, 1\]"),
        (bad(failure_ratio=1.5), r"failure_ratio=1\.5"),
        (bad(failure_ratio=float("nan")), r"failure_ratio=nan"),
        (bad(failure_threshold=None), r"set one, or it never opens"),
        (bad(reset_timeout=-1), r"reset_timeout=-1\): expected a finite number of seconds >= 0"),
        (bad(reset_timeout=float("inf")), r"reset_timeout=inf"),
        (bad(half_open_max_calls=0), r"half_open_max_calls=0\): expected an integer >= 1"),
        (bad(success_threshold=0), r"success_threshold=0"),
        (bad(window=0), r"window=0"),
        (bad(window=5, minimum_calls=6), r"minimum_calls=6\): expected at most window=5"),
        (bad(counts_as_failure=(ValueError, "x")), r"counts_as_failure=.*expected an exception class"),
        (bad(ignore=int), r"ignore=<class 'int'>\)"),
        (bad(colour="red"), r"unknown argument\(s\) \['colour'\]"),
        (lambda: CircuitBreaker(""), r"CircuitBreaker\(name=''\): expected a non-empty string"),
        (lambda: circuit_breaker("x", failure_threshold=-1), r"@circuit_breaker\(failure_threshold=-1\)"),
        (lambda: circuit_breaker(" "), r"@circuit_breaker\(name=' '\)"),
        (bad(clock="system"), r"CircuitBreaker\(clock='system'\): expected an rfobs Clock"),
        (bad(backend={}), r"CircuitBreaker\(backend=\{\}\): expected a BreakerBackend"),
        (lambda: circuit_breaker(backend={}), r"@circuit_breaker\(backend=\{\}\)"),  # pyright: ignore[reportArgumentType]
        (bad(counts_as_failure="ValueError"), r"counts_as_failure='ValueError'\): expected an exception class"),
    ],
)
def test_bad_arguments_fail_at_construction(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()


def test_a_half_open_breaker_refusal_says_half_open_and_an_open_one_says_open() -> None:
    clock = VirtualClock()
    breaker = CircuitBreaker("probe", failure_threshold=1, reset_timeout=10, half_open_max_calls=1, clock=clock)
    with pytest.raises(ConnectionError), breaker:
        raise ConnectionError
    with pytest.raises(CircuitOpen) as refused_open, breaker:
        raise AssertionError("never runs")
    assert str(refused_open.value) == "circuit breaker 'probe' is open; next probe in 10s"
    assert refused_open.value.state == "open"
    clock.advance(10)
    with breaker, pytest.raises(CircuitOpen) as refused_half_open, breaker:  # the outer one holds the probe slot
        raise AssertionError("never runs")
    assert str(refused_half_open.value) == (
        "circuit breaker 'probe' is half-open (probe in progress): the call was refused while its probe call "
        "decides whether to close"
    )
    assert (refused_half_open.value.breaker, refused_half_open.value.retry_after) == ("probe", 0)
    assert refused_half_open.value.state == "half_open"
    assert breaker.state == "closed"


def test_a_breaker_given_no_backend_uses_the_active_default_backend_at_each_call() -> None:
    from rfobs import _state

    clock = VirtualClock()
    breaker = CircuitBreaker("fleetwide", failure_threshold=1, clock=clock)  # made before "init()", as at import
    shared = MemoryBreakerBackend()
    peer = CircuitBreaker("fleetwide", failure_threshold=1, backend=shared, clock=clock)
    _state.activate(_state.ActiveState(breaker_backend=shared))
    try:
        assert outcome(breaker, Service(), ConnectionError()) == "ConnectionError"
        assert (breaker.state, peer.state) == ("open", "open")
        peer.reset()
        assert breaker.state == "closed"
        assert outcome(breaker, Service(), ConnectionError()) == "ConnectionError"
    finally:
        _state.deactivate()
    # Without an active default the breaker is back on its own in-process state, which saw none of this.
    assert breaker.state == "closed"
    assert peer.state == "open"


class AwaitedBackend(MemoryBreakerBackend):
    """The memory backend with the optional awaitable operations, recording which path the breaker took."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def enter(self, name: str, rules: Rules, now: float) -> Admission:
        self.paths.append("enter")
        return super().enter(name, rules, now)

    def settle(self, name: str, rules: Rules, ticket: Ticket, outcome: int, now: float) -> Move | None:
        self.paths.append("settle")
        return super().settle(name, rules, ticket, outcome, now)

    async def enter_async(self, name: str, rules: Rules, now: float) -> Admission:
        await asyncio.sleep(0)
        self.paths.append("enter_async")
        return super().enter(name, rules, now)

    async def settle_async(self, name: str, rules: Rules, ticket: Ticket, outcome: int, now: float) -> Move | None:
        await asyncio.sleep(0)
        self.paths.append("settle_async")
        return super().settle(name, rules, ticket, outcome, now)


async def test_async_paths_await_a_backends_async_operations_and_sync_paths_do_not() -> None:
    backend = AwaitedBackend()
    breaker = CircuitBreaker("awaited", failure_threshold=2, clock=VirtualClock(), backend=backend)

    async def fail() -> None:
        raise ConnectionError

    with pytest.raises(ConnectionError):
        await breaker.acall(fail)
    with pytest.raises(ConnectionError):
        async with breaker:
            raise ConnectionError
    assert backend.paths == ["enter_async", "settle_async"] * 2
    assert breaker.state == "open"
    backend.paths.clear()
    with pytest.raises(CircuitOpen):
        breaker.call(Service())
    with pytest.raises(CircuitOpen):
        async with breaker:
            raise AssertionError("never runs")
    assert backend.paths == ["enter", "enter_async"]


def test_a_new_breaker_on_a_shared_backend_does_not_reset_its_state() -> None:
    clock = VirtualClock()
    shared = MemoryBreakerBackend()
    first = CircuitBreaker("kept", failure_threshold=1, reset_timeout=10, backend=shared, clock=clock)
    outcome(first, Service(), ConnectionError())
    clock.advance(4)
    late = CircuitBreaker("kept", failure_threshold=1, reset_timeout=10, backend=shared, clock=clock)
    assert late.state == "open"
    assert outcome(late, Service()) == "refused 6"
