"""Decorators and policies: agent tasks, tools, API and LLM calls, retry, timeout, rate limiting, circuit breaking.

Storage backends for shared limiter and breaker state (the protocols and the in-memory stores) live in
`rfobs.instrument.backends` and `rfobs.instrument.breaker`: they concern backend authors, not agent code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rfobs._lazy import lazy_getattr as _lazy_getattr
from rfobs.instrument.agent import agent  # binds the function over the submodule of the same name
from rfobs.instrument.llm import llm_call, token_usage
from rfobs.instrument.task import api_call, task, tool, track_agent_task, track_api_call

if TYPE_CHECKING:
    from rfobs.instrument.breaker import BreakerOptions, CircuitBreaker, circuit_breaker
    from rfobs.instrument.ratelimit import (
        Adaptive,
        RateLimiter,
        RateLimitOptions,
        rate_limit,
        rate_limit_api_calls,
        rate_limit_per_user,
    )
    from rfobs.instrument.retry import (
        Backoff,
        RetryOptions,
        RetryPolicy,
        SupportsBackoff,
        default_retryable,
        retry,
        retry_after_hint,
        retry_api_call,
    )
    from rfobs.instrument.timeout import Timeout, timeout, timeout_after, timeout_api_call

# Policies import tenacity, asyncio and friends: loaded on first use, so `import rfobs.instrument` stays cheap.
_LAZY: dict[str, str] = {
    "BreakerOptions": "rfobs.instrument.breaker",
    "CircuitBreaker": "rfobs.instrument.breaker",
    "circuit_breaker": "rfobs.instrument.breaker",
    "Adaptive": "rfobs.instrument.ratelimit",
    "RateLimiter": "rfobs.instrument.ratelimit",
    "RateLimitOptions": "rfobs.instrument.ratelimit",
    "rate_limit": "rfobs.instrument.ratelimit",
    "rate_limit_api_calls": "rfobs.instrument.ratelimit",
    "rate_limit_per_user": "rfobs.instrument.ratelimit",
    "Backoff": "rfobs.instrument.retry",
    "RetryOptions": "rfobs.instrument.retry",
    "RetryPolicy": "rfobs.instrument.retry",
    "SupportsBackoff": "rfobs.instrument.retry",
    "default_retryable": "rfobs.instrument.retry",
    "retry": "rfobs.instrument.retry",
    "retry_after_hint": "rfobs.instrument.retry",
    "retry_api_call": "rfobs.instrument.retry",
    "Timeout": "rfobs.instrument.timeout",
    "timeout": "rfobs.instrument.timeout",
    "timeout_after": "rfobs.instrument.timeout",
    "timeout_api_call": "rfobs.instrument.timeout",
}

__all__ = [
    "Adaptive",
    "Backoff",
    "BreakerOptions",
    "CircuitBreaker",
    "RateLimitOptions",
    "RateLimiter",
    "RetryOptions",
    "RetryPolicy",
    "SupportsBackoff",
    "Timeout",
    "agent",
    "api_call",
    "circuit_breaker",
    "default_retryable",
    "llm_call",
    "rate_limit",
    "rate_limit_api_calls",
    "rate_limit_per_user",
    "retry",
    "retry_after_hint",
    "retry_api_call",
    "task",
    "timeout",
    "timeout_after",
    "timeout_api_call",
    "token_usage",
    "tool",
    "track_agent_task",
    "track_api_call",
]


__getattr__ = _lazy_getattr(__name__, _LAZY, globals())
