"""Result types of `benchmark` and `load_test`, the HDR latency histogram behind them, and baseline export."""

from __future__ import annotations

import importlib
import json
import math
import os
import time
from abc import abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final, Protocol, cast

__all__ = ["BenchmarkResult", "LatencyHistogram", "LoadTestResult", "save_as_baseline"]

PathArg = str | os.PathLike[str]

# The histogram counts whole microseconds from 1 µs to 1 h with 3 significant digits: every percentile it
# reports is within 0.1% of the true value (plus the 1 µs resolution), and its memory is fixed at about
# 190 KB whatever the number of samples.
LOWEST_US: Final = 1
HIGHEST_US: Final = 3_600_000_000
SIGNIFICANT_DIGITS: Final = 3
_INSTALL_HINT: Final = "rfobs.perf needs the 'hdrhistogram' package: pip install 'rfobs[perf]'"


class _Hdr(Protocol):
    """The part of `hdrh.histogram.HdrHistogram` rfobs uses (the package ships no type information)."""

    def record_value(self, value: int, count: int = 1) -> bool: ...
    def get_value_at_percentile(self, percentile: float) -> int: ...
    def get_total_count(self) -> int: ...
    def get_min_value(self) -> int: ...
    def get_max_value(self) -> int: ...
    def get_mean_value(self) -> float: ...
    def add(self, other: _Hdr) -> object: ...
    def reset(self) -> None: ...


def _new_hdr() -> _Hdr:
    try:
        module = importlib.import_module("hdrh.histogram")
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    return cast(_Hdr, module.HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS))


class LatencyHistogram:
    """A mergeable HDR histogram of latencies in seconds (1 µs to 1 h, 3 significant digits, fixed memory).

    Not thread-safe: record from one thread (the load test records from its event loop).

    Raises:
        ImportError: `hdrhistogram` is not installed; the message says how to install it.
    """

    def __init__(self) -> None:
        self._hdr = _new_hdr()
        self.record_us = self._hdr.record_value
        """Record one latency in whole microseconds (the hot path: no conversion, no checks)."""

    def record(self, seconds: float) -> None:
        """Record one latency in seconds, clamped into the histogram's range."""
        self._hdr.record_value(min(max(round(seconds * 1e6), LOWEST_US), HIGHEST_US))

    def merge(self, other: LatencyHistogram) -> None:
        """Add another histogram's counts to this one."""
        self._hdr.add(other._hdr)

    def reset(self) -> None:
        """Forget every sample (keeps the memory)."""
        self._hdr.reset()

    @property
    def count(self) -> int:
        """The number of samples recorded."""
        return self._hdr.get_total_count()

    def percentile(self, percent: float) -> float:
        """The latency in seconds at `percent` (0-100); 0.0 when empty."""
        return self._hdr.get_value_at_percentile(percent) / 1e6 if self.count else 0.0

    def summary(self) -> dict[str, float]:
        """min, mean, p50, p90, p95, p99 and max, in seconds (all 0.0 when empty)."""
        if not self.count:
            return dict.fromkeys(("min", "mean", "p50", "p90", "p95", "p99", "max"), 0.0)
        hdr = self._hdr
        return {
            "min": hdr.get_min_value() / 1e6,
            "mean": hdr.get_mean_value() / 1e6,
            "p50": self.percentile(50),
            "p90": self.percentile(90),
            "p95": self.percentile(95),
            "p99": self.percentile(99),
            "max": hdr.get_max_value() / 1e6,
        }


class _Figures(Mapping[str, Any]):
    """A result read by key, as the seed programme reads it (`result["throughput_rps"]`).

    The keys are a fixed, read-only set; each figure is also reachable as an attribute or through `to_dict()`.
    """

    __slots__ = ()
    _KEYS: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def _figures(self) -> dict[str, Any]: ...

    def __getitem__(self, key: str) -> Any:
        if key not in self._KEYS:
            raise KeyError(f"{type(self).__name__} has no figure {key!r}; allowed: {', '.join(self._KEYS)}")
        return self._figures()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._KEYS)

    def __len__(self) -> int:
        return len(self._KEYS)


@dataclass(frozen=True)
class BenchmarkResult(_Figures):
    """What `benchmark` measured: the median over rounds of each figure. Latencies are in seconds.

    `errors_by_type` counts the exceptions the function raised, by class name; they were not re-raised.

    Also a read-only mapping (`result["operations_per_second"]`) over `name`, `iterations`, `rounds`, `warmup`,
    `concurrency`, `operations_per_second`, `avg_time`, `stdev_time`, `p50_time`, `p90_time`, `p95_time`,
    `p99_time`, `max_time` (seconds), `errors`, `errors_by_type`, `cpu_percent`, `rss_bytes` and
    `timer_overhead`; an unknown key raises `KeyError` naming the allowed ones.
    """

    _KEYS: ClassVar[tuple[str, ...]] = (
        "name",
        "iterations",
        "rounds",
        "warmup",
        "concurrency",
        "operations_per_second",
        "avg_time",
        "stdev_time",
        "p50_time",
        "p90_time",
        "p95_time",
        "p99_time",
        "max_time",
        "errors",
        "errors_by_type",
        "cpu_percent",
        "rss_bytes",
        "timer_overhead",
    )

    name: str
    iterations: int
    ops_per_s: float
    latency_s: Mapping[str, float]
    errors: int = 0
    errors_by_type: Mapping[str, int] = field(default_factory=lambda: {})
    cpu_percent: float = 0.0
    rss_bytes: int = 0
    rounds: int = 1
    timer_overhead_s: float = 0.0
    warmup: int = 0
    concurrency: int = 1

    @property
    def operations_per_second(self) -> float:
        """Calls per second (the seed programme's name for `ops_per_s`)."""
        return self.ops_per_s

    def _figures(self) -> dict[str, Any]:
        latency = self.latency_s
        return {
            "name": self.name,
            "iterations": self.iterations,
            "rounds": self.rounds,
            "warmup": self.warmup,
            "concurrency": self.concurrency,
            "operations_per_second": self.ops_per_s,
            "avg_time": latency.get("mean", 0.0),
            **{f"{key}_time": latency.get(key, 0.0) for key in ("stdev", "p50", "p90", "p95", "p99", "max")},
            "errors": self.errors,
            "errors_by_type": dict(self.errors_by_type),
            "cpu_percent": self.cpu_percent,
            "rss_bytes": self.rss_bytes,
            "timer_overhead": self.timer_overhead_s,
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (`kind` is "benchmark")."""
        document: dict[str, Any] = {"kind": "benchmark", **asdict(self)}
        document["latency_s"] = dict(self.latency_s)
        document["errors_by_type"] = dict(self.errors_by_type)
        return document

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> BenchmarkResult:
        """The result `to_dict` described; unknown keys are ignored."""
        known = {name: document[name] for name in cls.__dataclass_fields__ if name in document}
        return cls(**known)

    def text(self) -> str:
        """An aligned table of the figures."""
        rows = [
            ("iterations", f"{self.iterations:,} x {self.rounds} rounds (warmup {self.warmup:,})"),
            ("concurrency", str(self.concurrency)),
            ("ops/s", f"{self.ops_per_s:,.0f}"),
            *((key, _duration(value)) for key, value in self.latency_s.items()),
            ("errors", _errors(self.errors, self.errors_by_type)),
            ("cpu", f"{self.cpu_percent:.0f}%"),
            ("rss", f"{self.rss_bytes / 2**20:.1f} MiB"),
            ("timer overhead", _duration(self.timer_overhead_s)),
        ]
        return _table(f"benchmark {self.name}", rows)


@dataclass(frozen=True)
class LoadTestResult(_Figures):
    """What `load_test` measured. Latencies are in seconds; `series` has one entry per second of the run.

    Each `series` entry holds `second` (the bucket's start), `span_s` (its length: 1.0, less for the last one),
    `requests`, `rps` (requests over `span_s`), `p95_s` and `errors`.

    Also a read-only mapping, the seed programme's "detailed performance report" (`result["throughput_rps"]`):
    `name`, `concurrent_users`, `total_requests`, `successful_requests`, `failed_requests`, `timeouts`,
    `error_rate`, `duration`, `throughput_rps`, `avg_response_time`, `min_response_time`, `max_response_time`,
    `p50_response_time`, `p90_response_time`, `p95_response_time`, `p99_response_time` (seconds) and
    `requests_by_error_type`; an unknown key raises `KeyError` naming the allowed ones.
    """

    _KEYS: ClassVar[tuple[str, ...]] = (
        "name",
        "concurrent_users",
        "total_requests",
        "successful_requests",
        "failed_requests",
        "timeouts",
        "error_rate",
        "duration",
        "throughput_rps",
        "avg_response_time",
        "min_response_time",
        "max_response_time",
        "p50_response_time",
        "p90_response_time",
        "p95_response_time",
        "p99_response_time",
        "requests_by_error_type",
    )

    name: str
    config: Mapping[str, Any]
    requests: int
    errors: int
    errors_by_type: Mapping[str, int]
    timeouts: int
    duration_s: float
    latency_s: Mapping[str, float]
    series: tuple[Mapping[str, Any], ...] = ()
    resources: tuple[Mapping[str, Any], ...] = ()

    @property
    def error_rate(self) -> float:
        """Failed requests (errors and timeouts) over all requests."""
        return self.errors / self.requests if self.requests else 0.0

    @property
    def throughput_rps(self) -> float:
        """Requests completed per second of the run."""
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def _figures(self) -> dict[str, Any]:
        latency = self.latency_s
        return {
            "name": self.name,
            "concurrent_users": self.config.get("concurrent_users"),
            "total_requests": self.requests,
            "successful_requests": self.requests - self.errors,
            "failed_requests": self.errors,
            "timeouts": self.timeouts,
            "error_rate": self.error_rate,
            "duration": self.duration_s,
            "throughput_rps": self.throughput_rps,
            "avg_response_time": latency.get("mean", 0.0),
            **{f"{key}_response_time": latency.get(key, 0.0) for key in ("min", "max", "p50", "p90", "p95", "p99")},
            "requests_by_error_type": dict(self.errors_by_type),
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (`kind` is "load_test")."""
        return {
            "kind": "load_test",
            "name": self.name,
            "config": dict(self.config),
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "errors_by_type": dict(self.errors_by_type),
            "timeouts": self.timeouts,
            "duration_s": self.duration_s,
            "throughput_rps": self.throughput_rps,
            "latency_s": dict(self.latency_s),
            "series": [dict(point) for point in self.series],
            "resources": [dict(sample) for sample in self.resources],
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> LoadTestResult:
        """The result `to_dict` described (derived figures are recomputed)."""
        return cls(
            name=document["name"],
            config=document["config"],
            requests=document["requests"],
            errors=document["errors"],
            errors_by_type=document["errors_by_type"],
            timeouts=document["timeouts"],
            duration_s=document["duration_s"],
            latency_s=document["latency_s"],
            series=tuple(document.get("series", ())),
            resources=tuple(document.get("resources", ())),
        )

    def text(self) -> str:
        """An aligned table of the figures."""
        rows = [
            ("requests", f"{self.requests:,} in {self.duration_s:.2f}s"),
            ("throughput", f"{self.throughput_rps:,.1f} req/s"),
            *((key, _duration(value)) for key, value in self.latency_s.items()),
            ("errors", f"{_errors(self.errors, self.errors_by_type)} ({self.error_rate:.2%})"),
            ("timeouts", str(self.timeouts)),
        ]
        if self.resources:
            peak = max(int(sample["rss_bytes"]) for sample in self.resources)
            cpu = max(float(sample["cpu_percent"]) for sample in self.resources)
            rows += [("peak cpu", f"{cpu:.0f}%"), ("peak rss", f"{peak / 2**20:.1f} MiB")]
        return _table(f"load test {self.name}", rows)


def save_as_baseline(result: BenchmarkResult | LoadTestResult, path: PathArg) -> None:
    """Save a result's p50/p95 as the health check's degradation baseline, under the result's name.

    The file is the one `rfobs.health.baseline.Baseline.save` writes and `PerformanceCheck` reads; the other
    operations an existing file holds are kept. Production latency of the operation named `result.name` is then
    judged against this measured reference.

    Raises:
        ValueError: The existing file is not a baseline file.
        OSError: The file cannot be written.
    """
    from rfobs._latency import Baseline

    target = Path(path)
    operations: dict[str, Any] = {}
    if target.exists():
        Baseline.load(target)  # validates the existing file before it is rewritten
        operations = json.loads(target.read_text(encoding="utf-8"))["operations"]
    count = result.iterations if isinstance(result, BenchmarkResult) else result.requests
    operations[result.name] = {"p50": result.latency_s["p50"], "p95": result.latency_s["p95"], "count": count}
    document = {"version": 1, "saved_at": time.time(), "window": 1000, "operations": operations}
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    os.replace(temporary, target)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return str(seconds)
    if seconds < 1e-6:
        return f"{seconds * 1e9:.1f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"


def _errors(errors: int, by_type: Mapping[str, int]) -> str:
    if not by_type:
        return str(errors)
    return f"{errors} (" + ", ".join(f"{name}: {n}" for name, n in sorted(by_type.items())) + ")"


def _table(title: str, rows: list[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in rows)
    return "\n".join([title, *(f"  {label.ljust(width)}  {value}" for label, value in rows)])
