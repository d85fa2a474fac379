"""`@instrument`: a traced agent task with its reliability policies, applied in the one order that makes sense.

From the outside in: `@task` ▸ `@retry` ▸ `@timeout` ▸ `@rate_limit` ▸ `@circuit_breaker` ▸ the function. The task
span covers every attempt, so retry events land on it; each attempt has its own deadline; the limiter admits
attempts (a retry waits for a slot like any call); the breaker sees every real call and refuses fast when open,
which `@retry` does not retry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar, cast

from rfobs.exceptions import ConfigError
from rfobs.instrument._operation import check_name
from rfobs.instrument.breaker import CircuitBreaker
from rfobs.instrument.ratelimit import RateLimiter
from rfobs.instrument.retry import RetryPolicy
from rfobs.instrument.task import task
from rfobs.instrument.timeout import Timeout

__all__ = ["instrument"]

P = ParamSpec("P")
R = TypeVar("R")


# The helpers take `object`: the arguments are typed for callers, and checked here for those who pass anything.


def _retry(value: object) -> RetryPolicy | None:
    if value is None or value is False:
        return None
    if isinstance(value, RetryPolicy):
        return value
    if value is True:
        return RetryPolicy()
    if isinstance(value, int):
        return RetryPolicy(max_attempts=value)
    if isinstance(value, Mapping):
        return RetryPolicy(**cast("Mapping[str, Any]", value))
    allowed = "a RetryPolicy, a dict of its options, a number of attempts, True or None"
    raise ConfigError(f"@instrument(retry={value!r}): expected {allowed}")


def _timeout(value: object) -> Timeout | None:
    if value is None or isinstance(value, Timeout):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"@instrument(timeout={value!r}): expected a Timeout, a number of seconds or None")
    return Timeout(value)


def _check_rate_limit(value: object) -> RateLimiter | float | None:
    if value is None or isinstance(value, RateLimiter):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"@instrument(rate_limit={value!r}): expected a RateLimiter, calls per second or None")
    RateLimiter(value)  # checks the rate now, at decoration
    return float(value)


def _check_breaker(value: object) -> CircuitBreaker | str | bool | None:
    if value is None or isinstance(value, (bool, str, CircuitBreaker)):
        return value
    raise ConfigError(f"@instrument(breaker={value!r}): expected a CircuitBreaker, a breaker name, True or None")


def _breaker(value: CircuitBreaker | str | bool | None, default_name: str) -> CircuitBreaker | None:
    """The breaker for one decorated function (created per function unless one is shared)."""
    if value is None or value is False:
        return None
    if isinstance(value, CircuitBreaker):
        return value
    if value is True:
        return CircuitBreaker(default_name)
    return CircuitBreaker(value)


def instrument(
    agent: str,
    name: str | None = None,
    *,
    retry: RetryPolicy | Mapping[str, Any] | int | bool | None = None,
    timeout: Timeout | float | None = None,
    rate_limit: RateLimiter | float | None = None,
    breaker: CircuitBreaker | str | bool | None = None,
    capture_args: bool = False,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Trace an agent task and put it behind retry, timeout, rate limit and circuit breaker, in the right order.

    Args:
        agent: The agent's name, as for `@task`.
        name: The task's name; defaults to the function's name.
        retry: A `RetryPolicy`, a dict of its options, a number of attempts, or True for the defaults.
        timeout: A `Timeout` or seconds per attempt.
        rate_limit: A `RateLimiter` (share one to share a budget) or calls per second.
        breaker: A `CircuitBreaker` (share one to share its state), a breaker name, or True to name it after
            the task.
        capture_args: Record arguments and result on the task span (truncated, scrubbed).

    Raises:
        ConfigError: A policy argument is invalid (at decoration time).

    Example:
        >>> @instrument("researcher", retry=3, timeout=30, rate_limit=5, breaker="arxiv")
        ... async def search(query: str) -> list[str]:
        ...     return [query]
    """
    agent = check_name("agent", agent, "instrument")
    if name is not None:
        name = check_name("name", name, "instrument")
    retry_policy, timeout_policy = _retry(retry), _timeout(timeout)
    rate = _check_rate_limit(rate_limit)
    breaker = _check_breaker(breaker)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        task_name = name or getattr(func, "__name__", "task")
        operation = f"{agent}.{task_name}"
        # A number makes a limiter (and `True` a breaker) of this function's own, named after it; pass an
        # object to share one between functions.
        limiter = rate if rate is None or isinstance(rate, RateLimiter) else RateLimiter(rate, name=operation)
        wrapped = func
        for policy in (_breaker(breaker, operation), limiter, timeout_policy, retry_policy):
            if policy is not None:
                wrapped = policy(wrapped)
        return task(agent, task_name, capture_args=capture_args)(wrapped)

    return decorate
