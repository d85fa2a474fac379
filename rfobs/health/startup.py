"""`validate_startup_environment()`: settings and critical checks, once, before an agent starts its work."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from rfobs._secrets import scrub_text
from rfobs.exceptions import ConfigError, RfobsError
from rfobs.health._model import CheckResult, HealthReport, Status, overall_status
from rfobs.health.checker import HealthChecker, run_in_thread

__all__ = ["StartupCheck", "run_critical_checks", "validate_startup_environment"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class StartupCheck:
    """The outcome of `validate_startup_environment()`: true when the agent may start.

    Attributes:
        problems: One line per problem (an invalid setting, or a critical check that is unhealthy), secrets
            redacted; empty when the environment is valid.
        report: The report of the critical checks, or None when the settings were too invalid to run them.
    """

    problems: tuple[str, ...]
    report: HealthReport | None

    @property
    def ok(self) -> bool:
        """No problem: the settings are valid and no critical check is unhealthy."""
        return not self.problems

    def __bool__(self) -> bool:
        return self.ok


def validate_startup_environment(
    env: str | None = None, *, raise_on_failure: bool = False, quiet: bool = False
) -> StartupCheck:
    """Validate the settings and run every critical health check once; report every problem.

    Uses the active `rfobs.init()` handle's settings and checker when `env` is None and `init()` was called;
    otherwise loads the settings for `env` and builds a checker from them. Blocking: call it at start-up.
    Called from inside a running event loop, it runs the checks on a loop of its own in a worker thread.

    An invalid environment prints every problem to stderr (a heading, then one line each, secrets redacted)
    and returns a false result, so `if not validate_startup_environment(): exit(1)` stops the agent with the
    reasons shown and no traceback.

    Args:
        env: Settings environment (`development`, `staging`, `production`); default `RFOBS_ENV`.
        raise_on_failure: Raise instead of printing and returning a false result.
        quiet: Print nothing; the problems are in the result.

    Returns:
        A `StartupCheck`: true when the settings are valid and no critical check is unhealthy.

    Raises:
        ConfigError: With `raise_on_failure`: the settings are invalid (every problem listed).
        RfobsError: With `raise_on_failure`: critical checks are unhealthy (every one named, with its message).

    Example:
        >>> import rfobs
        >>> if not rfobs.validate_startup_environment():  # doctest: +SKIP
        ...     exit(1)
    """
    try:
        checker = _checker(env)
    except ConfigError as error:
        if raise_on_failure:
            raise
        problems = tuple(str(problem) for problem in error.problems) or tuple(str(error).splitlines())
        return _failed(tuple(scrub_text(" ".join(line.split())) for line in problems), None, quiet)
    report = run_sync(run_critical_checks(checker))
    failing = [r for r in report.checks if r.status is Status.UNHEALTHY]
    if not failing:
        return StartupCheck((), report)
    if raise_on_failure:
        count = len(failing)
        lines = "\n".join(f"  - {r.name}: {r.message}" for r in failing)
        raise RfobsError(f"{count} critical health check{'s' if count != 1 else ''} failed at start-up:\n{lines}")
    problems = tuple(scrub_text(" ".join(f"critical check {r.name}: {r.message}".split())) for r in failing)
    return _failed(problems, report, quiet)


def _checker(env: str | None) -> HealthChecker:
    from rfobs import _state

    active = _state.current()
    checker = active.health_checker if env is None else None
    if checker is not None:
        return cast(HealthChecker, checker)
    from rfobs.config import load_config
    from rfobs.health.setup import build_health_checker

    settings = active.settings if env is None else None
    return build_health_checker(settings or load_config(env))


def _failed(problems: tuple[str, ...], report: HealthReport | None, quiet: bool) -> StartupCheck:
    if not quiet:
        count = len(problems)
        lines = "".join(f"  - {problem}\n" for problem in problems)
        sys.stderr.write(f"rfobs: the start-up environment is not valid ({count} problem{'s' * (count != 1)}):\n")
        sys.stderr.write(lines)
        sys.stderr.flush()
    return StartupCheck(problems, report)


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
