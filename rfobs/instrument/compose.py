"""The policies of `@task(..., retry=, timeout=, rate_limit=, breaker=)`, stacked in the one order that works.

From the outside in: the task span ▸ retry ▸ timeout ▸ rate limit ▸ circuit breaker ▸ the function. The task span
covers every attempt, so retry events land on it; each attempt has its own deadline; the limiter admits attempts
(a retry waits for a slot like any call); the breaker sees every real call and refuses fast when open, which
retry does not retry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypedDict, TypeVar, Unpack, cast

from rfobs import _check
from rfobs.exceptions import ConfigError
from rfobs.instrument.breaker import CircuitBreaker
from rfobs.instrument.ratelimit import RateLimiter
from rfobs.instrument.retry import RetryPolicy
from rfobs.instrument.timeout import Timeout

__all__ = ["PolicyOptions", "policy_stack"]

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
        try:
            return RetryPolicy(**cast("Mapping[str, Any]", value))
        except (ConfigError, TypeError) as error:  # TypeError: a key that is not a string
            # Named as the caller wrote it: `@task(retry={...})`, not only the RetryPolicy option inside.
            raise ConfigError(f"@task(retry={{...}}): {error}") from None
    allowed = "a RetryPolicy, a dict of its options, a number of attempts, True or None"
    raise _check.bad("@task", "retry", value, allowed)


def _timeout(value: object) -> Timeout | None:
    if value is None or isinstance(value, Timeout):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _check.bad("@task", "timeout", value, "a Timeout, a number of seconds or None")
    return Timeout(value)


def _check_rate_limit(value: object) -> RateLimiter | float | None:
    if value is None or isinstance(value, RateLimiter):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _check.bad("@task", "rate_limit", value, "a RateLimiter, calls per second or None")
    RateLimiter(value)  # checks the rate now, at decoration
    return float(value)


def _check_breaker(value: object) -> CircuitBreaker | str | bool | None:
    if value is None or isinstance(value, (bool, str, CircuitBreaker)):
        return value
    raise _check.bad("@task", "breaker", value, "a CircuitBreaker, a breaker name, True or None")


def _breaker(value: CircuitBreaker | str | bool | None, default_name: str) -> CircuitBreaker | None:
    """The breaker for one decorated function (created per function unless one is shared)."""
    if value is None or value is False:
        return None
    if isinstance(value, CircuitBreaker):
        return value
    if value is True:
        return CircuitBreaker(default_name)
    return CircuitBreaker(value)


class PolicyOptions(TypedDict, total=False):
    """The policy arguments `@task` takes (see `policy_stack`)."""

    retry: RetryPolicy | Mapping[str, Any] | int | bool | None
    timeout: Timeout | float | None
    rate_limit: RateLimiter | float | None
    breaker: CircuitBreaker | str | bool | None


def policy_stack(**policies: Unpack[PolicyOptions]) -> Callable[[str, Callable[P, R]], Callable[P, R]]:
    """Check the policy arguments now (at decoration) and return what stacks them on one function.

    The returned callable takes the task's operation name (`"{agent}.{name}"`, which names a limiter or a breaker
    made from a number or `True`) and the function.

    Args:
        **policies: `retry` (a `RetryPolicy`, a dict of its options, a number of attempts, or True for the
            defaults), `timeout` (a `Timeout` or seconds per attempt), `rate_limit` (a `RateLimiter`, shared to
            share a budget, or calls per second), `breaker` (a `CircuitBreaker`, shared to share its state, a
            breaker name, or True to name it after the task).

    Raises:
        ConfigError: A policy argument is invalid.
    """
    retry_policy, timeout_policy = _retry(policies.get("retry")), _timeout(policies.get("timeout"))
    rate = _check_rate_limit(policies.get("rate_limit"))
    breaker = _check_breaker(policies.get("breaker"))

    def stack(operation: str, func: Callable[P, R]) -> Callable[P, R]:
        # A number makes a limiter (and `True` a breaker) of this function's own, named after it; pass an
        # object to share one between functions.
        limiter = rate if rate is None or isinstance(rate, RateLimiter) else RateLimiter(rate, name=operation)
        wrapped = func
        for policy in (_breaker(breaker, operation), limiter, timeout_policy, retry_policy):
            if policy is not None:
                wrapped = policy(wrapped)
        return wrapped

    return stack
