"""What a health check is and what it reports: `Status`, `CheckResult`, `HealthReport` and the `Check` protocol."""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["Check", "CheckResult", "HealthReport", "Status", "Value", "overall_status"]

Value = float | int | str | bool
"""A measured value a check reports (never a secret: checks report sizes, counts, names, not contents)."""


class Status(enum.StrEnum):
    """A check's verdict, from best to worst; `SKIPPED` means it could not apply here (no GPU, no git)."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    SKIPPED = "skipped"

    @property
    def gauge(self) -> float:
        """The `health_check_status` gauge value: 1 healthy, 0.5 degraded, 0 unhealthy (skipped reads as 1)."""
        return {"healthy": 1.0, "degraded": 0.5, "unhealthy": 0.0, "skipped": 1.0}[self.value]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check run.

    Attributes:
        name: The check's name.
        status: Its verdict.
        message: One line for a human, without secret values.
        values: What it measured, by name (`cpu_percent`, `free_bytes`, ...).
        duration: Seconds the run took.
        critical: Whether the check gates readiness.
    """

    name: str
    status: Status
    message: str = ""
    values: Mapping[str, Value] = field(default_factory=lambda: {})
    duration: float = 0.0
    critical: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "status": self.status.value,
            "message": self.message,
            "values": dict(self.values),
            "duration_seconds": round(self.duration, 6),
            "critical": self.critical,
        }


@runtime_checkable
class Check(Protocol):
    """A health check: a name, whether it is critical, and an async `run()`.

    `run()` must not block the event loop: blocking work (psutil sampling, a subprocess, file system walks)
    goes through `asyncio.to_thread` or an async API. It may raise: the checker turns an exception into an
    unhealthy result with the exception's message, and a run past the checker's timeout into
    "timed out after Ns".
    """

    @property
    def name(self) -> str:
        """Unique name; a metric label."""
        ...

    @property
    def critical(self) -> bool:
        """A critical check failing makes the whole report unhealthy (and `/health/ready` 503)."""
        ...

    async def run(self) -> CheckResult:
        """Measure and judge."""
        ...


def overall_status(results: tuple[CheckResult, ...]) -> Status:
    """Unhealthy if a critical check is unhealthy; degraded if any other check is not healthy; else healthy."""
    status = Status.HEALTHY
    for result in results:
        if result.status is Status.UNHEALTHY and result.critical:
            return Status.UNHEALTHY
        if result.status in (Status.UNHEALTHY, Status.DEGRADED):
            status = Status.DEGRADED
    return status


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Every check's result and the overall verdict.

    Attributes:
        status: `overall_status` of the results.
        checks: The results, in registration order.
        duration: Seconds the whole run took (checks run concurrently).
        timestamp: When the run finished (Unix time).
    """

    status: Status
    checks: tuple[CheckResult, ...]
    duration: float
    timestamp: float = field(default_factory=time.time)

    @property
    def ready(self) -> bool:
        """No critical check is unhealthy."""
        return not any(r.critical and r.status is Status.UNHEALTHY for r in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the `/health` response body)."""
        return {
            "status": self.status.value,
            "ready": self.ready,
            "duration_seconds": round(self.duration, 6),
            "timestamp": self.timestamp,
            "checks": [result.to_dict() for result in self.checks],
        }
