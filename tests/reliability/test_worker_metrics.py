"""Every worker's metrics reach a real Prometheus through the file_sd targets rfobs writes, and add up."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.e2e.servers import prometheus, wait_until
from tests.reliability._workers import PRELUDE

WORKERS = 4
JOBS_PER_WORKER = 25

pytestmark = pytest.mark.e2e

SCRIPT = f"""
def work(barrier):
    for i in range({JOBS_PER_WORKER}):
        job(i)
    barrier.wait(60)  # every worker keeps its /metrics up until the test has seen the sums

if __name__ == "__main__":
    rfobs.init(**SETTINGS)
    context = multiprocessing.get_context(sys.argv[2])
    barrier = context.Barrier({WORKERS} + 1)
    workers = [context.Process(target=worker_main, args=(barrier,)) for _ in range({WORKERS})]
    for worker in workers:
        worker.start()
    print("started", flush=True)
    sys.stdin.read()  # until the test is done
    barrier.wait(60)
    for worker in workers:
        worker.join(60)
    print(json.dumps([worker.exitcode for worker in workers]), flush=True)
    rfobs.shutdown()
"""

WORKER_MAIN = """
import multiprocessing
from rfobs import sdk

def worker_main(barrier):
    if sdk.active() is None:  # a spawned worker starts with nothing; a forked one inherits the parent's
        init_worker()
    work(barrier)
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_the_task_counts_of_four_workers_add_up_in_prometheus(tmp_path: Path, method: str) -> None:
    script = tmp_path / "script.py"
    script.write_text(PRELUDE + textwrap.dedent(WORKER_MAIN) + textwrap.dedent(SCRIPT), encoding="utf-8")
    targets = tmp_path / "targets"
    process = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), method],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        assert process.stdout.readline().strip() == "started"
        # The parent and each worker announce their own endpoint.
        wait_until(lambda: len(list(targets.glob("rfobs-*.json"))) == WORKERS + 1, 30, what="5 target files")
        with prometheus([], file_sd=[str(targets / "*.json")]) as server:
            server.wait_for_value('count(up{job="rfobs-e2e"} == 1)', WORKERS + 1, timeout=60)
            server.wait_for_value(
                'sum(researchflow_agents_agent_tasks_total{job="rfobs-e2e",agent="worker",task="job"})',
                WORKERS * JOBS_PER_WORKER,
                timeout=60,
            )
            # Each worker reports only its own jobs: none counts another's (or the parent's) twice.
            per_target = server.query(
                'researchflow_agents_agent_tasks_total{job="rfobs-e2e",agent="worker",status="success"}'
            )
            assert sorted(float(row["value"][1]) for row in per_target) == [float(JOBS_PER_WORKER)] * WORKERS
        stdout, stderr = process.communicate(timeout=90)  # closes stdin: the script lets its workers go
        assert process.returncode == 0, stderr
        assert json.loads(stdout) == [0] * WORKERS
        assert list(targets.glob("rfobs-*.json")) == []  # each process withdrew its target at exit
    finally:
        process.kill()
        process.communicate(timeout=10)
