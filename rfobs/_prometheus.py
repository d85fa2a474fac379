"""The `/metrics` endpoint of one process, and the file_sd target that tells Prometheus where it is.

Every process that serves `/metrics` (the agent, each forked or spawned worker) writes one JSON file into
`metrics.targets_dir`; Prometheus's `file_sd_configs` with `files: [<dir>/*.json]` then scrapes every worker,
and `sum by (...)` adds their counts up. A file disappears when its process shuts down; files left by processes
that died without shutting down are removed by the next process that writes its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client import CollectorRegistry

__all__ = ["MetricsEndpoint", "TargetFile"]

_log = logging.getLogger("rfobs")
_PREFIX = "rfobs-"


class TargetFile:
    """One process's Prometheus file_sd target: `<directory>/rfobs-<pid>.json`, written atomically."""

    def __init__(self, directory: str, address: str, labels: dict[str, str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / f"{_PREFIX}{os.getpid()}.json"
        self._body = json.dumps([{"targets": [address], "labels": labels}], indent=1)

    def write(self) -> None:
        """Write the target (never raises: discovery is a convenience, the endpoint works without it)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            scratch = self.path.with_suffix(".tmp")
            scratch.write_text(self._body, encoding="utf-8")
            os.replace(scratch, self.path)  # Prometheus must never read a half-written file
            _prune_dead(self.directory)
        except OSError as error:
            _log.warning("rfobs: cannot write the Prometheus target %s: %s", self.path, error.strerror or error)

    def remove(self) -> None:
        """Remove the target file, if this process wrote it."""
        with contextlib.suppress(OSError):
            self.path.unlink()


def _prune_dead(directory: Path) -> None:
    """Remove the targets of processes on this host that no longer run."""
    for path in directory.glob(f"{_PREFIX}*.json"):
        pid = path.stem.removeprefix(_PREFIX)
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _stop_serving(server: WSGIServer, host: str, port: int) -> None:
    """`server.shutdown()` without its wait of up to half a second for the serving loop to poll again.

    The loop checks for shutdown only when its `select()` returns; a connection of our own makes it return now.
    """
    stopping = threading.Thread(target=server.shutdown, name="rfobs-metrics-stop", daemon=True)
    stopping.start()
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # connect where it listens
    for _ in range(20):  # the first wake-up may come before shutdown() has raised its flag
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.1):
            pass
        stopping.join(0.02)
        if not stopping.is_alive():
            return
    stopping.join(1.0)


class MetricsEndpoint:
    """`/metrics` for one registry, served by `prometheus_client`'s HTTP server in a daemon thread.

    Args:
        registry: The registry the `PrometheusMetricReader` is registered in.
        host: The address to bind.
        port: The port; 0 picks a free one.
        targets_dir: Where to announce the endpoint for Prometheus file service discovery; None: nowhere.
        labels: Labels the target carries in Prometheus (e.g. the service name).
    """

    def __init__(
        self, registry: CollectorRegistry, host: str, port: int, targets_dir: str | None, labels: dict[str, str]
    ) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self.url: str | None = None
        self._targets_dir = targets_dir
        self._labels = labels
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._target: TargetFile | None = None

    def start(self) -> str:
        """Bind and serve; return the URL of `/metrics`.

        Raises:
            OSError: The address cannot be bound.
        """
        from prometheus_client import start_http_server

        self._server, self._thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        self.port = self._server.server_port
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}/metrics"
        if self._targets_dir is not None:
            self._target = TargetFile(self._targets_dir, f"{shown}:{self.port}", self._labels)
            self._target.write()
        return self.url

    def withdraw(self) -> None:
        """Remove the target file now (the process is going away) and keep serving until `close()`."""
        if (target := self._target) is not None:
            target.remove()

    def close(self) -> None:
        """Stop serving and withdraw the target (the owning process only)."""
        server, thread, target = self._server, self._thread, self._target
        self._server = self._thread = self._target = None
        if target is not None:
            target.remove()
        if server is not None:
            _stop_serving(server, self.host, self.port)
            server.server_close()
        if thread is not None:
            thread.join(1.0)

    def release_after_fork(self) -> None:
        """In a forked child: close the inherited listening socket without touching the parent's server.

        The child has no serving thread (threads do not survive fork), so `shutdown()` would wait forever; and
        a child that kept the socket open would hold the parent's port after the parent exits.
        """
        server = self._server
        self._server = self._thread = self._target = None
        self.url = None
        # A scrape in the parent may have held the registry's lock at the fork.
        self.registry._lock = threading.Lock()  # pyright: ignore[reportPrivateUsage]
        if server is not None:
            with contextlib.suppress(OSError):
                server.socket.close()
