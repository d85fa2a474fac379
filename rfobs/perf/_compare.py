"""`compare`: judge a benchmark or load-test result against a baseline result and flag regressions."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rfobs import _check
from rfobs.exceptions import ConfigError
from rfobs.perf._results import BenchmarkResult, LoadTestResult

__all__ = ["Comparison", "Delta", "compare", "mismatches"]


@dataclass(frozen=True)
class Delta:
    """One compared figure: its values, the relative change, and whether that change is a regression."""

    metric: str
    baseline: float
    current: float
    change: float
    """(current - baseline) / baseline; +inf when the baseline is 0 and the current value is not."""
    regressed: bool


@dataclass(frozen=True)
class Comparison:
    """The figures compared and the threshold used; `regressed` is true when any of them got worse."""

    threshold: float
    deltas: tuple[Delta, ...]

    @property
    def regressed(self) -> bool:
        """Whether any figure got worse by more than the threshold."""
        return any(delta.regressed for delta in self.deltas)

    def text(self) -> str:
        """An aligned table: metric, baseline, current, change, and REGRESSED where it applies."""
        width = max((len(delta.metric) for delta in self.deltas), default=6)
        lines = [f"{'metric'.ljust(width)}  {'baseline':>12}  {'current':>12}  {'change':>8}"]
        for delta in self.deltas:
            flag = "  REGRESSED" if delta.regressed else ""
            change = f"{delta.change:+.1%}" if math.isfinite(delta.change) else "new"
            lines.append(
                f"{delta.metric.ljust(width)}  {delta.baseline:>12.6g}  {delta.current:>12.6g}  {change:>8}{flag}"
            )
        verdict = "regression" if self.regressed else "no regression"
        lines.append(f"{verdict} (threshold {self.threshold:.0%})")
        return "\n".join(lines)


def mismatches(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Why two results' `to_dict()` forms measured different things: their kinds or names differ (empty if not).

    Comparing a benchmark of one function with one of another reports their difference as a regression;
    `compare` refuses that unless forced.
    """
    baseline, current = _document(baseline), _document(current)
    reasons: list[str] = []
    for key in ("kind", "name"):
        if baseline.get(key) != current.get(key):
            reasons.append(f"{key} {baseline.get(key)!r} vs {current.get(key)!r}")
    return reasons


def compare(
    baseline: Mapping[str, Any], current: Mapping[str, Any], threshold: float = 0.1, *, force: bool = False
) -> Comparison:
    """Compare two results (or their `to_dict()` forms): two runs of the same benchmark or load test.

    A regression is mean, p95 or p99 latency up by more than `threshold` (relative), throughput down by more
    than `threshold`, or the error rate up by more than `threshold` relative to the baseline's (and by at least
    0.1 percentage point, so noise around zero does not count).

    Args:
        baseline: The reference result.
        current: The result to judge.
        threshold: Allowed relative worsening (0.1 is 10%), >= 0.
        force: Compare results whose names or kinds differ (see `mismatches`) instead of refusing.

    Returns:
        The `Comparison`.

    Raises:
        ConfigError: `threshold` is negative or not finite, a result's kind is unknown, or the two results are of
            different kinds or names and `force` is false.
    """
    _check.number("compare", "threshold", threshold, ge=0, what="a finite number")
    baseline, current = _document(baseline), _document(current)
    kinds = (baseline.get("kind"), current.get("kind"))
    if any(kind not in ("benchmark", "load_test") for kind in kinds) or (kinds[0] != kinds[1] and not force):
        raise ConfigError(
            f"compare(): expected two results of the same kind ('benchmark' or 'load_test'), "
            f"got {kinds[0]!r} and {kinds[1]!r}"
        )
    reasons = mismatches(baseline, current)
    if reasons and not force:
        raise ConfigError(
            f"compare(): expected two runs of the same benchmark, got {'; '.join(reasons)}; "
            "pass force=True to compare them anyway"
        )
    deltas: list[Delta] = []
    for key in ("mean", "p95", "p99"):
        deltas.append(_delta(f"latency {key} (s)", baseline["latency_s"][key], current["latency_s"][key], threshold))
    before, after = _rate(baseline), _rate(current)
    deltas.append(_delta("throughput (/s)", before, after, threshold, higher_is_worse=False))
    before_rate, after_rate = _error_rate(baseline), _error_rate(current)
    error_delta = _delta("error rate", before_rate, after_rate, threshold)
    if error_delta.regressed and after_rate - before_rate < 0.001:
        error_delta = Delta(error_delta.metric, before_rate, after_rate, error_delta.change, False)
    deltas.append(error_delta)
    return Comparison(float(threshold), tuple(deltas))


def _document(result: Mapping[str, Any]) -> Mapping[str, Any]:
    # A result object is a Mapping too, but over the seed's report keys; comparing reads the `to_dict()` form.
    return result.to_dict() if isinstance(result, BenchmarkResult | LoadTestResult) else result


def _rate(result: Mapping[str, Any]) -> float:
    return float(result["ops_per_s"] if result["kind"] == "benchmark" else result["throughput_rps"])


def _error_rate(result: Mapping[str, Any]) -> float:
    if "error_rate" in result:
        return float(result["error_rate"])
    return float(result["errors"]) / max(int(result["iterations"]), 1)


def _delta(metric: str, before: float, after: float, threshold: float, *, higher_is_worse: bool = True) -> Delta:
    before, after = float(before), float(after)
    change = (after - before) / before if before else (0.0 if after == 0 else math.inf)
    worse = change if higher_is_worse else -change
    return Delta(metric, before, after, change, worse > threshold)
