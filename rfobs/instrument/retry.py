"""`RetryPolicy` and `@retry`: tenacity-driven retries whose attempts show on the enclosing span and in metrics.

A call that succeeds at once never enters tenacity: the policy calls the function, counts `success` and returns.
Its first failure is replayed into a fresh per-call `Retrying` (or `AsyncRetrying`) as attempt 1, so tenacity's
stop, wait and retry strategies and its hooks decide everything after that, with attempt numbers and the time
budget counted from the real first attempt.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypedDict, TypeVar, Unpack, cast, overload

from tenacity import Retrying, before_nothing, retry_all, retry_if_exception
from tenacity.asyncio import AsyncRetrying
from tenacity.asyncio.retry import RetryBaseT as AsyncRetryBaseT
from tenacity.asyncio.retry import async_retry_base
from tenacity.asyncio.retry import retry_all as async_retry_all
from tenacity.retry import RetryBaseT
from tenacity.stop import StopBaseT, stop_after_attempt, stop_any, stop_base
from tenacity.wait import WaitBaseT, wait_base

from rfobs import _check
from rfobs.exceptions import CircuitOpen, ConfigError
from rfobs.instrument import _telemetry as t
from rfobs.instrument._clock import Clock, check_clock, default_clock
from rfobs.instrument._retry_run import Labels, Run, SupportsBackoff
from rfobs.instrument._retry_strategies import (
    Backoff,
    Deadline,
    HonourRetryAfter,
    Jitter,
    Strategy,
    Veto,
    check_backoff,
    check_seconds,
    default_retryable,
    retry_after_hint,
)
from rfobs.instrument._wrap import wrap_policy

__all__ = [
    "Backoff",
    "RetryOptions",
    "RetryPolicy",
    "SupportsBackoff",
    "default_retryable",
    "retry",
    "retry_after_hint",
    "retry_api_call",
]

P = ParamSpec("P")
R = TypeVar("R")


class RetryOptions(TypedDict, total=False):
    """The keyword arguments of `RetryPolicy`, `@retry` and `RetryPolicy.copy` (see `RetryPolicy`)."""

    max_attempts: int
    strategy: Strategy
    base_delay: float
    max_delay: float
    jitter: Jitter
    max_total_time: float | None
    retry_on: type[Exception] | tuple[type[Exception], ...]
    retry_if: Callable[[BaseException], bool] | None
    non_retryable: type[BaseException] | tuple[type[BaseException], ...]
    name: str | None
    clock: Clock | None
    limiter: SupportsBackoff | None
    stop: StopBaseT | None
    wait: WaitBaseT | None
    retry: RetryBaseT | AsyncRetryBaseT | None


_unnamed: dict[str, Labels] = {}  # labels of functions run through an unnamed policy's call(); bounded by code


def _qualname(func: object) -> str:
    """The operation label: the qualified name below the innermost enclosing function.

    `Client.fetch`, not `main.<locals>.fetch`: a nested function is labelled as timeout and rate limit label it.
    """
    inner = getattr(func, "__func__", func)
    qualname = str(getattr(inner, "__qualname__", None) or type(inner).__qualname__)
    return qualname.rpartition("<locals>.")[2]


def _labels_of(func: object) -> Labels:
    name = _qualname(func)
    labels = _unnamed.get(name)
    if labels is None:
        labels = _unnamed[name] = Labels(name)
    return labels


class RetryPolicy:
    """Retry a failing call with backoff, on tenacity; each retry is a span event and every call is counted.

    Usable directly (`policy.call(fetch, (url,), {})`, `await policy.acall(...)`) and as a decorator
    (`@policy`), on sync and async functions and methods. Immutable and thread-safe: per-call state lives with
    the call; `copy(**changes)` makes variants. It is not a context manager: a `with` block cannot be re-run.

    **Which errors are retried.** Those for which `default_retryable` is true (timeouts, connection errors,
    HTTP 429 and 5xx, ...), plus instances of `retry_on`, plus those `retry_if(error)` accepts. Anything else,
    including unknown exception types, is re-raised at once: widen with `retry_on`. Instances of `non_retryable`,
    `rfobs.CircuitOpen` and non-`Exception`s (cancellation) are never retried, whatever else says so.

    **Retry-After.** When the error carries a hint (`retry_after` attribute, `Retry-After` or `retry-after-ms`
    header), the next attempt waits `max(computed delay, hint)`, even past `max_delay`: retrying before the
    server said it would accept the call only earns another refusal. If that wait would carry the next attempt
    past `max_total_time`, the policy gives up at once (outcome `exhausted`). Without `max_total_time` the hint
    is honoured in full, so set one when a server might ask for minutes. A hint is untrusted input: one that is
    not a finite number of seconds from 0 to one day (`MAX_WAIT`), or an HTTP-date within a day of now, is
    ignored (see `retry_after_hint`), and no wait, whatever its source, exceeds one day.

    **Telemetry** (only once an SDK is installed). On the *enclosing* span (the current one, e.g. the `@task`
    around the call; no span of its own): an event `retry` per failed attempt that will be retried, with
    `rfobs.retry.operation`, `rfobs.retry.attempt` (1-based number of the failed attempt),
    `rfobs.retry.delay_s` (the wait before the next) and `exception.type`; when a call that failed at least once
    ends, the attributes `rfobs.retry.attempts` and `rfobs.retry.outcome`. A first-try success leaves the span
    alone (two attributes would cost more than the rest of the fast path and say nothing the metric does not).
    The metric `retry_attempts_total{operation, outcome}` counts `retry` per retried failure and exactly one of
    `success`, `exhausted`, `non_retryable` per call.

    **Cost.** A call that succeeds at once runs without tenacity (a direct call and a count); the first failure
    is handed to a fresh tenacity `Retrying` as its attempt 1, and tenacity runs every retry after that. With a
    tenacity `retry=` object (which may retry on results) every call runs through tenacity.

    Args:
        max_attempts: Attempts in all, including the first (>= 1).
        strategy: Delay growth: `"exponential"`, `"linear"`, `"fixed"` or `"fibonacci"` (see `Backoff`).
        base_delay: Seconds; the first delay before jitter (at most one day).
        max_delay: Seconds; cap of the computed delay, at most one day (a Retry-After hint may exceed it).
        jitter: `"none"`, `"full"` (uniform in `[0, d)`) or `"equal"` (uniform in `[d/2, d)`).
        max_total_time: Seconds; no attempt starts later than this after the first one started. None: no limit.
            Attempts themselves are not interrupted (that is `@timeout`'s job).
        retry_on: Exception types retried in addition to the defaults.
        retry_if: Predicate on the exception; errors it accepts are retried in addition to the defaults.
        non_retryable: Exception types never retried.
        name: The operation's name (metric label and span event attribute); defaults to the function's
            qualified name. Keep it bounded.
        clock: Where time is read and sleeps happen; defaults to `default_clock()` at call time, so
            `rfobs.testing.fast_waits()` reaches policies made earlier.
        limiter: Told `backoff(retry_after)` whenever a failed attempt carries HTTP 429 or a Retry-After hint
            (not for rfobs's own `RateLimited` / `CircuitOpen`).
        stop: A tenacity stop object; replaces `max_attempts` and `max_total_time`. Its time-based stops run on
            tenacity's real clock, measured from the first attempt.
        wait: A tenacity wait object; replaces `strategy`, delays and jitter (Retry-After is still honoured).
        retry: A tenacity retry object; replaces `retry_on`, `retry_if` and the defaults (`non_retryable`,
            `CircuitOpen` and cancellation are still never retried). When it retries on a *result* until the
            attempts run out, tenacity's `RetryError` is raised, as there is no error to re-raise.

    Raises:
        ConfigError: An invalid argument (`max_attempts < 1`, a negative, NaN or over-a-day delay,
            `max_delay < base_delay`, an unknown strategy or jitter, a non-exception type in `retry_on`, ...), at
            construction.
    """

    def __init__(self, **options: Unpack[RetryOptions]) -> None:
        owner = "RetryPolicy"
        _check.options(owner, options, RetryOptions.__annotations__)
        attempts = "an integer >= 1 (attempts including the first)"
        max_attempts = _check.integer(owner, "max_attempts", options.get("max_attempts", 3), ge=1, allowed=attempts)
        strategy, jitter = options.get("strategy", "exponential"), options.get("jitter", "full")
        base_delay, max_delay = check_backoff(
            owner, strategy, options.get("base_delay", 1.0), options.get("max_delay", 60.0), jitter
        )
        max_total_time = options.get("max_total_time")
        if max_total_time is not None:
            max_total_time = check_seconds(owner, "max_total_time", max_total_time, positive=True)
        retry_on = _check.exception_types(owner, "retry_on", options.get("retry_on", ()), Exception)
        non_retryable = _check.exception_types(owner, "non_retryable", options.get("non_retryable", ()))
        retry_if, limiter = options.get("retry_if"), options.get("limiter")
        stop, wait, retry = options.get("stop"), options.get("wait"), options.get("retry")
        for argument, value in (("retry_if", retry_if), ("stop", stop), ("wait", wait), ("retry", retry)):
            if value is not None:
                _check.function(owner, argument, value, "a callable (a tenacity strategy object) or None")
        clock = check_clock(owner, options.get("clock"))
        if limiter is not None and not callable(getattr(limiter, "backoff", None)):
            raise _check.bad(owner, "limiter", limiter, "an object with a backoff(retry_after) method, or None")
        name = options.get("name")
        if name is not None:
            name = _check.text(owner, "name", name, "a non-empty string naming the operation, or None")

        self._options: RetryOptions = options  # a fresh dict per call
        self.name = name
        self.max_attempts, self.max_total_time = max_attempts, max_total_time
        self.strategy: Strategy = strategy
        self.jitter: Jitter = jitter
        self.base_delay, self.max_delay = base_delay, max_delay
        self.retry_on, self.non_retryable, self.retry_if = retry_on, non_retryable, retry_if
        self.clock, self.limiter = clock, limiter
        self.wait: wait_base = HonourRetryAfter(wait or Backoff(strategy, base_delay, max_delay, jitter))
        """The wait tenacity runs: `wait=` or a `Backoff`, raised to any Retry-After hint."""
        never = (CircuitOpen, *non_retryable)
        self.retry: RetryBaseT = retry_if_exception(self.is_retryable)
        """The retry predicate tenacity runs (for sync calls)."""
        self._aretry: RetryBaseT | AsyncRetryBaseT = self.retry
        if retry is not None:
            self.retry = retry_all(Veto(never), cast("RetryBaseT", retry))
            self._aretry = async_retry_all(Veto(never), cast("async_retry_base", retry))
        self._never = never
        self._fast = retry is None
        self._stop: StopBaseT = stop if stop is not None else stop_after_attempt(max_attempts)
        # What the first attempt's start is measured on: 0 nothing needs it, 1 our clock, 2 tenacity's clock.
        self._start_on = 2 if stop is not None else 0 if max_total_time is None else 1
        self._labels = Labels(self.name) if self.name is not None else None

    def is_retryable(self, error: BaseException) -> bool:
        """Whether this policy's own classification retries `error` (ignores a tenacity `retry=` object)."""
        if not isinstance(error, Exception) or isinstance(error, self._never):
            return False
        if self.retry_on and isinstance(error, self.retry_on):
            return True
        return (self.retry_if is not None and self.retry_if(error)) or default_retryable(error)

    def copy(self, **changes: Unpack[RetryOptions]) -> RetryPolicy:
        """A new policy with the same options except `changes`.

        Raises:
            ConfigError: A changed option is invalid.
        """
        return RetryPolicy(**{**self._options, **changes})

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Decorate `func` (sync or async, a method, classmethod or staticmethod) with this policy."""
        if isinstance(cast("object", func), RetryPolicy):
            raise ConfigError("@retry(RetryPolicy(...)): a RetryPolicy is a decorator itself; write @policy")
        policy = self if self.name is not None else self.copy(name=_qualname(func))
        return wrap_policy(func, policy, "retry")

    def _begin(self) -> tuple[Clock | None, float]:
        if self._start_on == 1:
            clock = self.clock or default_clock()
            return clock, clock.monotonic()
        return None, time.monotonic() if self._start_on == 2 else 0.0

    def _prepare(
        self, func: Callable[..., Any], labels: Labels, first: Exception | None, start: float, clock: Clock | None
    ) -> tuple[Run, Clock, dict[str, Any]]:
        """The call's `Run`, its clock, and the arguments tenacity's `Retrying` / `AsyncRetrying` take from them."""
        run = Run(func, labels, self.limiter, first, start)
        clock = clock or self.clock or default_clock()
        stop = self._stop
        if self.max_total_time is not None and self._start_on == 1:
            stop = stop_any(cast("stop_base", stop), Deadline(clock, start + self.max_total_time))
        hooks: dict[str, Any] = {
            "stop": stop,
            "wait": self.wait,
            "before": run.before if self._start_on == 2 else before_nothing,
            "before_sleep": run.before_sleep,
            "retry_error_callback": run.exhausted,
        }
        return run, clock, hooks

    def call(self, func: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        """Run `func(*args, **kwargs)`, retrying as the policy says.

        Returns:
            What `func` returned.

        Raises:
            BaseException: The last error, unchanged, when retries are exhausted or the error is not retryable.
        """
        labels = self._labels or _labels_of(func)
        clock, start = self._begin() if self._start_on else (None, 0.0)
        first: Exception | None = None
        if self._fast:
            try:
                result = func(*args, **kwargs)
            except Exception as error:  # cancellation and exits pass through: not a call outcome, not counted
                first = error
            else:
                # A first-try success leaves the span alone: two attributes cost more than this whole path.
                if (instruments := t.current(labels.call)) is not None:
                    instruments.retry_counts.add(labels.success)
                return result
        run, clock, hooks = self._prepare(func, labels, first, start, clock)
        retrying = Retrying(sleep=clock.sleep, retry=self.retry, **hooks)
        try:
            result = retrying(run.attempt, *args, **kwargs)
        except BaseException as error:
            raise run.escaped(error)  # noqa: B904 - the same exception object, re-raised unchanged
        return run.result(result)

    async def acall(self, func: Callable[..., Awaitable[R]], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        """`call` for a coroutine function: await it, sleeping between attempts through the clock's `asleep`.

        Returns:
            What `func`'s coroutine returned.

        Raises:
            BaseException: As `call` does: the last error, unchanged.
        """
        labels = self._labels or _labels_of(func)
        clock, start = self._begin() if self._start_on else (None, 0.0)
        first: Exception | None = None
        if self._fast:
            try:
                result = await func(*args, **kwargs)
            except Exception as error:  # cancellation and exits pass through: not a call outcome, not counted
                first = error
            else:
                # A first-try success leaves the span alone: two attributes cost more than this whole path.
                if (instruments := t.current(labels.call)) is not None:
                    instruments.retry_counts.add(labels.success)
                return result
        run, clock, hooks = self._prepare(func, labels, first, start, clock)
        retrying = AsyncRetrying(sleep=clock.asleep, retry=self._aretry, **hooks)
        try:
            result: object = await retrying(run.aattempt, *args, **kwargs)
        except BaseException as error:
            raise run.escaped(error)  # noqa: B904 - the same exception object, re-raised unchanged
        return run.result(result)

    def __repr__(self) -> str:
        changed = ", ".join(f"{key}={value!r}" for key, value in self._options.items())
        return f"RetryPolicy({changed})"


@overload
def retry(func: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def retry(func: None = None, /, **options: Unpack[RetryOptions]) -> RetryPolicy: ...
def retry(func: Callable[P, R] | None = None, /, **options: Unpack[RetryOptions]) -> Callable[P, R] | RetryPolicy:
    """Retry the decorated function when it fails with a retryable error; bare (`@retry`) or with options.

    Builds a `RetryPolicy` (see it for every option, the classification, Retry-After and telemetry) and
    decorates with it. Defaults: 3 attempts, exponential backoff from 1 s capped at 60 s, full jitter.

    Example:
        >>> @retry(max_attempts=5, strategy="exponential", base_delay=0.5, retry_on=(LookupError,))
        ... def fetch(url: str) -> str:
        ...     return url

    Raises:
        ConfigError: An invalid option, at decoration time.
    """
    policy = RetryPolicy(**options)
    return policy if func is None else policy(func)


def retry_api_call(max_attempts: int = 3, base_delay: float = 1.0, max_delay: float = 60.0) -> RetryPolicy:
    """Seed-compatible shortcut: `@retry_api_call(5)` is `@retry(max_attempts=5)` with exponential backoff and jitter.

    Args:
        max_attempts: Attempts in all, including the first.
        base_delay: Seconds before the first retry (before full jitter).
        max_delay: Cap of the computed delay, in seconds.
    """
    return RetryPolicy(
        max_attempts=max_attempts, strategy="exponential", base_delay=base_delay, max_delay=max_delay, jitter="full"
    )
