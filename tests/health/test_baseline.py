from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import rfobs
from rfobs._otlp_json import SpanRecord
from rfobs.exceptions import ConfigError
from rfobs.health import HealthChecker, Status
from rfobs.health.baseline import Baseline, PerformanceCheck, default_recent
from rfobs.testing import Capture

NEEDS = "needs 'samples' or numeric 'p50', 'p95' and 'count'"


def record(baseline: Baseline, operation: str, seconds: list[float]) -> None:
    for value in seconds:
        baseline.record(operation, value)


def test_percentiles_interpolate_between_samples() -> None:
    baseline = Baseline()
    record(baseline, "plan", [n / 1000 for n in range(100, 0, -1)])  # 1..100 ms, out of order
    record(baseline, "search", [0.25])
    snapshot = baseline.snapshot()
    assert list(snapshot) == ["plan", "search"]
    assert snapshot["plan"] == {"p50": pytest.approx(0.0505), "p95": pytest.approx(0.09505), "count": 100}
    assert snapshot["search"] == {"p50": 0.25, "p95": 0.25, "count": 1}


def test_window_keeps_only_the_most_recent_samples() -> None:
    baseline = Baseline(window=10)
    record(baseline, "plan", [1.0] * 50 + [0.1] * 10)
    assert baseline.snapshot() == {"plan": {"p50": 0.1, "p95": 0.1, "count": 10}}


def test_invalid_samples_are_ignored_and_operations_are_bounded() -> None:
    baseline = Baseline(max_operations=2)
    record(baseline, "a", [-1.0, math.nan, math.inf, 0.0, 0.5])
    record(baseline, "b", [0.2])
    record(baseline, "c", [0.3])  # a third operation is dropped
    assert baseline.snapshot() == {
        "a": {"p50": 0.25, "p95": 0.475, "count": 2},
        "b": {"p50": 0.2, "p95": 0.2, "count": 1},
    }


def test_concurrent_recording_loses_nothing() -> None:
    baseline = Baseline(window=100_000)

    def work() -> None:
        record(baseline, "tool", [0.001] * 5000)
        record(baseline, "llm", [0.002] * 5000)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {op: figures["count"] for op, figures in baseline.snapshot().items()} == {"llm": 40_000, "tool": 40_000}


def test_save_and_load_round_trip_atomically(tmp_path: Path) -> None:
    path = tmp_path / "state" / "baseline.json"  # the directory is created
    baseline = Baseline(window=50)
    record(baseline, "plan", [0.01, 0.02, 0.03])
    baseline.save(path)
    with path.open() as old:
        record(baseline, "plan", [0.04])
        baseline.save(path)
        assert len(json.load(old)["operations"]["plan"]["samples"]) == 3  # replaced by rename, not rewritten in place
    assert [p.name for p in path.parent.iterdir()] == ["baseline.json"]  # no temporary file left behind
    document = json.loads(path.read_text())
    assert (document["version"], document["window"]) == (1, 50)
    assert document["operations"]["plan"]["samples"] == [0.01, 0.02, 0.03, 0.04]
    loaded = Baseline.load(path)
    assert loaded.window == 50
    assert loaded.snapshot() == baseline.snapshot()
    record(loaded, "plan", [0.05])  # a loaded baseline keeps growing from its samples
    assert loaded.snapshot()["plan"]["count"] == 5


def test_load_accepts_hand_written_figures(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"operations": {"plan": {"p50": 0.1, "p95": 0.2, "count": 500}}}))
    assert Baseline.load(path).snapshot() == {"plan": {"p50": 0.1, "p95": 0.2, "count": 500}}


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("[]", "expected a JSON object with an 'operations' object"),
        ('{"operations": {"plan": {"p95": "slow"}}}', f"operation 'plan' {NEEDS}"),
        ('{"operations": {"plan": {"samples": [-1]}}}', f"operation 'plan' {NEEDS}"),
    ],
)  # fmt: skip
def test_load_rejects_files_that_are_not_baselines(tmp_path: Path, content: str, error: str) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(content)
    with pytest.raises(ValueError) as caught:
        Baseline.load(path)
    assert str(caught.value) == f"baseline file {str(path)!r}: {error}"


def test_record_spans_uses_names_and_durations() -> None:
    spans = [SpanRecord("t", f"s{n}", None, "researcher.plan", 0, n * 1_000_000) for n in (10, 20, 30)]
    baseline = Baseline()
    baseline.record_spans(spans)
    assert baseline.snapshot() == {"researcher.plan": {"p50": 0.02, "p95": pytest.approx(0.029), "count": 3}}


def test_default_recent_is_one_process_wide_baseline(capture: Capture, tmp_path: Path) -> None:
    @rfobs.task("shared", "step")
    def step() -> None:
        pass

    PerformanceCheck(tmp_path / "baseline.json", default_recent())  # a performance check turns recording on
    default_recent().clear()
    seen: list[Baseline] = []

    def work() -> None:
        step()
        seen.append(default_recent())

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(5)
    step()
    # The baseline another thread sees, and the one the SDK's hook recorded both calls into, is this one.
    assert isinstance(default_recent(), Baseline)
    assert len(seen) == 1 and seen[0] is default_recent()
    assert default_recent().snapshot()["shared.step"]["count"] == 2


# -- PerformanceCheck ---------------------------------------------------------------------------------------------


async def test_no_baseline_file_yet_is_healthy(tmp_path: Path) -> None:
    result = await PerformanceCheck(str(tmp_path / "baseline.json"), Baseline()).run()
    assert result.status is Status.HEALTHY
    assert (
        result.message
        == f"no baseline at {tmp_path / 'baseline.json'} yet; save one with `rfobs health baseline save --from-traces`"
    )


async def test_slow_recent_timings_against_a_recorded_baseline_are_degraded(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    before = Baseline()
    record(before, "researcher.plan", [0.010] * 30)
    record(before, "arxiv.search", [0.100] * 30)
    before.save(path)
    recent = Baseline()
    check = PerformanceCheck(path, recent, factor=1.5, min_samples=20)
    record(recent, "researcher.plan", [0.012] * 30)
    record(recent, "arxiv.search", [0.110] * 30)
    result = await check.run()
    assert (result.status, result.message) == (Status.HEALTHY, "2 operation(s) within 1.5x the baseline p95")
    assert result.values == {"operations_compared": 2, "operations_slower": 0, "worst_ratio": 1.2}
    record(recent, "researcher.plan", [0.050] * 30)  # injected slow timings push the recent p95 up
    result = await check.run()
    assert result.status is Status.DEGRADED
    assert result.message == "slower than 1.5x the baseline p95: researcher.plan p95 0.050s vs 0.010s (5.0x)"
    assert result.values == {"operations_compared": 2, "operations_slower": 1, "worst_ratio": 5.0}


async def test_operations_with_too_few_samples_are_not_compared(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    before = Baseline()
    record(before, "plan", [0.01] * 5)
    before.save(path)
    recent = Baseline()
    record(recent, "plan", [1.0] * 50)
    record(recent, "unknown", [1.0] * 50)  # not in the baseline at all
    result = await PerformanceCheck(path, recent).run()
    assert (result.status, result.message) == (
        Status.HEALTHY,
        "nothing to compare: no operation has 20 samples both recently and in the baseline",
    )
    assert result.values["operations_compared"] == 0


async def test_nothing_timed_in_this_process_yet_is_said_plainly(tmp_path: Path) -> None:
    before = Baseline()
    record(before, "plan", [0.01] * 30)
    before.save(tmp_path / "baseline.json")
    result = await PerformanceCheck(tmp_path / "baseline.json", Baseline()).run()
    assert (result.status, result.message) == (
        Status.HEALTHY,
        "nothing to compare: no operation has been timed in this process yet",
    )


async def test_a_new_baseline_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    recent = Baseline()
    record(recent, "plan", [0.05] * 20)
    check = PerformanceCheck(path, recent, min_samples=20)
    fast = Baseline()
    record(fast, "plan", [0.01] * 20)
    fast.save(path)
    assert (await check.run()).status is Status.DEGRADED
    slow = Baseline()
    record(slow, "plan", [0.04] * 25)
    slow.save(path)
    assert (await check.run()).status is Status.HEALTHY


async def test_unreadable_baseline_is_unhealthy_through_the_checker(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text("{not json")
    checker = HealthChecker()
    checker.register(PerformanceCheck(path, Baseline()))
    report = await checker.check_all()
    (result,) = report.checks
    assert result.status is Status.UNHEALTHY
    assert result.message.startswith("cannot read the baseline: Expecting property name enclosed in double quotes")
    assert report.status is Status.DEGRADED  # not critical


PATH = "expected a non-empty path (str or pathlib.Path)"
BAD_ARGUMENTS: list[tuple[Callable[[], object], str]] = [
    (lambda: Baseline(window=0), "Baseline(window=0): expected an integer >= 1"),
    (lambda: Baseline(max_operations=True), "Baseline(max_operations=True): expected an integer >= 1"),
    (
        lambda: PerformanceCheck("b.json", object()),  # pyright: ignore[reportArgumentType]
        "PerformanceCheck(recent=<object>): expected a Baseline, e.g. default_recent()",
    ),
    (
        lambda: PerformanceCheck("b.json", Baseline(), factor=0.5),
        "PerformanceCheck(factor=0.5): expected a number >= 1",
    ),
    (
        lambda: PerformanceCheck("b", Baseline(), min_samples=0),
        "PerformanceCheck(min_samples=0): expected an integer >= 1",
    ),
    (lambda: PerformanceCheck("", Baseline()), f"PerformanceCheck(baseline_path=''): {PATH}"),
    (
        lambda: PerformanceCheck("b.json"),
        "PerformanceCheck: got neither of recent and trace_file; expected exactly one: recent=default_recent() "
        "for this process's own timings, or trace_file='.rfobs/traces.jsonl' for an agent's trace file",
    ),
    (
        lambda: PerformanceCheck("b.json", Baseline(), trace_file="t.jsonl"),
        "PerformanceCheck: got both of recent and trace_file; expected exactly one: recent=default_recent() "
        "for this process's own timings, or trace_file='.rfobs/traces.jsonl' for an agent's trace file",
    ),
    (
        lambda: PerformanceCheck("b.json", trace_file="t.jsonl", trace_window=0),
        "PerformanceCheck(trace_window=0): expected a number > 0",
    ),
]


@pytest.mark.parametrize(("make", "message"), BAD_ARGUMENTS)
def test_bad_constructor_arguments_raise_config_error(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make()
    assert re.sub(r"<object object at 0x[0-9a-f]+>", "<object>", str(caught.value)) == message


async def test_sdk_task_timings_feed_the_default_recent_baseline(capture: Capture, tmp_path: Path) -> None:
    @rfobs.task("hooktest", "plan")
    def plan() -> int:
        return 1

    check = PerformanceCheck(tmp_path / "baseline.json", default_recent())
    default_recent().clear()
    for _ in range(25):
        plan()
    snapshot = default_recent().snapshot()
    assert snapshot["hooktest.plan"]["count"] == 25
    saved = Baseline()
    for _ in range(25):
        saved.record("hooktest.plan", snapshot["hooktest.plan"]["p95"] / 100)
    saved.save(tmp_path / "baseline.json")
    result = await check.run()
    assert result.status is Status.DEGRADED
    assert result.message.startswith("slower than 1.5x the baseline p95: hooktest.plan p95 ")


def test_without_a_performance_check_decorated_calls_record_no_timings(capture: Capture) -> None:
    @rfobs.task("hooktest", "quiet")
    def quiet() -> int:
        return 1

    default_recent().clear()
    quiet()
    assert "hooktest.quiet" not in default_recent().snapshot()
