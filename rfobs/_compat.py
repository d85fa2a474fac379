"""The seed programme's names: code written `from agents.utils import X` runs as `from rfobs import X`.

A contract (`../shared/SEED.md` upstream, `tests/test_public_api.py` here): each name maps to the module that
implements it, and `rfobs` exports it lazily like its own names.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

__all__ = ["SEED_NAMES"]

SEED_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "LoadTestConfig": "rfobs.perf",
        "benchmark": "rfobs.perf",
        "get_advanced_health_checker": "rfobs.health.setup",
        "get_metrics_collector": "rfobs.metrics",
        "load_config": "rfobs.config",
        "load_test": "rfobs.perf",
        "rate_limit_api_calls": "rfobs.instrument.ratelimit",
        "rate_limit_per_user": "rfobs.instrument.ratelimit",
        "retry_api_call": "rfobs.instrument.retry",
        "setup_structured_logging": "rfobs.logs",
        "timeout_after": "rfobs.instrument.timeout",
        "timeout_api_call": "rfobs.instrument.timeout",
        "track_agent_task": "rfobs.instrument.task",
        "validate_startup_environment": "rfobs.health.startup",
    }
)
"""Seed name -> the rfobs module that defines it (under the same name)."""
