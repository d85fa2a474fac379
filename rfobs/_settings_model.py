"""The typed, frozen `Settings` object: every setting declared once, with its default, check and docstring.

Each field's metadata carries the parser that validates it (`_check`). The environment variable of a field
is derived from its place: `tracing.sampler_ratio` is `RFOBS_TRACING__SAMPLER_RATIO`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, cast

from rfobs import _settings_parsers as parsers
from rfobs._instrumentations import instrumentation_names
from rfobs._secrets import Secret
from rfobs._settings_parsers import Invalid, Parser
from rfobs._state import DEFAULT_NAMESPACE

__all__ = [
    "BUILT_IN_CHECKS",
    "ENVIRONMENTS",
    "GROUPS",
    "BreakerSettings",
    "HealthSettings",
    "Invalid",
    "LoggingSettings",
    "MetricsSettings",
    "OtlpSettings",
    "RateLimitSettings",
    "RedisSettings",
    "SdkSettings",
    "ServiceSettings",
    "Settings",
    "TimeoutSettings",
    "TracingSettings",
    "check_relations",
]

ENVIRONMENTS: Final = ("development", "staging", "production")


def _setting(default: Any, parse: Parser) -> Any:
    if isinstance(default, dict):
        frozen: Mapping[str, Any] = MappingProxyType(dict(default))  # pyright: ignore[reportUnknownArgumentType]
        return field(default_factory=lambda: frozen, metadata={"parse": parse})
    return field(default=default, metadata={"parse": parse})


# -- the groups. Attribute docstrings are the reference documentation of each setting.


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """Who is reporting: becomes the OpenTelemetry Resource."""

    name: str = _setting("rfobs-agent", parsers.string)
    """`service.name` on every span and metric (fallback: `OTEL_SERVICE_NAME`)."""
    version: str = _setting("0.0.0", parsers.string)
    """`service.version`."""
    environment: str | None = _setting(None, parsers.optional(parsers.string))
    """`deployment.environment.name`; defaults to the active settings environment."""
    resource_attributes: Mapping[str, str] = _setting({}, parsers.attributes)
    """Extra resource attributes (fallback: `OTEL_RESOURCE_ATTRIBUTES`)."""


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """Spans: sampling, batching, limits and where they go."""

    enabled: bool = _setting(True, parsers.boolean)
    """Record spans at all."""
    exporter: str | None = _setting(None, parsers.optional(parsers.choice("file", "otlp", "console", "none")))
    """file | otlp | console | none. Default: otlp when `otlp.endpoint` is set, else file."""
    sampler: str = _setting(
        "parentbased_always_on",
        parsers.choice(
            "always_on",
            "always_off",
            "traceidratio",
            "parentbased_always_on",
            "parentbased_always_off",
            "parentbased_traceidratio",
        ),
    )
    """Sampler name, as in `OTEL_TRACES_SAMPLER`."""
    sampler_ratio: float = _setting(1.0, parsers.number(0.0, 1.0))
    """Ratio for the traceidratio samplers (fallback: `OTEL_TRACES_SAMPLER_ARG`)."""
    max_queue_size: int = _setting(200_000, parsers.integer(1, 10_000_000))
    """Spans buffered before new ones are dropped (and counted)."""
    max_queue_bytes: int = _setting(64 * 1024 * 1024, parsers.integer(1024 * 1024, 2**40))
    """Estimated memory of the buffered spans before new ones are dropped (and counted); absorbs bursts."""
    max_export_batch_size: int = _setting(512, parsers.integer(1, 1_000_000))
    """Spans sent per export request."""
    schedule_delay: float = _setting(1.0, parsers.number(0.001, 3600.0))
    """Seconds between exports."""
    max_attributes: int = _setting(128, parsers.integer(1, 100_000))
    """Attributes kept per span, event and link."""
    max_attribute_length: int | None = _setting(8192, parsers.optional(parsers.integer(1, 10_000_000)))
    """Longest string value of a span, event or link attribute (user-set ones too); the SDK cuts longer ones.
    None: no limit."""
    max_events: int = _setting(128, parsers.integer(1, 100_000))
    """Events kept per span (exceptions, retries); later ones are dropped and counted as dropped events."""
    max_exception_length: int = _setting(4096, parsers.integer(256, 10_000_000))
    """Longest exception message recorded on a span; longer ones end in `...[truncated N chars]`."""
    max_stacktrace_length: int = _setting(8192, parsers.integer(256, 10_000_000))
    """Longest stack trace recorded on a span (`exception.stacktrace`), cut and marked the same way."""
    file_path: str = _setting(".rfobs/traces.jsonl", parsers.string)
    """Where the file exporter appends OTLP/JSON lines (read by `rfobs traces`)."""
    file_max_bytes: int = _setting(50 * 1024 * 1024, parsers.integer(1024, 2**40))
    """Size at which the trace file is rotated."""
    file_backup_count: int = _setting(3, parsers.integer(0, 100))
    """Rotated trace files kept."""


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Metrics: the Prometheus endpoint and optional OTLP export."""

    enabled: bool = _setting(True, parsers.boolean)
    """Record metrics at all."""
    namespace: str = _setting(DEFAULT_NAMESPACE, parsers.metric_namespace)
    """Prefix of every rfobs metric name."""
    prometheus_enabled: bool = _setting(True, parsers.boolean)
    """Serve `/metrics` for Prometheus to scrape."""
    prometheus_host: str = _setting("127.0.0.1", parsers.host)
    """Address the `/metrics` endpoint binds to; a name must resolve at `init()`. Loopback by default."""
    prometheus_port: int = _setting(9464, parsers.integer(0, 65535))
    """Port of the `/metrics` endpoint (0 picks a free one). Worker processes always take a free one."""
    targets_dir: str | None = _setting(".rfobs/prometheus-targets", parsers.optional(parsers.string))
    """Directory where each process serving `/metrics` writes its Prometheus file_sd target (None: off)."""
    otlp_export: bool = _setting(False, parsers.boolean)
    """Also push metrics to `otlp.endpoint`."""
    export_interval: float = _setting(60.0, parsers.number(0.1, 86400.0))
    """Seconds between OTLP metric pushes."""


@dataclass(frozen=True, slots=True)
class OtlpSettings:
    """The OpenTelemetry Collector (or any OTLP backend) that traces, metrics and logs are pushed to."""

    endpoint: str | None = _setting(None, parsers.optional(parsers.url))
    """Base URL of the collector (fallback: `OTEL_EXPORTER_OTLP_ENDPOINT`). None: embedded default."""
    protocol: str = _setting("grpc", parsers.choice("grpc", "http/protobuf", aliases={"http": "http/protobuf"}))
    """grpc | http/protobuf (fallback: `OTEL_EXPORTER_OTLP_PROTOCOL`)."""
    headers: Mapping[str, Secret] = _setting({}, parsers.otlp_headers)
    """Headers sent with every export, such as an API key; valid gRPC metadata. Always redacted (fallback:
    `OTEL_EXPORTER_OTLP_HEADERS`)."""
    timeout: float = _setting(10.0, parsers.number(0.001, 600.0))
    """Seconds one export request may take."""
    compression: str = _setting("none", parsers.choice("none", "gzip", "deflate"))
    """none | gzip | deflate."""
    insecure: bool | None = _setting(None, parsers.optional(parsers.boolean))
    """gRPC without TLS. None: decided by the endpoint's scheme (http: insecure)."""


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    """Structured logging of the agent's own `logging` records."""

    enabled: bool = _setting(True, parsers.boolean)
    """Install rfobs's handler on the root logger at `init()`."""
    level: str = _setting("INFO", parsers.choice("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", upper=True))
    """Root log level."""
    format: str = _setting("json", parsers.choice("json", "text"))
    """json (one object per line) | text (for humans). When not set, `structured` decides."""
    structured: bool = _setting(True, parsers.boolean)
    """Structured (JSON) log lines. `false` means the text format, unless `format` is set too (it wins)."""
    otlp_export: bool = _setting(True, parsers.boolean)
    """Send log records over OTLP when `otlp.endpoint` is set."""
    max_message_length: int = _setting(8192, parsers.integer(256, 10_000_000))
    """Longest log message (and traceback) written or exported; longer ones end in `...[truncated N chars]`."""


@dataclass(frozen=True, slots=True)
class SdkSettings:
    """The SDK as a whole."""

    disabled: bool = _setting(False, parsers.boolean)
    """Install nothing: decorators talk to the no-op API (fallback: `OTEL_SDK_DISABLED`)."""
    shutdown_timeout: float = _setting(5.0, parsers.number(0.0, 600.0))
    """Seconds `shutdown()` and the exit-time flush may take in all."""
    handle_sigterm: bool = _setting(True, parsers.boolean)
    """On SIGTERM end open spans, flush, die by SIGTERM; under an application's handler, export spans as they end."""
    scrub_patterns: tuple[str, ...] = _setting((), parsers.scrub_patterns)
    """More secrets to scrub: regular expressions whose matches become `***` (see `rfobs.add_secret_pattern`)."""
    instrument: tuple[str, ...] = _setting((), instrumentation_names)
    """Client libraries whose OpenTelemetry instrumentation `init()` turns on: openai, anthropic, google-genai, httpx,
    requests, aiohttp (`pip install 'rfobs[instrument-openai]'`, ...); one not installed earns a warning."""


@dataclass(frozen=True, slots=True)
class TimeoutSettings:
    """Limits of `@timeout` as a whole."""

    max_abandoned_threads: int = _setting(64, parsers.integer(1, 100_000))
    """Threads of timed-out sync calls still running above which new sync calls are refused (`TimeoutExceeded`)."""


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """Health checks: which built-in checks run, their thresholds, and the `/health` endpoints."""

    enabled: bool = _setting(True, parsers.boolean)
    """Build the health checker at `init()` (`handle.health`)."""
    server_enabled: bool = _setting(False, parsers.boolean)
    """Serve `/health/live`, `/health/ready` and `/health` over HTTP."""
    live_process: bool = _setting(os.name == "posix", parsers.boolean)
    """Serve the endpoints through a small helper process (POSIX): answered even while the agent holds the GIL."""
    host: str = _setting("127.0.0.1", parsers.host)
    """Address the health endpoints bind to; a name must resolve at `init()`. Loopback by default."""
    port: int = _setting(8081, parsers.integer(0, 65535))
    """Port of the health endpoints (0 picks a free one)."""
    cache_ttl: float = _setting(2.0, parsers.number(0.0, 3600.0))
    """Seconds a health report is reused, so a probe storm runs the checks once."""
    check_timeout: float = _setting(5.0, parsers.number(0.001, 600.0))
    """Seconds one check may take before it is reported unhealthy ("timed out after Ns")."""
    interval: float = _setting(30.0, parsers.off_or_number(1.0, 86_400.0))
    """Seconds between the health server's own runs of all checks, keeping health metrics fresh (0: none)."""
    cpu_max_percent: float = _setting(90.0, parsers.number(0.0, 100.0))
    """System CPU use above which the cpu check degrades."""
    memory_max_percent: float = _setting(90.0, parsers.number(0.0, 100.0))
    """System memory use above which the memory check degrades."""
    disk_paths: tuple[str, ...] = _setting((".",), parsers.strings)
    """Paths whose file systems the disk check watches."""
    disk_max_percent: float = _setting(90.0, parsers.number(0.0, 100.0))
    """Disk use above which the disk check is unhealthy."""
    max_open_files: int | None = _setting(None, parsers.optional(parsers.integer(1, 10_000_000)))
    """Open file descriptors of this process above which the process check degrades. None: no limit."""
    max_rss_mb: int | None = _setting(None, parsers.optional(parsers.integer(1, 16_777_216)))
    """Resident memory of this process (MiB) above which the process check degrades. None: no limit."""
    discover: bool = _setting(True, parsers.boolean)
    """Check what is found when unset: the git work tree around the working directory, `./.env`, `./logs/`."""
    git_path: str | None = _setting(None, parsers.optional(parsers.string))
    """A git work tree to check (branch, commit, uncommitted changes, detached HEAD). None: the one `discover` finds."""
    env_files: tuple[str, ...] = _setting((), parsers.strings)
    """`.env`-style files to check (critical: keys present and non-empty, not world-readable; values never shown)."""
    env_required_keys: tuple[str, ...] = _setting((), parsers.strings)
    """Keys the env files must define with a non-empty value (those configured, else the `./.env` found)."""
    log_paths: tuple[str, ...] = _setting((), parsers.strings)
    """Log files or directories to check for rotation. Empty: `./logs/` when `discover` finds it."""
    log_max_mb: float = _setting(100.0, parsers.number(0.001, 10_000_000.0))
    """Size (MiB) above which a log file is reported as not rotated."""
    log_max_age_days: float = _setting(30.0, parsers.number(0.001, 36_500.0))
    """Age (days) above which a log file is reported as stale."""
    log_max_rotated: int = _setting(10, parsers.integer(0, 100_000))
    """Rotated log files above which the log check degrades."""
    dependencies: Mapping[str, str] = _setting({}, parsers.dependencies)
    """Workflow dependencies to probe, name -> `tcp://host:port` or `http(s)://...` (shown with passwords hidden)."""
    critical_dependencies: tuple[str, ...] = _setting((), parsers.strings)
    """Names from `dependencies` whose failure makes the agent unhealthy (not ready)."""
    baseline_path: str = _setting(".rfobs/baseline.json", parsers.string)
    """JSON file of operation latency baselines (written by `rfobs health baseline save`)."""
    degradation_factor: float = _setting(1.5, parsers.above(1.0, 1000.0))
    """Recent p95 latency over baseline p95 above which an operation counts as degraded."""
    recent_minutes: float = _setting(15.0, parsers.number(0.1, 10_080.0))
    """Minutes of the trace file `rfobs health` reads as the recent latencies it compares with the baseline."""
    gpu: bool = _setting(False, parsers.boolean)
    """Check GPUs through NVML (`pip install 'rfobs[gpu]'`); skipped where no NVML is present."""


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """The Redis that fleet-wide rate limiters and circuit breakers share (`pip install 'rfobs[redis]'`)."""

    url: str | None = _setting(None, parsers.optional(parsers.redis_url))
    """`redis://`, `rediss://` or `unix://` URL; a secret: rfobs never prints its password. None: no Redis."""
    max_connections: int = _setting(50, parsers.integer(1, 100_000))
    """Connections for pings and script loads, per pool (one sync, one per event loop); decisions are pipelined on one
    connection of their own per process and per event loop."""
    timeout_ms: int = _setting(50, parsers.integer(1, 60_000))
    """Milliseconds one round trip (or the wait for a free connection) may take."""
    connect_timeout_ms: int = _setting(200, parsers.integer(1, 60_000))
    """Milliseconds to open a connection; a call waits on Redis at most this plus `timeout_ms`, once (a call queued
    behind a batch on the wire also waits for that batch)."""
    key_prefix: str = _setting("rfobs", parsers.string)
    """First part of every key rfobs writes (`rfobs:rl:tb:{name:'key'}`)."""
    retry_after: float = _setting(1.0, parsers.number(0.01, 3600.0))
    """Seconds calls stay off Redis after a failure (answered by the fault policy) before one call tries again."""


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """Where rate limiters given no `backend=` keep their state."""

    backend: str = _setting("memory", parsers.choice("memory", "redis"))
    """memory (each process its own limit) | redis (one limit for the fleet; needs `redis.url`)."""
    on_failure: str = _setting("fail_open", parsers.choice("fail_open", "fail_closed", "local"))
    """Without Redis: fail_open (allow, counted) | fail_closed (reject) | local (an in-process share)."""
    local_share: float = _setting(0.25, parsers.above(0.0, 1.0))
    """Fraction of the global rate the in-process fallback allows (`on_failure = local`)."""


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """Where circuit breakers given no `backend=` keep their state."""

    backend: str = _setting("memory", parsers.choice("memory", "redis"))
    """memory (each process its own breaker) | redis (one breaker for the fleet; needs `redis.url`)."""
    on_failure: str = _setting("local", parsers.choice("fail_open", "fail_closed", "local"))
    """Without Redis: local (the in-process breaker) | fail_open (allow the call) | fail_closed (refuse it)."""


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
    timeouts: TimeoutSettings = field(default_factory=TimeoutSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    ratelimit: RateLimitSettings = field(default_factory=RateLimitSettings)
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), compare=False, repr=False)
    """Where each non-default value came from, by dotted key."""
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    """The application's own settings: top-level keys of the settings files that rfobs does not own
    (`database`, `api`, `debug`, ...), read-only, secrets shown as `***` by their `repr`. Read them as
    attributes, `settings.database.url`, or by key, `settings["database"]["url"]`."""

    def __getattr__(self, name: str) -> Any:
        # Called only for names that are not fields: the application's sections (`settings.database`).
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            extra: Mapping[str, Any] = object.__getattribute__(self, "extra")
        except AttributeError:
            raise AttributeError(name) from None
        if name in extra:
            return extra[name]
        known = ", ".join([*GROUPS, *extra])
        close = difflib.get_close_matches(name, [*GROUPS, *extra], n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise AttributeError(f"settings have no section {name!r}{hint}; the sections are: {known}")

    def __getitem__(self, name: str) -> Any:
        """A group of rfobs's or a section of the application's, by name: `settings["database"]["url"]`."""
        if name in GROUPS or name in self.extra:
            return getattr(self, name)
        try:
            return self.__getattr__(name)
        except AttributeError as error:
            raise KeyError(str(error)) from None

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
        "timeouts": TimeoutSettings,
        "redis": RedisSettings,
        "ratelimit": RateLimitSettings,
        "breaker": BreakerSettings,
    }
)


BUILT_IN_CHECKS: Final = ("cpu", "memory", "disk", "process", "git", "env_files", "log_rotation", "performance", "gpu")
"""Names of the built-in health checks; a dependency's check is named after the dependency, so these are taken."""


def check_relations(groups: Mapping[str, Any]) -> list[tuple[str, object, str]]:
    """Rules between settings, over the built groups: `(key, value, allowed)` for each one broken."""
    health = cast(HealthSettings, groups["health"])
    broken: list[tuple[str, object, str]] = []
    sdk, metrics = cast(SdkSettings, groups["sdk"]), cast(MetricsSettings, groups["metrics"])
    # A server's host must resolve now: at bind time a typo only earns a warning and no endpoint.
    servers = (
        ("metrics.prometheus_host", metrics.prometheus_host, metrics.enabled and metrics.prometheus_enabled),
        ("health.host", health.host, health.enabled and health.server_enabled),
    )
    for key, host, serves in servers:
        if serves and not sdk.disabled and (allowed := parsers.unresolvable(host)):
            broken.append((key, host, allowed))
    if taken := [name for name in health.dependencies if name in BUILT_IN_CHECKS]:
        allowed = f"dependency names other than the built-in checks' ({', '.join(BUILT_IN_CHECKS)})"
        broken.append(("health.dependencies", {name: health.dependencies[name] for name in taken}, allowed))
    if unknown := [name for name in health.critical_dependencies if name not in health.dependencies]:
        known = ", ".join(health.dependencies) or "none are set"
        broken.append(("health.critical_dependencies", unknown, f"names from health.dependencies ({known})"))
    redis = cast(RedisSettings, groups["redis"])
    for group in ("ratelimit", "breaker"):
        if cast("RateLimitSettings | BreakerSettings", groups[group]).backend == "redis" and redis.url is None:
            broken.append((f"{group}.backend", "redis", "memory, or redis with redis.url set (redis.url is not set)"))
    return broken
