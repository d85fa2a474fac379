# pyright: strict
"""Start real telemetry backends (Prometheus, Redis, Arize Phoenix) for end-to-end tests.

Every server here:

* listens on ``127.0.0.1`` on a free port (Phoenix's gRPC listener is the one exception, see
  :func:`phoenix`), with its state in a fresh temporary directory;
* is started with :class:`subprocess.Popen` in its own process group / session, so a Ctrl-C in
  the terminal does not reach it and it cannot outlive the ``with`` block silently;
* is polled for readiness with a bounded loop (:func:`wait_until`), never a fixed sleep;
* is always stopped by PID when the ``with`` block ends, also on exceptions: SIGTERM, wait up
  to 10 s, then SIGKILL of its process group.

Missing binaries raise :class:`MissingBinaryError` with the install command; nothing here skips
silently. The only runtime dependencies are the standard library and the binaries themselves
(Phoenix is pip-installed into its own venv on first use, see :func:`ensure_phoenix_venv`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

__all__ = [
    "APT_INSTALL_HINT",
    "PHOENIX_SPEC",
    "DelayProxy",
    "HttpStatusError",
    "MissingBinaryError",
    "PhoenixHandle",
    "PrometheusHandle",
    "RedisHandle",
    "ServerStartError",
    "WaitTimeoutError",
    "ensure_phoenix_venv",
    "free_port",
    "http_get",
    "http_json",
    "http_ok",
    "log_tail",
    "phoenix",
    "phoenix_venv_path",
    "prometheus",
    "promtool_check_metrics",
    "redis_server",
    "spawn",
    "wait_until",
]

T = TypeVar("T")

APT_INSTALL_HINT = "apt-get install --no-install-recommends prometheus redis-server"
"""How CI (and a developer) installs the native servers these helpers need."""

PHOENIX_VERSION = "20.26.1"
PHOENIX_SPEC = f"arize-phoenix=={PHOENIX_VERSION}"
"""Phoenix is pinned: at major 20 its env vars and REST shapes still move between releases."""
_PHOENIX_EXTRA_SPECS = (
    "opentelemetry-exporter-otlp-proto-http==1.45.2",
    "opentelemetry-exporter-otlp-proto-grpc==1.45.2",
)

STOP_TIMEOUT = 10.0
"""Seconds a server gets between SIGTERM and SIGKILL."""

_LOG_TAIL_LINES = 60
# 127.0.0.1 must never go through an HTTP proxy taken from the environment.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class MissingBinaryError(RuntimeError):
    """A server binary (prometheus, promtool, redis-server) is not installed."""


class ServerStartError(RuntimeError):
    """A server exited or never became ready during startup."""


class HttpStatusError(OSError):
    """A server answered with an HTTP error status. An ``OSError``, so readiness polls retry on it.

    Attributes:
        url: The requested URL.
        code: The HTTP status code.
        body: The response body, decoded leniently.
    """

    def __init__(self, url: str, code: int, body: str) -> None:
        super().__init__(f"HTTP {code} from {url}: {body[:500]}")
        self.url = url
        self.code = code
        self.body = body


class WaitTimeoutError(TimeoutError, AssertionError):
    """:func:`wait_until` ran out of time. Also an ``AssertionError`` so pytest reports it as a failure."""


# --------------------------------------------------------------------------------------------
# generic helpers
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now.

    Returns:
        A port number obtained by binding ``127.0.0.1:0``. Another process may take it before
        the caller binds it; the servers here fail fast (with their log) if that happens.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def log_tail(*paths: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """Return the last lines of each existing log file, labelled with its path.

    Args:
        *paths: Log files to read; missing ones are skipped.
        lines: How many lines to keep from the end of each file.

    Returns:
        The tails joined into one string, or ``"(no log output)"``.
    """
    parts: list[str] = []
    for path in paths:
        try:
            text = path.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            continue
        tail = "\n".join(text.rstrip("\n").splitlines()[-lines:])
        if tail:
            parts.append(f"---- {path} (last {lines} lines) ----\n{tail}")
    return "\n".join(parts) if parts else "(no log output)"


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    interval: float = 0.05,
    what: str | Callable[[], str] = "condition",
    *,
    logs: Sequence[Path] = (),
    proc: subprocess.Popen[bytes] | None = None,
    retry_on: tuple[type[BaseException], ...] = (OSError, ValueError),
) -> T:
    """Poll ``predicate`` until it returns a truthy value, for at most ``timeout`` seconds.

    Args:
        predicate: Called repeatedly; the first truthy result is returned.
        timeout: Upper bound in seconds.
        interval: Sleep between calls, in seconds.
        what: What is being waited for, for the error message; a callable is evaluated only on
            failure (handy to include the last observed state).
        logs: Server log files whose tails are added to the error message.
        proc: The server process; if it exits while waiting, fail at once instead of timing out.
        retry_on: Exception types raised by ``predicate`` that count as "not yet" (connection
            refused, HTTP errors, half-written JSON). Others propagate.

    Returns:
        The first truthy value returned by ``predicate``.

    Raises:
        WaitTimeoutError: The deadline passed (an ``AssertionError`` and a ``TimeoutError``).
        ServerStartError: ``proc`` exited while waiting.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
        except retry_on as exc:
            last_exc = exc
        else:
            if value:
                return value
        if proc is not None and proc.poll() is not None:
            described = what() if callable(what) else what
            raise ServerStartError(
                f"process {proc.pid} ({_argv0(proc)}) exited with code {proc.returncode} while waiting for "
                f"{described}\n{log_tail(*logs)}"
            )
        if time.monotonic() >= deadline:
            described = what() if callable(what) else what
            last = f"\nlast error: {last_exc!r}" if last_exc is not None else ""
            raise WaitTimeoutError(f"timed out after {timeout:g}s waiting for {described}{last}\n{log_tail(*logs)}")
        time.sleep(interval)


def _argv0(proc: subprocess.Popen[bytes]) -> str:
    args = proc.args
    if isinstance(args, (list, tuple)):
        seq = [str(a) for a in cast("Sequence[object]", args)]
        if "--" in seq:  # skip the setpriv prefix
            seq = seq[seq.index("--") + 1 :]
        return seq[0] if seq else "?"
    return str(args)


def _require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MissingBinaryError(
            f"`{name}` is not on PATH. The end-to-end tests need the real server; install it with\n"
            f"    sudo {APT_INSTALL_HINT}\n"
            "(Debian/Ubuntu; CI does the same)."
        )
    return path


def _parent_death_prefix() -> list[str]:
    """``setpriv --pdeathsig TERM --`` (util-linux) if available, else nothing.

    The ``with`` blocks stop servers on any exception, but nothing runs if pytest itself is
    SIGKILLed (CI timeout, OOM killer). With this prefix the kernel then still sends SIGTERM to
    the server. setpriv execs the server, so the PID stays the same. The signal follows the
    *thread* that started the server, so start servers from a long-lived thread (pytest runs
    fixtures in the main thread). Done with setpriv rather than ``preexec_fn``, which is unsafe
    in a process with threads.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process by PID, wait up to STOP_TIMEOUT, then SIGKILL its process group."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        # Still running, so the group id (== its pid, start_new_session) is certainly ours.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def spawn(
    argv: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Generator[subprocess.Popen[bytes]]:
    """Start ``argv`` in its own session with stdout+stderr to ``log_path``; always stop it on exit."""
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [*_parent_death_prefix(), *argv],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        _stop(proc)


def http_get(url: str, timeout: float = 10.0) -> bytes:
    try:
        with _HTTP.open(url, timeout=timeout) as resp:
            return cast(bytes, resp.read())
    except urllib.error.HTTPError as exc:
        with exc:  # an HTTPError holds the connection open until closed (ResourceWarning otherwise)
            body = exc.read().decode("utf-8", errors="replace")
        raise HttpStatusError(url, exc.code, body) from None


def http_ok(url: str, timeout: float = 2.0) -> bool:
    http_get(url, timeout)  # raises on connection errors and HTTP >= 400
    return True


def http_json(url: str, timeout: float = 10.0) -> Any:
    return json.loads(http_get(url, timeout))


# --------------------------------------------------------------------------------------------
# Prometheus
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrometheusHandle:
    """A running Prometheus started by :func:`prometheus`.

    Attributes:
        url: Base URL, ``http://127.0.0.1:PORT``.
        pid: PID of the ``prometheus`` process.
        log_path: Its combined stdout/stderr log.
    """

    url: str
    pid: int
    log_path: Path

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Run an instant query through ``/api/v1/query``.

        Args:
            promql: The PromQL expression.

        Returns:
            The result samples, each ``{"metric": {...labels}, "value": [ts, "value"]}``
            (a scalar or string result is wrapped the same way with empty labels).

        Raises:
            RuntimeError: Prometheus rejected the query (bad PromQL, ...).
        """
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        try:
            body = http_json(url)
        except HttpStatusError as exc:
            raise RuntimeError(f"Prometheus query {promql!r} failed: HTTP {exc.code}: {exc.body}") from None
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus query {promql!r} failed: {body}")
        data = cast("dict[str, Any]", body["data"])
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return cast("list[dict[str, Any]]", data["result"])

    def wait_for_value(self, promql: str, expected: float, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll ``promql`` until it returns exactly one sample whose value equals ``expected``.

        The first scrape lands about 6 s after Prometheus starts (the scrape manager applies
        new targets on a 5 s tick), so the default timeout leaves ample room. Aggregate
        (``sum(...)``) if the expression can return several series.

        Args:
            promql: The PromQL expression.
            expected: The value to wait for (compared with ``math.isclose``).
            timeout: Upper bound in seconds.

        Returns:
            The matching result (one sample).

        Raises:
            WaitTimeoutError: The value did not show up in time; the message has the last result.
        """
        last: list[list[dict[str, Any]]] = [[]]

        def check() -> list[dict[str, Any]] | None:
            result = self.query(promql)
            last[0] = result
            if len(result) == 1 and math.isclose(float(result[0]["value"][1]), expected, rel_tol=1e-9):
                return result
            return None

        return wait_until(
            check,
            timeout,
            interval=0.2,
            what=lambda: f"{promql!r} == {expected!r} on {self.url} (last result: {last[0]!r})",
            logs=[self.log_path],
            retry_on=(OSError,),
        )


@contextlib.contextmanager
def prometheus(
    scrape_targets: Sequence[str],
    scrape_interval: str = "1s",
    *,
    job: str = "rfobs-e2e",
    startup_timeout: float = 30.0,
    file_sd: Sequence[str] = (),
    config_text: str | None = None,
    files: Mapping[str, str] | None = None,
) -> Generator[PrometheusHandle]:
    """Run a throw-away Prometheus that scrapes ``scrape_targets``.

    Args:
        scrape_targets: ``host:port`` targets scraped at ``/metrics`` under one job.
        scrape_interval: Scrape (and rule evaluation) interval, a Prometheus duration.
        job: The ``job`` label of the targets.
        startup_timeout: Seconds to wait for ``/-/ready``.
        file_sd: Globs of file_sd target files (such as rfobs's ``metrics.targets_dir``), re-read every second.
        config_text: A whole ``prometheus.yml`` to run instead of the one built from the arguments above.
        files: More files (rule files, by name) written next to the config.

    Yields:
        A :class:`PrometheusHandle`.

    Raises:
        MissingBinaryError: ``prometheus`` is not installed.
        ServerStartError: It exited during startup (the message has its log tail).
        WaitTimeoutError: It did not become ready in time.
    """
    binary = _require_binary("prometheus")
    with tempfile.TemporaryDirectory(prefix="rfobs-prometheus-") as tmp:
        tmpdir = Path(tmp)
        port = free_port()
        scrape: dict[str, Any] = {"job_name": job, "static_configs": [{"targets": list(scrape_targets)}]}
        if file_sd:
            scrape["file_sd_configs"] = [{"files": list(file_sd), "refresh_interval": "1s"}]
        config = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": [scrape],
        }
        # JSON is valid YAML, so no YAML library (or quoting rules) is needed.
        config_path = tmpdir / "prometheus.yml"
        config_path.write_text(config_text if config_text is not None else json.dumps(config, indent=2))
        for name, text in (files or {}).items():
            (tmpdir / name).write_text(text)
        (tmpdir / "data").mkdir()
        log_path = tmpdir / "prometheus.log"
        argv = [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={tmpdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]
        with spawn(argv, log_path, cwd=tmpdir) as proc:
            url = f"http://127.0.0.1:{port}"
            wait_until(
                lambda: http_ok(f"{url}/-/ready"),
                startup_timeout,
                what=f"Prometheus /-/ready on {url}",
                logs=[log_path],
                proc=proc,
            )
            yield PrometheusHandle(url=url, pid=proc.pid, log_path=log_path)


def promtool_check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    """Lint a Prometheus text exposition with ``promtool check metrics`` (reads stdin).

    Exit codes seen with promtool 2.42: 0 clean, 1 parse error, 3 lint problems only (for
    example a counter without ``_total`` or without HELP).

    Args:
        text: The exposition, e.g. the body of a ``/metrics`` response.

    Returns:
        The completed process (``returncode``, ``stdout``, ``stderr``); it does not raise on a
        non-zero exit.

    Raises:
        MissingBinaryError: ``promtool`` is not installed.
    """
    binary = _require_binary("promtool")
    return subprocess.run(
        [binary, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------


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
    binary = _require_binary("redis-server")
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


# --------------------------------------------------------------------------------------------
# Arize Phoenix
# --------------------------------------------------------------------------------------------


def phoenix_venv_path() -> Path:
    """Where the Phoenix venv lives.

    Returns:
        ``$RFOBS_PHOENIX_VENV`` if set, else ``~/.cache/rfobs-tests/phoenix-<version>``.
    """
    configured = os.environ.get("RFOBS_PHOENIX_VENV")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "rfobs-tests" / f"phoenix-{PHOENIX_VERSION}"


def _venv_has_phoenix(venv: Path) -> bool:
    if not (venv / "bin" / "python").exists():
        return False
    return any(venv.glob(f"lib/python3*/site-packages/arize_phoenix-{PHOENIX_VERSION}.dist-info"))


def ensure_phoenix_venv(venv: Path | None = None, *, install_timeout: float = 1200.0) -> Path:
    """Return a venv with the pinned Phoenix, building it on first use.

    The venv is built in a temporary sibling directory and renamed into place only after pip
    succeeded, so a half-built venv is never used; an exclusive lock file serialises concurrent
    builders (pytest-xdist workers, parallel CI jobs on one cache). Because of the rename, the
    console scripts' shebangs point at the temporary path: always run ``bin/python -m ...``.

    Args:
        venv: Target directory; defaults to :func:`phoenix_venv_path`.
        install_timeout: Upper bound for ``pip install`` in seconds (it takes 45-70 s here).

    Returns:
        The venv directory.

    Raises:
        ServerStartError: ``pip install`` failed, or ``venv`` exists but is not a Phoenix venv.
    """
    venv = venv if venv is not None else phoenix_venv_path()
    if _venv_has_phoenix(venv):
        return venv
    parent = venv.parent
    parent.mkdir(parents=True, exist_ok=True)
    lock_path = parent / f".{venv.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be building it: wait for it
        try:
            if _venv_has_phoenix(venv):
                return venv
            if venv.exists():
                raise ServerStartError(
                    f"{venv} exists but has no {PHOENIX_SPEC}; remove it (or point RFOBS_PHOENIX_VENV elsewhere)"
                )
            # We hold the lock, so any leftover build dir is from an interrupted run.
            for stale in parent.glob(f".{venv.name}.building-*"):
                shutil.rmtree(stale, ignore_errors=True)
            build = Path(tempfile.mkdtemp(prefix=f".{venv.name}.building-", dir=parent))
            log_path = parent / f".{venv.name}.build.log"
            try:
                with open(log_path, "wb") as log_file:
                    subprocess.run(
                        [sys.executable, "-m", "venv", "--clear", str(build)],
                        stdout=log_file, stderr=subprocess.STDOUT, check=True, timeout=300,
                    )  # fmt: skip
                    subprocess.run(
                        [str(build / "bin" / "python"), "-m", "pip", "install", "-q", PHOENIX_SPEC,
                         *_PHOENIX_EXTRA_SPECS],
                        stdout=log_file, stderr=subprocess.STDOUT, check=True, timeout=install_timeout,
                    )  # fmt: skip
                build.chmod(0o755)  # mkdtemp made it 0700
                build.rename(venv)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                shutil.rmtree(build, ignore_errors=True)
                raise ServerStartError(f"building the Phoenix venv failed: {exc}\n{log_tail(log_path)}") from exc
            except BaseException:
                shutil.rmtree(build, ignore_errors=True)
                raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return venv


# Everything that makes Phoenix reach out (telemetry pixels, web fonts, WASM download, the
# agent assistant's GitHub/docs MCP lookups) is switched off; with these set, strace showed no
# non-loopback connect or DNS lookup at all (see BACKENDS.md).
_PHOENIX_QUIET_ENV = {
    "PHOENIX_TELEMETRY_ENABLED": "false",
    "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
    "PHOENIX_DISABLE_AGENT_ASSISTANT": "true",
    "PHOENIX_AGENTS_DISABLE_WEB_ACCESS": "true",
    "PHOENIX_AGENTS_DISABLE_GITHUB": "true",
    "PHOENIX_AGENTS_DISABLE_BASH": "true",
    "PHOENIX_ENABLE_MCP_SERVER": "false",
    "PHOENIX_LOG_MIGRATIONS": "false",
}


@dataclass(frozen=True)
class PhoenixHandle:
    """A running Phoenix started by :func:`phoenix`.

    Attributes:
        http_url: Base URL, ``http://127.0.0.1:PORT``; OTLP/HTTP (protobuf only) goes to
            ``{http_url}/v1/traces``.
        grpc_endpoint: OTLP/gRPC endpoint, ``http://127.0.0.1:PORT`` (use ``insecure=True``).
        pid: PID of the Phoenix server process.
        log_path: Its combined stdout/stderr log.
    """

    http_url: str
    grpc_endpoint: str
    pid: int
    log_path: Path

    def spans(self, project: str, **filters: str | int | Sequence[str]) -> list[dict[str, Any]]:
        """Read a project's spans through ``GET /v1/projects/{project}/spans``, all pages.

        Spans are returned in insertion order, each as ``{"name", "context": {"trace_id",
        "span_id"}, "parent_id", "start_time", "end_time", "status_code", "status_message",
        "attributes" (flat dotted keys), "events", "span_kind", ...}``.

        Args:
            project: Project name (or id).
            **filters: Query filters passed through, e.g. ``trace_id=...``, ``name=[...]``,
                ``parent_id="null"`` (root spans only), ``status_code="ERROR"``.

        Returns:
            The spans; an unknown project raises (Phoenix creates projects on first ingest).

        Raises:
            HttpStatusError: e.g. code 404 if the project does not exist (yet), 422 for a bad filter.
        """
        params: dict[str, Any] = {"limit": 1000, "sort": "id", "order": "asc"}
        for key, value in filters.items():
            params[key] = value if isinstance(value, (str, int)) else list(value)
        base = f"{self.http_url}/v1/projects/{urllib.parse.quote(project, safe='')}/spans"
        spans: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page_params = dict(params) if cursor is None else {**params, "cursor": cursor}
            body = http_json(f"{base}?{urllib.parse.urlencode(page_params, doseq=True)}")
            spans.extend(cast("list[dict[str, Any]]", body["data"]))
            cursor = cast("str | None", body.get("next_cursor"))
            if not cursor:
                return spans

    def wait_for_spans(
        self, project: str, count: int, timeout: float = 30.0, **filters: str | int | Sequence[str]
    ) -> list[dict[str, Any]]:
        """Poll until the project holds at least ``count`` spans (ingestion is asynchronous).

        Args:
            project: Project name.
            count: Minimum number of spans to wait for.
            timeout: Upper bound in seconds.
            **filters: As for :meth:`spans`.

        Returns:
            All matching spans (possibly more than ``count``; assert the exact number yourself).

        Raises:
            WaitTimeoutError: Fewer than ``count`` spans arrived in time.
        """
        last: list[list[dict[str, Any]]] = [[]]

        def check() -> list[dict[str, Any]] | None:
            try:
                found = self.spans(project, **filters)
            except HttpStatusError as exc:
                if exc.code == 404:  # the project is created by the first span that arrives
                    return None
                if exc.code < 500:  # a bad request will not get better: fail now
                    raise RuntimeError(str(exc)) from None
                raise
            last[0] = found
            return found if len(found) >= count else None

        return wait_until(
            check,
            timeout,
            interval=0.1,
            what=lambda: (
                f"{count} span(s) in Phoenix project {project!r} (filters {filters!r}); "
                f"got {len(last[0])}: {[s.get('name') for s in last[0]]}"
            ),
            logs=[self.log_path],
            retry_on=(OSError,),
        )


@contextlib.contextmanager
def phoenix(*, startup_timeout: float = 180.0, venv: Path | None = None) -> Generator[PhoenixHandle]:
    """Run a throw-away Arize Phoenix (pinned :data:`PHOENIX_SPEC`) with a fresh SQLite DB.

    The venv is built on first use (:func:`ensure_phoenix_venv`, 45-70 s); startup then takes
    10-12 s on 2 cores (migrations on a fresh DB). All outbound traffic and telemetry is off.

    Note:
        Phoenix hard-wires its gRPC listener to ``[::]:PORT``, so that port is reachable on
        every interface regardless of ``PHOENIX_HOST`` (the HTTP port honours it and binds
        127.0.0.1 only). This cannot be configured; the tests only ever talk to 127.0.0.1, and
        the server lives only as long as the ``with`` block. Run the suite under ``unshare -n``
        (after the venv exists) if the port must not be exposed at all.

    Args:
        startup_timeout: Seconds to wait for ``GET /healthz`` (not counting the venv build).
        venv: Phoenix venv; defaults to :func:`phoenix_venv_path`.

    Yields:
        A :class:`PhoenixHandle`.

    Raises:
        ServerStartError: The venv build failed or Phoenix exited during startup.
        WaitTimeoutError: ``/healthz`` did not answer in time.
    """
    venv = ensure_phoenix_venv(venv)
    with tempfile.TemporaryDirectory(prefix="rfobs-phoenix-") as tmp:
        tmpdir = Path(tmp)
        http_port, grpc_port = _free_ports(2)
        working_dir = tmpdir / "wd"
        working_dir.mkdir()
        # Inherited PHOENIX_*/OTEL_* settings (collector endpoints, auth, DB URL...) would change
        # what the server does; start from a clean slate.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))}
        env.update(_PHOENIX_QUIET_ENV)
        env.update(
            {
                "PHOENIX_HOST": "127.0.0.1",
                "PHOENIX_PORT": str(http_port),
                "PHOENIX_GRPC_PORT": str(grpc_port),
                # Also keeps Phoenix from creating ~/.phoenix.
                "PHOENIX_WORKING_DIR": str(working_dir),
                "PYTHONUNBUFFERED": "1",
            }
        )
        log_path = tmpdir / "phoenix.log"
        # `python -m`, not bin/phoenix: the venv was built elsewhere and renamed (see above).
        argv = [str(venv / "bin" / "python"), "-m", "phoenix.server.main", "serve"]
        with spawn(argv, log_path, env=env, cwd=tmpdir) as proc:
            http_url = f"http://127.0.0.1:{http_port}"
            wait_until(
                lambda: http_get(f"{http_url}/healthz", timeout=2).strip() == b"OK",
                startup_timeout,
                interval=0.2,
                what=f"Phoenix GET {http_url}/healthz == OK",
                logs=[log_path],
                proc=proc,
            )
            yield PhoenixHandle(
                http_url=http_url,
                grpc_endpoint=f"http://127.0.0.1:{grpc_port}",
                pid=proc.pid,
                log_path=log_path,
            )
