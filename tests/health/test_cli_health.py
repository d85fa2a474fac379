"""`rfobs health`: the table, JSON, exit codes for probes, and `rfobs health baseline save`."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rfobs.cli import health_table, main
from rfobs.health import CheckResult, HealthReport, Status
from rfobs.health.baseline import Baseline
from tests.health.servers import closed_port
from tests.test_traceview import make_provider

CALM = "cpu_max_percent = 100\nmemory_max_percent = 100\ndisk_max_percent = 100\n"


def settings(health: str = "", dependencies: dict[str, str] | None = None) -> None:
    text = f"[default.health]\n{CALM}{health}"
    if dependencies:
        text += "[default.health.dependencies]\n" + "".join(f'{k} = "{v}"\n' for k, v in dependencies.items())
    Path("settings.toml").write_text(text, encoding="utf-8")


def normalised(text: str) -> str:
    """Timings vary from run to run; everything else is compared exactly."""
    return re.sub(r"\d+\.\d+ ms", "N ms", re.sub(r"\b\d+\.\d{3}s\b", "N.NNNs", text))


def test_table_is_fixed_width_without_colour() -> None:
    report = HealthReport(
        Status.UNHEALTHY,
        (
            CheckResult("cpu", Status.HEALTHY, "CPU 12.0% (limit 90%)", {"cpu_percent": 12.0}, 0.2031, False),
            CheckResult("database", Status.UNHEALTHY, "tcp://db:5432: refused\nretry later", {}, 0.0004, True),
            CheckResult("gpu", Status.SKIPPED, "", {}, 0.0, False),
            CheckResult("log_rotation", Status.DEGRADED, "app.log is 2.0 MiB (limit 1 MiB)", {}, 12.5, False),
        ),
        12.5061,
    )
    assert health_table(report) == (
        "CHECK         STATUS     CRITICAL  DURATION  MESSAGE\n"
        "cpu           healthy    no          0.203s  CPU 12.0% (limit 90%)\n"
        "database      unhealthy  yes         0.000s  tcp://db:5432: refused retry later\n"
        "gpu           skipped    no          0.000s\n"
        "log_rotation  degraded   no         12.500s  app.log is 2.0 MiB (limit 1 MiB)\n"
        "overall: unhealthy (ready: no; 4 checks in 12.506s)\n"
    )


def test_one_healthy_check(listener: int, capsys: pytest.CaptureFixture[str]) -> None:
    settings(dependencies={"db": f"tcp://127.0.0.1:{listener}"})
    assert main(["health", "--check", "db"]) == 0
    assert normalised(capsys.readouterr().out) == (
        "CHECK  STATUS   CRITICAL  DURATION  MESSAGE\n"
        f"db     healthy  no          N.NNNs  tcp://127.0.0.1:{listener}: connected in N ms\n"
        "overall: healthy (ready: yes; 1 check in N.NNNs)\n"
    )


def test_a_selected_check_that_fails_exits_1_even_when_not_critical(
    listener: int, capsys: pytest.CaptureFixture[str]
) -> None:
    settings(dependencies={"db": f"tcp://127.0.0.1:{listener}", "cache": f"tcp://127.0.0.1:{closed_port()}"})
    assert main(["health", "--check", "db", "--check", "cache"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines[1:3]] == [["db", "healthy", "no"], ["cache", "unhealthy", "no"]]
    assert lines[3].startswith("overall: unhealthy (ready: yes; 2 checks in ")


def test_exit_codes_of_the_full_report(listener: int, capsys: pytest.CaptureFixture[str]) -> None:
    settings()
    assert main(["health"]) == 0
    assert main(["health", "--strict"]) == 0
    assert capsys.readouterr().out.count("overall: healthy (ready: yes; 5 checks in ") == 2
    down = {"db": f"tcp://127.0.0.1:{listener}", "cache": f"tcp://127.0.0.1:{closed_port()}"}
    settings(dependencies=down)  # a non-critical dependency down: degraded
    assert main(["health"]) == 0
    assert main(["health", "--strict"]) == 2
    assert capsys.readouterr().out.count("overall: degraded (ready: yes; 7 checks in ") == 2
    settings('critical_dependencies = ["cache"]\n', dependencies=down)
    assert main(["health"]) == 1
    assert main(["health", "--strict"]) == 1
    assert capsys.readouterr().out.count("overall: unhealthy (ready: no; 7 checks in ") == 2


def test_json_report(listener: int, capsys: pytest.CaptureFixture[str]) -> None:
    settings('critical_dependencies = ["db"]\n', dependencies={"db": f"tcp://app:s3cr3t@127.0.0.1:{listener}"})
    assert main(["health", "--json"]) == 0
    out = capsys.readouterr().out
    assert "s3cr3t" not in out
    report = json.loads(out)
    assert set(report) == {"status", "ready", "duration_seconds", "timestamp", "checks"}
    assert (report["status"], report["ready"]) == ("healthy", True)
    assert [c["name"] for c in report["checks"]] == ["cpu", "memory", "disk", "process", "db", "performance"]
    (db,) = [c for c in report["checks"] if c["name"] == "db"]
    assert set(db) == {"name", "status", "message", "values", "duration_seconds", "critical"}
    assert (db["status"], db["critical"]) == ("healthy", True)
    assert db["message"].startswith(f"tcp://app:***@127.0.0.1:{listener}: connected in ")


def test_unknown_check_and_bad_settings_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    settings()
    assert main(["health", "--check", "dbb"]) == 1
    assert capsys.readouterr().err == (
        "rfobs health: no check named 'dbb'; the checks are: cpu, memory, disk, process, performance\n"
    )
    Path("settings.toml").write_text("[default.health]\nport = 99999\n", encoding="utf-8")
    assert main(["health"]) == 1
    assert capsys.readouterr().err == (
        "1 invalid setting:\n"
        "  - health.port = 99999 (from settings.toml [default]): expected an integer from 0 to 65535\n"
    )


def test_works_as_a_probe_command(listener: int, tmp_path: Path) -> None:
    settings('critical_dependencies = ["db"]\n', dependencies={"db": f"tcp://127.0.0.1:{closed_port()}"})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RFOBS_", "OTEL_"))}
    probe = [sys.executable, "-m", "rfobs.cli", "health", "--check", "db"]
    failed = subprocess.run(probe, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert (failed.returncode, failed.stderr) == (1, "")
    env["RFOBS_HEALTH__DEPENDENCIES"] = f"db=tcp://127.0.0.1:{listener}"
    passed = subprocess.run(probe, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert (passed.returncode, passed.stderr) == (0, "")


# -- rfobs health baseline save -----------------------------------------------------------------------------------


def test_baseline_save_from_recorded_timings(capsys: pytest.CaptureFixture[str]) -> None:
    Path("timings.json").write_text(
        json.dumps({"researcher.plan": [0.25] * 30, "arxiv.search": [0.125] * 4}), encoding="utf-8"
    )
    Path("settings.toml").write_text('[default.health]\nbaseline_path = "perf/base.json"\n', encoding="utf-8")
    assert main(["health", "baseline", "save", "--from", "timings.json"]) == 0
    assert capsys.readouterr().out == (
        "OPERATION          COUNT        P50        P95\n"
        "arxiv.search           4    0.1250s    0.1250s\n"
        "researcher.plan       30    0.2500s    0.2500s\n"
        "saved the baseline of 2 operations to perf/base.json\n"
    )
    assert Baseline.load("perf/base.json").snapshot() == {
        "arxiv.search": {"p50": 0.125, "p95": 0.125, "count": 4},
        "researcher.plan": {"p50": 0.25, "p95": 0.25, "count": 30},
    }
    # A saved baseline is accepted as a source too (copying it to the configured path).
    Path("settings.toml").write_text('[default.health]\nbaseline_path = "copy.json"\n', encoding="utf-8")
    assert main(["health", "baseline", "save", "--from", "perf/base.json"]) == 0
    assert Baseline.load("copy.json").snapshot() == Baseline.load("perf/base.json").snapshot()


def test_baseline_save_from_the_trace_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    provider = make_provider(tmp_path / ".rfobs" / "traces.jsonl")
    tracer = provider.get_tracer("tests")
    for index in range(3):
        tracer.start_span("researcher.plan", start_time=index * 10**9).end(end_time=index * 10**9 + 500_000_000)
    tracer.start_span("arxiv.search", start_time=0).end(end_time=20_000_000)
    provider.shutdown()
    assert main(["health", "baseline", "save", "--from-traces"]) == 0  # tracing.file_path by default
    assert capsys.readouterr().out.splitlines() == [
        "OPERATION          COUNT        P50        P95",
        "arxiv.search           1    0.0200s    0.0200s",
        "researcher.plan        3    0.5000s    0.5000s",
        "saved the baseline of 2 operations to .rfobs/baseline.json",
    ]
    assert Baseline.load(".rfobs/baseline.json").snapshot()["researcher.plan"]["count"] == 3


@pytest.mark.parametrize(
    ("arguments", "content", "message"),
    [
        (["--from", "missing.json"], None, "rfobs health baseline save: [Errno 2] No such file or directory"),
        (["--from", "t.json"], "{not json", "rfobs health baseline save: t.json is not JSON (Expecting"),
        (["--from", "t.json"], '{"plan": [0.1, -1]}', "rfobs health baseline save: t.json: 'plan' is not a list"),
        (["--from", "t.json"], "[0.1, 0.2]", "rfobs health baseline save: t.json: expected an object mapping"),
        (["--from", "t.json"], "{}", "rfobs health baseline save: no timings in t.json"),
        (["--from-traces", "t.json"], "", "rfobs health baseline save: no timings in t.json"),
    ],
)
def test_baseline_save_refuses_bad_sources(
    arguments: list[str], content: str | None, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if content is not None:
        Path("t.json").write_text(content, encoding="utf-8")
    assert main(["health", "baseline", "save", *arguments]) == 1
    assert capsys.readouterr().err.startswith(message)
    assert not Path(".rfobs/baseline.json").exists()


# -- what `rfobs health` finds, and the performance check over the agent's trace file ------------------------------

MINUTE_NS = 60 * 10**9


def write_spans(path: Path, spans: list[tuple[str, float, int]]) -> None:
    """Append spans `(name, seconds, ended_ns_ago)` to the trace file at `path`, as the agent's exporter does."""
    provider = make_provider(path)
    tracer = provider.get_tracer("tests")
    now = time.time_ns()
    for name, seconds, ago in spans:
        end = now - ago
        tracer.start_span(name, start_time=end - round(seconds * 1e9)).end(end_time=end)
    provider.shutdown()


def performance_message(capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["health", "--json", "--check", "performance"]) == 0
    (check,) = json.loads(capsys.readouterr().out)["checks"]
    return check["message"]


def test_the_baseline_hint_works_as_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings()
    assert performance_message(capsys) == (
        "no baseline at .rfobs/baseline.json yet, and no trace file at .rfobs/traces.jsonl to save one from "
        "with `rfobs health baseline save --from-traces`"
    )
    write_spans(tmp_path / ".rfobs" / "traces.jsonl", [("researcher.plan", 0.25, MINUTE_NS)] * 3)
    message = performance_message(capsys)
    assert (
        message == "no baseline at .rfobs/baseline.json yet; save one with `rfobs health baseline save --from-traces`"
    )
    printed = shlex.split(message.split("`")[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RFOBS_", "OTEL_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # where `rfobs` is installed
    saved = subprocess.run(printed, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert (saved.returncode, saved.stderr) == (0, "")
    assert saved.stdout.endswith("saved the baseline of 1 operations to .rfobs/baseline.json\n")
    assert Baseline.load(".rfobs/baseline.json").snapshot() == {
        "researcher.plan": {"p50": 0.25, "p95": 0.25, "count": 3}
    }


def test_baseline_save_reads_the_trace_file_by_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_spans(tmp_path / ".rfobs" / "traces.jsonl", [("arxiv.search", 0.5, MINUTE_NS)])
    assert main(["health", "baseline", "save"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "saved the baseline of 1 operations to .rfobs/baseline.json"


def test_a_slowed_down_agent_shows_degraded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings()
    Path("timings.json").write_text(json.dumps({"researcher.plan": [0.1] * 30}), encoding="utf-8")
    assert main(["health", "baseline", "save", "--from", "timings.json"]) == 0
    traces = tmp_path / ".rfobs" / "traces.jsonl"
    # Fast spans older than the 15 minutes read (health.recent_minutes), then slow ones in the last minutes.
    write_spans(traces, [("researcher.plan", 0.1, 20 * MINUTE_NS)] * 40 + [("researcher.plan", 0.5, MINUTE_NS)] * 25)
    capsys.readouterr()
    assert main(["health", "--check", "performance", "--strict"]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split(maxsplit=4)[:3] == ["performance", "degraded", "no"]
    assert lines[1].endswith("slower than 1.5x the baseline p95: researcher.plan p95 0.500s vs 0.100s (5.0x)")
    assert main(["health", "--strict"]) == 2
    assert main(["health"]) == 0
    assert "overall: degraded (ready: yes; 5 checks in " in capsys.readouterr().out


@pytest.mark.parametrize(
    ("spans", "message"),
    [
        (None, "nothing to compare: no trace file at .rfobs/traces.jsonl"),
        (
            [("researcher.plan", 0.5, 20 * MINUTE_NS)],
            "nothing to compare: no span in .rfobs/traces.jsonl ended in the last 15 min",
        ),
        (
            [("researcher.plan", 0.5, MINUTE_NS)] * 5,
            "nothing to compare: no operation has 20 samples both in the last 15 min and in the baseline",
        ),
    ],
)
def test_nothing_to_compare_is_said_plainly(
    tmp_path: Path, spans: list[tuple[str, float, int]] | None, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings()
    Path("timings.json").write_text(json.dumps({"researcher.plan": [0.1] * 30}), encoding="utf-8")
    assert main(["health", "baseline", "save", "--from", "timings.json"]) == 0
    if spans is not None:
        write_spans(tmp_path / ".rfobs" / "traces.jsonl", spans)
    capsys.readouterr()
    assert performance_message(capsys) == message


def test_the_table_says_what_was_not_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings()
    Path("logs").mkdir()
    assert main(["health"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:7]] == [
        "cpu",
        "memory",
        "disk",
        "process",
        "log_rotation",
        "performance",
    ]
    assert lines[7].startswith("overall: healthy (ready: yes; 6 checks in ")
    assert lines[8:] == [
        f"not checked: git (no git work tree at {tmp_path} or above; set health.git_path)",
        f"not checked: env_files (no {tmp_path / '.env'}; set health.env_files)",
    ]
