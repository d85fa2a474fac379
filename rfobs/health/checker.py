"""`HealthChecker`: runs registered checks concurrently, each under a timeout, caches the report, reports metrics."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Iterable
from typing import cast

from rfobs._secrets import scrub_text
from rfobs.exceptions import ConfigError
from rfobs.health._model import Check, CheckResult, HealthReport, Status, overall_status
from rfobs.instrument import _telemetry as t

__all__ = ["HealthChecker"]


def _is_seconds(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0 <= value < float("inf")


class HealthChecker:
    """The registry of checks and the one way to run them.

    Checks run concurrently; each gets `timeout` seconds (a hung check becomes unhealthy with "timed out after
    Ns" and never holds the caller longer). `report()` serves a cached report younger than `cache_ttl` and runs
    the checks once for any number of concurrent callers (threads or event loops), so a probe storm costs one run.

    Args:
        timeout: Seconds one check may take.
        cache_ttl: Seconds a report is served from cache by `report()`.
    """

    def __init__(self, *, timeout: float = 5.0, cache_ttl: float = 2.0) -> None:
        if not _is_seconds(timeout) or timeout <= 0:
            raise ConfigError(f"HealthChecker(timeout={timeout!r}): expected a number of seconds > 0")
        if not _is_seconds(cache_ttl):
            raise ConfigError(f"HealthChecker(cache_ttl={cache_ttl!r}): expected a number of seconds >= 0")
        self.timeout = float(timeout)
        self.cache_ttl = float(cache_ttl)
        self._checks: dict[str, Check] = {}
        self._lock = threading.Lock()
        self._cached: HealthReport | None = None
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

    # -- running --------------------------------------------------------------------------------------------------

    async def check(self, name: str) -> CheckResult:
        """Run one check now.

        Raises:
            KeyError: No check of that name.
        """
        with self._lock:
            check = self._checks[name]
        result = await self._run(check)
        self._record((result,))
        return result

    async def check_all(self) -> HealthReport:
        """Run every check now, concurrently, and return the report."""
        started = time.perf_counter()
        results = tuple(await asyncio.gather(*(self._run(check) for check in self.checks)))
        report = HealthReport(overall_status(results), results, time.perf_counter() - started)
        self._record(results)
        with self._lock:
            self.runs += 1
            self._cached = report
        return report

    async def report(self) -> HealthReport:
        """A report no older than `cache_ttl`: cached, joined from a run in progress, or run now."""
        with self._lock:
            cached = self._cached
            if cached is not None and time.time() - cached.timestamp <= self.cache_ttl:
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
        """`report()` for code without an event loop (a CLI, a thread)."""
        return asyncio.run(self.report())

    async def _run(self, check: Check) -> CheckResult:
        started = time.perf_counter()
        try:
            result = await asyncio.wait_for(check.run(), self.timeout)
        except TimeoutError:
            return self._failed(check, f"timed out after {self.timeout:g}s", started)
        except Exception as error:
            return self._failed(check, scrub_text(f"{type(error).__name__}: {error}"), started)
        # The check's own duration is what it measured; the critical flag is the registered check's.
        return CheckResult(
            result.name or check.name,
            result.status,
            result.message,
            result.values,
            time.perf_counter() - started,
            check.critical,
        )

    @staticmethod
    def _failed(check: Check, message: str, started: float) -> CheckResult:
        return CheckResult(check.name, Status.UNHEALTHY, message, {}, time.perf_counter() - started, check.critical)

    def _record(self, results: Iterable[CheckResult]) -> None:
        results = tuple(results)
        with self._lock:
            for result in results:
                self._last[result.name] = result
        if (instruments := t.current()) is not None:
            for result in results:
                instruments.health_counts.add((("check", result.name), ("status", result.status.value)))
