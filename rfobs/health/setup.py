"""Builds the `HealthChecker` the settings describe, and the process-wide one of `get_advanced_health_checker()`."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Final, cast

from rfobs import _state
from rfobs.health.checker import HealthChecker

if TYPE_CHECKING:
    from rfobs._settings_model import HealthSettings, Settings
    from rfobs.health._model import Check

__all__ = ["build_health_checker", "get_advanced_health_checker"]

MIB: Final = 1024 * 1024
DAY: Final = 86_400.0
# A check's own probe timeout stays below the checker's, so a slow dependency or git reports its own message
# ("connect timed out after 4s") rather than the checker's generic "timed out after 5s".
PROBE_SHARE: Final = 0.8

_default_lock = threading.Lock()
_default: HealthChecker | None = None


def _forget_default() -> None:
    global _default
    with _default_lock:
        _default = None


_state.on_reset(_forget_default)


def build_health_checker(settings: Settings) -> HealthChecker:
    """A `HealthChecker` with the built-in checks that `settings.health` asks for.

    Always: `cpu`, `memory`, `disk`, `process` and `performance` (latency against the baseline file). With
    `git_path`: `git`; with `env_files`: `env_files` (critical: an agent without its keys cannot work); with
    `log_paths`: `log_rotation`; one check per entry of `dependencies` (critical when listed in
    `critical_dependencies`); with `gpu`: `gpu`.

    Args:
        settings: Validated settings (`rfobs.load_config()` or `handle.settings`).

    Returns:
        A new checker; its checks have not run yet.
    """
    health = settings.health
    checker = HealthChecker(timeout=health.check_timeout, cache_ttl=health.cache_ttl)
    for check in _checks(health):
        checker.register(check)
    return checker


def _checks(health: HealthSettings) -> list[Check]:
    from rfobs.health.baseline import PerformanceCheck, default_recent
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

    probe_timeout = PROBE_SHARE * health.check_timeout
    checks: list[Check] = [
        CpuCheck(health.cpu_max_percent, sample_seconds=min(0.2, probe_timeout / 2)),
        MemoryCheck(health.memory_max_percent),
        DiskCheck(health.disk_paths, health.disk_max_percent),
        ProcessCheck(
            max_open_files=health.max_open_files,
            max_rss_bytes=None if health.max_rss_mb is None else health.max_rss_mb * MIB,
        ),
    ]
    if health.git_path is not None:
        checks.append(GitRepositoryCheck(health.git_path, timeout=probe_timeout))
    if health.env_files:
        checks.append(EnvFileCheck(health.env_files, required_keys=health.env_required_keys, critical=True))
    if health.log_paths:
        checks.append(
            LogRotationCheck(
                health.log_paths,
                max_bytes=round(health.log_max_mb * MIB),
                max_age_seconds=health.log_max_age_days * DAY,
                max_rotated=health.log_max_rotated,
            )
        )
    for name, url in health.dependencies.items():
        critical = name in health.critical_dependencies
        checks.append(DependencyCheck(name, url, timeout=probe_timeout, critical=critical))
    checks.append(PerformanceCheck(health.baseline_path, default_recent(), factor=health.degradation_factor))
    if health.gpu:
        checks.append(GpuCheck())
    return checks


def get_advanced_health_checker() -> HealthChecker:
    """The health checker of this process (the seed API's name).

    The active `rfobs.init()` handle's checker when there is one; otherwise a process-wide checker built once
    from `rfobs.load_config()` (thread-safe: concurrent first calls build it once).

    Raises:
        ConfigError: No `init()` checker, and the settings are invalid.
    """
    global _default
    if (active := _state.current().health_checker) is not None:
        return cast("HealthChecker", active)
    with _default_lock:
        if _default is None:
            from rfobs.config import load_config

            _default = build_health_checker(load_config())
        return _default
