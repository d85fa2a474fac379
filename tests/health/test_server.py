from __future__ import annotations

import asyncio
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from rfobs.exceptions import ConfigError
from rfobs.health import CheckResult, HealthChecker, Status
from rfobs.health.server import HealthServer

ROOT = Path(__file__).parents[2]


@dataclass
class Fixed:
    """A check with a set verdict that counts its runs."""

    name: str
    status: Status = Status.HEALTHY
    critical: bool = False
    message: str = "ok"
    delay: float = 0.0
    runs: int = 0

    async def run(self) -> CheckResult:
        self.runs += 1
        await asyncio.sleep(self.delay)
        return CheckResult(self.name, self.status, self.message, {"level": 3})


@dataclass
class Raising:
    name: str = "raising"
    critical: bool = True

    async def run(self) -> CheckResult:
        raise RuntimeError("disk on fire")


@dataclass
class Hanging:
    """Never finishes; `started` is set when it runs (so the request that ran it has reached the server)."""

    name: str = "hanging"
    critical: bool = True
    started: threading.Event = field(default_factory=threading.Event)

    async def run(self) -> CheckResult:
        self.started.set()
        await asyncio.sleep(60)
        raise AssertionError("unreachable")


@dataclass
class Broken:
    """Returns something that is not a CheckResult: the report itself fails."""

    name: str = "broken"
    critical: bool = False

    async def run(self) -> CheckResult:
        return cast(CheckResult, None)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: Any


Serve = Callable[..., HealthServer]


@pytest.fixture(params=["thread", "process"])
def serve(request: pytest.FixtureRequest) -> Iterator[Serve]:
    """Starts servers answering from the thread alone, or with the /health/live helper process."""
    servers: list[HealthServer] = []

    def start(*checks: Any, timeout: float = 2.0, cache_ttl: float = 2.0) -> HealthServer:
        checker = HealthChecker(timeout=timeout, cache_ttl=cache_ttl)
        for check in checks:
            checker.register(check)
        server = HealthServer(checker, live_process=request.param == "process")
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def request(server: HealthServer, path: str, method: str = "GET", connection: http.client.HTTPConnection | None = None,
            body: bytes | None = None) -> Response:  # fmt: skip
    conn = connection or http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request(method, path, body=body)
    answer = conn.getresponse()
    raw = answer.read()
    if connection is None:
        conn.close()
    return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, json.loads(raw))


def check_dict(name: str, status: str, message: str, critical: bool, values: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "status": status, "message": message, "values": values, "critical": critical}


def without_timings(body: dict[str, Any]) -> dict[str, Any]:
    """The report with its variable timing fields checked for type and removed."""
    assert isinstance(body.pop("duration_seconds"), float)
    assert abs(body.pop("timestamp") - time.time()) < 30
    for check in body["checks"]:
        assert isinstance(check.pop("duration_seconds"), float)
    return body


def raw_exchange(server: HealthServer, payload: bytes) -> bytes:
    """Send `payload` on a fresh socket and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(payload)
        chunks: list[bytes] = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


HEADERS = {"content-type": "application/json", "cache-control": "no-store"}


def test_live_answers_alive_and_never_runs_checks(serve: Serve) -> None:
    check = Fixed("db", Status.UNHEALTHY, critical=True)
    server = serve(check)
    answer = request(server, "/health/live")
    assert (answer.status, answer.body) == (200, {"status": "alive"})
    assert answer.headers == {**HEADERS, "content-length": "18"}
    assert check.runs == 0


def test_health_and_ready_report_healthy_checks(serve: Serve) -> None:
    server = serve(Fixed("db", critical=True), Fixed("cache"))
    health, ready = request(server, "/health"), request(server, "/health/ready")
    expected = {
        "status": "healthy",
        "ready": True,
        "checks": [
            check_dict("db", "healthy", "ok", True, {"level": 3}),
            check_dict("cache", "healthy", "ok", False, {"level": 3}),
        ],
    }
    assert (health.status, without_timings(health.body)) == (200, expected)
    assert (ready.status, without_timings(ready.body)) == (200, expected)
    assert {k: health.headers[k] for k in HEADERS} == HEADERS


def test_failing_non_critical_check_degrades_but_stays_ready(serve: Serve) -> None:
    server = serve(Fixed("db", critical=True), Fixed("gpu", Status.UNHEALTHY, message="no device"))
    health, ready = request(server, "/health"), request(server, "/health/ready")
    assert (health.status, health.body["status"], health.body["ready"]) == (200, "degraded", True)
    assert (ready.status, ready.body["status"]) == (200, "degraded")
    assert health.body["checks"][1]["message"] == "no device"


def test_unhealthy_critical_check_answers_503_on_health_and_ready(serve: Serve) -> None:
    server = serve(Fixed("db", Status.UNHEALTHY, critical=True, message="refused"), Fixed("cache"))
    health, ready = request(server, "/health"), request(server, "/health/ready")
    assert (health.status, health.body["status"], health.body["ready"]) == (503, "unhealthy", False)
    assert (ready.status, ready.body["status"], ready.body["ready"]) == (503, "unhealthy", False)
    assert health.body["checks"][0] | {"duration_seconds": 0} == check_dict(
        "db", "unhealthy", "refused", True, {"level": 3}
    ) | {"duration_seconds": 0}


def test_raising_check_is_reported_unhealthy_never_500(serve: Serve) -> None:
    server = serve(Raising(), Fixed("cache"))
    answer = request(server, "/health")
    assert answer.status == 503
    assert without_timings(answer.body) == {
        "status": "unhealthy",
        "ready": False,
        "checks": [
            check_dict("raising", "unhealthy", "RuntimeError: disk on fire", True, {}),
            check_dict("cache", "healthy", "ok", False, {"level": 3}),
        ],
    }


def test_hanging_check_times_out_and_live_keeps_answering(serve: Serve) -> None:
    hanging = Hanging()
    server = serve(hanging, timeout=1.0)
    results: list[tuple[float, Response]] = []

    def probe_health() -> None:
        started = time.perf_counter()
        answer = request(server, "/health/ready")
        results.append((time.perf_counter() - started, answer))

    worker = threading.Thread(target=probe_health)
    worker.start()
    assert hanging.started.wait(5)
    assert request(server, "/health/live").status == 200
    # Answered while the report still waits for its hung check (not after a guessed 0.2 s, which raced).
    assert results == []
    worker.join(5)
    ((elapsed, answer),) = results
    # The check's timeout ended it (the message says so), not sooner; the upper bound only catches a report held
    # far past it (0.5 s above the timeout raced on a loaded machine).
    assert 1.0 <= elapsed < 10
    assert (answer.status, answer.body["checks"][0]["message"]) == (503, "timed out after 1s")


def test_report_that_fails_answers_503_with_a_generic_body(serve: Serve) -> None:
    server = serve(Broken())
    answer = request(server, "/health")
    assert (answer.status, answer.body) == (
        503,
        {"status": "unhealthy", "error": "internal error while building the health report"},
    )
    assert request(server, "/health/live").status == 200


def test_secret_looking_text_in_a_message_is_scrubbed(serve: Serve) -> None:
    server = serve(Fixed("db", Status.DEGRADED, message="login failed: password=hunter2"))
    answer = request(server, "/health")
    assert answer.body["checks"][0]["message"] == "login failed: password=***"


def test_unknown_path_is_404_and_other_methods_are_405(serve: Serve) -> None:
    server = serve(Fixed("db"))
    missing = request(server, "/healthz")
    assert (missing.status, missing.body) == (
        404,
        {"error": "not found", "routes": ["/health/live", "/health/ready", "/health"]},
    )
    for method in ("POST", "PUT", "DELETE"):
        answer = request(server, "/health", method=method, body=b"{}")
        assert (answer.status, answer.body, answer.headers["allow"]) == (
            405,
            {"error": "method not allowed", "allowed": ["GET"]},
            "GET",
        )
    assert request(server, "/health/live?verbose=1").status == 200


def test_keep_alive_connection_serves_every_route(serve: Serve) -> None:
    check = Fixed("db")
    server = serve(check)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    statuses = [request(server, path, connection=conn).status for path in ["/health/live", "/health", "/nope"] * 3]
    first_socket = conn.sock
    assert request(server, "/health/ready", connection=conn).status == 200
    assert conn.sock is first_socket
    conn.close()
    assert statuses == [200, 200, 404] * 3
    assert check.runs == 1


def test_pipelined_requests_are_answered_in_order(serve: Serve) -> None:
    server = serve(Fixed("db", delay=0.05))
    payload = (
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    answers = raw_exchange(server, payload).split(b"HTTP/1.1 ")[1:]
    assert [a.split(b"\r\n")[0] for a in answers] == [b"200 OK"] * 3
    assert b'"checks"' in answers[0] and answers[1].endswith(b'{"status":"alive"}')
    assert b"Connection: close\r\n" in answers[2]


def test_http_1_0_bad_and_oversized_requests_close_the_connection(serve: Serve) -> None:
    server = serve(Fixed("db"))
    assert raw_exchange(server, b"GET /health/live HTTP/1.0\r\n\r\n") == (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: 18\r\n"
        b'Connection: close\r\n\r\n{"status":"alive"}'
    )
    assert raw_exchange(server, b"nonsense\r\n\r\n").startswith(b"HTTP/1.1 400 Bad Request\r\n")
    too_long = b"GET /health/live HTTP/1.1\r\nX-Filler: " + b"a" * 9000
    assert raw_exchange(server, too_long).startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


def test_a_flood_of_pipelined_requests_is_answered_in_full(serve: Serve) -> None:
    server = serve(Fixed("db"))
    count = 20_000
    payload = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n" * (count - 1)
    payload += b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        chunks: list[bytes] = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
        sender.join(10)
    answers = b"".join(chunks)
    assert answers.count(b"HTTP/1.1 200 OK\r\n") == count
    assert answers.endswith(b'Connection: close\r\n\r\n{"status":"alive"}')


def test_a_client_that_sends_too_much_while_a_report_is_awaited_is_dropped(serve: Serve) -> None:
    hanging = Hanging()
    server = serve(hanging, timeout=30)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert hanging.started.wait(5)
        try:
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n" * 2000)  # 74 KB: over the 64 KiB kept
            answer = sock.recv(65536)
        except ConnectionResetError:  # dropped with bytes still unread on its side
            answer = b""
    assert answer == b""


def test_200_concurrent_requests_within_the_ttl_run_the_checks_once(serve: Serve) -> None:
    check = Fixed("slow", delay=0.2)
    server = serve(check, cache_ttl=5.0)
    barrier = threading.Barrier(200)

    def probe(path: str) -> int:
        barrier.wait()
        return request(server, path).status

    with ThreadPoolExecutor(200) as pool:
        statuses = list(pool.map(probe, ["/health", "/health/ready"] * 100))
    assert statuses == [200] * 200
    assert (check.runs, server.checker.runs) == (1, 1)


def test_stop_is_bounded_with_a_request_in_flight_and_closes_the_port(serve: Serve) -> None:
    hanging = Hanging()
    server = serve(hanging, timeout=30)
    port = server.port
    outcome: list[str] = []

    def probe() -> None:
        try:
            request(server, "/health")
        except OSError as error:  # the server dropped the connection
            outcome.append(type(error).__name__)

    in_flight = threading.Thread(target=probe, daemon=True)
    in_flight.start()
    assert hanging.started.wait(5)  # the request is in flight: it has reached the check
    started = time.perf_counter()
    server.stop(timeout=2.0)
    assert time.perf_counter() - started < 1.5
    assert not server.running
    in_flight.join(2)
    assert outcome == ["RemoteDisconnected"]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_start_is_idempotent_and_url_names_the_chosen_port(serve: Serve) -> None:
    server = serve(Fixed("db"))
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert server.start() == server.url


async def test_start_and_stop_work_from_inside_a_running_event_loop() -> None:
    server = HealthServer(HealthChecker())
    server.start()
    try:
        answer = await asyncio.to_thread(request, server, "/health")
        assert (answer.status, answer.body["status"], answer.body["checks"]) == (200, "healthy", [])
    finally:
        server.stop()


def test_busy_port_raises_oserror_naming_the_address(serve: Serve) -> None:
    taken = serve(Fixed("db"))
    with pytest.raises(OSError, match=rf"rfobs health server cannot listen on 127\.0\.0\.1:{taken.port}: "):
        HealthServer(HealthChecker(), port=taken.port).start()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": -1}, r"HealthServer\(port=-1\): expected an integer from 0 to 65535"),
        ({"port": True}, r"HealthServer\(port=True\): expected an integer"),
        ({"host": ""}, r"HealthServer\(host=''\): expected a host name or IP address"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HealthServer(HealthChecker(), **kwargs)


def test_checker_must_be_a_health_checker() -> None:
    with pytest.raises(ConfigError, match=r"HealthServer\(checker=None\): expected a rfobs.health.HealthChecker"):
        HealthServer(cast(HealthChecker, None))


def test_live_helper_process_exits_when_the_agent_process_dies(tmp_path: Path) -> None:
    script = tmp_path / "agent.py"
    script.write_text(
        "import sys, time\n"
        "from rfobs.health import HealthChecker\n"
        "from rfobs.health.server import HealthServer\n"
        "server = HealthServer(HealthChecker(), live_process=True)\n"
        "print(server.start().rsplit(':', 1)[1], flush=True)\n"
        "time.sleep(60)\n"
    )
    with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, cwd=ROOT) as agent:
        try:
            assert agent.stdout is not None
            port = int(agent.stdout.readline())
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
                assert sock.recv(4096).endswith(b'{"status":"alive"}')
        finally:
            agent.kill()  # SIGKILL: no atexit, no stop()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return
        time.sleep(0.05)
    raise AssertionError(f"port {port} still answers after the agent process died")
