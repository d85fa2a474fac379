"""Fork and worker process models: no hang, every worker's spans delivered once, endpoints never shared."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.reliability._workers import run_script


def test_a_forked_child_runs_and_its_spans_arrive_after_flush(tmp_path: Path) -> None:
    run = run_script(
        """
        rfobs.init(**SETTINGS)
        job(0)  # queued in the parent at the fork: the child must not send it a second time
        pid = os.fork()
        if pid == 0:
            job(1)
            os._exit(0 if rfobs.flush(timeout=10) else 3)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        rfobs.shutdown()
        """,
        tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["child", "0"]
    assert run.names() == ["worker.job", "worker.job"]
    assert len({str(span["spanId"]) for span in run.spans()}) == 2  # one span per process, none sent twice


def test_a_forked_child_exiting_normally_does_not_wait_on_the_parents_servers(tmp_path: Path) -> None:
    # Before the fix the child's exit waited the whole shutdown timeout for a /metrics server thread that
    # does not exist in the child.
    run = run_script(
        """
        rfobs.init(**SETTINGS)
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            job(1)
            sys.exit(0)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), round(time.monotonic() - started, 1))
        rfobs.shutdown()
        """,
        tmp_path,
        env={**_environ(), "SHUTDOWN_TIMEOUT": "30"},
    )
    assert run.returncode == 0, run.stderr
    code, seconds = run.stdout.split()
    assert code == "0"
    assert float(seconds) < 10, "the child waited for the parent's servers (shutdown timeout 30 s)"
    assert run.names() == ["worker.job"]


def test_a_forked_child_neither_serves_nor_holds_the_parents_metrics_port(tmp_path: Path) -> None:
    port = _free_port()
    run = run_script(
        f"""
        telemetry = rfobs.init(**{{**SETTINGS, "metrics__prometheus_port": {port}}})
        for i in range(3):
            job(i)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            job(3)
            os.write(write, rfobs.sdk.active().metrics_url.encode())
            time.sleep(60)
            os._exit(0)
        child_url = os.read(read, 200).decode()
        import urllib.request
        def tasks(url):
            text = urllib.request.urlopen(url, timeout=5).read().decode()
            return [line for line in text.splitlines() if line.startswith("researchflow_agents_agent_tasks_total{{")]
        print(json.dumps({{"parent": telemetry.metrics_url, "child": child_url,
                          "parent_tasks": tasks(telemetry.metrics_url), "child_tasks": tasks(child_url)}}))
        rfobs.shutdown()
        import socket
        probe = socket.socket()
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the scrapes above left TIME_WAITs
        try:
            probe.bind(("127.0.0.1", {port}))  # fails if the child still holds the parent's listening socket
            probe.listen()
            print("port free")
        finally:
            probe.close()
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        """,
        tmp_path,
    )
    assert run.returncode == 0, run.stderr
    first, last = run.stdout.splitlines()
    seen = json.loads(first)
    assert seen["parent"] == f"http://127.0.0.1:{port}/metrics"
    assert seen["child"] != seen["parent"]
    # Each process reports what it counted itself: 3 before the fork in the parent, 1 in the child (then the zero
    # error series of the task, in each).
    assert [line.rsplit(" ", 1)[1] for line in seen["parent_tasks"]] == ["3.0", "0.0"]
    assert [line.rsplit(" ", 1)[1] for line in seen["child_tasks"]] == ["1.0", "0.0"]
    assert last == "port free"


def test_a_forked_child_reports_under_its_own_instance_id_and_pid(tmp_path: Path) -> None:
    # Pre-fork workers pushing OTLP metrics through one Collector are told apart by service.instance.id only.
    run = run_script(
        """
        telemetry = rfobs.init(**{**SETTINGS, "metrics__prometheus_port": 0})
        job(0)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            job(1)
            os.write(write, rfobs.sdk.active().metrics_url.encode())
            time.sleep(60)
            os._exit(0)
        child_url = os.read(read, 200).decode()
        import re, urllib.request
        def identity(url):
            text = urllib.request.urlopen(url, timeout=5).read().decode()
            line = next(line for line in text.splitlines() if line.startswith("target_info{"))
            wanted = ("service_instance_id", "process_pid")
            return {k: v for k, v in re.findall(r'(\\w+)="([^"]*)"', line) if k in wanted}
        print(json.dumps({"parent": identity(telemetry.metrics_url), "child": identity(child_url),
                          "pids": [os.getpid(), pid]}))
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        rfobs.shutdown()
        """,
        tmp_path,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.splitlines()[0])
    parent_pid, child_pid = seen["pids"]
    assert seen["parent"]["process_pid"] == str(parent_pid)
    assert seen["child"]["process_pid"] == str(child_pid)
    assert seen["child"]["service_instance_id"] != seen["parent"]["service_instance_id"]


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("model", ["pool-with", "pool-close", "executor", "process"])
def test_every_worker_delivers_its_spans(tmp_path: Path, method: str, model: str) -> None:
    run = run_script(
        f"""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        def run_one(i):
            init_worker()
            job(i)

        if __name__ == "__main__":
            context = multiprocessing.get_context("{method}")
            initializer = init_worker if "{method}" == "spawn" else None
            if "{method}" == "fork":
                rfobs.init(**SETTINGS)
            if "{model}" == "pool-with":  # leaving the block terminates the workers (SIGTERM)
                with context.Pool(4, initializer=initializer) as pool:
                    print(sum(pool.map_async(job, range(40)).get(timeout=60)))
            elif "{model}" == "pool-close":
                pool = context.Pool(4, initializer=initializer)
                print(sum(pool.map_async(job, range(40)).get(timeout=60)))
                pool.close()
                pool.join()
            elif "{model}" == "executor":
                with ProcessPoolExecutor(4, mp_context=context, initializer=initializer) as executor:
                    print(sum(executor.map(job, range(40), timeout=60)))
            else:
                workers = [context.Process(target=run_one if "{method}" == "spawn" else job, args=(i,))
                           for i in range(40)]
                for worker in workers:
                    worker.start()
                for worker in workers:
                    worker.join(60)
                print(sum(2 * i for i in range(40)))
            rfobs.shutdown()
        """,
        tmp_path,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["1560"]
    assert "cannot serve" not in run.stderr
    assert run.names() == ["worker.job"] * 40


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_a_forked_child_does_not_keep_the_parents_health_endpoint_alive(tmp_path: Path) -> None:
    # The /health/live helper exits when every copy of its stdin is closed: a child that kept one would make a
    # dead agent look alive.
    run = run_script(
        """
        import urllib.request, urllib.error
        telemetry = rfobs.init(**{**SETTINGS, "health__enabled": True, "health__server_enabled": True,
                                  "health__port": 0, "health__live_process": True})
        live = telemetry.health_url + "/health/live"
        print(urllib.request.urlopen(live, timeout=5).status)
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        rfobs.shutdown()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(live, timeout=1)
            except (urllib.error.URLError, ConnectionError):
                print("gone")
                break
            time.sleep(0.1)
        else:
            print("still answering")
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        """,
        tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["200", "gone"]
