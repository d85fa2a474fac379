# pyright: strict
"""Start a real Redis (Debian's redis-server) for end-to-end tests, and a proxy that slows or stalls it.

Like the servers in `servers.py`, Redis listens on 127.0.0.1 on a free port with its state in a fresh temporary
directory, is polled for readiness with a bounded wait and is stopped by PID when its `with` block ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.servers import (
    free_port,
    require_binary,
    spawn,
    wait_until,
)

__all__ = ["DelayProxy", "RedisHandle", "redis_server"]


@dataclass(frozen=True)
class RedisHandle:
    """A running Redis started by :func:`redis_server`.

    Attributes:
        url: ``redis://127.0.0.1:PORT/0``.
        port: The TCP port.
        pid: PID of the ``redis-server`` process.
        log_path: Redis's own log file.
    """

    url: str
    port: int
    pid: int
    log_path: Path

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 10.0) -> None:
        """Stop this Redis by PID (SIGKILL: a crash; SIGTERM: a clean stop) and wait until its port refuses.

        The ``with`` block of :func:`redis_server` still reaps the process at its end.
        """
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)
        wait_until(lambda: not _port_open(self.port), timeout, what=f"redis-server {self.pid} to stop")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        return sock.recv(64).startswith(b"+PONG")


@contextlib.contextmanager
def redis_server(
    port: int | None = None, extra_args: Sequence[str] = (), *, startup_timeout: float = 10.0
) -> Generator[RedisHandle]:
    """Run a throw-away Redis on 127.0.0.1 with no persistence.

    Fault injection: stop it mid-test with :meth:`RedisHandle.kill` (by PID), then start a new one on the
    same port with ``redis_server(port=handle.port)``: clients see a restart (empty Redis, no scripts).

    Args:
        port: The port to listen on; None picks a free one.
        extra_args: More ``redis-server`` arguments, e.g. ``("--maxmemory", "1mb", "--maxmemory-policy",
            "noeviction")`` for a Redis that is full.
        startup_timeout: Seconds to wait for it to answer PING.

    Yields:
        A :class:`RedisHandle`.

    Raises:
        MissingBinaryError: ``redis-server`` is not installed.
        ServerStartError: It exited during startup (the message has its log tail).
        WaitTimeoutError: It did not answer PING in time.
    """
    binary = require_binary("redis-server")
    with tempfile.TemporaryDirectory(prefix="rfobs-redis-") as tmp:
        tmpdir = Path(tmp)
        port = free_port() if port is None else port
        log_path = tmpdir / "redis.log"
        stdio_path = tmpdir / "redis.stdio.log"  # errors before the logfile is opened go here
        argv = [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--protected-mode", "yes",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(tmpdir),
            "--daemonize", "no",
            "--logfile", str(log_path),
            "--loglevel", "warning",
            *extra_args,
        ]  # fmt: skip
        with spawn(argv, stdio_path, cwd=tmpdir) as proc:
            wait_until(
                lambda: _redis_ping(port),
                startup_timeout,
                what=f"redis-server PONG on 127.0.0.1:{port}",
                logs=[stdio_path, log_path],
                proc=proc,
            )
            yield RedisHandle(url=f"redis://127.0.0.1:{port}/0", port=port, pid=proc.pid, log_path=log_path)


class DelayProxy:
    """A TCP proxy on a free 127.0.0.1 port that holds every chunk the server sends back for ``delay`` seconds.

    For "the server answers slowly" (Redis behind it: each reply arrives ``delay`` late). The delay can be
    changed while connections are open; requests go through at once. Use as a context manager, or
    :meth:`start` / :meth:`stop`::

        with DelayProxy(redis.port, delay=0.2) as proxy:
            store = RedisStore(proxy.url("redis"), timeout=0.05)
            proxy.delay = 0.0  # fast again

    Args:
        target_port: The server's port on 127.0.0.1.
        delay: Seconds each reply chunk is held.
    """

    def __init__(self, target_port: int, *, delay: float = 0.0) -> None:
        self.target_port = target_port
        self.delay = delay
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def url(self, scheme: str = "redis", path: str = "/0") -> str:
        """``{scheme}://127.0.0.1:{port}{path}`` of the proxy."""
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def start(self) -> DelayProxy:
        """Listen on a free port (``self.port``) and forward connections in daemon threads."""
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(0.1)
        self._listener, self.port = listener, int(listener.getsockname()[1])
        self._start_thread(self._accept, listener)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every connection, and join the threads (at most ``timeout`` seconds)."""
        self._stopping.set()
        with self._lock:
            sockets, self._sockets = [*self._sockets, *filter(None, [self._listener])], []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _start_thread(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name="DelayProxy")
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()  # the server is down: so is the proxied connection
                continue
            with self._lock:
                self._sockets += [client, upstream]
            self._start_thread(self._pump, client, upstream, False)
            self._start_thread(self._pump, upstream, client, True)

    def _pump(self, source: socket.socket, sink: socket.socket, delayed: bool) -> None:
        source.settimeout(0.1)
        try:
            while not self._stopping.is_set():
                try:
                    chunk = source.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                if delayed and self.delay > 0:
                    self._stopping.wait(self.delay)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
