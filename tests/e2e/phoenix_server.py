# pyright: strict
"""Start a real Arize Phoenix (OTLP traces in, REST and GraphQL out) for end-to-end tests.

Phoenix is pip-installed into a venv of its own on first use (:func:`ensure_phoenix_venv`), so its long list of
dependencies stays out of the project's. Like the servers in `servers.py`, it listens on 127.0.0.1 on free ports
(its gRPC listener is the one exception, see :func:`phoenix`), keeps its state in a fresh temporary directory, is
polled for readiness with a bounded wait and is stopped by PID when its `with` block ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from tests.e2e.servers import (
    HttpStatusError,
    ServerStartError,
    free_ports,
    http_get,
    http_json,
    log_tail,
    spawn,
    wait_until,
)

__all__ = ["PHOENIX_SPEC", "PhoenixHandle", "ensure_phoenix_venv", "phoenix", "phoenix_venv_path"]

PHOENIX_VERSION = "20.26.1"
PHOENIX_SPEC = f"arize-phoenix=={PHOENIX_VERSION}"
"""Phoenix is pinned: at major 20 its env vars and REST shapes still move between releases."""
_PHOENIX_EXTRA_SPECS = (
    "opentelemetry-exporter-otlp-proto-http==1.45.2",
    "opentelemetry-exporter-otlp-proto-grpc==1.45.2",
)


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
        http_port, grpc_port = free_ports(2)
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
