"""Built-in health checks: CPU, memory, disk, process, git, env files, log rotation, dependencies and GPU.

Each check takes its thresholds as constructor arguments (validated there: a bad one raises `ConfigError`) and
does its blocking work in a thread or an asyncio subprocess, so `run()` never blocks the event loop. Results carry
sizes, counts and names, never secret values. The system checks live here; the file checks (env files, log
rotation) and the probes (git, dependencies) live in private modules and are re-exported.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import time
from collections.abc import Sequence

from rfobs import _check
from rfobs._secrets import scrub_text
from rfobs.health import _check_base as b
from rfobs.health._file_checks import EnvFileCheck, LogRotationCheck
from rfobs.health._model import CheckResult, Status, Value
from rfobs.health._probe_checks import DependencyCheck, GitRepositoryCheck

__all__ = [
    "CpuCheck",
    "DependencyCheck",
    "DiskCheck",
    "EnvFileCheck",
    "GitRepositoryCheck",
    "GpuCheck",
    "LogRotationCheck",
    "MemoryCheck",
    "ProcessCheck",
]

# -- system resources ---------------------------------------------------------------------------------------------


class CpuCheck(b.BaseCheck):
    """System-wide CPU use, sampled over `sample_seconds` in a thread; degraded above `max_percent`.

    Args:
        max_percent: Highest healthy CPU use, 0-100.
        sample_seconds: How long to sample (> 0).
        name: The check's name.
        critical: Whether failing makes the whole report unhealthy.
    """

    def __init__(
        self, max_percent: float = 90.0, *, sample_seconds: float = 0.2, name: str = "cpu", critical: bool = False
    ) -> None:
        super().__init__(name, critical)
        self.max_percent = _check.number("CpuCheck", "max_percent", max_percent, ge=0, le=100, finite=False)
        self.sample_seconds = _check.number("CpuCheck", "sample_seconds", sample_seconds, gt=0, le=60, finite=False)

    async def run(self) -> CheckResult:
        """Sample the CPU and judge."""
        import psutil

        started = time.perf_counter()
        percent = await asyncio.to_thread(psutil.cpu_percent, self.sample_seconds)
        values: dict[str, Value] = {
            "cpu_percent": percent,
            "cpu_count": psutil.cpu_count() or 0,
            "load_1m": psutil.getloadavg()[0],
        }
        if percent > self.max_percent:
            return self._result(
                Status.DEGRADED, f"CPU {percent:.1f}% above the {self.max_percent:g}% limit", values, started
            )
        return self._result(Status.HEALTHY, f"CPU {percent:.1f}% (limit {self.max_percent:g}%)", values, started)


class MemoryCheck(b.BaseCheck):
    """System memory in use; degraded above `max_percent`.

    Args:
        max_percent: Highest healthy share of memory in use, 0-100.
        name: The check's name.
        critical: Whether failing makes the whole report unhealthy.
    """

    def __init__(self, max_percent: float = 90.0, *, name: str = "memory", critical: bool = False) -> None:
        super().__init__(name, critical)
        self.max_percent = _check.number("MemoryCheck", "max_percent", max_percent, ge=0, le=100, finite=False)

    async def run(self) -> CheckResult:
        """Read memory use and judge."""
        import psutil

        started = time.perf_counter()
        memory = await asyncio.to_thread(psutil.virtual_memory)
        values: dict[str, Value] = {
            "memory_percent": memory.percent,
            "available_bytes": memory.available,
            "total_bytes": memory.total,
        }
        summary = f"memory {memory.percent:.1f}% used, {b.size(memory.available)} available"
        if memory.percent > self.max_percent:
            return self._result(Status.DEGRADED, f"{summary}: above the {self.max_percent:g}% limit", values, started)
        return self._result(Status.HEALTHY, f"{summary} (limit {self.max_percent:g}%)", values, started)


class DiskCheck(b.BaseCheck):
    """Disk usage of the file systems holding `paths`; unhealthy above `max_percent` or when a path is missing.

    Paths are made absolute when the check is built, and messages name them so. Values (also the `measure`
    label of the `health_check_value` metric): `disk_percent` and `free_bytes` for a single path; per path,
    `<absolute path>:disk_percent` and `<absolute path>:free_bytes` for several.

    Args:
        paths: Paths whose file systems are checked.
        max_percent: Highest healthy share of the disk in use, 0-100.
        name: The check's name.
        critical: Whether failing makes the whole report unhealthy.
    """

    def __init__(
        self,
        paths: Sequence[b.PathArg] = (".",),
        max_percent: float = 90.0,
        *,
        name: str = "disk",
        critical: bool = False,
    ) -> None:
        super().__init__(name, critical)
        self.paths = b.paths("DiskCheck", "paths", paths)
        self.max_percent = _check.number("DiskCheck", "max_percent", max_percent, ge=0, le=100, finite=False)
        # Resolved once, so the value keys (metric labels) stay the same whatever the working directory becomes.
        self._absolute = tuple(dict.fromkeys(os.path.abspath(path) for path in self.paths))

    async def run(self) -> CheckResult:
        """Measure each path's file system and judge."""
        started = time.perf_counter()
        usage = await asyncio.to_thread(self._measure)
        values: dict[str, Value] = {}
        full: list[str] = []
        missing: list[str] = []
        shown: list[str] = []
        for path, measured in usage.items():
            if measured is None:
                missing.append(path)
                continue
            percent, free = measured
            prefix = "" if len(usage) == 1 else f"{path}:"
            values[f"{prefix}disk_percent"] = percent
            values[f"{prefix}free_bytes"] = free
            shown.append(f"{path} {percent:.1f}%")
            if percent > self.max_percent:
                full.append(f"{path} ({percent:.1f}%, {b.size(free)} free)")
        problems = [f"above {self.max_percent:g}%: {', '.join(full)}"] if full else []
        problems += [f"missing: {', '.join(missing)}"] if missing else []
        if problems:
            return self._result(Status.UNHEALTHY, "; ".join(problems), values, started)
        summary = ", ".join(shown)
        return self._result(Status.HEALTHY, f"disk use {summary} (limit {self.max_percent:g}%)", values, started)

    def _measure(self) -> dict[str, tuple[float, int] | None]:
        import psutil

        usage: dict[str, tuple[float, int] | None] = {}
        for path in self._absolute:
            try:
                measured = psutil.disk_usage(path)
            except (FileNotFoundError, NotADirectoryError):
                usage[path] = None
            else:
                usage[path] = (measured.percent, measured.free)
        return usage


class ProcessCheck(b.BaseCheck):
    """This process's open file descriptors (handles on Windows) and resident memory; degraded above a limit.

    Args:
        max_open_files: Most open descriptors that are healthy; None reports without judging.
        max_rss_bytes: Largest healthy resident set size; None reports without judging.
        name: The check's name.
        critical: Whether failing makes the whole report unhealthy.
    """

    def __init__(
        self,
        max_open_files: int | None = None,
        max_rss_bytes: int | None = None,
        *,
        name: str = "process",
        critical: bool = False,
    ) -> None:
        super().__init__(name, critical)
        if max_open_files is not None:
            max_open_files = _check.integer("ProcessCheck", "max_open_files", max_open_files, ge=0)
        if max_rss_bytes is not None:
            max_rss_bytes = _check.integer("ProcessCheck", "max_rss_bytes", max_rss_bytes, ge=0)
        self.max_open_files = max_open_files
        self.max_rss_bytes = max_rss_bytes

    async def run(self) -> CheckResult:
        """Read the process's descriptors and memory, and judge."""
        started = time.perf_counter()
        values = await asyncio.to_thread(_process_values)
        open_files, rss = int(values["open_files"]), int(values["rss_bytes"])
        problems: list[str] = []
        if self.max_open_files is not None and open_files > self.max_open_files:
            problems.append(f"{open_files} open files above the {self.max_open_files} limit")
        if self.max_rss_bytes is not None and rss > self.max_rss_bytes:
            problems.append(f"RSS {b.size(rss)} above the {b.size(self.max_rss_bytes)} limit")
        if problems:
            return self._result(Status.DEGRADED, "; ".join(problems), values, started)
        return self._result(Status.HEALTHY, f"{open_files} open files, RSS {b.size(rss)}", values, started)


def _process_values() -> dict[str, Value]:
    import psutil

    process = psutil.Process()
    with process.oneshot():
        values: dict[str, Value] = {"rss_bytes": process.memory_info().rss, "threads": process.num_threads()}
        if sys.platform == "win32":
            values["open_files"] = process.num_handles()
        else:
            import resource

            values["open_files"] = process.num_fds()
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            if soft != resource.RLIM_INFINITY:
                values["open_files_limit"] = soft
    return values


# -- GPU ----------------------------------------------------------------------------------------------------------


class GpuCheck(b.BaseCheck):
    """Utilization, memory and temperature of each NVIDIA GPU through NVML (`pip install 'rfobs[gpu]'`).

    Skipped where NVML is not available (no `nvidia-ml-py`, no driver, no GPU); degraded when a device is hotter
    than `max_temperature_c` or its memory fuller than `max_memory_percent`. Values per device `i`:
    `gpu<i>.utilization_percent`, `gpu<i>.memory_percent`, `gpu<i>.temperature_c`.

    Args:
        name: The check's name.
        critical: Whether failing makes the whole report unhealthy.
        max_temperature_c: Hottest healthy device temperature, degrees Celsius.
        max_memory_percent: Fullest healthy device memory, 0-100.
    """

    def __init__(
        self,
        *,
        name: str = "gpu",
        critical: bool = False,
        max_temperature_c: float = 85.0,
        max_memory_percent: float = 95.0,
    ) -> None:
        super().__init__(name, critical)
        self.max_temperature_c = _check.number("GpuCheck", "max_temperature_c", max_temperature_c, gt=0, finite=False)
        self.max_memory_percent = _check.number(
            "GpuCheck", "max_memory_percent", max_memory_percent, ge=0, le=100, finite=False
        )

    async def run(self) -> CheckResult:
        """Read every device through NVML and judge."""
        started = time.perf_counter()
        devices = await asyncio.to_thread(_read_gpus)
        if isinstance(devices, str):
            return self._result(Status.SKIPPED, devices, {}, started)
        if not devices:
            return self._result(Status.SKIPPED, "NVML found no GPU", {}, started)
        values: dict[str, Value] = {"devices": len(devices)}
        problems: list[str] = []
        for index, (utilization, memory, temperature) in enumerate(devices):
            values |= {
                f"gpu{index}.utilization_percent": utilization,
                f"gpu{index}.memory_percent": memory,
                f"gpu{index}.temperature_c": temperature,
            }
            if temperature > self.max_temperature_c:
                problems.append(f"gpu{index} at {temperature:g}°C above {self.max_temperature_c:g}°C")
            if memory > self.max_memory_percent:
                problems.append(f"gpu{index} memory {memory:.1f}% above {self.max_memory_percent:g}%")
        if problems:
            return self._result(Status.DEGRADED, "; ".join(problems), values, started)
        return self._result(Status.HEALTHY, f"{len(devices)} GPU(s) within limits", values, started)


def _read_gpus() -> list[tuple[float, float, float]] | str:
    """(utilization %, memory %, temperature °C) per device, or why NVML is not available."""
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError:
        return "NVML not available: pip install 'rfobs[gpu]'"
    try:
        nvml.nvmlInit()
    except Exception as error:
        return f"NVML not available: {scrub_text(str(error) or type(error).__name__)}"
    try:
        devices: list[tuple[float, float, float]] = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            devices.append(
                (
                    float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                    100.0 * memory.used / memory.total if memory.total else 0.0,
                    float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
                )
            )
        return devices
    finally:
        nvml.nvmlShutdown()
