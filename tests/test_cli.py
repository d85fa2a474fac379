from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import rfobs
from rfobs.cli import main
from rfobs.traceview import build_traces, load_spans
from tests.test_traceview import NEW_TRACE_TEXT, OLD_TRACE_TEXT, make_provider, record_two_traces


def test_traces_command_renders_the_file_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "traces.jsonl"
    provider = make_provider(path)
    record_two_traces(provider)
    provider.shutdown()
    assert main(["traces", "--file", str(path), "--width", "100"]) == 0
    assert capsys.readouterr().out == f"{NEW_TRACE_TEXT}\n\n{OLD_TRACE_TEXT}\n"
    assert main(["traces", "--file", str(path), "--width", "100", "--errors"]) == 0
    assert capsys.readouterr().out == f"{NEW_TRACE_TEXT}\n"
    assert main(["traces", "--file", str(path), "--trace-id", "xyz"]) == 2
    assert (
        capsys.readouterr().err
        == "rfobs traces: trace id 'xyz' is not 8 to 32 hex characters; copy it from a trace header\n"
    )


def test_traces_command_fails_when_the_trace_id_matches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "traces.jsonl"
    provider = make_provider(path)
    record_two_traces(provider)
    provider.shutdown()
    assert main(["traces", "--file", str(path), "--trace-id", "deadbeef"]) == 1
    assert capsys.readouterr() == ("", f"rfobs traces: no trace matches --trace-id deadbeef in {path}\n")
    path.write_text("", encoding="utf-8")
    assert main(["traces", "--file", str(path), "--trace-id", "deadbeef"]) == 1


def test_traces_command_fails_on_a_missing_file_naming_who_named_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["traces", "--file", "nowhere.jsonl"]) == 1
    assert capsys.readouterr() == ("", "rfobs traces: nowhere.jsonl does not exist (named by --file)\n")
    Path("nowhere.jsonl").write_text("", encoding="utf-8")
    assert main(["traces", "--file", "nowhere.jsonl"]) == 0  # empty is not an error: nothing recorded yet
    assert capsys.readouterr() == ("no traces in nowhere.jsonl\n", "")


def test_traces_command_reads_the_configured_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RFOBS_TRACING__FILE_PATH", "elsewhere.jsonl")
    assert main(["traces"]) == 1
    assert capsys.readouterr().err == (
        "rfobs traces: elsewhere.jsonl does not exist "
        "(named by the tracing.file_path setting, from env RFOBS_TRACING__FILE_PATH)\n"
    )
    Path("elsewhere.jsonl").write_text("", encoding="utf-8")
    assert main(["traces"]) == 0
    assert capsys.readouterr().out == "no traces in elsewhere.jsonl\n"


def test_config_show_json_is_typed_and_redacted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RFOBS_OTLP__HEADERS", "authorization=Bearer s3cr3t-token-value")
    monkeypatch.setenv("RFOBS_HEALTH__DEPENDENCIES", "db=postgresql://u:pw-s3cr3t@db:5432")
    assert main(["config", "show", "--json"]) == 0
    out = capsys.readouterr().out
    values = {row["key"]: (row["value"], row["source"]) for row in json.loads(out)}
    assert values["env"] == ("development", "default")
    assert values["metrics.prometheus_port"] == (9464, "default")
    assert values["tracing.sampler_ratio"] == (1.0, "default")
    assert values["tracing.enabled"] == (True, "default")
    assert values["otlp.endpoint"] == (None, "default")
    assert values["health.disk_paths"] == (["."], "default")
    assert values["service.resource_attributes"] == ({}, "default")
    assert values["otlp.headers"] == ({"authorization": "***"}, "env RFOBS_OTLP__HEADERS")
    assert values["health.dependencies"] == ({"db": "postgresql://u:***@db:5432"}, "env RFOBS_HEALTH__DEPENDENCIES")
    assert "s3cr3t" not in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"rfobs {rfobs.__version__}\n"


def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RFOBS_", "OTEL_"))}
    reader, writer = os.pipe()
    os.close(reader)  # like `| head -1` having exited: every write fails with EPIPE
    try:
        result = subprocess.run(
            [sys.executable, "-m", "rfobs.cli", "config", "show", "--json"],
            cwd=tmp_path,
            env=env,
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(writer)
    assert (result.returncode, result.stderr) == (1, "")


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_demo_runs_the_agent_and_leaves_traces(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RFOBS_", "OTEL_"))}
    env["RFOBS_METRICS__PROMETHEUS_PORT"] = "0"
    result = subprocess.run(
        [sys.executable, "-m", "rfobs.cli", "demo", "--duration", "3", "--seed", "7"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "rfobs demo: 3 research agents for 3s (environment: development)"
    assert lines[1].startswith("  metrics:  http://127.0.0.1:") and lines[1].endswith("/metrics (while the demo runs)")
    assert lines[2] == f"  traces:   {tmp_path / '.rfobs' / 'traces.jsonl'} (file)"
    assert "done." in lines
    assert "  rfobs traces --last 3        span trees of the newest traces" in lines
    traces = build_traces(load_spans(tmp_path / ".rfobs" / "traces.jsonl"))
    assert len(traces) >= 5
    roots = {node.span.name for trace in traces for node in trace.roots}
    assert roots == {"invoke_agent researcher"}
    spans = [span for trace in traces for span in trace.spans]
    names = {span.name for span in spans}
    assert {"researcher.plan", "arxiv.search", "semantic_scholar.search", "execute_tool read_paper"} <= names
    assert "chat gpt-4o-mini" in names
    assert any(trace.error_count for trace in traces)  # the demo injects failures
    events = {event.name for span in spans for event in span.events}
    assert {"retry", "circuit_breaker.transition"} <= events  # the outage opens the breaker
    assert any("gen_ai.usage.output_tokens" in span.attributes for span in spans)
    assert not result.stderr
