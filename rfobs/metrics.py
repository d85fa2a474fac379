"""The seed's `get_metrics_collector()`: serve rfobs's metrics over HTTP, and record metrics of your own.

The seed's agents never call `rfobs.init()`; they load their settings, then serve metrics::

    config = load_config("production")
    metrics = get_metrics_collector()
    metrics.start_http_server(config.metrics.prometheus_port)

`start_http_server(port)` initialises rfobs when nothing has (with the settings of the latest `load_config()`,
else the default ones, and `/metrics` on `port`), so from then on the decorated tasks are traced and counted on
that port. After an explicit `rfobs.init()` it serves the same metrics on `port` as well.
"""

from __future__ import annotations

import dataclasses
import threading
import warnings
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, TypeVar, cast

from rfobs import _check, _state

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram, Meter, UpDownCounter, _Gauge

    from rfobs.health.asgi import ASGIApp
    from rfobs.sdk import Telemetry

__all__ = ["MetricsCollector", "get_metrics_collector"]

_SCOPE: Final = "rfobs.user"
_Labels = Mapping[str, str | int | float | bool] | None
_I = TypeVar("_I")


class MetricsCollector:
    """rfobs's metrics as the seed's collector offered them: an HTTP endpoint, an ASGI app, and instruments.

    Instruments of your own are created once per name, on the OpenTelemetry meter provider rfobs installs, and
    named in rfobs's metric namespace: `counter("documents")` is `researchflow_agents_documents_total` on
    `/metrics`. Get the process-wide collector with `get_metrics_collector()`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._instruments: dict[tuple[str, str], object] = {}  # (kind, name) -> instrument

    def start_http_server(self, port: int = 9464, addr: str = "127.0.0.1") -> str | None:
        """Serve `/metrics` on `addr:port` (127.0.0.1 by default); initialise rfobs first if nothing has.

        Args:
            port: TCP port, 0 for any free one.
            addr: Address to bind; a public one exposes the metrics to the network.

        Returns:
            The URL of the endpoint, or None when Prometheus export is off (`metrics.enabled` or
            `metrics.prometheus_enabled` false) or, initialising rfobs, the port could not be bound (a warning
            says which).

        Raises:
            ConfigError: `port` or `addr` is not valid.
            OSError: The address cannot be bound (rfobs was already initialised).
        """
        port = int(_check.integer("start_http_server", "port", port, ge=0, le=65535))
        addr = _check.text("start_http_server", "addr", addr, "a host name or IP address")
        handle, started = _telemetry_serving(port, addr)
        url = handle.metrics_url if started else handle.serve_metrics(port, addr)
        if url is None and handle.prometheus_registry is None:
            warnings.warn(
                "rfobs: start_http_server(): Prometheus export is off (metrics.enabled / metrics.prometheus_enabled), "
                "so there is no /metrics to serve",
                RuntimeWarning,
                stacklevel=2,
            )
        return url

    def asgi_app(self) -> ASGIApp:
        """An ASGI app serving `/metrics`, for an agent with a web app of its own (mount it at `/metrics`).

        Example:
            >>> app.mount("/metrics", get_metrics_collector().asgi_app())  # doctest: +SKIP
        """
        from rfobs.health.asgi import metrics_asgi_app

        return metrics_asgi_app()

    def counter(self, name: str, description: str = "", unit: str = "1") -> Counter:
        """The counter `name` (created on first use): `.add(1, {"label": "value"})`."""
        return self._instrument("counter", name, lambda meter, full: meter.create_counter(full, unit, description))

    def up_down_counter(self, name: str, description: str = "", unit: str = "1") -> UpDownCounter:
        """The up-down counter `name` (created on first use): `.add(-1)` decreases it."""
        return self._instrument(
            "up_down_counter", name, lambda meter, full: meter.create_up_down_counter(full, unit, description)
        )

    def histogram(self, name: str, description: str = "", unit: str = "s") -> Histogram:
        """The histogram `name` (created on first use): `.record(0.25, {"label": "value"})`."""
        return self._instrument("histogram", name, lambda meter, full: meter.create_histogram(full, unit, description))

    def gauge(self, name: str, description: str = "", unit: str = "1") -> _Gauge:
        """The gauge `name` (created on first use): `.set(42, {"label": "value"})`."""
        return self._instrument("gauge", name, lambda meter, full: meter.create_gauge(full, unit, description))

    def increment_counter(self, name: str, value: float = 1, labels: _Labels = None) -> None:
        """Add `value` to the counter `name`."""
        self.counter(name).add(value, dict(labels or {}))

    def observe_histogram(self, name: str, value: float, labels: _Labels = None) -> None:
        """Record `value` in the histogram `name`."""
        self.histogram(name).record(value, dict(labels or {}))

    def set_gauge(self, name: str, value: float, labels: _Labels = None) -> None:
        """Set the gauge `name` to `value`."""
        self.gauge(name).set(value, dict(labels or {}))

    def _instrument(self, kind: str, name: str, create: Callable[[Meter, str], _I]) -> _I:
        name = _check.text(f"MetricsCollector.{kind}", "name", name, "a metric name such as 'documents_processed'")
        with self._lock:
            if (kind, name) not in self._instruments:
                from opentelemetry import metrics

                from rfobs._version import __version__

                namespace = _state.current().namespace
                full = name if name.startswith((f"{namespace}.", f"{namespace}_")) else f"{namespace}.{name}"
                self._instruments[kind, name] = create(metrics.get_meter(_SCOPE, __version__), full)
            return cast("_I", self._instruments[kind, name])


_collector: MetricsCollector | None = None
_collector_lock = threading.Lock()


def get_metrics_collector() -> MetricsCollector:
    """The process-wide `MetricsCollector` (the seed's name).

    Example:
        >>> metrics = get_metrics_collector()
        >>> metrics.start_http_server(9090)  # doctest: +SKIP
        'http://127.0.0.1:9090/metrics'
    """
    global _collector
    with _collector_lock:
        if _collector is None:
            _collector = MetricsCollector()
        return _collector


def _telemetry_serving(port: int, addr: str) -> tuple[Telemetry, bool]:
    """The active handle, or one started now (True) from the latest loaded settings, `/metrics` on `addr:port`."""
    from rfobs import sdk

    handle = sdk.active()
    if handle is not None:
        return handle, False
    from rfobs.config import load_config

    settings = _state.last_loaded_settings() or load_config()
    metrics = dataclasses.replace(settings.metrics, prometheus_port=port, prometheus_host=addr)
    source = "get_metrics_collector().start_http_server()"
    sources = {**settings.sources, "metrics.prometheus_port": source, "metrics.prometheus_host": source}
    started = sdk.init_with_settings(dataclasses.replace(settings, metrics=metrics, sources=MappingProxyType(sources)))
    # Another thread may have initialised rfobs meanwhile, with an address of its own.
    return started, started.settings.metrics is metrics


def _forget() -> None:
    global _collector
    _collector = None


_state.on_reset(_forget)
