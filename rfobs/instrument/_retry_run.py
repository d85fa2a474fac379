"""One call's retry bookkeeping: the attempt function tenacity runs, its hooks, and the telemetry of the outcome.

A `Run` lives with one call, never on the shared `RetryPolicy`, so one policy serves any number of threads and
tasks. It replays the fast path's first failure to tenacity as attempt 1, tells a limiter about HTTP 429 and
Retry-After hints, puts a `retry` event on the enclosing span per retried failure, and counts the outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Protocol, cast

from opentelemetry import trace
from tenacity import Future as Outcome
from tenacity import RetryCallState, RetryError

from rfobs.exceptions import CircuitOpen, RateLimited
from rfobs.instrument import _telemetry as t
from rfobs.instrument._operation import exception_type
from rfobs.instrument._retry_strategies import http_status, retry_after_hint

__all__ = ["Labels", "Run", "SupportsBackoff"]

_log = logging.getLogger("rfobs")


class SupportsBackoff(Protocol):
    """A rate limiter `@retry` can tell about an HTTP 429 or a Retry-After hint (`RateLimiter` implements it)."""

    def backoff(self, retry_after: float | None) -> None:
        """Slow down: the upstream refused a call and asked for `retry_after` seconds (None: no hint)."""
        ...


def _notice(limiter: SupportsBackoff, error: BaseException) -> None:
    # RateLimited and CircuitOpen are rfobs's own refusals, not the upstream's: backing off on them would feed back.
    if isinstance(error, RateLimited | CircuitOpen):
        return
    hint = retry_after_hint(error)
    if hint is None and http_status(error) != 429:
        return
    try:
        limiter.backoff(hint)
    except Exception:
        _log.warning("rfobs: %r.backoff(%r) raised; retrying without it", limiter, hint, exc_info=True)


class Labels:
    """Metric label sets of one operation, built once."""

    __slots__ = ("call", "exhausted", "name", "non_retryable", "retry", "success")

    def __init__(self, name: str) -> None:
        self.name = name
        self.call = f"@retry {name}"  # names the call in the warning when no SDK is installed
        self.success = (("operation", name), ("outcome", "success"))
        self.retry = (("operation", name), ("outcome", "retry"))
        self.exhausted = (("operation", name), ("outcome", "exhausted"))
        self.non_retryable = (("operation", name), ("outcome", "non_retryable"))


_EXHAUSTED: Final = object()  # returned by tenacity's retry_error_callback in place of raising RetryError


class Run:
    """One call's retry bookkeeping and tenacity hooks: it lives with that call, never on the shared policy."""

    __slots__ = (
        "attempts", "counts", "error", "func", "labels", "limiter", "outcome", "pending", "span", "start", "traceback"
    )  # fmt: skip

    def __init__(
        self,
        func: Callable[..., Any],
        labels: Labels,
        limiter: SupportsBackoff | None,
        first: Exception | None,
        start: float,
    ) -> None:
        self.func = func
        self.labels = labels
        self.limiter = limiter
        self.pending = first  # the fast path's failure, replayed to tenacity as attempt 1
        self.error: BaseException | None = first
        self.traceback: TracebackType | None = first.__traceback__ if first is not None else None
        self.start = start
        self.attempts = 0
        self.outcome: Outcome | None = None
        instruments = t.current(labels.call)
        self.counts = instruments.retry_counts if instruments is not None else None
        span = trace.get_current_span() if instruments is not None else None
        self.span = span if span is not None and span.is_recording() else None
        if first is not None and limiter is not None:
            _notice(limiter, first)

    def _failed(self, error: BaseException) -> None:
        self.error, self.traceback = error, error.__traceback__
        if self.limiter is not None:
            _notice(self.limiter, error)

    def attempt(self, *args: Any, **kwargs: Any) -> Any:
        self.attempts += 1
        if (pending := self.pending) is not None:
            self.pending = None
            raise pending
        try:
            return self.func(*args, **kwargs)
        except BaseException as error:
            self._failed(error)
            raise

    async def aattempt(self, *args: Any, **kwargs: Any) -> Any:
        self.attempts += 1
        if (pending := self.pending) is not None:
            self.pending = None
            raise pending
        try:
            return await self.func(*args, **kwargs)
        except BaseException as error:
            self._failed(error)
            raise

    def before(self, retry_state: RetryCallState) -> None:
        # Tenacity's own time-based stop objects measure from its start_time; the first attempt began earlier.
        if retry_state.attempt_number == 1:
            retry_state.start_time = self.start

    def before_sleep(self, retry_state: RetryCallState) -> None:
        if self.counts is not None:
            self.counts.add(self.labels.retry)
        if self.span is not None:
            attributes: dict[str, Any] = {
                t.RETRY_OPERATION: self.labels.name,
                t.RETRY_ATTEMPT: retry_state.attempt_number,
                t.RETRY_DELAY: float(retry_state.upcoming_sleep),
            }
            outcome = retry_state.outcome
            error = outcome.exception() if outcome is not None else None
            if error is not None:
                attributes[t.EXCEPTION_TYPE] = exception_type(type(error))
            self.span.add_event(t.RETRY_EVENT, attributes)

    def exhausted(self, retry_state: RetryCallState) -> object:
        self.outcome = retry_state.outcome
        return _EXHAUSTED

    def finish(self, labels: tuple[tuple[str, str], ...], outcome: str) -> None:
        if self.counts is not None:
            self.counts.add(labels)
        if self.span is not None:
            self.span.set_attributes({t.RETRY_ATTEMPTS: self.attempts, t.RETRY_OUTCOME: outcome})

    def result(self, result: object) -> Any:
        """The call's return value, or its last error re-raised unchanged once tenacity gave up."""
        if result is not _EXHAUSTED:
            self.finish(self.labels.success, "success")
            return result
        self.finish(self.labels.exhausted, "exhausted")
        outcome = self.outcome
        error = outcome.exception() if outcome is not None else None
        if error is None:  # a tenacity `retry=` that retries on results ran out of attempts: no error to re-raise
            raise RetryError(cast("Outcome", outcome))
        raise error.with_traceback(self.traceback if error is self.error else error.__traceback__)

    def escaped(self, error: BaseException) -> BaseException:
        """Record a non-retryable end; the exception to re-raise, with the traceback of where it was raised.

        Cancellation and exits (non-`Exception`s, also while sleeping between attempts) end the call without an
        outcome: counting them as non-retryable failures would mislead a dashboard.
        """
        if isinstance(error, Exception):
            self.finish(self.labels.non_retryable, "non_retryable")
        return error.with_traceback(self.traceback) if error is self.error else error
