from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter

import rfobs
from rfobs.health import CheckResult, HealthChecker, Status
from rfobs.health.asgi import ASGIApp, Receive, Scope, Send, asgi_app, metrics_asgi_app


class Verdict:
    def __init__(self, name: str, status: Status, critical: bool) -> None:
        self.name, self.status, self.critical = name, status, critical
        self.runs = 0

    async def run(self) -> CheckResult:
        self.runs += 1
        if self.name == "raising":
            raise ValueError("token=abc123 rejected")
        return CheckResult(self.name, self.status, "fine")


Run = Callable[[ASGIApp], int]


@pytest.fixture
def run_uvicorn() -> Iterator[Run]:
    """Serves an ASGI app with a real uvicorn on 127.0.0.1; returns the port."""
    started: list[tuple[uvicorn.Server, threading.Thread]] = []

    def run(app: ASGIApp) -> int:
        sock = socket.create_server(("127.0.0.1", 0))
        config = uvicorn.Config(app, log_config=None, log_level="warning", ws="none", http="h11", lifespan="on")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 5
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.started
        started.append((server, thread))
        return sock.getsockname()[1]

    yield run
    for server, thread in started:
        server.should_exit = True
        thread.join(5)
        assert not thread.is_alive()


def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path)
    answer = conn.getresponse()
    body = answer.read()
    conn.close()
    return answer.status, {k.lower(): v for k, v in answer.getheaders()}, body


def test_health_routes_through_uvicorn(run_uvicorn: Run) -> None:
    checker = HealthChecker(timeout=1.0, cache_ttl=5.0)
    db = checker.register(Verdict("db", Status.UNHEALTHY, critical=True))
    checker.register(Verdict("raising", Status.HEALTHY, critical=False))
    port = run_uvicorn(asgi_app(checker))

    status, headers, body = get(port, "/health/live")
    assert (status, body) == (200, b'{"status":"alive"}')
    assert (headers["content-type"], headers["cache-control"], headers["content-length"]) == (
        "application/json",
        "no-store",
        "18",
    )
    assert isinstance(db, Verdict) and db.runs == 0

    status, _, body = get(port, "/health")
    report = json.loads(body)
    assert (status, report["status"], report["ready"]) == (503, "unhealthy", False)
    assert [(c["name"], c["status"], c["message"]) for c in report["checks"]] == [
        ("db", "unhealthy", "fine"),
        ("raising", "unhealthy", "ValueError: token=*** rejected"),
    ]
    status, _, body = get(port, "/health/ready")
    assert (status, json.loads(body)["ready"]) == (503, False)
    assert db.runs == 1  # served from the cache the second time

    assert get(port, "/nope")[0] == 404
    status, headers, _ = get(port, "/health", method="POST")
    assert (status, headers["allow"]) == (405, "GET")


def test_metrics_app_serves_the_given_registry_through_uvicorn(run_uvicorn: Run) -> None:
    registry = CollectorRegistry()
    Counter("agent_probes", "Probes seen.", registry=registry).inc(3)
    port = run_uvicorn(metrics_asgi_app(registry))
    status, headers, body = get(port, "/metrics")
    assert status == 200
    assert headers["content-type"] == CONTENT_TYPE_LATEST
    assert "agent_probes_total 3.0\n" in body.decode()
    assert get(port, "/metrics", method="POST")[0] == 405


def test_metrics_app_without_init_serves_the_global_registry(run_uvicorn: Run) -> None:
    port = run_uvicorn(metrics_asgi_app())
    status, _, body = get(port, "/metrics")
    assert status == 200
    assert "python_info{" in body.decode()


def test_health_app_mounted_under_a_prefix_routes_below_it(run_uvicorn: Run) -> None:
    app = asgi_app(HealthChecker())

    async def mount_at_ops(scope: Scope, receive: Receive, send: Send) -> None:
        # What Starlette's Mount("/ops", app) does: the prefix moves to root_path, path stays whole.
        if scope["type"] == "http":
            scope = {**scope, "root_path": scope.get("root_path", "") + "/ops"}
        await app(scope, receive, send)

    port = run_uvicorn(mount_at_ops)
    assert get(port, "/ops/health/live")[0] == 200
    assert get(port, "/ops/health")[0] == 200
    assert get(port, "/ops/elsewhere")[0] == 404


def test_metrics_app_serves_the_registry_of_the_active_init(clean_globals: None, run_uvicorn: Run) -> None:
    handle: Any = rfobs.init(metrics__prometheus_port=0, tracing__exporter="none", health__enabled=False)
    try:

        @rfobs.task("researcher", "plan")
        def plan() -> int:
            return 1

        plan()
        port = run_uvicorn(metrics_asgi_app())
        body = get(port, "/metrics")[2].decode()
        line = next(row for row in body.splitlines() if row.startswith("researchflow_agents_agent_tasks_total{"))
        assert 'agent="researcher"' in line and 'status="success"' in line and 'task="plan"' in line
        assert line.endswith(" 1.0")
    finally:
        handle.shutdown(timeout=2)
