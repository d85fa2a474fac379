"""`HealthChecker`: runs registered checks concurrently, each under a timeout, caches the report, reports metrics."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar, cast

from rfobs import _check
from rfobs._secrets import scrub_text
from rfobs.exceptions import ConfigError
from rfobs.health._model import Check, CheckResult, HealthReport, Status, overall_status
from rfobs.instrument import _telemetry as t
from rfobs.instrument._clock import Clock, check_clock, default_clock

__all__ = ["HealthChecker", "run_in_thread"]

_T = TypeVar("_T")


class HealthChecker:
    """The registry of checks and the one way to run them.

    Checks run concurrently; each gets `timeout` seconds (a hung check becomes unhealthy with "timed out after
    Ns" and never holds the caller longer). `report()` serves a cached report younger than `cache_ttl` and runs
    the checks once for any number of concurrent callers (threads or event loops), so a probe storm costs one run.

    The report's age and the durations of the checks and of the run are read on `clock` (the policies' clock:
    under `rfobs.testing.fast_waits` a virtual one, which a test advances instead of sleeping). `timeout` is
    real time on the running event loop whatever the clock: it is what stops a check that hangs.

    Args:
        timeout: Seconds one check may take.
        cache_ttl: Seconds a report is served from cache by `report()`.
        clock: Where the cache age and durations are read; None reads `default_clock()` at each use.

    Raises:
        ConfigError: An argument of the wrong type or out of range.
    """

    def __init__(self, *, timeout: float = 5.0, cache_ttl: float = 2.0, clock: Clock | None = None) -> None:
        self.timeout = _check.number("HealthChecker", "timeout", timeout, gt=0, allowed="a number of seconds > 0")
        self.cache_ttl = _check.number(
            "HealthChecker", "cache_ttl", cache_ttl, ge=0, allowed="a number of seconds >= 0"
        )
        self._clock = check_clock("HealthChecker", clock)
        self._checks: dict[str, Check] = {}
        self._lock = threading.Lock()
        self._cached: HealthReport | None = None
        self._cached_at = 0.0  # on the clock
        self._inflight: concurrent.futures.Future[HealthReport] | None = None
        self._last: dict[str, CheckResult] = {}
        self.runs = 0
        """How many times the checks have been run (not served from cache)."""
        t.register_health_checker(self)

    # -- the registry ---------------------------------------------------------------------------------------------

    def register(self, check: Check) -> Check:
        """Add a check; returns it, so `register` also works as a class decorator's helper.

        Raises:
            ConfigError: Not a `Check`, or a check of that name is already registered.
        """
        if not isinstance(cast(object, check), Check):
            raise ConfigError(f"HealthChecker.register({check!r}): expected an object with name, critical and run()")
        with self._lock:
            if check.name in self._checks:
                raise ConfigError(f"HealthChecker.register: a check named {check.name!r} is already registered")
            self._checks[check.name] = check
        return check

    def unregister(self, name: str) -> None:
        """Remove a check (no error if absent)."""
        with self._lock:
            self._checks.pop(name, None)
            self._last.pop(name, None)

    @property
    def checks(self) -> tuple[Check, ...]:
        """The registered checks, in registration order."""
        with self._lock:
            return tuple(self._checks.values())

    def last_results(self) -> tuple[CheckResult, ...]:
        """The latest result of each check (what the status gauges show)."""
        with self._lock:
            return tuple(self._last.values())

    @property
    def clock(self) -> Clock:
        """The clock read now: the one given, or the current `default_clock()`."""
        return default_clock() if self._clock is None else self._clock

    # -- running --------------------------------------------------------------------------------------------------

    async def check(self, name: str) -> CheckResult:
        """Run one check now.

        Raises:
            KeyError: No check of that name.
        """
        with self._lock:
            check = self._checks[name]
        result = await self._run(check, self.clock)
        self._record((result,))
        return result

    async def check_all(self) -> HealthReport:
        """Run every check now, concurrently, and return the report."""
        clock = self.clock
        started = clock.monotonic()
        results = tuple(await asyncio.gather(*(self._run(check, clock) for check in self.checks)))
        finished = clock.monotonic()
        report = HealthReport(overall_status(results), results, finished - started)
        self._record(results)
        with self._lock:
            self.runs += 1
            self._cached, self._cached_at = report, finished
        return report

    async def report(self) -> HealthReport:
        """A report no older than `cache_ttl`: cached, joined from a run in progress, or run now."""
        with self._lock:
            if (cached := self._fresh()) is not None:
                return cached
            inflight = self._inflight
            owner = inflight is None
            if inflight is None:
                inflight = self._inflight = concurrent.futures.Future()
        if not owner:
            return await asyncio.wrap_future(inflight)
        try:
            report = await self.check_all()
        except BaseException as error:
            inflight.set_exception(error)
            raise
        finally:
            with self._lock:
                self._inflight = None
        inflight.set_result(report)
        return report

    def report_sync(self) -> HealthReport:
        """`report()` for synchronous code: a CLI, a thread, or a function called from a running event loop.

        Inside a running loop, the report is made on a loop of its own in a short-lived thread, and this call
        blocks the calling loop until it is done. It never joins a run in progress there: that run may belong
        to the blocked loop, and would never finish. It serves the cached report, or runs the checks itself.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.report())
        return run_in_thread(self._cached_or_run())

    def _fresh(self) -> HealthReport | None:
        """The cached report if it is no older than `cache_ttl` (call it with the lock held)."""
        if self._cached is not None and self.clock.monotonic() - self._cached_at <= self.cache_ttl:
            return self._cached
        return None

    async def _cached_or_run(self) -> HealthReport:
        with self._lock:
            cached = self._fresh()
        return cached if cached is not None else await self.check_all()

    async def _run(self, check: Check, clock: Clock) -> CheckResult:
        started = clock.monotonic()
        try:
            result = await asyncio.wait_for(check.run(), self.timeout)
        except TimeoutError:
            message = f"timed out after {self.timeout:g}s"
        except Exception as error:
            message = scrub_text(f"{type(error).__name__}: {error}")
        else:  # the name may be the check's own; the duration is measured here, the critical flag registered
            duration = clock.monotonic() - started
            return CheckResult(
                result.name or check.name, result.status, result.message, result.values, duration, check.critical
            )
        return CheckResult(check.name, Status.UNHEALTHY, message, {}, clock.monotonic() - started, check.critical)

    def _record(self, results: Iterable[CheckResult]) -> None:
        results = tuple(results)
        with self._lock:
            for result in results:
                self._last[result.name] = result
        if (instruments := t.current()) is not None:
            for result in results:
                instruments.health_counts.add((("check", result.name), ("status", result.status.value)))


def run_in_thread(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run `coroutine` on an event loop of its own in a short-lived thread, and wait for its result.

    For synchronous code called from a running event loop, where `asyncio.run` refuses to start a second loop.
    """
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rfobs-health") as pool:
        return pool.submit(asyncio.run, coroutine).result()
