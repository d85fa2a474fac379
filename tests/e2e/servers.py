# pyright: strict
"""Start real telemetry backends (Prometheus, Redis) for end-to-end tests, and the helpers every server uses.

Every server here:

* listens on ``127.0.0.1`` on a free port, with its state in a fresh temporary directory;
* is started with :class:`subprocess.Popen` in its own process group / session, so a Ctrl-C in
  the terminal does not reach it and it cannot outlive the ``with`` block silently;
* is polled for readiness with a bounded loop (:func:`wait_until`), never a fixed sleep;
* is always stopped by PID when the ``with`` block ends, also on exceptions: SIGTERM, wait up
  to 10 s, then SIGKILL of its process group.

Missing binaries raise :class:`MissingBinaryError` with the install command; nothing here skips
silently. The only runtime dependencies are the standard library and the binaries themselves
(Arize Phoenix is `phoenix_server.py`'s; the OpenTelemetry Collector and Jaeger are `engines.py`'s).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
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
    "HttpStatusError",
    "MissingBinaryError",
    "PrometheusHandle",
    "ServerStartError",
    "WaitTimeoutError",
    "free_port",
    "free_ports",
    "http_get",
    "http_json",
    "http_ok",
    "log_tail",
    "prometheus",
    "promtool_check_metrics",
    "require_binary",
    "spawn",
    "wait_until",
]

T = TypeVar("T")

APT_INSTALL_HINT = "apt-get install --no-install-recommends prometheus redis-server"
"""How CI (and a developer) installs the native servers these helpers need."""

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


def free_ports(count: int) -> list[int]:
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


def require_binary(name: str) -> str:
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
    binary = require_binary("prometheus")
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
    binary = require_binary("promtool")
    return subprocess.run(
        [binary, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
