"""`rfobs demo`'s output: the endpoints while it runs, and where to look once it has ended (#13)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

RUN = "import sys; from rfobs.demo import run_command; sys.exit(run_command(1.0, concurrency=2, seed=7))"


def run_demo(tmp_path: Path, **env: str) -> list[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("RFOBS_", "OTEL_"))}
    environment.update(RFOBS_METRICS__PROMETHEUS_PORT="0", **env)
    result = subprocess.run(
        [sys.executable, "-c", RUN],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env=environment,
        timeout=60,
    )
    assert result.stderr == ""
    return result.stdout.splitlines()


def test_the_demo_ends_with_the_trace_file_and_rfobs_traces_not_a_closed_metrics_url(tmp_path: Path) -> None:
    lines = run_demo(tmp_path, RFOBS_HEALTH__SERVER_ENABLED="true", RFOBS_HEALTH__PORT="0")
    trace_file = str(tmp_path.resolve() / ".rfobs" / "traces.jsonl")
    assert lines[0] == "rfobs demo: 2 research agents for 1s (environment: development)"
    assert re.fullmatch(r"  metrics:  http://127\.0\.0\.1:\d+/metrics \(while the demo runs\)", lines[1])
    assert re.fullmatch(r"  health:   http://127\.0\.0\.1:\d+/health \(while the demo runs\)", lines[2])
    assert lines[3] == f"  traces:   {trace_file} (file)"
    assert lines[4].startswith("  questions ")
    assert lines[5:] == [
        "done.",
        "Where to look:",
        f"  traces:   {trace_file}",
        "  rfobs traces --last 3        span trees of the newest traces",
        "  rfobs traces --errors        only traces with a failure",
        "  metrics:  /metrics closed with the demo; your agent serves it while it runs (rfobs.init())",
    ]
    assert Path(trace_file).stat().st_size > 0


def test_without_the_health_server_no_health_url_is_printed(tmp_path: Path) -> None:
    lines = run_demo(tmp_path)
    assert not any(line.startswith("  health:") for line in lines)
    assert "http://" not in "\n".join(lines[lines.index("Where to look:") :])
