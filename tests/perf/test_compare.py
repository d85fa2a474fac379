import copy
import math
from typing import Any

import pytest

from rfobs.exceptions import ConfigError
from rfobs.perf._compare import compare, mismatches

LOAD: dict[str, Any] = {
    "kind": "load_test",
    "name": "api",
    "requests": 1000,
    "errors": 10,
    "error_rate": 0.01,
    "throughput_rps": 500.0,
    "latency_s": {"min": 0.001, "mean": 0.01, "p50": 0.009, "p90": 0.015, "p95": 0.02, "p99": 0.03, "max": 0.05},
}


def test_unchanged_run_passes() -> None:
    comparison = compare(LOAD, copy.deepcopy(LOAD))
    assert not comparison.regressed
    assert [delta.change for delta in comparison.deltas] == [0.0] * 5
    assert comparison.text().splitlines()[-1] == "no regression (threshold 10%)"


def test_thirty_percent_slower_p95_is_flagged() -> None:
    current = copy.deepcopy(LOAD)
    current["latency_s"]["p95"] = 0.026
    comparison = compare(LOAD, current)
    assert comparison.regressed
    assert [delta.metric for delta in comparison.deltas if delta.regressed] == ["latency p95 (s)"]
    assert math.isclose(comparison.deltas[1].change, 0.3)
    assert "REGRESSED" in comparison.text().splitlines()[2]


def test_thirty_percent_less_throughput_and_more_errors_are_flagged() -> None:
    current = copy.deepcopy(LOAD)
    current["throughput_rps"] = 350.0
    current["error_rate"] = 0.013
    flagged = [delta.metric for delta in compare(LOAD, current).deltas if delta.regressed]
    assert flagged == ["throughput (/s)", "error rate"]


def test_small_change_within_threshold_passes() -> None:
    current = copy.deepcopy(LOAD)
    current["latency_s"]["p99"] = 0.032
    assert not compare(LOAD, current, threshold=0.1).regressed


def test_benchmark_results_compare_on_ops_per_second() -> None:
    base = {"kind": "benchmark", "iterations": 100, "errors": 0, "ops_per_s": 1000.0, "latency_s": LOAD["latency_s"]}
    slower = {**base, "ops_per_s": 700.0}
    assert compare(base, slower).regressed
    assert not compare(base, dict(base)).regressed


def test_bad_threshold_or_mixed_kinds_raise() -> None:
    with pytest.raises(ConfigError, match=r"compare\(threshold=-0.1\): expected a finite number >= 0"):
        compare(LOAD, LOAD, threshold=-0.1)
    with pytest.raises(ConfigError, match="same kind"):
        compare(LOAD, {"kind": "benchmark"})


def test_results_of_different_benchmarks_are_refused_unless_forced() -> None:
    other = {**copy.deepcopy(LOAD), "name": "other", "throughput_rps": 5.0}

    with pytest.raises(ConfigError, match=r"compare\(\): expected two runs of the same benchmark, got name 'api' "
                       r"vs 'other'; pass force=True to compare them anyway"):  # fmt: skip
        compare(LOAD, other)
    assert mismatches(LOAD, other) == ["name 'api' vs 'other'"]
    assert [delta.metric for delta in compare(LOAD, other, force=True).deltas if delta.regressed] == ["throughput (/s)"]


def test_result_objects_compare_like_their_dicts() -> None:
    from rfobs.perf._results import LoadTestResult

    result = LoadTestResult.from_dict({**LOAD, "config": {}, "errors_by_type": {}, "timeouts": 0, "duration_s": 2.0})
    assert compare(result, result.to_dict()).deltas == compare(result.to_dict(), result.to_dict()).deltas
