"""Tenacity building blocks for `@retry`: which errors to retry, Retry-After hints, the backoff wait, the stops.

Pure functions and tenacity strategy objects, with no telemetry: `retry.py` puts them together into `RetryPolicy`.
"""

from __future__ import annotations

import errno
import random
import re
import socket
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final, Literal, get_args

from tenacity import RetryCallState
from tenacity.retry import retry_base
from tenacity.stop import stop_base
from tenacity.wait import WaitBaseT, wait_base

from rfobs import _check
from rfobs.exceptions import CircuitOpen, ConfigError, RateLimited
from rfobs.instrument._clock import Clock

__all__ = [
    "MAX_WAIT",
    "Backoff",
    "Deadline",
    "HonourRetryAfter",
    "Jitter",
    "Strategy",
    "Veto",
    "check_backoff",
    "check_seconds",
    "default_retryable",
    "http_status",
    "retry_after_hint",
]

Strategy = Literal["exponential", "linear", "fixed", "fibonacci"]
Jitter = Literal["none", "full", "equal"]

_STRATEGIES: Final = get_args(Strategy)
_JITTERS: Final = get_args(Jitter)

MAX_WAIT: Final = 86_400.0
"""The longest wait between two attempts, in seconds (one day): `base_delay` and `max_delay` may not exceed it,
a Retry-After hint beyond it is ignored, and a custom `wait=` strategy's delay is clamped to it."""

# ---------------------------------------------------------------------------------------------- classification

_NETWORK_ERRNOS: Final = frozenset(
    getattr(errno, code)
    for code in ("ECONNRESET", "ECONNREFUSED", "ECONNABORTED", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH",
                 "ENETDOWN", "ENETRESET", "EHOSTDOWN", "EPIPE")
    if hasattr(errno, code)
)  # fmt: skip
# Transport errors of common HTTP and LLM clients (httpx, requests, aiohttp, openai, anthropic), matched by class
# name along the MRO so that none of those libraries has to be imported.
_TRANSPORT_ERROR_NAMES: Final = frozenset(
    {"TimeoutException", "NetworkError", "ConnectionError", "Timeout", "ClientConnectionError",
     "ServerTimeoutError", "APIConnectionError", "APITimeoutError"}
)  # fmt: skip


def http_status(error: BaseException) -> int | None:
    """The HTTP status an exception carries (`status_code`, `status`, or the same on `.response`), if any."""
    try:
        for holder in (error, getattr(error, "response", None)):
            for attribute in ("status_code", "status"):
                value = getattr(holder, attribute, None)
                if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
                    return value
    except Exception:  # an exotic property raising must not turn into a new error
        return None
    return None


def default_retryable(error: BaseException) -> bool:
    """Whether `@retry` retries `error` when no `retry_on` / `retry_if` says so.

    Retried: an HTTP status of 429 or 5xx on the exception (or its `.response`), `TimeoutError` (so
    `rfobs.TimeoutExceeded` and `asyncio.TimeoutError`), `rfobs.RateLimited`, `ConnectionError`, `OSError`s with
    a network errno (connection reset/refused/aborted, timed out, host or network unreachable or down, broken
    pipe), a temporary DNS failure, and the transport errors of httpx, requests, aiohttp, openai and anthropic.

    Not retried: any other HTTP status (other 4xx), `rfobs.CircuitOpen` (an open breaker is never retried),
    exceptions that are not `Exception`s (cancellation, `KeyboardInterrupt`), and everything unknown, including
    `ValueError`, `TypeError`, `KeyError` and `AssertionError`: a bug does not go away by calling again.
    """
    if not isinstance(error, Exception) or isinstance(error, CircuitOpen):
        return False
    status = http_status(error)
    if status is not None:
        return status == 429 or status >= 500
    if isinstance(error, TimeoutError | RateLimited | ConnectionError):
        return True
    if isinstance(error, socket.gaierror):
        return error.errno == socket.EAI_AGAIN
    if isinstance(error, OSError) and error.errno in _NETWORK_ERRNOS:
        return True
    return any(cls.__name__ in _TRANSPORT_ERROR_NAMES for cls in type(error).__mro__)


# delay-seconds is 1*DIGIT (RFC 9110); a fraction is tolerated for retry-after-ms. An HTTP-date is 29 characters.
_DELAY = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,9})?")
_LONGEST_HINT: Final = 64


def _hint(seconds: float) -> float | None:
    return seconds if 0.0 <= seconds <= MAX_WAIT else None  # NaN fails both comparisons


def _parse_retry_after(value: object, scale: float) -> float | None:
    """A Retry-After value as seconds in `[0, MAX_WAIT]`, or None for anything else; never raises.

    A server's header is untrusted input: a negative, non-finite or huge number, a date far in the past or
    future, non-ASCII text, undecodable bytes or a very long string is no hint at all.
    """
    try:
        if isinstance(value, bytes | bytearray):
            value = bytes(value).decode("ascii")
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            return _hint(float(value) * scale)
        if not isinstance(value, str) or len(value) > _LONGEST_HINT or not value.isascii():
            return None
        text = value.strip()
        if _DELAY.fullmatch(text):
            return _hint(float(text) * scale)
        if scale != 1.0:
            return None
        when = parsedate_to_datetime(text)
        when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
        # A date a little in the past (clock skew) means "now"; one further out either way is not a real hint.
        return max(0.0, seconds) if -MAX_WAIT <= seconds <= MAX_WAIT else None
    except Exception:  # parsedate_to_datetime and date arithmetic raise several types on hostile input
        return None


def retry_after_hint(error: BaseException) -> float | None:
    """Seconds the failed call's server asked to wait, or None.

    Read from a `retry_after` attribute (seconds, as `rfobs.RateLimited` has), else from a `retry-after-ms` or
    `Retry-After` header (seconds or an HTTP-date) on `error.response.headers` or `error.headers`. Always None
    or a finite number in `[0, MAX_WAIT]` (one day); a value that is not (negative, NaN, infinite, beyond a day,
    a date more than a day away, non-ASCII, longer than 64 characters, garbage) counts as no hint at all.
    """
    try:
        hint = _parse_retry_after(getattr(error, "retry_after", None), 1.0)
        if hint is not None:
            return hint
        for holder in (getattr(error, "response", None), error):
            get = getattr(getattr(holder, "headers", None), "get", None)
            if not callable(get):
                continue
            for header, scale in (("retry-after-ms", 0.001), ("Retry-After", 1.0), ("retry-after", 1.0)):
                value: object = get(header)
                if value is not None and (hint := _parse_retry_after(value, scale)) is not None:
                    return hint
    except Exception:  # an exotic headers object must not turn into a new error
        return None
    return None


# ------------------------------------------------------------------------------------ tenacity building blocks


def check_seconds(
    owner: str, argument: str, value: object, *, positive: bool = False, most: float | None = None
) -> float:
    """`value` as a finite number of seconds, >= 0 (> 0 when `positive`) and at most `most`."""
    if positive:
        return _check.number(owner, argument, value, gt=0, le=most, what="a finite number of seconds")
    return _check.number(owner, argument, value, ge=0, le=most, what="a finite number of seconds")


def check_backoff(owner: str, strategy: object, base: object, cap: object, jitter: object) -> tuple[float, float]:
    """The checked `(base_delay, max_delay)` of a backoff, after its strategy and jitter are checked."""
    _check.one_of(owner, "strategy", strategy, _STRATEGIES)
    _check.one_of(owner, "jitter", jitter, _JITTERS)
    base_delay = check_seconds(owner, "base_delay", base, most=MAX_WAIT)
    max_delay = check_seconds(owner, "max_delay", cap, most=MAX_WAIT)
    if max_delay < base_delay:
        # Name both: either may be the default (max_delay is 60 unless given).
        allowed = "a number of seconds >= base_delay (max_delay defaults to 60)"
        raise ConfigError(f"{owner}(base_delay={base!r}, max_delay={cap!r}): expected {allowed}")
    return base_delay, max_delay


class Backoff(wait_base):
    """A tenacity wait strategy: the delay after failed attempt `n`, capped at `max_delay`, then jittered.

    ===========  =========================  ==========================
    strategy     delay after attempt n      n = 1, 2, 3, 4, 5 (base 1)
    ===========  =========================  ==========================
    exponential  base_delay * 2 ** (n - 1)  1, 2, 4, 8, 16
    linear       base_delay * n             1, 2, 3, 4, 5
    fixed        base_delay                 1, 1, 1, 1, 1
    fibonacci    base_delay * fib(n)        1, 1, 2, 3, 5
    ===========  =========================  ==========================

    Jitter applies to the capped delay `d`: `"full"` draws uniformly from `[0, d)`, `"equal"` from `[d/2, d)`.
    Usable on its own as tenacity's `wait=`.

    Args:
        strategy: How the delay grows with the attempt number.
        base_delay: Seconds; the first delay (before jitter).
        max_delay: Seconds; no delay exceeds it.
        jitter: `"none"`, `"full"` or `"equal"`.
        rng: Random source for the jitter (seed one in tests); defaults to the `random` module.

    Raises:
        ConfigError: An unknown strategy or jitter, a negative or non-finite delay, or `max_delay < base_delay`.
    """

    def __init__(
        self,
        strategy: Strategy = "exponential",
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        jitter: Jitter = "none",
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.base_delay, self.max_delay = check_backoff("Backoff", strategy, base_delay, max_delay, jitter)
        self.strategy: Strategy = strategy
        self.jitter: Jitter = jitter
        self._random = (rng or random.Random()).random

    def delay(self, attempt: int) -> float:
        """The delay after failed attempt number `attempt` (1-based), capped at `max_delay`, before jitter."""
        n, base, cap = max(attempt, 1), self.base_delay, self.max_delay
        if self.strategy == "fixed" or base == 0.0:
            return base
        if self.strategy == "linear":
            return min(base * n, cap)
        if self.strategy == "exponential":
            return cap if n > 1024 else min(base * 2.0 ** (n - 1), cap)  # 2.0 ** 1024 overflows a float
        previous, current = 0, 1
        for _ in range(n - 1):
            previous, current = current, previous + current
            if base * current >= cap:
                return cap
        return min(base * current, cap)

    def __call__(self, retry_state: RetryCallState) -> float:
        """The (jittered) delay after `retry_state`'s failed attempt."""
        delay = self.delay(retry_state.attempt_number)
        if self.jitter == "full":
            return delay * self._random()
        if self.jitter == "equal":
            return delay / 2 + delay / 2 * self._random()
        return delay

    def __repr__(self) -> str:
        return f"Backoff({self.strategy!r}, {self.base_delay!r}, {self.max_delay!r}, {self.jitter!r})"


class HonourRetryAfter(wait_base):
    """Waits at least as long as the failed attempt's Retry-After hint asks, even past `max_delay`.

    The wrapped strategy's delay is clamped to `[0, MAX_WAIT]` (a NaN is 0): `time.sleep` raises on a negative,
    NaN or astronomically large delay, which a custom tenacity `wait=` may produce after many attempts.
    """

    def __init__(self, wait: WaitBaseT) -> None:
        self.wait = wait

    def __call__(self, retry_state: RetryCallState) -> float:
        delay = float(self.wait(retry_state))
        delay = min(delay, MAX_WAIT) if delay >= 0.0 else 0.0
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        hint = retry_after_hint(error) if error is not None else None
        return delay if hint is None or hint <= delay else hint


class Veto(retry_base):
    """Passes results and retryable errors on to the user's `retry=` object; never retries the rest."""

    def __init__(self, never: tuple[type[BaseException], ...]) -> None:
        self.never = never

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        return error is None or (isinstance(error, Exception) and not isinstance(error, self.never))


class Deadline(stop_base):
    """Stops when the next attempt would start more than `max_total_time` after the first one started."""

    def __init__(self, clock: Clock, deadline: float) -> None:
        self.clock = clock
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.clock.monotonic() + retry_state.upcoming_sleep > self.deadline
