"""The seed's Docker HEALTHCHECK, `curl -f http://localhost:3001/health || exit 1`, against the real server."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

import rfobs
from tests.health.servers import closed_port

pytestmark = [
    pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl program"),
    pytest.mark.usefixtures("clean_globals"),
]
QUIET: dict[str, Any] = {"metrics__prometheus_port": 0, "logging__enabled": False}
CALM: dict[str, Any] = {
    "health__cpu_max_percent": 100,
    "health__memory_max_percent": 100,
    "health__disk_max_percent": 100,
}
HEALTHCHECK = "curl -f http://localhost:{port}/health || exit 1"  # the seed's docker-compose test, as written


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start `rfobs.init()` with the health server on a free port; yields a function taking extra settings."""
    handles: list[rfobs.Telemetry] = []

    def start(**settings: Any) -> int:
        port = closed_port()
        handles.append(rfobs.init(health__server_enabled=True, health__port=port, **CALM, **QUIET, **settings))
        assert handles[-1].health_url == f"http://127.0.0.1:{port}"
        return port

    yield start
    for handle in handles:
        handle.shutdown(timeout=5)


def curl(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-f", "-sS", *arguments], capture_output=True, text=True, timeout=30, check=False)


def test_healthy_answers_200_with_the_report(serve: Any) -> None:
    port = serve()
    answered = curl(f"http://localhost:{port}/health")
    assert (answered.returncode, answered.stderr) == (0, "")
    body = json.loads(answered.stdout)
    assert (body["status"], body["ready"]) == ("healthy", True)
    healthcheck = subprocess.run(["sh", "-c", HEALTHCHECK.format(port=port)], capture_output=True, timeout=30)
    assert healthcheck.returncode == 0


def test_localhost_reaches_the_loopback_server_when_ipv6_comes_first(serve: Any) -> None:
    """Docker's /etc/hosts lists `::1 localhost` too: curl tries it first, is refused, and goes on to 127.0.0.1."""
    port = serve()
    answered = curl("--resolve", f"localhost:{port}:::1,127.0.0.1", f"http://localhost:{port}/health")
    assert (answered.returncode, json.loads(answered.stdout)["status"]) == (0, "healthy")


def test_degraded_still_passes(serve: Any) -> None:
    port = serve(health__dependencies={"cache": f"tcp://127.0.0.1:{closed_port()}"})
    answered = curl(f"http://localhost:{port}/health")
    assert (answered.returncode, json.loads(answered.stdout)["status"]) == (0, "degraded")


def test_an_unhealthy_critical_check_fails_the_healthcheck(serve: Any) -> None:
    port = serve(health__dependencies={"db": f"tcp://127.0.0.1:{closed_port()}"}, health__critical_dependencies="db")
    answered = curl(f"http://localhost:{port}/health")
    assert answered.returncode == 22  # curl -f: the server answered an HTTP error (503)
    assert answered.stderr.strip().endswith("The requested URL returned error: 503")
    healthcheck = subprocess.run(["sh", "-c", HEALTHCHECK.format(port=port)], capture_output=True, timeout=30)
    assert healthcheck.returncode == 1
