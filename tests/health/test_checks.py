from __future__ import annotations

import asyncio
import base64
import gc
import http.server
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, ClassVar

import pytest

from rfobs.exceptions import ConfigError
from rfobs.health import HealthChecker, Status
from rfobs.health.checks import (
    CpuCheck,
    DependencyCheck,
    DiskCheck,
    EnvFileCheck,
    GitRepositoryCheck,
    GpuCheck,
    LogRotationCheck,
    MemoryCheck,
    ProcessCheck,
)
from rfobs.testing import Capture

NUMBER = r"\d+(?:\.\d+)?"
SIZE = rf"{NUMBER} (?:B|KiB|MiB|GiB|TiB)"

# -- system resources ---------------------------------------------------------------------------------------------


@pytest.fixture
def busy_cpu() -> Iterator[None]:
    """One thread spinning, so system-wide CPU use is above 0% while a check samples it."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    thread = threading.Thread(target=spin)
    thread.start()
    yield
    stop.set()
    thread.join()


async def test_cpu_above_a_zero_limit_is_degraded(busy_cpu: None) -> None:
    result = await CpuCheck(0, sample_seconds=0.2).run()
    assert result.status is Status.DEGRADED
    assert re.fullmatch(rf"CPU {NUMBER}% above the 0% limit", result.message)
    assert set(result.values) == {"cpu_percent", "cpu_count", "load_1m"}
    assert 0 < float(result.values["cpu_percent"]) <= 100
    assert result.values["cpu_count"] == os.cpu_count()


async def test_cpu_under_a_100_percent_limit_is_healthy() -> None:
    result = await CpuCheck(100, sample_seconds=0.05).run()
    assert result.status is Status.HEALTHY
    assert re.fullmatch(rf"CPU {NUMBER}% \(limit 100%\)", result.message)
    assert result.duration >= 0.05


async def test_cpu_sampling_leaves_the_event_loop_running() -> None:
    sampling = asyncio.create_task(CpuCheck(100, sample_seconds=0.3).run())
    await asyncio.sleep(0)  # one turn of the loop: the check's first step starts the sample
    # Sampled on the loop, the check would be over by now: its first step would have blocked for 0.3 s.
    assert not sampling.done()
    assert (await sampling).status is Status.HEALTHY


async def test_memory_verdicts_at_limits_0_and_100() -> None:
    low, high = await MemoryCheck(0).run(), await MemoryCheck(100).run()
    assert low.status is Status.DEGRADED
    assert re.fullmatch(rf"memory {NUMBER}% used, {SIZE} available: above the 0% limit", low.message)
    assert high.status is Status.HEALTHY
    assert re.fullmatch(rf"memory {NUMBER}% used, {SIZE} available \(limit 100%\)", high.message)
    assert set(high.values) == {"memory_percent", "available_bytes", "total_bytes"}
    assert 0 < int(high.values["available_bytes"]) <= int(high.values["total_bytes"])


async def test_disk_verdicts_at_limits_0_and_100(tmp_path: Path) -> None:
    path = str(tmp_path)
    low, high = await DiskCheck([path], 0).run(), await DiskCheck([path], 100).run()
    assert low.status is Status.UNHEALTHY
    assert re.fullmatch(rf"above 0%: {re.escape(path)} \({NUMBER}%, {SIZE} free\)", low.message)
    assert high.status is Status.HEALTHY
    assert re.fullmatch(rf"disk use {re.escape(path)} {NUMBER}% \(limit 100%\)", high.message)
    assert set(high.values) == {"disk_percent", "free_bytes"}


async def test_disk_with_a_missing_path_is_unhealthy_and_still_measures_the_others(tmp_path: Path) -> None:
    missing = str(tmp_path / "gone")
    result = await DiskCheck([".", missing], 100).run()
    assert result.status is Status.UNHEALTHY
    assert result.message == f"missing: {missing}"
    assert set(result.values) == {f"{tmp_path}:disk_percent", f"{tmp_path}:free_bytes"}  # "." made absolute


async def test_disk_values_are_readable_metric_labels(tmp_path: Path, capture: Capture) -> None:
    gc.collect()  # checkers of earlier tests must not report in the gauges
    checker = HealthChecker()
    checker.register(DiskCheck())  # the default path, "."
    result = await checker.check("disk")
    assert re.fullmatch(rf"disk use {re.escape(str(tmp_path))} {NUMBER}% \(limit 90%\)", result.message)
    assert [p["attributes"] for p in capture.metric("researchflow_agents.health_check_value")] == [
        {"check": "disk", "measure": "disk_percent"},
        {"check": "disk", "measure": "free_bytes"},
    ]
    checker.unregister("disk")
    checker.register(DiskCheck([".", "/"]))
    await checker.check("disk")
    assert [p["attributes"] for p in capture.metric("researchflow_agents.health_check_value")] == [
        {"check": "disk", "measure": f"{tmp_path}:disk_percent"},
        {"check": "disk", "measure": f"{tmp_path}:free_bytes"},
        {"check": "disk", "measure": "/:disk_percent"},
        {"check": "disk", "measure": "/:free_bytes"},
    ]


def open_files(folder: Path, count: int) -> list[IO[str]]:
    return [open(folder / f"f{i}", "w") for i in range(count)]


async def test_process_counts_open_files_and_judges_against_the_limit(tmp_path: Path) -> None:
    before = await ProcessCheck().run()
    assert before.status is Status.HEALTHY
    opened = int(before.values["open_files"])
    files = open_files(tmp_path, 20)
    try:
        result = await ProcessCheck(max_open_files=opened + 10).run()
    finally:
        for file in files:
            file.close()
    assert result.status is Status.DEGRADED
    assert int(result.values["open_files"]) >= opened + 20
    assert result.message == f"{result.values['open_files']} open files above the {opened + 10} limit"


async def test_process_rss_limit_and_reported_values() -> None:
    low = await ProcessCheck(max_rss_bytes=1).run()
    high = await ProcessCheck(max_open_files=10**9, max_rss_bytes=2**62).run()
    assert low.status is Status.DEGRADED
    assert re.fullmatch(rf"RSS {SIZE} above the 1 B limit", low.message)
    assert high.status is Status.HEALTHY
    assert re.fullmatch(rf"\d+ open files, RSS {SIZE}", high.message)
    expected = {"rss_bytes", "threads", "open_files"} | ({"open_files_limit"} if sys.platform == "linux" else set())
    assert set(high.values) == expected


async def test_gpu_is_skipped_where_nvml_is_not_available() -> None:
    result = await GpuCheck().run()
    assert result.status is Status.SKIPPED
    assert result.message.startswith("NVML not available")
    assert result.values == {}


# -- git ----------------------------------------------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]
    done = subprocess.run(["git", *identity, "-C", str(repo), *args], check=True, capture_output=True, text=True)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README").write_text("one\n")
    git(repo, "add", "README")
    git(repo, "commit", "-q", "-m", "first")
    return repo


async def test_git_clean_repository_is_healthy(repo: Path) -> None:
    sha = git(repo, "rev-parse", "--short", "HEAD")
    result = await GitRepositoryCheck(repo, allow_dirty=False).run()
    assert (result.status, result.message) == (Status.HEALTHY, f"main at {sha}, 0 uncommitted, 0 untracked")
    assert result.values == {
        "is_repo": True,
        "branch": "main",
        "commit": sha,
        "uncommitted_changes": 0,
        "untracked_files": 0,
        "detached": False,
    }


async def test_git_dirty_repository_is_degraded_only_when_dirt_is_not_allowed(repo: Path) -> None:
    sha = git(repo, "rev-parse", "--short", "HEAD")
    (repo / "README").write_text("two\n")
    (repo / "notes.txt").write_text("untracked\n")
    strict = await GitRepositoryCheck(str(repo), allow_dirty=False).run()
    lenient = await GitRepositoryCheck(str(repo)).run()
    assert (strict.status, strict.message) == (Status.DEGRADED, f"main at {sha}: 1 uncommitted change")
    assert (strict.values["uncommitted_changes"], strict.values["untracked_files"]) == (1, 1)
    assert (lenient.status, lenient.message) == (Status.HEALTHY, f"main at {sha}, 1 uncommitted, 1 untracked")


async def test_git_untracked_files_alone_are_not_dirt(repo: Path) -> None:
    (repo / "notes.txt").write_text("untracked\n")
    result = await GitRepositoryCheck(repo, allow_dirty=False).run()
    assert result.status is Status.HEALTHY
    assert (result.values["uncommitted_changes"], result.values["untracked_files"]) == (0, 1)


async def test_git_detached_head_is_degraded_unless_allowed(repo: Path) -> None:
    git(repo, "checkout", "-q", "--detach")
    sha = git(repo, "rev-parse", "--short", "HEAD")
    strict = await GitRepositoryCheck(repo).run()
    allowed = await GitRepositoryCheck(repo, allow_detached=True).run()
    assert (strict.status, strict.message) == (Status.DEGRADED, f"detached HEAD at {sha}: HEAD is detached")
    assert (strict.values["branch"], strict.values["detached"]) == ("", True)
    assert (allowed.status, allowed.message) == (Status.HEALTHY, f"detached HEAD at {sha}, 0 uncommitted, 0 untracked")


async def test_git_outside_a_repository_is_unhealthy(tmp_path: Path) -> None:
    result = await GitRepositoryCheck(tmp_path).run()
    assert result.status is Status.UNHEALTHY
    assert result.message.startswith(f"not a git work tree: {tmp_path} (fatal: not a git repository")
    assert result.values == {"is_repo": False}


async def test_git_without_git_installed_is_skipped(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = await GitRepositoryCheck(repo).run()
    assert (result.status, result.message) == (Status.SKIPPED, "git is not installed ('git' not found on PATH)")


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script stands in for a hung git")
async def test_git_that_hangs_is_killed_at_the_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    hung = tmp_path / "hung-git"
    hung.write_text(f"#!/bin/sh\necho $$ >> {pid_file}\nexec sleep 30\n")
    hung.chmod(0o755)
    started = time.perf_counter()
    result = await GitRepositoryCheck(tmp_path, executable=str(hung), timeout=0.3).run()
    # Waited for, the hung git would take 30 s; 10 s leaves room for a loaded machine (2 s did not, reliably).
    assert time.perf_counter() - started < 10
    assert (result.status, result.message) == (Status.UNHEALTHY, "git did not answer within 0.3s")
    for pid in pid_file.read_text().split():
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)


# -- environment files --------------------------------------------------------------------------------------------


def env_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


async def test_env_file_with_every_required_key_is_healthy(tmp_path: Path) -> None:
    path = env_file(
        tmp_path / ".env",
        "# settings\n"
        "export DATABASE_URL=postgresql://db/app\n"
        "API_KEY='sk-live-abcdefghijklmnopqrstuvwxyz'\n"
        'GREETING="hello # not a comment"\n'
        'CERT="-----BEGIN\n'
        'line\n"\n'
        "\n",
    )
    result = await EnvFileCheck([path], ["DATABASE_URL", "API_KEY", "GREETING", "CERT"]).run()
    assert (result.status, result.message) == (Status.HEALTHY, "4 required keys set in 1 file(s)")
    assert result.values == {"files": 1, "keys": 4, "missing_keys": 0, "empty_keys": 0}


async def test_env_file_names_missing_and_empty_keys_never_values(tmp_path: Path) -> None:
    path = env_file(
        tmp_path / ".env",
        "DB_PASSWORD=hunter2hunter2\nEMPTY=\nBLANK=''\nCOMMENTED=   # nothing here\nSET=yes\n",
    )
    result = await EnvFileCheck([str(path)], ["SET", "EMPTY", "BLANK", "COMMENTED", "ABSENT"]).run()
    assert result.status is Status.UNHEALTHY
    assert result.message == "missing keys: ABSENT; empty keys: EMPTY, BLANK, COMMENTED"
    assert result.values == {"files": 1, "keys": 5, "missing_keys": 1, "empty_keys": 3}
    assert "hunter2" not in repr(result) and "yes" not in repr(result.values)


async def test_world_readable_env_file_with_secrets_is_unhealthy(tmp_path: Path) -> None:
    secret = env_file(tmp_path / "secret.env", "OPENAI_API_KEY=sk-abcdefghijklmnopqrstuv\nDB_PASSWORD=pw\n", 0o644)
    plain = env_file(tmp_path / "plain.env", "LOG_LEVEL=info\n", 0o644)
    result = await EnvFileCheck([secret, plain]).run()
    assert result.status is Status.UNHEALTHY
    assert result.message == f"{secret} holds secrets (DB_PASSWORD, OPENAI_API_KEY) and is world-readable: chmod 600 it"
    assert "sk-abc" not in repr(result)
    secret.chmod(0o640)  # group-readable is the deployment's call
    assert (await EnvFileCheck([secret, plain]).run()).status is Status.HEALTHY


async def test_env_files_missing_unparsable_and_overridden(tmp_path: Path) -> None:
    first = env_file(tmp_path / "a.env", "TOKEN_URL=https://auth\nMODE=prod\n")
    second = env_file(tmp_path / "b.env", "MODE=\nthis line is not an assignment\n")
    missing = tmp_path / "c.env"
    result = await EnvFileCheck([first, second, missing], ["MODE"]).run()
    assert result.status is Status.UNHEALTHY
    assert result.message == f"missing file: {missing}; empty keys: MODE; {second}: unparsable line 2"
    unparsable = await EnvFileCheck([second, first], ["MODE"]).run()
    assert (unparsable.status, unparsable.message) == (Status.DEGRADED, f"{second}: unparsable line 2")


# -- log rotation -------------------------------------------------------------------------------------------------


def write(path: Path, size: int, age_days: float = 0) -> None:
    path.write_bytes(b"x" * size)
    if age_days:
        then = time.time() - age_days * 86400
        os.utime(path, (then, then))


async def test_log_directory_with_oversized_old_and_over_rotated_files_is_degraded(tmp_path: Path) -> None:
    write(tmp_path / "app.log", 10)
    write(tmp_path / "big.log", 2048)
    write(tmp_path / "old.log", 10, age_days=40)
    for rotated in ("app.log.1", "app.log.2.gz", "app.log-20240101", "app.log.2024-01-01_00-00-00"):
        write(tmp_path / rotated, 10_000, age_days=100)  # rotated copies are neither judged by size nor age
    write(tmp_path / "old.log.1", 10)
    result = await LogRotationCheck([tmp_path], max_bytes=1024, max_rotated=3).run()
    assert result.status is Status.DEGRADED
    assert result.message == (
        "over 1.0 KiB: big.log; not rotated for over 30d: old.log; more than 3 rotated files: app.log (4)"
    )
    assert result.values == {"files": 3, "rotated_files": 5, "largest_bytes": 2048, "oversized": 1, "stale": 1}


async def test_log_directory_within_limits_is_healthy(tmp_path: Path) -> None:
    write(tmp_path / "agent.log", 10)
    write(tmp_path / "agent.log.1", 20)
    write(tmp_path / "worker-8080", 5)  # digits after a dash, but no `worker` log beside it: a live file
    result = await LogRotationCheck([str(tmp_path)]).run()
    assert (result.status, result.message) == (Status.HEALTHY, "2 log file(s), 1 rotated, largest 10 B")


async def test_log_file_path_checks_only_that_log_and_its_rotations(tmp_path: Path) -> None:
    write(tmp_path / "app.log", 10)
    write(tmp_path / "app.log.1", 10)
    write(tmp_path / "app.log.2", 10)
    write(tmp_path / "other.log", 5000, age_days=90)
    for n in range(5):
        write(tmp_path / f"other.log.{n}", 10)
    result = await LogRotationCheck([tmp_path / "app.log"], max_bytes=1024, max_rotated=1).run()
    assert (result.status, result.message) == (Status.DEGRADED, "more than 1 rotated files: app.log (2)")
    assert result.values["files"] == 1


async def test_missing_log_path_is_degraded(tmp_path: Path) -> None:
    result = await LogRotationCheck([tmp_path / "nope.log"]).run()
    assert (result.status, result.message) == (Status.DEGRADED, "missing: nope.log")


# -- dependencies -------------------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        if self.path.startswith("/slow"):
            time.sleep(0.3)
        code = 503 if self.path.startswith("/fail") else 200
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    _Handler.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel completes the handshake) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


async def test_tcp_probe_of_a_listening_server_is_healthy() -> None:
    async def hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await DependencyCheck("db", f"tcp://127.0.0.1:{port}").run()
    assert result.status is Status.HEALTHY
    assert re.fullmatch(rf"tcp://127\.0\.0\.1:{port}: connected in {NUMBER} ms", result.message)
    assert set(result.values) == {"latency_seconds"}


async def test_tcp_probe_of_a_closed_port_is_unhealthy(closed_port: int) -> None:
    result = await DependencyCheck("redis", f"redis://127.0.0.1:{closed_port}/0").run()
    assert result.status is Status.UNHEALTHY
    assert re.fullmatch(
        rf"redis://127\.0\.0\.1:{closed_port}/0: \[Errno \d+\] Connect call failed \('127\.0\.0\.1', {closed_port}\)",
        result.message,
    )


async def test_http_probe_reports_status_and_latency(http_port: int) -> None:
    result = await DependencyCheck("api", f"http://127.0.0.1:{http_port}/ok", timeout=5).run()
    assert result.status is Status.HEALTHY
    latency = float(result.values["latency_seconds"])
    assert result.message == f"http://127.0.0.1:{http_port}/ok: HTTP 200 in {latency * 1000:.1f} ms"
    assert result.values["status_code"] == 200
    # Below the probe's timeout (past it, the probe is unhealthy), not below a guess of the machine's speed.
    assert 0 < latency < 5


async def test_http_probe_of_an_unexpected_status_is_unhealthy(http_port: int) -> None:
    url = f"http://127.0.0.1:{http_port}/fail"
    failing = await DependencyCheck("api", url).run()
    expected = await DependencyCheck("api", url, expect_status=[503]).run()
    assert failing.status is Status.UNHEALTHY
    assert re.fullmatch(rf"{re.escape(url)}: HTTP 503 in {NUMBER} ms, expected 200-399", failing.message)
    assert (expected.status, expected.values["status_code"]) == (Status.HEALTHY, 503)


async def test_http_probe_slower_than_max_latency_is_degraded(http_port: int) -> None:
    url = f"http://127.0.0.1:{http_port}/slow"
    result = await DependencyCheck("api", url, max_latency=0.1).run()
    assert result.status is Status.DEGRADED
    assert re.fullmatch(rf"{re.escape(url)}: HTTP 200 in {NUMBER} ms, slower than 0.1s", result.message)


async def test_http_probe_sends_credentials_but_never_shows_them(http_port: int) -> None:
    url = f"http://alice:s3cr3t@127.0.0.1:{http_port}/fail?api_key=k3y&page=2"
    result = await DependencyCheck("api", url).run()
    assert result.message.startswith(f"http://alice:***@127.0.0.1:{http_port}/fail?api_key=***&page=2: HTTP 503")
    assert "s3cr3t" not in repr(result) and "k3y" not in repr(result)
    assert _Handler.seen == [("/fail?api_key=k3y&page=2", "Basic " + base64.b64encode(b"alice:s3cr3t").decode())]


async def test_http_probe_percent_encodes_a_non_ascii_path(http_port: int) -> None:
    result = await DependencyCheck("api", f"http://127.0.0.1:{http_port}/ok/café?q=a b&r=%20").run()
    assert result.status is Status.HEALTHY
    assert _Handler.seen == [("/ok/caf%C3%A9?q=a%20b&r=%20", None)]


async def test_http_probe_of_a_server_that_never_answers_times_out(silent_port: int) -> None:
    started = time.perf_counter()
    result = await DependencyCheck("llm", f"http://127.0.0.1:{silent_port}/v1", timeout=0.3).run()
    # Without its timeout the probe would wait for good; 10 s leaves room for a loaded machine.
    assert time.perf_counter() - started < 10
    assert (result.status, result.message) == (
        Status.UNHEALTHY,
        f"http://127.0.0.1:{silent_port}/v1: no answer within 0.3s",
    )


async def test_http_probe_of_a_server_that_is_not_http_is_unhealthy() -> None:
    async def greet(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"+PONG\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await DependencyCheck("cache", f"http://127.0.0.1:{port}/").run()
    assert (result.status, result.message) == (Status.UNHEALTHY, f"http://127.0.0.1:{port}/: not an HTTP response")


async def test_critical_dependency_down_makes_the_report_not_ready(http_port: int, closed_port: int) -> None:
    checker = HealthChecker(timeout=2)
    checker.register(DependencyCheck("api", f"http://127.0.0.1:{http_port}/ok"))
    checker.register(DependencyCheck("db", f"tcp://127.0.0.1:{closed_port}", critical=True))
    report = await checker.check_all()
    assert [(r.name, r.status, r.critical) for r in report.checks] == [
        ("api", Status.HEALTHY, False),
        ("db", Status.UNHEALTHY, True),
    ]
    assert (report.status, report.ready) == (Status.UNHEALTHY, False)


# -- constructor arguments ----------------------------------------------------------------------------------------


PATHS = "expected a list of paths (one path goes in a list too)"
PATH_TYPES = "(str or pathlib.Path)"
URL = "expected 'tcp://host:port', 'http(s)://host[:port]/path' or a URL with a port"
CODES = "expected HTTP status codes within 100-599, e.g. range(200, 400) or [200, 204]"
PERCENT = "expected a number >= 0 and <= 100"
POSITIVE = "expected a number > 0"
BAD_ARGUMENTS: list[tuple[Callable[[], object], str]] = [
    (lambda: CpuCheck(101), f"CpuCheck(max_percent=101): {PERCENT}"),
    (lambda: CpuCheck(sample_seconds=0), "CpuCheck(sample_seconds=0): expected a number > 0 and <= 60"),
    (lambda: CpuCheck(name=" "), "CpuCheck(name=' '): expected a non-empty string"),
    (lambda: MemoryCheck(True), f"MemoryCheck(max_percent=True): {PERCENT}"),
    (lambda: MemoryCheck(critical="yes"), "MemoryCheck(critical='yes'): expected True or False"),  # pyright: ignore[reportArgumentType]
    (lambda: DiskCheck("/"), f"DiskCheck(paths='/'): {PATHS}"),
    (lambda: DiskCheck([]), "DiskCheck(paths=[]): expected at least one path"),
    (lambda: DiskCheck(["/", ""]), f"DiskCheck(paths=['/', '']): expected a list of non-empty paths {PATH_TYPES}"),
    (lambda: ProcessCheck(-1), "ProcessCheck(max_open_files=-1): expected an integer >= 0"),
    (lambda: ProcessCheck(None, 1.5), "ProcessCheck(max_rss_bytes=1.5): expected an integer >= 0"),  # pyright: ignore[reportArgumentType]
    (lambda: GitRepositoryCheck(""), f"GitRepositoryCheck(path=''): expected a non-empty path {PATH_TYPES}"),
    (lambda: GitRepositoryCheck(timeout=0), "GitRepositoryCheck(timeout=0): expected a number > 0"),
    (lambda: GitRepositoryCheck(allow_dirty=1), "GitRepositoryCheck(allow_dirty=1): expected True or False"),  # pyright: ignore[reportArgumentType]
    (lambda: EnvFileCheck([".env"], "KEY"), "EnvFileCheck(required_keys='KEY'): expected a list of non-empty strings"),
    (lambda: EnvFileCheck(".env"), f"EnvFileCheck(paths='.env'): {PATHS}"),
    (lambda: LogRotationCheck(["x"], max_bytes=0), "LogRotationCheck(max_bytes=0): expected an integer >= 1"),
    (lambda: LogRotationCheck(["x"], max_rotated=-1), "LogRotationCheck(max_rotated=-1): expected an integer >= 0"),
    (lambda: LogRotationCheck(["x"], max_age_seconds=math.nan), f"LogRotationCheck(max_age_seconds=nan): {POSITIVE}"),
    (lambda: DependencyCheck("", "tcp://h:1"), "DependencyCheck(name=''): expected a non-empty string"),
    (lambda: DependencyCheck("db", "tcp://db"), f"DependencyCheck(url='tcp://db'): {URL}"),
    (lambda: DependencyCheck("db", "localhost:5432"), f"DependencyCheck(url='localhost:5432'): {URL}"),
    (lambda: DependencyCheck("api", "https://u:pw@h:99999/"), f"DependencyCheck(url='https://u:***@h:99999/'): {URL}"),
    (lambda: DependencyCheck("api", "http://h", expect_status=[]), f"DependencyCheck(expect_status=[]): {CODES}"),
    (lambda: DependencyCheck("a", "http://h", expect_status=[1]), f"DependencyCheck(expect_status=[1]): {CODES}"),
    (lambda: DependencyCheck("api", "http://h", timeout=-1), "DependencyCheck(timeout=-1): expected a number > 0"),
    (lambda: GpuCheck(max_memory_percent=150), f"GpuCheck(max_memory_percent=150): {PERCENT}"),
    (lambda: GpuCheck(max_temperature_c=0), "GpuCheck(max_temperature_c=0): expected a number > 0"),
]


@pytest.mark.parametrize(("make", "message"), BAD_ARGUMENTS)
def test_bad_constructor_arguments_raise_config_error(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make()
    assert str(caught.value) == message
