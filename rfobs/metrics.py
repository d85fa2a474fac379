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
import os
import threading
import warnings
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, TypeVar, cast

from rfobs import _check, _state
from rfobs.instrument._telemetry import DURATION_BUCKETS

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
        # (kind, name) -> (the meter provider it was made on, the instrument)
        self._instruments: dict[tuple[str, str], tuple[object, object]] = {}

    def start_http_server(self, port: int = 9464, addr: str = "127.0.0.1") -> str | None:
        """Serve `/metrics` on `addr:port` (127.0.0.1 by default); initialise rfobs first if nothing has.

        Never raises for a port it cannot bind: the agent keeps running (as the seed's collector did without
        Prometheus) and a warning says what went wrong.

        Args:
            port: TCP port, 0 for any free one.
            addr: Address to bind; a public one exposes the metrics to the network.

        Returns:
            The URL of the endpoint; None when Prometheus export is off (`metrics.enabled` or
            `metrics.prometheus_enabled` false) or the address cannot be bound (a warning says which).

        Raises:
            ConfigError: `port` or `addr` is not valid.
        """
        port = int(_check.integer("start_http_server", "port", port, ge=0, le=65535))
        addr = _check.text("start_http_server", "addr", addr, "a host name or IP address")
        handle, started = _telemetry_serving(port, addr)
        if started:
            return handle.metrics_url  # init() warned already if the address was taken
        try:
            url = handle.serve_metrics(port, addr)
        except OSError as error:
            warnings.warn(
                f"rfobs: start_http_server(port={port}) cannot serve /metrics on {addr}:{port} "
                f"({error.strerror or error}); pass a free port, or 0 for any. Metrics are still recorded.",
                RuntimeWarning,
                stacklevel=2,
            )
            return None
        if url is None:
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

    def counter(self, name: str, description: str = "", unit: str = "") -> Counter:
        """The counter `name` (created on first use): `.add(1, {"label": "value"})`."""
        return self._instrument("counter", name, lambda meter, full: meter.create_counter(full, unit, description))

    def up_down_counter(self, name: str, description: str = "", unit: str = "") -> UpDownCounter:
        """The up-down counter `name` (created on first use): `.add(-1)` decreases it."""
        return self._instrument(
            "up_down_counter", name, lambda meter, full: meter.create_up_down_counter(full, unit, description)
        )

    def histogram(self, name: str, description: str = "", unit: str = "") -> Histogram:
        """The histogram `name` (created on first use): `.record(0.25, {"label": "value"})`.

        With `unit="s"` (Prometheus adds `_seconds`) the buckets suit durations from 5 ms to 2 minutes; otherwise
        they are OpenTelemetry's defaults (0 to 10,000).
        """
        buckets = DURATION_BUCKETS if unit == "s" else None
        return self._instrument(
            "histogram",
            name,
            lambda meter, full: meter.create_histogram(
                full, unit, description, explicit_bucket_boundaries_advisory=buckets
            ),
        )

    def gauge(self, name: str, description: str = "", unit: str = "") -> _Gauge:
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
        """The instrument of `kind` named `name` on the meter provider in place now.

        Made again when the provider changes (`init()` after first use, a test's fresh providers), so a collector
        kept in a module global keeps recording, under the namespace in effect.
        """
        from opentelemetry import metrics

        name = _check.text(f"MetricsCollector.{kind}", "name", name, "a metric name such as 'documents_processed'")
        provider = metrics.get_meter_provider()
        found = self._instruments.get((kind, name))
        if found is not None and found[0] is provider:
            return cast("_I", found[1])
        with self._lock:
            found = self._instruments.get((kind, name))
            if found is None or found[0] is not provider:
                from rfobs._version import __version__

                namespace = _state.current().namespace
                full = name if name.startswith((f"{namespace}.", f"{namespace}_")) else f"{namespace}.{name}"
                found = self._instruments[kind, name] = (
                    provider,
                    create(provider.get_meter(_SCOPE, __version__), full),
                )
            return cast("_I", found[1])

    def _after_fork_in_child(self) -> None:
        # A fork while another thread held the lock would leave it held for ever in the child.
        self._lock = threading.Lock()


_collector: MetricsCollector | None = None
_collector_lock = threading.Lock()


def _new_lock_in_child() -> None:
    global _collector_lock
    _collector_lock = threading.Lock()
    if _collector is not None:
        _collector._after_fork_in_child()  # pyright: ignore[reportPrivateUsage]


os.register_at_fork(after_in_child=_new_lock_in_child)


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
