"""The typed, frozen `Settings` object: every setting declared once, with its default, check and docstring.

Each field's metadata carries the parser that validates it (`_check`). The environment variable of a field
is derived from its place: `tracing.sampler_ratio` is `RFOBS_TRACING__SAMPLER_RATIO`.
"""

from __future__ import annotations

import json
import math
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, cast

from rfobs._secrets import Secret

__all__ = [
    "BUILT_IN_CHECKS",
    "ENVIRONMENTS",
    "GROUPS",
    "HealthSettings",
    "Invalid",
    "LoggingSettings",
    "MetricsSettings",
    "OtlpSettings",
    "SdkSettings",
    "ServiceSettings",
    "Settings",
    "TracingSettings",
    "check_relations",
]

ENVIRONMENTS: Final = ("development", "staging", "production")


class Invalid(Exception):
    """Raised by a field parser; carries the description of what is allowed."""

    def __init__(self, allowed: str) -> None:
        super().__init__(allowed)
        self.allowed = allowed


Parser = Callable[[Any], Any]


def _setting(default: Any, parse: Parser) -> Any:
    if isinstance(default, dict):
        frozen: Mapping[str, Any] = MappingProxyType(dict(default))  # pyright: ignore[reportUnknownArgumentType]
        return field(default_factory=lambda: frozen, metadata={"parse": parse})
    return field(default=default, metadata={"parse": parse})


# -- parsers: each takes the raw value (from TOML, YAML, an env var string or a keyword) and returns the
# -- typed value or raises Invalid(what is allowed).


def _string(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or str(value).strip() == "":
        raise Invalid("a non-empty string")
    return str(value).strip()


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "1", "yes", "on", "false", "0", "no", "off"}:
        return value.strip().lower() in {"true", "1", "yes", "on"}
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise Invalid("true or false")


def _integer(low: int, high: int) -> Parser:
    def parse(value: Any) -> int:
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            number = int(value)
        except (TypeError, ValueError):
            raise Invalid(f"an integer from {low} to {high}") from None
        if not low <= number <= high:
            raise Invalid(f"an integer from {low} to {high}")
        return number

    return parse


def _number(low: float, high: float) -> Parser:
    def parse(value: Any) -> float:
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError):
            raise Invalid(f"a number from {low:g} to {high:g}") from None
        if math.isnan(number) or not low <= number <= high:
            raise Invalid(f"a number from {low:g} to {high:g}")
        return number

    return parse


def _choice(*options: str, aliases: Mapping[str, str] | None = None, upper: bool = False) -> Parser:
    allowed = " | ".join(options)

    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid(f"one of {allowed}")
        text = value.strip().upper() if upper else value.strip().lower()
        text = (aliases or {}).get(text, text)
        if text not in options:
            raise Invalid(f"one of {allowed}")
        return text

    return parse


def _optional(parse: Parser) -> Parser:
    def parse_optional(value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in {"", "null"}):
            return None
        return parse(value)

    return parse_optional


def _url(value: Any) -> str:
    allowed = "an http:// or https:// URL with a host, such as http://127.0.0.1:4317"
    if not isinstance(value, str):
        raise Invalid(allowed)
    try:
        parts = urllib.parse.urlsplit(value.strip())
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise Invalid(allowed) from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise Invalid(allowed)
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs and dumps; headers are redacted everywhere.
        raise Invalid("a URL without credentials: put them in otlp.headers (redacted everywhere)")
    return value.strip().rstrip("/")


def _pairs(value: Any) -> dict[str, str]:
    """A mapping given as a table/dict or as the OTel `key=value,key2=value2` string (values URL-decoded)."""
    allowed = "a table of strings or 'key=value,key2=value2'"
    items: list[tuple[object, object]]
    if isinstance(value, Mapping):
        items = list(cast("Mapping[object, object]", value).items())
    elif isinstance(value, str):
        items = []
        for pair in filter(None, (p.strip() for p in value.split(","))):
            key, sep, val = pair.partition("=")
            if not sep or not key.strip():
                raise Invalid(allowed)
            items.append((key.strip(), urllib.parse.unquote(val.strip())))
    else:
        raise Invalid(allowed)
    if not all(isinstance(k, str) and isinstance(v, (str, int, float, bool)) for k, v in items):
        raise Invalid(allowed)
    return {str(k): str(v) for k, v in items}


def _secret_pairs(value: Any) -> Mapping[str, Secret]:
    return MappingProxyType({k: Secret(v) for k, v in _pairs(value).items()})


def _attributes(value: Any) -> Mapping[str, str]:
    return MappingProxyType(_pairs(value))


def _metric_namespace(value: Any) -> str:
    text = _string(value)
    if not text.replace("_", "a").isalnum() or not text[0].isalpha():
        raise Invalid("letters, digits and underscores, starting with a letter")
    return text


def _strings(value: Any) -> tuple[str, ...]:
    """A list given as a TOML/YAML list, a JSON list string or a comma-separated string (empty items dropped)."""
    allowed = "a list of non-empty strings or 'a,b,c'"
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise Invalid(allowed) from None
        else:
            return tuple(item.strip() for item in text.split(",") if item.strip())
    if isinstance(value, Mapping) or not isinstance(value, (list, tuple)):
        raise Invalid(allowed)
    items = cast("list[object] | tuple[object, ...]", value)
    if not all(isinstance(item, str) and item.strip() for item in items):
        raise Invalid(allowed)
    return tuple(str(item).strip() for item in items)


def _above(low: float, high: float) -> Parser:
    """A number strictly greater than `low`, up to `high`."""
    allowed = f"a number greater than {low:g} and at most {high:g}"

    def parse(value: Any) -> float:
        try:
            number = _number(low, high)(value)
        except Invalid:
            raise Invalid(allowed) from None
        if number <= low:
            raise Invalid(allowed)
        return number

    return parse


_DEPENDENCY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


def _dependency_url(value: str) -> str:
    allowed = "tcp://host:port, an http(s):// URL, or another scheme with a host and port (redis://host:6379)"
    try:
        parts = urllib.parse.urlsplit(value.strip())
        port = parts.port
    except ValueError:
        raise Invalid(allowed) from None
    if not parts.hostname or (port is None and parts.scheme not in {"http", "https"}):
        raise Invalid(allowed)
    return value.strip()


def _dependencies(value: Any) -> Mapping[str, str]:
    pairs = _pairs(value)
    for name, url in pairs.items():
        if not _DEPENDENCY_NAME.fullmatch(name):
            raise Invalid(f"names of letters, digits, '_', '.' or '-' starting with a letter (not {name!r})")
        pairs[name] = _dependency_url(url)
    return MappingProxyType(pairs)


# -- the groups. Attribute docstrings are the reference documentation of each setting.


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """Who is reporting: becomes the OpenTelemetry Resource."""

    name: str = _setting("rfobs-agent", _string)
    """`service.name` on every span and metric (fallback: `OTEL_SERVICE_NAME`)."""
    version: str = _setting("0.0.0", _string)
    """`service.version`."""
    environment: str | None = _setting(None, _optional(_string))
    """`deployment.environment.name`; defaults to the active settings environment."""
    resource_attributes: Mapping[str, str] = _setting({}, _attributes)
    """Extra resource attributes (fallback: `OTEL_RESOURCE_ATTRIBUTES`)."""


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """Spans: sampling, batching, limits and where they go."""

    enabled: bool = _setting(True, _boolean)
    """Record spans at all."""
    exporter: str | None = _setting(None, _optional(_choice("file", "otlp", "console", "none")))
    """file | otlp | console | none. Default: otlp when `otlp.endpoint` is set, else file."""
    sampler: str = _setting(
        "parentbased_always_on",
        _choice(
            "always_on",
            "always_off",
            "traceidratio",
            "parentbased_always_on",
            "parentbased_always_off",
            "parentbased_traceidratio",
        ),
    )
    """Sampler name, as in `OTEL_TRACES_SAMPLER`."""
    sampler_ratio: float = _setting(1.0, _number(0.0, 1.0))
    """Ratio for the traceidratio samplers (fallback: `OTEL_TRACES_SAMPLER_ARG`)."""
    max_queue_size: int = _setting(2048, _integer(1, 10_000_000))
    """Spans buffered before new ones are dropped (and counted)."""
    max_export_batch_size: int = _setting(512, _integer(1, 1_000_000))
    """Spans sent per export request."""
    schedule_delay: float = _setting(1.0, _number(0.001, 3600.0))
    """Seconds between exports."""
    max_attributes: int = _setting(128, _integer(1, 100_000))
    """Attributes kept per span, event and link."""
    max_attribute_length: int | None = _setting(None, _optional(_integer(1, 10_000_000)))
    """Longest string attribute value kept; longer ones are truncated. None: no limit."""
    file_path: str = _setting(".rfobs/traces.jsonl", _string)
    """Where the file exporter appends OTLP/JSON lines (read by `rfobs traces`)."""
    file_max_bytes: int = _setting(50 * 1024 * 1024, _integer(1024, 2**40))
    """Size at which the trace file is rotated."""
    file_backup_count: int = _setting(3, _integer(0, 100))
    """Rotated trace files kept."""


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Metrics: the Prometheus endpoint and optional OTLP export."""

    enabled: bool = _setting(True, _boolean)
    """Record metrics at all."""
    namespace: str = _setting("researchflow_agents", _metric_namespace)
    """Prefix of every rfobs metric name."""
    prometheus_enabled: bool = _setting(True, _boolean)
    """Serve `/metrics` for Prometheus to scrape."""
    prometheus_host: str = _setting("127.0.0.1", _string)
    """Address the `/metrics` endpoint binds to. Loopback by default; set 0.0.0.0 deliberately."""
    prometheus_port: int = _setting(9464, _integer(0, 65535))
    """Port of the `/metrics` endpoint (0 picks a free one)."""
    otlp_export: bool = _setting(False, _boolean)
    """Also push metrics to `otlp.endpoint`."""
    export_interval: float = _setting(60.0, _number(0.1, 86400.0))
    """Seconds between OTLP metric pushes."""


@dataclass(frozen=True, slots=True)
class OtlpSettings:
    """The OpenTelemetry Collector (or any OTLP backend) that traces, metrics and logs are pushed to."""

    endpoint: str | None = _setting(None, _optional(_url))
    """Base URL of the collector (fallback: `OTEL_EXPORTER_OTLP_ENDPOINT`). None: embedded default."""
    protocol: str = _setting("grpc", _choice("grpc", "http/protobuf", aliases={"http": "http/protobuf"}))
    """grpc | http/protobuf (fallback: `OTEL_EXPORTER_OTLP_PROTOCOL`)."""
    headers: Mapping[str, Secret] = _setting({}, _secret_pairs)
    """Headers sent with every export, such as an API key. Always redacted (fallback: `OTEL_EXPORTER_OTLP_HEADERS`)."""
    timeout: float = _setting(10.0, _number(0.001, 600.0))
    """Seconds one export request may take."""
    compression: str = _setting("none", _choice("none", "gzip", "deflate"))
    """none | gzip | deflate."""
    insecure: bool | None = _setting(None, _optional(_boolean))
    """gRPC without TLS. None: decided by the endpoint's scheme (http: insecure)."""


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    """Structured logging of the agent's own `logging` records."""

    enabled: bool = _setting(True, _boolean)
    """Install rfobs's handler on the root logger at `init()`."""
    level: str = _setting("INFO", _choice("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", upper=True))
    """Root log level."""
    format: str = _setting("json", _choice("json", "text"))
    """json (one object per line) | text (for humans)."""
    otlp_export: bool = _setting(True, _boolean)
    """Send log records over OTLP when `otlp.endpoint` is set."""


@dataclass(frozen=True, slots=True)
class SdkSettings:
    """The SDK as a whole."""

    disabled: bool = _setting(False, _boolean)
    """Install nothing: decorators talk to the no-op API (fallback: `OTEL_SDK_DISABLED`)."""
    shutdown_timeout: float = _setting(5.0, _number(0.0, 600.0))
    """Seconds `shutdown()` and the exit-time flush may take in all."""


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """Health checks: which built-in checks run, their thresholds, and the `/health` endpoints."""

    enabled: bool = _setting(True, _boolean)
    """Build the health checker at `init()` (`handle.health`)."""
    server_enabled: bool = _setting(False, _boolean)
    """Serve `/health/live`, `/health/ready` and `/health` over HTTP."""
    live_process: bool = _setting(os.name == "posix", _boolean)
    """Serve the endpoints through a small helper process (POSIX): answered even while the agent holds the GIL."""
    host: str = _setting("127.0.0.1", _string)
    """Address the health endpoints bind to. Loopback by default; set 0.0.0.0 deliberately."""
    port: int = _setting(8081, _integer(0, 65535))
    """Port of the health endpoints (0 picks a free one)."""
    cache_ttl: float = _setting(2.0, _number(0.0, 3600.0))
    """Seconds a health report is reused, so a probe storm runs the checks once."""
    check_timeout: float = _setting(5.0, _number(0.001, 600.0))
    """Seconds one check may take before it is reported unhealthy ("timed out after Ns")."""
    cpu_max_percent: float = _setting(90.0, _number(0.0, 100.0))
    """System CPU use above which the cpu check degrades."""
    memory_max_percent: float = _setting(90.0, _number(0.0, 100.0))
    """System memory use above which the memory check degrades."""
    disk_paths: tuple[str, ...] = _setting((".",), _strings)
    """Paths whose file systems the disk check watches."""
    disk_max_percent: float = _setting(90.0, _number(0.0, 100.0))
    """Disk use above which the disk check is unhealthy."""
    max_open_files: int | None = _setting(None, _optional(_integer(1, 10_000_000)))
    """Open file descriptors of this process above which the process check degrades. None: no limit."""
    max_rss_mb: int | None = _setting(None, _optional(_integer(1, 16_777_216)))
    """Resident memory of this process (MiB) above which the process check degrades. None: no limit."""
    git_path: str | None = _setting(None, _optional(_string))
    """A git work tree to check (branch, commit, uncommitted changes, detached HEAD). None: no git check."""
    env_files: tuple[str, ...] = _setting((), _strings)
    """`.env`-style files to check (critical: keys present and non-empty, not world-readable; values never shown)."""
    env_required_keys: tuple[str, ...] = _setting((), _strings)
    """Keys each of `env_files` must define with a non-empty value."""
    log_paths: tuple[str, ...] = _setting((), _strings)
    """Log files or directories to check for rotation."""
    log_max_mb: float = _setting(100.0, _number(0.001, 10_000_000.0))
    """Size (MiB) above which a log file is reported as not rotated."""
    log_max_age_days: float = _setting(30.0, _number(0.001, 36_500.0))
    """Age (days) above which a log file is reported as stale."""
    log_max_rotated: int = _setting(10, _integer(0, 100_000))
    """Rotated log files above which the log check degrades."""
    dependencies: Mapping[str, str] = _setting({}, _dependencies)
    """Workflow dependencies to probe, name -> `tcp://host:port` or `http(s)://...` (shown with passwords hidden)."""
    critical_dependencies: tuple[str, ...] = _setting((), _strings)
    """Names from `dependencies` whose failure makes the agent unhealthy (not ready)."""
    baseline_path: str = _setting(".rfobs/baseline.json", _string)
    """JSON file of operation latency baselines (written by `rfobs health baseline save`)."""
    degradation_factor: float = _setting(1.5, _above(1.0, 1000.0))
    """Recent p95 latency over baseline p95 above which an operation counts as degraded."""
    gpu: bool = _setting(False, _boolean)
    """Check GPUs through NVML (`pip install 'rfobs[gpu]'`); skipped where no NVML is present."""


@dataclass(frozen=True, slots=True)
class Settings:
    """All rfobs settings, validated. Build with `rfobs.load_config()`; never mutated."""

    env: str = "development"
    """The active environment: development | staging | production."""
    service: ServiceSettings = field(default_factory=ServiceSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    otlp: OtlpSettings = field(default_factory=OtlpSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    sdk: SdkSettings = field(default_factory=SdkSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), compare=False, repr=False)
    """Where each non-default value came from, by dotted key."""

    @property
    def trace_exporter(self) -> str:
        """The trace exporter in effect: the explicit choice, else otlp with an endpoint, else file."""
        if self.tracing.exporter is not None:
            return self.tracing.exporter
        return "otlp" if self.otlp.endpoint else "file"

    @property
    def deployment_environment(self) -> str:
        """`deployment.environment.name`: the explicit one, else the active settings environment."""
        return self.service.environment or self.env


GROUPS: Final[Mapping[str, type[Any]]] = MappingProxyType(
    {
        "service": ServiceSettings,
        "tracing": TracingSettings,
        "metrics": MetricsSettings,
        "otlp": OtlpSettings,
        "logging": LoggingSettings,
        "sdk": SdkSettings,
        "health": HealthSettings,
    }
)


BUILT_IN_CHECKS: Final = ("cpu", "memory", "disk", "process", "git", "env_files", "log_rotation", "performance", "gpu")
"""Names of the built-in health checks; a dependency's check is named after the dependency, so these are taken."""


def check_relations(groups: Mapping[str, Any]) -> list[tuple[str, object, str]]:
    """Rules between settings, over the built groups: `(key, value, allowed)` for each one broken."""
    health = cast(HealthSettings, groups["health"])
    broken: list[tuple[str, object, str]] = []
    if taken := [name for name in health.dependencies if name in BUILT_IN_CHECKS]:
        allowed = f"dependency names other than the built-in checks' ({', '.join(BUILT_IN_CHECKS)})"
        broken.append(("health.dependencies", {name: health.dependencies[name] for name in taken}, allowed))
    if unknown := [name for name in health.critical_dependencies if name not in health.dependencies]:
        known = ", ".join(health.dependencies) or "none are set"
        broken.append(("health.critical_dependencies", unknown, f"names from health.dependencies ({known})"))
    return broken
