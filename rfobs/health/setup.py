"""Builds the `HealthChecker` the settings describe, and the process-wide one of `get_advanced_health_checker()`."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, cast

from rfobs import _state
from rfobs.health.checker import HealthChecker

if TYPE_CHECKING:
    from rfobs._settings_model import HealthSettings, Settings
    from rfobs.health._model import Check

__all__ = ["Discovered", "build_health_checker", "discover", "get_advanced_health_checker"]

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


@dataclass(frozen=True, slots=True)
class Discovered:
    """What the file checks look at: the configured paths, else those found around the working directory.

    Attributes:
        git_path: The git work tree to check, or None.
        env_files: The `.env` files to check (empty: none).
        log_paths: The log files or directories to check (empty: none).
        missing: Each check not registered because nothing was configured or found, with why, e.g.
            `git (no git work tree at /app or above; set health.git_path)`.
    """

    git_path: str | None
    env_files: tuple[str, ...]
    log_paths: tuple[str, ...]
    missing: tuple[str, ...]


def discover(health: HealthSettings, cwd: str | None = None) -> Discovered:
    """The paths of the git, env file and log checks: the configured ones, else (with `discover`) those found.

    Looks for the git work tree holding `cwd` (a `.git` in it or a parent), `cwd/.env` and a `cwd/logs`
    directory; found paths are absolute. A setting that is set is used as it is, without looking.

    Args:
        health: The health settings.
        cwd: Where to look; default the working directory.
    """
    try:
        where = os.path.abspath(cwd if cwd is not None else os.getcwd())
    except OSError:  # the working directory was removed: nothing to find around it
        return Discovered(health.git_path, health.env_files, health.log_paths, ())
    look = health.discover
    missing: list[str] = []
    git_path = health.git_path
    if git_path is None and look:
        git_path = _work_tree(where)
        if git_path is None:
            missing.append(f"git (no git work tree at {where} or above; set health.git_path)")
    env_files = health.env_files
    if not env_files and look:
        found = os.path.join(where, ".env")
        env_files = (found,) if os.path.isfile(found) else ()
        if not env_files:
            missing.append(f"env_files (no {found}; set health.env_files)")
    log_paths = health.log_paths
    if not log_paths and look:
        found = os.path.join(where, "logs")
        log_paths = (found,) if os.path.isdir(found) else ()
        if not log_paths:
            missing.append(f"log_rotation (no {found} directory; set health.log_paths)")
    return Discovered(git_path, env_files, log_paths, tuple(missing))


def _work_tree(start: str) -> str | None:
    """The top of the git work tree holding `start` (a `.git` directory, or a `.git` file in a worktree)."""
    folder = start
    while True:
        if os.path.exists(os.path.join(folder, ".git")):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def build_health_checker(settings: Settings, *, recent_from_traces: bool = False) -> HealthChecker:
    """A `HealthChecker` with the built-in checks that `settings.health` asks for, and those `discover` finds.

    Always: `cpu`, `memory`, `disk`, `process` and `performance` (latency against the baseline file). `git` for
    `git_path`, else (with `discover`, the default) for the git work tree holding the working directory.
    `env_files` for `env_files` (critical: an agent without its keys cannot work), else for `./.env` when it
    exists (its keys parsed and its permissions checked; critical only with `env_required_keys`).
    `log_rotation` for `log_paths`, else for a `./logs/` directory when it exists. One check per entry of
    `dependencies` (critical when listed in `critical_dependencies`; dependencies are never discovered); `gpu`
    with `gpu`. A check with nothing configured or found is not registered: `discover(settings.health).missing`
    says which (`rfobs health` prints it under the table).

    Args:
        settings: Validated settings (`rfobs.load_config()` or `handle.settings`).
        recent_from_traces: The performance check compares the spans of the trace file (`tracing.file_path`)
            that ended in the last `health.recent_minutes` with the baseline, instead of this process's own
            timings: for a command-line process, which has recorded none.

    Returns:
        A new checker; its checks have not run yet.
    """
    health = settings.health
    checker = HealthChecker(timeout=health.check_timeout, cache_ttl=health.cache_ttl)
    trace_file = settings.tracing.file_path if recent_from_traces else None
    for check in _checks(health, discover(health), trace_file):
        checker.register(check)
    return checker


def _checks(health: HealthSettings, found: Discovered, trace_file: str | None) -> list[Check]:
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
    if found.git_path is not None:
        checks.append(GitRepositoryCheck(found.git_path, timeout=probe_timeout))
    if found.env_files:
        critical = bool(health.env_files or health.env_required_keys)
        checks.append(EnvFileCheck(found.env_files, required_keys=health.env_required_keys, critical=critical))
    if found.log_paths:
        checks.append(
            LogRotationCheck(
                found.log_paths,
                max_bytes=round(health.log_max_mb * MIB),
                max_age_seconds=health.log_max_age_days * DAY,
                max_rotated=health.log_max_rotated,
            )
        )
    for name, url in health.dependencies.items():
        critical = name in health.critical_dependencies
        checks.append(DependencyCheck(name, url, timeout=probe_timeout, critical=critical))
    factor = health.degradation_factor
    if trace_file is None:
        checks.append(PerformanceCheck(health.baseline_path, default_recent(), factor=factor))
    else:
        window = health.recent_minutes * 60
        checks.append(PerformanceCheck(health.baseline_path, trace_file=trace_file, trace_window=window, factor=factor))
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
