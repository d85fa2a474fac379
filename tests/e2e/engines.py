# pyright: strict
"""Start the OpenTelemetry Collector (otelcol-rfobs) and Jaeger v2, built from their Go modules, for end-to-end tests.

`collector/build-engines.sh` (`make engines`) builds both into a cache outside the repository; these helpers run
the binaries with the repository's own `collector/otel-collector.yaml` and `collector/jaeger.yaml`, every listener
moved to a free loopback port through the environment variables those files read. Like the servers in
`servers.py`, each runs in its own session, is polled for readiness with a bounded wait and is stopped by PID when
its `with` block ends. A binary that is not built fails the test with the command that builds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import urllib.parse
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from tests.e2e.servers import MissingBinaryError, free_port, http_json, http_ok, spawn, wait_until

__all__ = [
    "COLLECTOR_CONFIG",
    "COLLECTOR_DIR",
    "JAEGER_CONFIG",
    "CollectorHandle",
    "JaegerHandle",
    "engine_binary",
    "engines_dir",
    "jaeger",
    "otelcol",
]

COLLECTOR_DIR = Path(__file__).resolve().parents[2] / "collector"
COLLECTOR_CONFIG = COLLECTOR_DIR / "otel-collector.yaml"
JAEGER_CONFIG = COLLECTOR_DIR / "jaeger.yaml"


def engines_dir() -> Path:
    """Where `collector/build-engines.sh` puts the binaries (`RFOBS_ENGINES_DIR`, else the user's cache)."""
    configured = os.environ.get("RFOBS_ENGINES_DIR")
    if configured:
        return Path(configured)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "rfobs" / "engines"


def engine_binary(name: str) -> Path:
    """The built binary `name` (`otelcol-rfobs` or `jaeger`).

    Raises:
        MissingBinaryError: It has not been built; the message says how to build it.
    """
    path = engines_dir() / name
    if not os.access(path, os.X_OK):
        raise MissingBinaryError(
            f"{path} is not built. Build the Collector and Jaeger from their Go modules (needs Go; minutes the "
            "first time, cached after) with\n    make engines   # = collector/build-engines.sh"
        )
    return path


def _loopback() -> str:
    return f"127.0.0.1:{free_port()}"


@dataclass(frozen=True)
class CollectorHandle:
    """A running otelcol-rfobs started by :func:`otelcol`.

    Attributes:
        otlp_grpc: OTLP/gRPC endpoint URL for agents (`http://127.0.0.1:PORT`).
        otlp_http: OTLP/HTTP base URL.
        metrics_target: `host:port` of its Prometheus exporter (the agents' metrics).
        telemetry_target: `host:port` of its own metrics (`service.telemetry`, the `:8888` of the stack).
        health_url: Its `health_check` extension.
        logs_path: The file its logs pipeline writes.
        pid: Its process id.
        log_path: Its stdout/stderr.
    """

    otlp_grpc: str
    otlp_http: str
    metrics_target: str
    telemetry_target: str
    health_url: str
    logs_path: Path
    pid: int
    log_path: Path

    def kill(self) -> None:
        """SIGKILL it (an outage); the `with` block still reaps the process."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


@contextlib.contextmanager
def otelcol(
    jaeger_otlp: str,
    *,
    config: Path = COLLECTOR_CONFIG,
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 60.0,
) -> Generator[CollectorHandle]:
    """Run otelcol-rfobs with `config` (the stack's own by default) on free loopback ports.

    Args:
        jaeger_otlp: `host:port` of the OTLP/gRPC receiver traces are exported to.
        config: The Collector configuration file.
        env: More environment variables for the configuration (`OTELCOL_TAIL_*`, ...).
        startup_timeout: Seconds to wait for its health check to report ready.
    """
    binary = engine_binary("otelcol-rfobs")
    with tempfile.TemporaryDirectory(prefix="rfobs-otelcol-") as tmp:
        tmpdir = Path(tmp)
        grpc, http, metrics, health = _loopback(), _loopback(), _loopback(), _loopback()
        telemetry_port = free_port()
        logs_path = tmpdir / "logs" / "logs.jsonl"
        logs_path.parent.mkdir()
        variables = {
            "OTELCOL_OTLP_GRPC_ENDPOINT": grpc,
            "OTELCOL_OTLP_HTTP_ENDPOINT": http,
            "OTELCOL_PROMETHEUS_ENDPOINT": metrics,
            "OTELCOL_HEALTH_ENDPOINT": health,
            "OTELCOL_TELEMETRY_HOST": "127.0.0.1",
            "OTELCOL_TELEMETRY_PORT": str(telemetry_port),
            "OTELCOL_JAEGER_OTLP_ENDPOINT": jaeger_otlp,
            "OTELCOL_LOGS_PATH": str(logs_path),
            **(env or {}),
        }
        log_path = tmpdir / "otelcol.log"
        argv = [str(binary), f"--config={config}"]
        with spawn(argv, log_path, env={**os.environ, **variables}, cwd=tmpdir) as proc:
            health_url = f"http://{health}/"
            wait_until(
                lambda: http_ok(health_url),
                startup_timeout,
                what=f"otelcol-rfobs health check on {health_url}",
                logs=[log_path],
                proc=proc,
            )
            yield CollectorHandle(
                otlp_grpc=f"http://{grpc}",
                otlp_http=f"http://{http}",
                metrics_target=metrics,
                telemetry_target=f"127.0.0.1:{telemetry_port}",
                health_url=health_url,
                logs_path=logs_path,
                pid=proc.pid,
                log_path=log_path,
            )


@dataclass(frozen=True)
class JaegerHandle:
    """A running Jaeger v2 started by :func:`jaeger`.

    Attributes:
        otlp_grpc: `host:port` of its OTLP/gRPC receiver (what the Collector exports to).
        otlp_http: Base URL of its OTLP/HTTP receiver.
        query_url: Base URL of its query API (`/api/traces`, `/api/v3/traces`).
        pid: Its process id.
        log_path: Its stdout/stderr.
    """

    otlp_grpc: str
    otlp_http: str
    query_url: str
    pid: int
    log_path: Path

    def services(self) -> list[str]:
        """The service names Jaeger has traces of."""
        return cast("list[str]", http_json(f"{self.query_url}/api/services")["data"] or [])

    def traces(self, service: str, *, limit: int = 1000, **tags: str) -> list[dict[str, Any]]:
        """Traces of `service` through the v1 query API (`/api/traces?service=`), newest first.

        Args:
            service: The `service.name`.
            limit: At most this many traces.
            **tags: Span tags every returned trace must have on one span (`error="true"`, ...).
        """
        query: dict[str, str] = {"service": service, "limit": str(limit), "lookback": "1h"}
        if tags:
            query["tags"] = json.dumps(tags)
        url = f"{self.query_url}/api/traces?{urllib.parse.urlencode(query)}"
        return cast("list[dict[str, Any]]", http_json(url)["data"] or [])

    def trace_v3(self, trace_id: str) -> list[dict[str, Any]]:
        """One trace through the v3 API (`/api/v3/traces/{id}`): OTLP/JSON `resourceSpans`."""
        body = http_json(f"{self.query_url}/api/v3/traces/{trace_id}")
        return cast("list[dict[str, Any]]", body["result"]["resourceSpans"])


@contextlib.contextmanager
def jaeger(*, startup_timeout: float = 60.0, max_traces: int = 100_000) -> Generator[JaegerHandle]:
    """Run Jaeger v2 with `collector/jaeger.yaml` (memory store) on free loopback ports."""
    binary = engine_binary("jaeger")
    with tempfile.TemporaryDirectory(prefix="rfobs-jaeger-") as tmp:
        tmpdir = Path(tmp)
        grpc, http, query, query_grpc, health = (_loopback() for _ in range(5))
        variables = {
            "JAEGER_OTLP_GRPC_ENDPOINT": grpc,
            "JAEGER_OTLP_HTTP_ENDPOINT": http,
            "JAEGER_QUERY_HTTP_ENDPOINT": query,
            "JAEGER_QUERY_GRPC_ENDPOINT": query_grpc,
            "JAEGER_HEALTH_ENDPOINT": health,
            "JAEGER_TELEMETRY_HOST": "127.0.0.1",
            "JAEGER_TELEMETRY_PORT": str(free_port()),
            "JAEGER_MAX_TRACES": str(max_traces),
        }
        log_path = tmpdir / "jaeger.log"
        argv = [str(binary), f"--config={JAEGER_CONFIG}"]
        with spawn(argv, log_path, env={**os.environ, **variables}, cwd=tmpdir) as proc:
            query_url = f"http://{query}"
            wait_until(
                lambda: http_ok(f"http://{health}/status") and http_ok(f"{query_url}/api/services"),
                startup_timeout,
                what=f"Jaeger health on {health} and query API on {query_url}",
                logs=[log_path],
                proc=proc,
            )
            yield JaegerHandle(
                otlp_grpc=grpc, otlp_http=f"http://{http}", query_url=query_url, pid=proc.pid, log_path=log_path
            )
