"""Health checks that ask something outside the process: the git work tree, and dependencies over TCP or HTTP."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import shutil
import ssl
import time
import urllib.parse
from collections.abc import Sequence
from typing import Final
from urllib.parse import quote

from rfobs import _check
from rfobs._secrets import redact_url, scrub_text
from rfobs.health import _check_base as b
from rfobs.health._model import CheckResult, Status, Value

__all__ = ["DependencyCheck", "GitRepositoryCheck"]

# -- git ----------------------------------------------------------------------------------------------------------


class GitRepositoryCheck(b.BaseCheck):
    """The git work tree at `path`: branch, commit, uncommitted changes, detached HEAD.

    Unhealthy when `path` is not a work tree; degraded when dirty (tracked files changed, staged or conflicted;
    untracked files are counted but do not make it dirty) and `allow_dirty` is False, or detached and
    `allow_detached` is False; skipped when git is not installed. `git` runs as an asyncio subprocess with
    `--no-optional-locks`, so the check never takes the index lock from a concurrent git command.

    Args:
        path: A directory inside the work tree.
        allow_dirty: Whether uncommitted changes are healthy.
        allow_detached: Whether a detached HEAD is healthy.
        timeout: Seconds each git command may take.
        executable: The git program (looked up on PATH).
        name: The check's name.
        critical: Whether failing makes the whole report unhealthy.
    """

    def __init__(
        self,
        path: b.PathArg = ".",
        *,
        allow_dirty: bool = True,
        allow_detached: bool = False,
        timeout: float = 5.0,
        executable: str = "git",
        name: str = "git",
        critical: bool = False,
    ) -> None:
        super().__init__(name, critical)
        owner = "GitRepositoryCheck"
        self.path = b.path(owner, "path", path)
        self.allow_dirty = _check.flag(owner, "allow_dirty", allow_dirty)
        self.allow_detached = _check.flag(owner, "allow_detached", allow_detached)
        self.timeout = _check.number(owner, "timeout", timeout, gt=0, finite=False)
        self.executable = _check.text(owner, "executable", executable)

    async def run(self) -> CheckResult:
        """Ask git about the work tree and judge."""
        started = time.perf_counter()
        git = shutil.which(self.executable)
        if git is None:
            return self._result(
                Status.SKIPPED, f"git is not installed ({self.executable!r} not found on PATH)", {}, started
            )
        # Both commands are awaited to the end (no orphan git process), even when one fails.
        status, abbrev = await asyncio.gather(
            self._git(git, "status", "--porcelain=v2", "--branch"),
            self._git(git, "rev-parse", "--short", "HEAD"),
            return_exceptions=True,
        )
        for outcome in (status, abbrev):
            if isinstance(outcome, TimeoutError):
                return self._result(Status.UNHEALTHY, f"git did not answer within {self.timeout:g}s", {}, started)
            if isinstance(outcome, OSError):
                reason = scrub_text(str(outcome))
                return self._result(Status.UNHEALTHY, f"cannot run {self.executable}: {reason}", {}, started)
            if isinstance(outcome, BaseException):
                raise outcome
        assert not isinstance(status, BaseException) and not isinstance(abbrev, BaseException)
        (code, out, err), (short_code, short, _) = status, abbrev
        if code != 0:
            reason = scrub_text(err.strip().splitlines()[0] if err.strip() else f"git exited with {code}")
            return self._result(
                Status.UNHEALTHY, f"not a git work tree: {self.path} ({reason})", {"is_repo": False}, started
            )
        head, changes, untracked = "", 0, 0
        for line in out.splitlines():
            if line.startswith("# branch.head "):
                head = line.removeprefix("# branch.head ")
            elif line[:2] in ("1 ", "2 ", "u "):
                changes += 1
            elif line.startswith("? "):
                untracked += 1
        detached = head == "(detached)"
        commit = short.strip() if short_code == 0 else "(none)"
        values: dict[str, Value] = {
            "is_repo": True,
            "branch": "" if detached else head,
            "commit": commit,
            "uncommitted_changes": changes,
            "untracked_files": untracked,
            "detached": detached,
        }
        where = f"detached HEAD at {commit}" if detached else f"{head} at {commit}"
        problems: list[str] = []
        if detached and not self.allow_detached:
            problems.append("HEAD is detached")
        if changes and not self.allow_dirty:
            problems.append(f"{changes} uncommitted change{'s' if changes != 1 else ''}")
        if problems:
            return self._result(Status.DEGRADED, f"{where}: {'; '.join(problems)}", values, started)
        return self._result(Status.HEALTHY, f"{where}, {changes} uncommitted, {untracked} untracked", values, started)

    async def _git(self, git: str, *args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            git,
            "--no-optional-locks",
            "-C",
            self.path,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), self.timeout)
        finally:
            # Timed out or cancelled by the checker: the child must not outlive the check.
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        assert process.returncode is not None
        return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


# -- dependencies -------------------------------------------------------------------------------------------------

_URL_SAFE: Final = "/%:@!$&'()*+,;=~-._?"
_DEFAULT_PORTS: Final = {
    "http": 80,
    "https": 443,
    "redis": 6379,
    "rediss": 6380,
    "postgres": 5432,
    "postgresql": 5432,
    "mysql": 3306,
    "amqp": 5672,
    "mongodb": 27017,
}


class DependencyCheck(b.BaseCheck):
    """Whether a dependency answers: a TCP connect, or an HTTP GET with its status code and latency.

    `tcp://host:port` (or a `redis://`, `postgresql://`, ... URL) is probed by opening a connection;
    `http://` and `https://` by a GET whose status must be in `expect_status` (URL user and password are sent as
    basic auth). Unhealthy when refused, unresolvable, past `timeout`, or an unexpected status; degraded when slower
    than `max_latency`. Messages show the URL with its password and secret-looking query values replaced by `***`.

    Args:
        name: The check's name (the dependency: `database`, `llm_api`, ...).
        url: What to probe.
        timeout: Seconds the probe may take.
        critical: Whether failing makes the whole report unhealthy.
        expect_status: HTTP status codes that are healthy.
        max_latency: Seconds above which a successful probe is degraded; None does not judge latency.
    """

    def __init__(
        self,
        name: str,
        url: str,
        *,
        timeout: float = 2.0,
        critical: bool = False,
        expect_status: range | Sequence[int] = range(200, 400),
        max_latency: float | None = None,
    ) -> None:
        super().__init__(name, critical)
        owner = "DependencyCheck"
        url = _check.text(owner, "url", url)
        self.display_url = scrub_text(redact_url(url))
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        self._scheme = parts.scheme.lower()
        port = port if port is not None else _DEFAULT_PORTS.get(self._scheme)
        if not parts.hostname or port is None or port < 0 or not self._scheme:
            raise _check.bad(
                owner, "url", self.display_url, "'tcp://host:port', 'http(s)://host[:port]/path' or a URL with a port"
            )
        self._host, self._port, self._parts = parts.hostname, port, parts
        self.expect_status = b.status_codes(owner, "expect_status", expect_status)
        self.timeout = _check.number(owner, "timeout", timeout, gt=0, finite=False)
        self.max_latency = (
            None if max_latency is None else _check.number(owner, "max_latency", max_latency, gt=0, finite=False)
        )

    @property
    def is_http(self) -> bool:
        """Whether the probe is an HTTP GET (else a TCP connect)."""
        return self._scheme in ("http", "https")

    async def run(self) -> CheckResult:
        """Probe the dependency and judge."""
        started = time.perf_counter()
        target = self.display_url
        try:
            async with asyncio.timeout(self.timeout):
                code = await (self._get() if self.is_http else self._connect())
        except TimeoutError:
            return self._result(Status.UNHEALTHY, f"{target}: no answer within {self.timeout:g}s", {}, started)
        except (OSError, ValueError) as error:
            reason = scrub_text(str(error) or type(error).__name__)
            return self._result(Status.UNHEALTHY, f"{target}: {reason}", {}, started)
        latency = time.perf_counter() - started
        values: dict[str, Value] = {"latency_seconds": latency}
        answer = f"connected in {latency * 1000:.1f} ms"
        if code is not None:
            values["status_code"] = code
            answer = f"HTTP {code} in {latency * 1000:.1f} ms"
            if code not in self.expect_status:
                return self._result(
                    Status.UNHEALTHY, f"{target}: {answer}, expected {self._expected()}", values, started
                )
        if self.max_latency is not None and latency > self.max_latency:
            return self._result(
                Status.DEGRADED, f"{target}: {answer}, slower than {self.max_latency:g}s", values, started
            )
        return self._result(Status.HEALTHY, f"{target}: {answer}", values, started)

    def _expected(self) -> str:
        codes = self.expect_status
        if isinstance(codes, range) and codes.step == 1:
            return f"{codes.start}-{codes.stop - 1}"
        return ", ".join(str(code) for code in codes)

    async def _connect(self) -> None:
        _, writer = await asyncio.open_connection(self._host, self._port)
        await _close(writer)

    async def _get(self) -> int:
        parts = self._parts
        tls = ssl.create_default_context() if self._scheme == "https" else None
        reader, writer = await asyncio.open_connection(self._host, self._port, ssl=tls)
        try:
            host = f"[{self._host}]" if ":" in self._host else self._host
            if parts.port is not None:
                host = f"{host}:{parts.port}"
            # Percent-encode what is not already, so a non-ASCII path still makes a valid request line.
            target = quote(parts.path or "/", safe=_URL_SAFE)
            if parts.query:
                target += "?" + quote(parts.query, safe=_URL_SAFE)
            headers = [f"GET {target} HTTP/1.1", f"Host: {host}", "User-Agent: rfobs-health", "Accept: */*"]
            if parts.username is not None:
                user = urllib.parse.unquote(parts.username)
                password = urllib.parse.unquote(parts.password or "")
                headers.append("Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
            writer.write(("\r\n".join([*headers, "Connection: close", "", ""])).encode("latin-1"))
            await writer.drain()
            status_line = await reader.readline()
        finally:
            await _close(writer)
        fields = status_line.split(maxsplit=2)
        if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
            raise ValueError("no HTTP response" if not status_line else "not an HTTP response")
        return int(fields[1])


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
