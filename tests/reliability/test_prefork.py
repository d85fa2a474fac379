"""Pre-fork servers: a real gunicorn (fork, `--preload`) and uvicorn (`--workers`, spawn) serving decorated code."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.servers import wait_until
from tests.reliability._workers import Run

REQUESTS = 20

WSGI_APP = """
import os
import rfobs

OUT = os.environ["RFOBS_TEST_OUT"]
rfobs.init(
    tracing__file_path=os.path.join(OUT, "traces.jsonl"),
    tracing__schedule_delay=30.0,  # only the exit flush delivers
    metrics__prometheus_port=0,
    metrics__targets_dir=os.path.join(OUT, "targets"),
    health__enabled=False,
    logging__enabled=False,
)


@rfobs.task("server", "handle")
def handle(path):
    return f"{path} from {os.getpid()}".encode()


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [handle(environ["PATH_INFO"])]


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = handle(scope["path"])
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve_and_stop(tmp_path: Path, argv: list[str], port: int, endpoints: int) -> Run:
    """Start the server, wait for its `endpoints` /metrics targets, send REQUESTS requests, SIGTERM the master."""
    (tmp_path / "agent_app.py").write_text(textwrap.dedent(WSGI_APP), encoding="utf-8")
    env = {"RFOBS_TEST_OUT": str(tmp_path), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)}
    with subprocess.Popen(
        argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as server:
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: _answers(url), 60, what=f"{argv[1]} on {url}")
            # Every process that serves /metrics announces it: workers appear as they are started.
            wait_until(lambda: len(list((tmp_path / "targets").glob("*.json"))) == endpoints, 30, what="targets")
            for i in range(REQUESTS):
                _get(f"{url}/paper/{i}")
            server.send_signal(signal.SIGTERM)
            stdout, stderr = server.communicate(timeout=60)
        finally:
            server.kill()
    return Run(server.returncode, stdout, stderr, tmp_path)


def _answers(url: str) -> bool:
    try:
        _get(f"{url}/ready")
    except OSError:
        return False
    return True


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_gunicorn_preload_workers_deliver_every_request_span(tmp_path: Path) -> None:
    pytest.importorskip("gunicorn")
    port = _free_port()
    argv = [sys.executable, "-m", "gunicorn", "--preload", "--workers", "2", "--bind", f"127.0.0.1:{port}"]
    run = _serve_and_stop(tmp_path, [*argv, "agent_app:app"], port, endpoints=3)  # the master's and 2 workers'
    assert run.returncode == 0, run.stderr[-2000:]
    names = [name for name in run.names() if name == "server.handle"]
    assert len(names) == REQUESTS + 1, run.stderr[-2000:]  # the requests, and the readiness probe
    assert list((tmp_path / "targets").glob("*.json")) == []


def test_uvicorn_workers_deliver_every_request_span(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    port = _free_port()
    argv = [sys.executable, "-m", "uvicorn", "--workers", "2", "--host", "127.0.0.1", "--port", str(port)]
    # Each worker serves its own /metrics; the supervisor does not load the app.
    run = _serve_and_stop(tmp_path, [*argv, "--log-level", "warning", "agent_app:asgi_app"], port, endpoints=2)
    assert run.returncode == 0, run.stderr[-2000:]
    names = [name for name in run.names() if name == "server.handle"]
    assert len(names) == REQUESTS + 1, run.stderr[-2000:]
    assert "cannot serve" not in run.stderr  # each spawned worker took a free port for its /metrics
    assert list((tmp_path / "targets").glob("*.json")) == []
