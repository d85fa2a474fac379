"""Performance baselines and degradation detection: `PerformanceCheck` compares recent latencies with saved ones.

`Baseline` keeps the last `window` latencies of each operation; `default_recent()` is the process-wide one the SDK's
own task and API-call timings feed. `Baseline.save` snapshots a baseline to a JSON file, and `PerformanceCheck`
degrades when an operation's recent p95 exceeds the saved p95 by more than a factor.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Final, cast

from rfobs import _check
from rfobs._latency import Baseline, Percentiles, default_recent, record_call_latencies
from rfobs._secrets import scrub_text
from rfobs.exceptions import ConfigError
from rfobs.health import _check_base as b
from rfobs.health._model import CheckResult, Status, Value

__all__ = ["Baseline", "Percentiles", "PerformanceCheck", "default_recent"]


_HINT: Final = "rfobs health baseline save --from-traces"
"""The command that saves a baseline from the agent's trace file (`tracing.file_path`), as printed in messages."""


class PerformanceCheck(b.BaseCheck):
    """Degraded when an operation's recent p95 latency exceeds its saved baseline p95 by more than `factor`.

    The recent latencies are `recent` (this process's own timings), or with `trace_file` the durations of the
    spans in that trace file (and its rotated backups) that ended in the last `trace_window` seconds, by span
    name, read at each run: how a command-line process such as `rfobs health` sees the agent's latencies.
    Only operations with at least `min_samples` samples both recently and in the baseline are compared. Healthy,
    saying plainly why nothing was compared, while there is no baseline file or no recent sample; unhealthy when
    the baseline or the trace file cannot be read. The baseline file is re-read only when it changes.

    Args:
        baseline_path: The JSON file written by `Baseline.save` (or `rfobs health baseline save`).
        recent: The recent timings, usually `default_recent()`; None with `trace_file`.
        factor: How many times the baseline p95 the recent p95 may reach (>= 1).
        min_samples: Fewest samples an operation needs, on both sides, to be compared.
        name: The check's name.
        critical: Whether failing makes the whole report unhealthy.
        trace_file: A trace file to read the recent latencies from, instead of `recent`.
        trace_window: Seconds back from now whose spans count as recent (with `trace_file`).

    Raises:
        ConfigError: A bad argument, or neither or both of `recent` and `trace_file`.
    """

    def __init__(
        self,
        baseline_path: b.PathArg,
        recent: Baseline | None = None,
        *,
        factor: float = 1.5,
        min_samples: int = 20,
        name: str = "performance",
        critical: bool = False,
        trace_file: b.PathArg | None = None,
        trace_window: float = 900.0,
    ) -> None:
        super().__init__(name, critical)
        owner = "PerformanceCheck"
        self.baseline_path = b.path(owner, "baseline_path", baseline_path)
        if recent is not None and not isinstance(cast(object, recent), Baseline):
            raise _check.bad(owner, "recent", recent, "a Baseline, e.g. default_recent()")
        self.trace_file = None if trace_file is None else b.path(owner, "trace_file", trace_file)
        if (recent is None) == (self.trace_file is None):
            given = "both" if recent is not None else "neither"
            raise ConfigError(
                f"{owner}: got {given} of recent and trace_file; expected exactly one: recent=default_recent() "
                "for this process's own timings, or trace_file='.rfobs/traces.jsonl' for an agent's trace file"
            )
        self.recent = recent
        self.trace_window = _check.number(owner, "trace_window", trace_window, gt=0)
        self.factor = _check.number(owner, "factor", factor, ge=1, finite=False)
        self.min_samples = _check.integer(owner, "min_samples", min_samples, ge=1)
        if recent is not None:
            record_call_latencies(recent)  # decorated calls feed it only while a performance check exists
        self._loaded: tuple[tuple[int, int], dict[str, Percentiles]] | None = None

    async def run(self) -> CheckResult:
        """Compare the recent timings with the saved baseline, and judge."""
        started = time.perf_counter()
        try:
            saved = await asyncio.to_thread(self._saved)
        except (OSError, ValueError) as error:
            reason = scrub_text(str(error) or type(error).__name__)
            return self._result(Status.UNHEALTHY, f"cannot read the baseline: {reason}", {}, started)
        try:
            recent, nothing, readable = await asyncio.to_thread(self._recent)
        except OSError as error:
            reason = scrub_text(str(error) or type(error).__name__)
            return self._result(Status.UNHEALTHY, f"cannot read the trace file: {reason}", {}, started)
        if saved is None:
            message = f"no baseline at {self.baseline_path} yet; save one with `{_HINT}`"
            if not readable:
                message = f"no baseline at {self.baseline_path} yet, and {nothing} to save one from with `{_HINT}`"
            return self._result(Status.HEALTHY, message, {"operations_compared": 0}, started)
        compared: list[tuple[str, float, float]] = []
        for operation, now in recent.items():
            before = saved.get(operation)
            if before is not None and min(now["count"], before["count"]) >= self.min_samples:
                compared.append((operation, now["p95"], before["p95"]))
        slower = [(op, now, before) for op, now, before in compared if now > before * self.factor]
        ratios = [now / before for _, now, before in compared if before > 0]
        values: dict[str, Value] = {
            "operations_compared": len(compared),
            "operations_slower": len(slower),
            "worst_ratio": round(max(ratios, default=0.0), 3),
        }
        if slower:
            details = [f"{op} p95 {now:.3f}s vs {before:.3f}s ({_ratio(now, before)})" for op, now, before in slower]
            message = f"slower than {self.factor:g}x the baseline p95: {b.names(details)}"
            return self._result(Status.DEGRADED, message, values, started)
        if not compared:
            recently = "recently" if self.trace_file is None else f"in the last {_minutes(self.trace_window)}"
            reason = nothing or f"no operation has {self.min_samples} samples both {recently} and in the baseline"
            return self._result(Status.HEALTHY, f"nothing to compare: {reason}", values, started)
        message = f"{len(compared)} operation(s) within {self.factor:g}x the baseline p95"
        return self._result(Status.HEALTHY, message, values, started)

    def _saved(self) -> dict[str, Percentiles] | None:
        try:
            stat = os.stat(self.baseline_path)
        except FileNotFoundError:
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        if self._loaded is None or self._loaded[0] != stamp:
            self._loaded = (stamp, Baseline.load(self.baseline_path).snapshot())
        return self._loaded[1]

    def _recent(self) -> tuple[dict[str, Percentiles], str | None, bool]:
        """The recent figures by operation, why there are none (or None), and whether the trace file exists."""
        if self.recent is not None:
            figures = self.recent.snapshot()
            return figures, None if figures else "no operation has been timed in this process yet", True
        from rfobs.traceview import read_trace_file

        assert self.trace_file is not None
        loaded = read_trace_file(self.trace_file)
        if not loaded.files:
            return {}, f"no trace file at {self.trace_file}", False
        since = time.time_ns() - round(self.trace_window * 1e9)
        recent = Baseline()
        recent.record_spans(span for span in loaded.spans if span.end_ns >= since)
        figures = recent.snapshot()
        if not figures:
            return {}, f"no span in {self.trace_file} ended in the last {_minutes(self.trace_window)}", True
        return figures, None, True


def _ratio(now: float, before: float) -> str:
    return f"{now / before:.1f}x" if before > 0 else "baseline 0"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min"
