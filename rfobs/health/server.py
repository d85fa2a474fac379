"""`HealthServer`: `/health/live`, `/health/ready` and `/health` over HTTP/1.1, in a thread of its own.

The server runs an asyncio event loop of its own in a daemon thread, so the agent's event loop never serves a
probe and a probe never waits for the agent's loop; optionally a helper process answers `/health/live`, and
optionally the loop runs the checks on a schedule (`check_interval`) so their metrics exist without a probe. This
module holds the routes (`respond`, shared with the ASGI app) and the life cycle; the HTTP/1.1 connections of
both the thread and the helper process are `_wire.py`'s.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine
from typing import Any, Final, cast

from rfobs import _check, _guard
from rfobs._secrets import redact
from rfobs.exceptions import ConfigError
from rfobs.health._model import HealthReport, Status
from rfobs.health._wire import ALIVE_BODY, LIVE, Answer, Connection, Request, answer_for
from rfobs.health.checker import HealthChecker

__all__ = ["HealthServer", "report_dict", "respond"]

READY: Final = "/health/ready"
HEALTH: Final = "/health"
ROUTES: Final = (LIVE, READY, HEALTH)
# Seconds a report may take beyond the checker's own per-check timeout before the endpoint gives up on it
# (a check that ignores cancellation would otherwise hold the response).
REPORT_MARGIN: Final = 1.0


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


NOT_FOUND_BODY: Final = _json({"error": "not found", "routes": list(ROUTES)})
NOT_ALLOWED_BODY: Final = _json({"error": "method not allowed", "allowed": ["GET"]})
INTERNAL_BODY: Final = _json({"status": "unhealthy", "error": "internal error while building the health report"})
TIMED_OUT_BODY: Final = _json({"status": "unhealthy", "error": "the health report did not finish in time"})


def report_dict(report: HealthReport) -> dict[str, Any]:
    """`report.to_dict()` with every string in it (check names, messages, values) scrubbed of secrets."""
    return cast("dict[str, Any]", redact(report.to_dict()))


def report_body(report: HealthReport) -> bytes:
    """The JSON of `report`, scrubbed (`report_dict`)."""
    return _json(report_dict(report))


def immediate(method: str, path: str) -> tuple[int, bytes] | None:
    """The answer to a request that needs no health report, or None for `GET /health` and `GET /health/ready`."""
    if path not in ROUTES:
        return 404, NOT_FOUND_BODY
    if method != "GET":
        return 405, NOT_ALLOWED_BODY
    if path == LIVE:
        return 200, ALIVE_BODY
    return None


async def _report_within_bound(checker: HealthChecker) -> asyncio.Future[HealthReport] | None:
    """`checker.report()`, given `checker.timeout` + `REPORT_MARGIN`: the finished run, or None if it did not finish.

    A run that does not finish is cancelled and abandoned, never waited for: a check may ignore cancellation.
    """
    # asyncio.wait, not wait_for: wait_for would wait for a cancellation the check may ignore.
    running = asyncio.ensure_future(checker.report())
    try:
        done, _ = await asyncio.wait({running}, timeout=checker.timeout + REPORT_MARGIN)
    finally:
        running.cancel()  # no-op when done; otherwise the run is abandoned (timed out, or the server stops)
    return running if done and not running.cancelled() else None


async def respond(checker: HealthChecker, method: str, path: str) -> tuple[int, bytes]:
    """The status and JSON body for one request; shared by `HealthServer` and the ASGI app.

    Never raises: a report that fails or outlasts `checker.timeout` + `REPORT_MARGIN` answers 503 with a
    generic body (the details are in rfobs's log and its internal-error count, never in the response).
    """
    if (answer := immediate(method, path)) is not None:
        return answer
    if (finished := await _report_within_bound(checker)) is None:
        return 503, TIMED_OUT_BODY
    try:
        report = finished.result()
        body = report_body(report)
    except asyncio.CancelledError:  # a run shared with a request that timed out
        return 503, TIMED_OUT_BODY
    except Exception:
        _guard.internal_error("serving a health report")
        return 503, INTERNAL_BODY
    if path == READY:
        return (200 if report.ready else 503), body
    return (503 if report.status is Status.UNHEALTHY else 200), body


class HealthServer:
    """Serves `/health/live`, `/health/ready` and `/health` for `checker` from a daemon thread.

    - `GET /health/live`: 200 `{"status":"alive"}` while the process runs; never runs a check.
    - `GET /health/ready`: 200 when no critical check is unhealthy, else 503; the body is the report.
    - `GET /health`: the full report; 503 only when the overall status is unhealthy (degraded answers 200).
    - Any other path: 404; any other method: 405. Every body is JSON, sent with `Cache-Control: no-store`.

    Reports come from `checker.report()`, so a probe storm within `checker.cache_ttl` runs the checks once.
    The server runs an event loop of its own in its thread; checks run there, never on the agent's loop.
    With `check_interval`, that loop also runs the checks right after `start()` and then every `check_interval`
    seconds, so `health_check_status` and `health_checks_total` exist and stay fresh with no probe at all
    (a scheduled run is a `checker.report()` too: it shares a probe's run or cached report).
    `start()` and `stop()` may be called from any thread, including from inside a running event loop.

    The thread shares the GIL with the agent. While the agent's event loop keeps the GIL busy (CPU-bound work
    in the loop), the thread gets it only now and then: probes are still answered, at anything from a few dozen
    to thousands of requests a second depending on scheduling. With `live_process=True` (POSIX), a small
    helper process (standard library only) owns the listening socket instead: it answers `/health/live` itself,
    at thousands of requests a second whatever the agent does, and forwards the other routes to the thread. It
    exits when the server stops or the agent's process dies, so a live answer still means the agent is up. It
    reuses `/health` and `/health/ready` answers for `cache_ttl` as well (a report it serves is at most twice
    `cache_ttl` old), so a probe storm reaches the thread once per TTL.

    Args:
        checker: The checks to report.
        host: The address to listen on (loopback by default; `0.0.0.0` exposes it to the network).
        port: The port; 0 picks a free one (read it back from `port` or `url` after `start()`).
        live_process: Answer `/health/live` from a helper process (see above).
        check_interval: Seconds between two scheduled runs of the checks; 0 (the default) schedules none.

    Raises:
        ConfigError: An argument of the wrong type or out of range.

    Example:
        >>> server = HealthServer(HealthChecker(), port=0)
        >>> server.start()  # doctest: +SKIP
        'http://127.0.0.1:40215'
        >>> server.stop()
    """

    def __init__(
        self,
        checker: HealthChecker,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        live_process: bool = False,
        check_interval: float = 0.0,
    ) -> None:
        if not isinstance(checker, HealthChecker):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise _check.bad("HealthServer", "checker", checker, "a rfobs.health.HealthChecker")
        host = _check.text("HealthServer", "host", host, "a host name or IP address, e.g. '127.0.0.1'")
        port = _check.integer(
            "HealthServer", "port", port, ge=0, le=65535, allowed="an integer from 0 to 65535 (0 picks a free port)"
        )
        if live_process and os.name != "posix":
            raise ConfigError(f"HealthServer(live_process=True): needs a POSIX system, not {os.name!r}")
        self.check_interval = _check.number(
            "HealthServer", "check_interval", check_interval, ge=0, allowed="a number of seconds > 0, or 0 for none"
        )
        self.checker = checker
        self.host = host
        self.live_process = live_process
        self._port = port
        self._lock = threading.Lock()
        self._stopping: asyncio.Future[None] | None = None  # of the server thread's loop: done when it should stop
        self._thread: threading.Thread | None = None
        self._helper: subprocess.Popen[bytes] | None = None
        self._listener: socket.socket | None = None

    @property
    def port(self) -> int:
        """The port listened on (the chosen one after `start()` with port 0)."""
        return self._port

    @property
    def url(self) -> str:
        """The base URL, e.g. `http://127.0.0.1:8081` (append `/health`, `/health/ready`, `/health/live`)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    @property
    def running(self) -> bool:
        """Whether the server is listening (and its helper process runs, with `live_process`)."""
        alive = self._thread is not None and self._thread.is_alive()
        return alive and (self._helper is None or self._helper.poll() is None)

    def start(self) -> str:
        """Start listening (no-op when already running) and return `url`.

        Raises:
            OSError: The address cannot be listened on (port in use, unknown host), or the helper process
                cannot start; the message names the address.
        """
        with self._lock:
            if self._thread is not None:
                return self.url
            listener = self._listen(self.host, self._port)
            self._port = listener.getsockname()[1]
            if self.live_process:
                # The helper takes the public socket; the thread serves it forwarded requests on loopback.
                try:
                    self._helper = self._spawn_helper(listener, internal := self._listen("127.0.0.1", 0))
                finally:
                    listener.close()
                listener = internal
            self._listener = listener
            stopping = self._stopping = asyncio.new_event_loop().create_future()
            thread = threading.Thread(target=self._serve, args=(listener, stopping), name="rfobs-health", daemon=True)
            self._thread = thread
            thread.start()
            return self.url

    def stop(self, timeout: float = 2.0) -> None:
        """Stop listening, drop open connections and end the thread, waiting at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            stopping, thread, helper = self._stopping, self._thread, self._helper
            self._stopping = self._thread = self._helper = None
        if helper is not None:
            _end_helper(helper, timeout / 2)
        if stopping is None or thread is None:
            return
        try:
            stopping.get_loop().call_soon_threadsafe(_set_done, stopping)
        except RuntimeError:  # the loop has already closed
            return
        thread.join(max(0.0, deadline - time.monotonic()))

    def release_after_fork(self) -> None:
        """In a forked child: let go of the parent's server without stopping it.

        Closes the child's copies of the listening socket and of the helper's stdin (the helper exits when every
        copy is closed, so a child that kept one would keep `/health/live` answering after the agent died).
        """
        self._lock = threading.Lock()  # a thread of the parent may have held it at the fork
        listener, helper = self._listener, self._helper
        self._stopping = self._thread = self._helper = self._listener = None
        if listener is not None:
            listener.close()
        if helper is not None and helper.stdin is not None:
            helper.stdin.close()

    def __enter__(self) -> HealthServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _listen(self, host: str, port: int) -> socket.socket:
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            listener = socket.create_server((host, port), family=family, backlog=1024)
        except OSError as error:
            raise OSError(
                error.errno, f"rfobs health server cannot listen on {host}:{port}: {error.strerror}"
            ) from error
        listener.setblocking(False)
        return listener

    def _spawn_helper(self, listener: socket.socket, internal: socket.socket) -> subprocess.Popen[bytes]:
        from rfobs.health import _wire

        deadline = self.checker.timeout + REPORT_MARGIN + 1.0
        command = [sys.executable, "-I", "-S", _wire.__file__, str(listener.fileno())]
        command += [str(internal.getsockname()[1]), str(deadline), str(self.checker.cache_ttl)]
        try:
            # stdin stays open for the helper's life: it exits when it reads end of file.
            return subprocess.Popen(command, stdin=subprocess.PIPE, pass_fds=(listener.fileno(),))
        except OSError as error:
            internal.close()
            raise OSError(error.errno, f"rfobs health server cannot start its /health/live helper: {error}") from error

    def _serve(self, listener: socket.socket, stopping: asyncio.Future[None]) -> None:
        loop = stopping.get_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._run(listener, stopping))
        finally:
            listener.close()
            loop.close()

    async def _run(self, listener: socket.socket, stopping: asyncio.Future[None]) -> None:
        connections: set[Connection] = set()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Connection(self._answer, connections), sock=listener, backlog=1024)
        interval = self.check_interval
        schedule = loop.create_task(self._run_checks_every(interval)) if interval > 0 else None
        try:
            await stopping
        finally:
            if schedule is not None:
                schedule.cancel()  # a sleep or a run in flight: gone at once, never waited for
            server.close()
            for connection in list(connections):
                connection.abort()
            # Cancel what is left (reports in flight) and give it a moment; a check that ignores cancellation
            # is abandoned with the loop, not waited for. The loop turns once in any case: the aborted
            # connections close their sockets then.
            pending = asyncio.all_tasks() - {asyncio.current_task()}
            for task in pending:
                task.cancel()
            await (asyncio.wait(pending, timeout=0.5) if pending else asyncio.sleep(0))

    def _answer(self, request: Request) -> Answer | Coroutine[Any, Any, Answer]:
        if (status_body := immediate(request.method, request.path)) is not None:
            return answer_for(request, *status_body)
        return self._report(request)

    async def _report(self, request: Request) -> Answer:
        return answer_for(request, *await respond(self.checker, request.method, request.path))

    async def _run_checks_every(self, interval: float) -> None:
        """Run the checks now and then every `interval` seconds (from the end of a run) until cancelled."""
        while True:
            if (finished := await _report_within_bound(self.checker)) is not None:
                try:
                    finished.result()
                except asyncio.CancelledError:  # a run shared with a request that timed out
                    pass
                except Exception:
                    _guard.internal_error("running the scheduled health checks")
            await asyncio.sleep(interval)


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _end_helper(helper: subprocess.Popen[bytes], timeout: float) -> None:
    """Close the helper's stdin (it exits on end of file), then kill it if it has not exited within `timeout`."""
    if helper.stdin is not None:
        helper.stdin.close()
    try:
        helper.wait(timeout)
    except subprocess.TimeoutExpired:
        helper.kill()
        helper.wait(1.0)
