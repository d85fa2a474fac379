"""Exceptions raised by rfobs.

rfobs raises only at configuration time; at run time it logs and counts instead. The hierarchy::

    RfobsError
    ├── ConfigError (also a ValueError): a setting or decorator argument is invalid
    ├── TimeoutExceeded (also a TimeoutError): an operation ran past its deadline
    ├── RateLimited: a rate limiter in reject mode refused a call
    └── CircuitOpen: a circuit breaker is open and refused a call without trying it
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["CircuitOpen", "ConfigError", "ConfigProblem", "RateLimited", "RfobsError", "TimeoutExceeded"]


class RfobsError(Exception):
    """Base class of every exception rfobs raises."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One invalid setting: which key, the (already redacted) value, what is allowed, and where it came from."""

    key: str
    value: str
    allowed: str
    source: str

    def __str__(self) -> str:
        return f"{self.key} = {self.value} (from {self.source}): expected {self.allowed}"


class ConfigError(RfobsError, ValueError):
    """Invalid settings. Lists every problem found, not just the first; secrets in the message are scrubbed."""

    def __init__(self, problems: Sequence[ConfigProblem] | str) -> None:
        if isinstance(problems, str):
            self.problems: tuple[ConfigProblem, ...] = ()
            message = problems
        else:
            self.problems = tuple(problems)
            count = len(self.problems)
            lines = "\n".join(f"  - {p}" for p in self.problems)
            message = f"{count} invalid setting{'s' if count != 1 else ''}:\n{lines}"
        from rfobs._secrets import scrub_text  # here, not at the top: importing rfobs stays light

        super().__init__(scrub_text(message))


class TimeoutExceeded(RfobsError, TimeoutError):
    """An operation did not finish within its limit, or a sync one was refused before it could start.

    Attributes:
        operation: The operation's name.
        seconds: The limit that was exceeded.
        reason: Why the call was not even started (too many threads of earlier timed-out calls still running),
            or None when it ran past its limit.
    """

    def __init__(self, operation: str, seconds: float, *, reason: str | None = None) -> None:
        message = f"{operation} did not finish within {seconds:g}s"
        super().__init__(f"{message}: {reason}" if reason else message)
        self.operation = operation
        self.seconds = seconds
        self.reason = reason


class RateLimited(RfobsError):
    """A rate limiter in reject mode refused a call.

    Attributes:
        limiter: The limiter's name.
        retry_after: Seconds until the call would have been admitted (an estimate).
    """

    def __init__(self, limiter: str, retry_after: float) -> None:
        super().__init__(f"rate limit {limiter!r} exceeded; retry after {retry_after:.3g}s")
        self.limiter = limiter
        self.retry_after = retry_after


class CircuitOpen(RfobsError):
    """A circuit breaker is open: the call was refused without being tried.

    Attributes:
        breaker: The breaker's name.
        retry_after: Seconds until the breaker lets a probe call through (0 while half-open).
        state: `"open"`, or `"half_open"` when every probe slot is taken by a call deciding whether to close.
    """

    def __init__(self, breaker: str, retry_after: float, state: str = "open") -> None:
        if state == "half_open":
            message = (
                f"circuit breaker {breaker!r} is half-open (probe in progress): the call was refused while its "
                "probe call decides whether to close"
            )
        else:
            message = f"circuit breaker {breaker!r} is open; next probe in {retry_after:.3g}s"
        super().__init__(message)
        self.breaker = breaker
        self.retry_after = retry_after
        self.state = state
