"""rfobs: OpenTelemetry observability for Python AI agents.

Call `rfobs.init()` once at start-up; decorate agent tasks, tools, API and LLM calls; see traces with
`rfobs traces` and metrics on `http://127.0.0.1:9464/metrics`.

Importing rfobs loads only what the decorators need; settings, the SDK, exporters and the reliability
policies are imported on first use (every agent pays for the import). The reliability policies are keyword
arguments of `@rfobs.task` (`retry=`, `timeout=`, `rate_limit=`, `breaker=`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rfobs._compat import SEED_NAMES
from rfobs._lazy import lazy_getattr as _lazy_getattr
from rfobs._version import __version__

# Eager, not lazy: the function shares its module's name, and a lazily loaded module would replace it on the
# package as soon as anything imported `rfobs.conversation` (its import is light: no SDK, no baggage API).
from rfobs.conversation import conversation
from rfobs.exceptions import CircuitOpen, ConfigError, RateLimited, RfobsError, TimeoutExceeded
from rfobs.instrument.agent import agent
from rfobs.instrument.llm import llm_call
from rfobs.instrument.task import api_call, task, tool, track_agent_task, track_api_call

if TYPE_CHECKING:
    from rfobs._settings_model import Settings
    from rfobs.config import add_secret_pattern, load_config
    from rfobs.health import HealthChecker
    from rfobs.health.setup import get_advanced_health_checker
    from rfobs.health.startup import validate_startup_environment
    from rfobs.instrument.breaker import CircuitBreaker, circuit_breaker
    from rfobs.instrument.ratelimit import RateLimiter, rate_limit, rate_limit_api_calls, rate_limit_per_user
    from rfobs.instrument.retry import RetryPolicy, retry, retry_api_call
    from rfobs.instrument.timeout import Timeout, timeout, timeout_after, timeout_api_call
    from rfobs.logs import setup_logging, setup_structured_logging
    from rfobs.metrics import MetricsCollector, get_metrics_collector
    from rfobs.perf import LoadTestConfig, benchmark, benchmark_sync, load_test, load_test_sync
    from rfobs.propagation import continue_trace, extract, inject, using_baggage, with_context
    from rfobs.sdk import Telemetry, flush, get_settings, init, shutdown

# rfobs's own lazily loaded names, then the seed programme's (`_compat`); `track_agent_task` is loaded eagerly.
_LAZY: dict[str, str] = {
    "Settings": "rfobs._settings_model",
    "add_secret_pattern": "rfobs.config",
    "continue_trace": "rfobs.propagation",
    "extract": "rfobs.propagation",
    "inject": "rfobs.propagation",
    "using_baggage": "rfobs.propagation",
    "with_context": "rfobs.propagation",
    "HealthChecker": "rfobs.health",
    "MetricsCollector": "rfobs.metrics",
    "CircuitBreaker": "rfobs.instrument.breaker",
    "circuit_breaker": "rfobs.instrument.breaker",
    "RateLimiter": "rfobs.instrument.ratelimit",
    "rate_limit": "rfobs.instrument.ratelimit",
    "RetryPolicy": "rfobs.instrument.retry",
    "retry": "rfobs.instrument.retry",
    "Timeout": "rfobs.instrument.timeout",
    "timeout": "rfobs.instrument.timeout",
    "setup_logging": "rfobs.logs",
    "Telemetry": "rfobs.sdk",
    "get_settings": "rfobs.sdk",
    "init": "rfobs.sdk",
    "shutdown": "rfobs.sdk",
    "flush": "rfobs.sdk",
    "benchmark_sync": "rfobs.perf",
    "load_test_sync": "rfobs.perf",
    **{name: module for name, module in SEED_NAMES.items() if name != "track_agent_task"},
}

__all__ = [
    "CircuitBreaker",
    "CircuitOpen",
    "ConfigError",
    "HealthChecker",
    "LoadTestConfig",
    "MetricsCollector",
    "RateLimited",
    "RateLimiter",
    "RetryPolicy",
    "RfobsError",
    "Settings",
    "Telemetry",
    "Timeout",
    "TimeoutExceeded",
    "__version__",
    "add_secret_pattern",
    "agent",
    "api_call",
    "benchmark",
    "benchmark_sync",
    "circuit_breaker",
    "continue_trace",
    "conversation",
    "extract",
    "flush",
    "get_advanced_health_checker",
    "get_metrics_collector",
    "get_settings",
    "init",
    "inject",
    "llm_call",
    "load_config",
    "load_test",
    "load_test_sync",
    "rate_limit",
    "rate_limit_api_calls",
    "rate_limit_per_user",
    "retry",
    "retry_api_call",
    "setup_logging",
    "setup_structured_logging",
    "shutdown",
    "task",
    "timeout",
    "timeout_after",
    "timeout_api_call",
    "tool",
    "track_agent_task",
    "track_api_call",
    "using_baggage",
    "validate_startup_environment",
    "with_context",
]


__getattr__ = _lazy_getattr(__name__, _LAZY, globals())
