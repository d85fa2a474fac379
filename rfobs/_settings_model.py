"""The typed, frozen `Settings` object: every setting declared once, with its default, check and docstring.

Each field's metadata carries the parser that validates it (`_check`). The environment variable of a field
is derived from its place: `tracing.sampler_ratio` is `RFOBS_TRACING__SAMPLER_RATIO`.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, cast

from rfobs._secrets import Secret

__all__ = [
    "ENVIRONMENTS",
    "GROUPS",
    "Invalid",
    "LoggingSettings",
    "MetricsSettings",
    "OtlpSettings",
    "SdkSettings",
    "ServiceSettings",
    "Settings",
    "TracingSettings",
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
    }
)
