"""Health checks: the check model, the checker that runs them, built-in checks, HTTP endpoints and metrics."""

from rfobs.health._model import Check, CheckResult, HealthReport, Status, overall_status
from rfobs.health.checker import HealthChecker

__all__ = ["Check", "CheckResult", "HealthChecker", "HealthReport", "Status", "overall_status"]
