"""A process running rfobs.init() and a decorated workload is scraped by a real Prometheus."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.servers import free_port, prometheus, promtool_check_metrics, wait_until

CALLS = 7
FAILURES = 2

WORKLOAD = textwrap.dedent(
    f"""
    import sys
    import rfobs

    rfobs.init(metrics__prometheus_port=int(sys.argv[1]), logging__enabled=False, tracing__exporter="none")

    @rfobs.task("researcher", "search")
    def search(i: int) -> int:
        if i < {FAILURES}:
            raise ConnectionError("backend down")
        return i

    for i in range({CALLS}):
        try:
            search(i)
        except ConnectionError:
            pass
    print("ready", flush=True)
    sys.stdin.read()  # serve /metrics until the test closes stdin
    """
)


@contextmanager
def workload(tmp_path: Path, port: int) -> Generator[str, None, None]:
    script = tmp_path / "workload.py"
    script.write_text(WORKLOAD, encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, str(script), str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        yield f"127.0.0.1:{port}"
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=15)
        if process.stdout is not None:
            process.stdout.close()


def scrape(target: str) -> str:
    with urllib.request.urlopen(f"http://{target}/metrics", timeout=5) as response:
        return response.read().decode()


def test_prometheus_scrapes_the_agent_and_promql_returns_the_counts(tmp_path: Path) -> None:
    with workload(tmp_path, free_port()) as target, prometheus([target]) as server:
        server.wait_for_value(
            'sum(researchflow_agents_agent_tasks_total{job="rfobs-e2e",agent="researcher",status="success"})',
            CALLS - FAILURES,
        )
        server.wait_for_value(
            'sum(researchflow_agents_agent_tasks_total{job="rfobs-e2e",agent="researcher",status="error"})', FAILURES
        )
        server.wait_for_value(
            'sum(researchflow_agents_agent_task_duration_seconds_count{job="rfobs-e2e",task="search"})', CALLS
        )


def test_promtool_accepts_the_metrics_exposition(tmp_path: Path) -> None:
    with workload(tmp_path, free_port()) as target:
        text = wait_until(lambda: scrape(target), timeout=10, what="/metrics answers")
    assert "researchflow_agents_agent_tasks_total{" in text
    result = promtool_check_metrics(text)
    assert result.returncode == 0, result.stdout + result.stderr
