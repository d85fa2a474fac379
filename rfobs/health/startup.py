"""`validate_startup_environment()`: settings and critical checks, once, before an agent starts its work."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from rfobs.exceptions import RfobsError
from rfobs.health._model import CheckResult, HealthReport, Status, overall_status
from rfobs.health.checker import HealthChecker, run_in_thread

__all__ = ["run_critical_checks", "validate_startup_environment"]

_T = TypeVar("_T")


def validate_startup_environment(env: str | None = None) -> HealthReport:
    """Validate the settings and run every critical health check once; raise listing every problem.

    Uses the active `rfobs.init()` handle's settings and checker when `env` is None and `init()` was called;
    otherwise loads the settings for `env` and builds a checker from them. Blocking: call it at start-up.
    Called from inside a running event loop, it runs the checks on a loop of its own in a worker thread.

    Args:
        env: Settings environment (`development`, `staging`, `production`); default `RFOBS_ENV`.

    Returns:
        The report of the critical checks (all of them passed).

    Raises:
        ConfigError: The settings are invalid (every problem listed).
        RfobsError: One or more critical checks are unhealthy (every one named, with its message).

    Example:
        >>> import rfobs
        >>> report = rfobs.validate_startup_environment()  # doctest: +SKIP
    """
    from rfobs import _state

    active = _state.current()
    checker = active.health_checker if env is None else None
    if checker is None:
        from rfobs.config import load_config
        from rfobs.health.setup import build_health_checker

        settings = active.settings if env is None else None
        checker = build_health_checker(settings or load_config(env))
    report = run_sync(run_critical_checks(checker))
    failing = [r for r in report.checks if r.status is Status.UNHEALTHY]
    if failing:
        count = len(failing)
        lines = "\n".join(f"  - {r.name}: {r.message}" for r in failing)
        raise RfobsError(f"{count} critical health check{'s' if count != 1 else ''} failed at start-up:\n{lines}")
    return report


async def run_critical_checks(checker: HealthChecker) -> HealthReport:
    """Run `checker`'s critical checks concurrently (each under its timeout) and report on them alone."""
    clock = checker.clock
    started = clock.monotonic()
    names = [check.name for check in checker.checks if check.critical]
    results: tuple[CheckResult, ...] = tuple(await asyncio.gather(*(checker.check(name) for name in names)))
    return HealthReport(overall_status(results), results, clock.monotonic() - started)


def run_sync(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run `coroutine` to completion from sync code, even when the calling thread is running an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    return run_in_thread(coroutine)
