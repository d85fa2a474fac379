"""Health checks: the check model, the checker that runs them, built-in checks, HTTP endpoints and metrics."""

from rfobs.health._model import Check, CheckResult, HealthReport, Status, overall_status
from rfobs.health.asgi import ASGIApp, asgi_app, metrics_asgi_app
from rfobs.health.baseline import Baseline, Percentiles, PerformanceCheck, default_recent
from rfobs.health.checker import HealthChecker
from rfobs.health.checks import (
    CpuCheck,
    DependencyCheck,
    DiskCheck,
    EnvFileCheck,
    GitRepositoryCheck,
    GpuCheck,
    LogRotationCheck,
    MemoryCheck,
    ProcessCheck,
)
from rfobs.health.server import HealthServer
from rfobs.health.setup import build_health_checker, get_advanced_health_checker
from rfobs.health.startup import StartupCheck, validate_startup_environment

__all__ = [
    "ASGIApp",
    "Baseline",
    "Check",
    "CheckResult",
    "CpuCheck",
    "DependencyCheck",
    "DiskCheck",
    "EnvFileCheck",
    "GitRepositoryCheck",
    "GpuCheck",
    "HealthChecker",
    "HealthReport",
    "HealthServer",
    "LogRotationCheck",
    "MemoryCheck",
    "Percentiles",
    "PerformanceCheck",
    "ProcessCheck",
    "StartupCheck",
    "Status",
    "asgi_app",
    "build_health_checker",
    "default_recent",
    "get_advanced_health_checker",
    "metrics_asgi_app",
    "overall_status",
    "validate_startup_environment",
]
