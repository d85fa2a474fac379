"""`rfobs.init()`, `rfobs.shutdown()` and the handle they share: the process-wide telemetry lifecycle."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rfobs import _guard, _process, _state
from rfobs._pipeline import Pipeline, build_pipeline, installed, serve_metrics
from rfobs._settings_model import Settings
from rfobs.config import load_config
from rfobs.exceptions import ConfigError, RfobsError
from rfobs.instrument import _workers

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter
    from opentelemetry.trace import Tracer

    from rfobs._prometheus import MetricsEndpoint

__all__ = ["Telemetry", "active", "flush", "get_settings", "init", "init_with_settings", "shutdown"]

_log = logging.getLogger("rfobs")
_lock = threading.Lock()


def _new_lock_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread of the parent may have held it at the fork


os.register_at_fork(after_in_child=_new_lock_in_child)
_active: Telemetry | None = None


class Telemetry:
    """The handle `rfobs.init()` returns: the installed providers, and how to flush and shut them down.

    Attributes:
        settings: The validated settings in effect.
        tracer: rfobs's tracer on the installed provider.
        meter: rfobs's meter on the installed provider.
        metrics_url: Where Prometheus can scrape, or None when the endpoint is off or could not start.
        prometheus_registry: The `prometheus_client` registry rfobs's metrics are exposed through (also when
            its port could not be bound), for mounting `/metrics` in an agent's own web app; None when off.
        trace_file: The local trace file on the embedded default, else None.
        health: The health checker built from `settings.health`, or None when `health.enabled` or the SDK
            (`sdk.disabled`) is off.
        health_url: Base URL of the health endpoints (`.../health`), or None when they are off or could not start.
        drops: Counts of spans, metric points and log records that could not be delivered (also published as
            the `telemetry.dropped` metric).
    """

    def __init__(self, settings: Settings, pipeline: Pipeline) -> None:
        from opentelemetry import metrics, trace

        from rfobs._version import __version__

        self.settings = settings
        self.tracer_provider = pipeline.tracer_provider
        self.meter_provider = pipeline.meter_provider
        self.logger_provider = pipeline.logger_provider
        self.metrics_url = pipeline.metrics_endpoint.url if pipeline.metrics_endpoint is not None else None
        self.prometheus_registry = pipeline.prometheus_registry
        self.drops = pipeline.drops
        self.health = pipeline.health
        self.health_url = pipeline.health_url
        self.trace_file = (
            settings.tracing.file_path if settings.trace_exporter == "file" and pipeline.tracer_provider else None
        )
        self.tracer: Tracer = (pipeline.tracer_provider or trace.get_tracer_provider()).get_tracer("rfobs", __version__)
        self.meter: Meter = (pipeline.meter_provider or metrics.get_meter_provider()).get_meter("rfobs", __version__)
        self._pipeline = pipeline
        self._extra_endpoints: list[MetricsEndpoint] = []  # serve_metrics()
        self._shut = False
        self._shut_down = threading.Event()
        self._shutting_down_in: threading.Thread | None = None
        self._sigterm_pending = False
        # Flush at interpreter exit unless shut down first; shutdown() unregisters this same bound method.
        atexit.register(self._exit_flush)
        if pipeline.tracer_provider is None and pipeline.meter_provider is None:
            return
        _process.at_fork_in_child(self._after_fork_in_child)
        if _process.is_multiprocessing_child():
            self._start_as_worker()
        elif settings.sdk.handle_sigterm and pipeline.span_processor is not None:
            _process.install_sigterm_handler(self._terminate, self._export_until_exit)

    def force_flush(self, timeout: float | None = None) -> bool:
        """Export everything recorded so far. Returns False if that did not finish within `timeout` seconds."""
        deadline = time.monotonic() + (self.settings.sdk.shutdown_timeout if timeout is None else timeout)
        done = True
        for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
            if provider is not None:
                millis = max(0, int((deadline - time.monotonic()) * 1000))
                done = _run_before(deadline, lambda p=provider, m=millis: p.force_flush(m)) and done
        return done

    def serve_metrics(self, port: int, host: str | None = None) -> str | None:
        """Serve `/metrics` on `host:port` too, until shutdown; its URL, or None when Prometheus export is off.

        An address already served (by `init()` or an earlier call) is not bound twice: its URL is returned.

        Raises:
            OSError: The address cannot be bound.
        """
        from rfobs._prometheus import MetricsEndpoint

        host = host or self.settings.metrics.prometheus_host
        if self.prometheus_registry is None:
            return None
        with _lock:
            served = [self._pipeline.metrics_endpoint, *self._extra_endpoints]
            for endpoint in served:
                if endpoint is not None and endpoint.url is not None and (endpoint.host, endpoint.port) == (host, port):
                    return endpoint.url
            endpoint = MetricsEndpoint(self.prometheus_registry, host, port, None, {})
            if self._shut:
                return None
            url = endpoint.start()
            self._extra_endpoints.append(endpoint)
            self._pipeline.closers.append((endpoint.close, endpoint.release_after_fork))
            return url

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush and stop every provider within one deadline shared by all of them.

        Args:
            timeout: Seconds for the whole shutdown. Default: `sdk.shutdown_timeout`.

        Returns:
            True if everything was delivered in time; False if the deadline ran out or a final export failed
            (what was not delivered is counted in the `telemetry.dropped` metric).
        """
        global _active
        with _lock:
            if self._shut:
                return True
            self._shut = True
            self._shutting_down_in = threading.current_thread()
            if _active is self:
                _active = None
                _state.deactivate()
        atexit.unregister(self._exit_flush)
        dropped_before = self.drops.total()
        deadline = time.monotonic() + (self.settings.sdk.shutdown_timeout if timeout is None else timeout)
        # Closing the /metrics and health servers waits for their loops (up to 0.5 s): overlap it with the flushes.
        closing = _start(lambda: [close() for close, _ in self._pipeline.closers])
        complete = True
        # The batch processors keep the deadline themselves and count what they abandon.
        for processor in (self._pipeline.span_processor, self._pipeline.log_processor):
            if processor is not None:
                complete = processor.shutdown_before(deadline) and complete
        if self.tracer_provider is not None:
            complete = _run_before(deadline, self.tracer_provider.shutdown) and complete
        if (meter_provider := self.meter_provider) is not None:
            millis = max(1.0, (deadline - time.monotonic()) * 1000)
            complete = _run_before(deadline, lambda: meter_provider.shutdown(timeout_millis=millis)) and complete
        if self.logger_provider is not None:
            complete = _run_before(deadline, self.logger_provider.shutdown) and complete
        closing.join(max(0.0, deadline - time.monotonic()))
        # In time is not delivered: the final exports may have failed (a dead collector); those were counted.
        complete = complete and self.drops.total() == dropped_before
        self._shut_down.set()
        if self._sigterm_pending:
            _process.die_by_sigterm()  # SIGTERM arrived while this thread was shutting down: it is time now
        _process.uninstall_sigterm_handler()
        return complete

    def _exit_flush(self) -> None:
        self.shutdown()

    def _export_until_exit(self) -> None:
        """SIGTERM handled by the application: spans leave as they end from now on (see `_process`)."""
        if (processor := self._pipeline.span_processor) is not None:
            processor.export_as_ended(min(1.0, self.settings.sdk.shutdown_timeout))
        if (endpoint := self._pipeline.metrics_endpoint) is not None:
            endpoint.withdraw()

    def _terminate(self) -> bool:
        """SIGTERM: end the spans still open as terminated and shut down within `sdk.shutdown_timeout`.

        Returns:
            True when the process may die now; False when the signal interrupted this thread's own shutdown
            (a worker's exit flush, say), which then finishes and dies by SIGTERM itself.
        """
        if self._shut and self._shutting_down_in is threading.current_thread():
            self._sigterm_pending = True
            return False
        # In a thread of its own: the signal may have interrupted this thread while it held a lock the work needs
        # (a span's, the queue's). The work then waits until the deadline, and the process dies all the same.
        worker = threading.Thread(target=self._end_spans_and_shut_down, name="rfobs-sigterm", daemon=True)
        worker.start()
        worker.join(self.settings.sdk.shutdown_timeout + 0.5)
        return True

    def _end_spans_and_shut_down(self) -> None:
        if (processor := self._pipeline.span_processor) is not None:
            # Ended in a thread of their own, waited for briefly: a span whose lock the interrupted thread holds
            # must not keep everything already queued from being flushed.
            ending = threading.Thread(target=processor.end_open_spans, args=("SIGTERM",), daemon=True)
            ending.start()
            ending.join(min(0.5, self.settings.sdk.shutdown_timeout / 4))
        self.shutdown()  # returns at once when another thread is shutting down: then wait for that one
        self._shut_down.wait(self.settings.sdk.shutdown_timeout)

    def _after_fork_in_child(self) -> None:
        """A forked child keeps the pipeline but not the parent's data, servers or endpoints (see `_process`)."""
        # A shutdown the parent had in progress in another thread does not go on in the child: SIGTERM must not
        # wait for it there.
        self._shutting_down_in = None
        self._shut_down = threading.Event()
        if self._shut:
            self._shut_down.set()
        self._sigterm_pending = False
        pipeline = self._pipeline
        kept: list[tuple[Callable[[], None], Callable[[], None] | None]] = []
        for close, release in pipeline.closers:
            if release is None:
                kept.append((close, release))
            else:
                release()
        pipeline.closers = kept
        self.health_url = None
        pipeline.drops.restart_after_fork()
        if self.meter_provider is not None:
            _process.restart_meter_provider_after_fork(self.meter_provider)
        if (endpoint := pipeline.metrics_endpoint) is not None:
            pipeline.metrics_endpoint = serve_metrics(self.settings, endpoint.registry, worker=True, pipeline=pipeline)
            self.metrics_url = pipeline.metrics_endpoint.url if pipeline.metrics_endpoint is not None else None
        _process.when_worker_starts(self, Telemetry._start_as_worker)

    def _start_as_worker(self) -> None:
        """A multiprocessing worker (fork or spawn): flush at its exit, export spans as they end, default SIGTERM.

        `Pool.terminate()` ends workers by SIGTERM while they may sleep on the pool's shared lock. A Python
        handler runs only once the main thread wakes, and the signal can land on another thread: the worker could
        then never die (seen as a hung `with Pool(...)`). So workers keep SIGTERM's default and deliver each span
        as it ends, before the task's result reaches the parent; the exit finalizer flushes what is left.
        """
        _process.run_at_worker_exit(self)
        _process.uninstall_sigterm_handler()
        if (processor := self._pipeline.span_processor) is not None:
            processor.export_as_ended(min(1.0, self.settings.sdk.shutdown_timeout))
            if self.settings.sdk.handle_sigterm:  # a server's own handler (uvicorn workers) is still chained
                _process.install_sigterm_handler(self._terminate, self._export_until_exit, chain_only=True)


def init(env: str | None = None, *, instrument: Sequence[str] | None = None, **overrides: Any) -> Telemetry:
    """Read the settings, build and install the OpenTelemetry providers, and start the exporters.

    Safe to call twice: the second call warns and returns the same handle. Call it once per process:
    after `shutdown()`, OpenTelemetry's set-once globals cannot be replaced, so a new `init()` raises.

    Args:
        env: `development`, `staging` or `production`; default `RFOBS_ENV`, else `development`.
        instrument: Client libraries whose OpenTelemetry instrumentation to turn on with rfobs's providers until
            `shutdown()`: "openai", "anthropic", "google-genai", "httpx", "requests", "aiohttp" (the setting
            `sdk.instrument`). One not installed earns a warning naming the package; an unknown name is invalid.
        **overrides: Settings that win over files and environment, as `group__key=value` or
            `group={"key": value}`.

    Returns:
        The handle: `tracer`, `meter`, `health`, `force_flush()`, `shutdown(timeout=)`.

    Raises:
        ConfigError: A setting is invalid (all problems are listed).
        RfobsError: `init()` after `shutdown()` in the same process.

    Example:
        >>> import rfobs
        >>> telemetry = rfobs.init(service__name="researcher", metrics__prometheus_port=0)  # doctest: +SKIP
        >>> telemetry.shutdown(timeout=2)  # doctest: +SKIP
        True
    """
    global _active
    with _lock:
        if _active is not None:
            warnings.warn(
                "rfobs.init() was already called; returning the existing handle (its settings stay in effect)",
                RuntimeWarning,
                stacklevel=2,
            )
            return _active
        _refuse_reinit()
        if instrument is not None:
            overrides["sdk__instrument"] = instrument if isinstance(instrument, str) else list(instrument)
        return _start_locked(load_config(env, overrides=overrides))


def init_with_settings(settings: Settings) -> Telemetry:
    """`init()` from settings already loaded (`load_config()`); the active handle when `init()` ran before.

    `get_metrics_collector().start_http_server(port)` uses it: the seed's agents load their settings and serve
    metrics without ever calling `rfobs.init()`.
    """
    with _lock:
        if _active is not None:
            return _active
        _refuse_reinit()
        return _start_locked(settings)


def _start_locked(settings: Settings) -> Telemetry:
    """Build and activate the pipeline for `settings` (the caller holds `_lock` and saw no active handle)."""
    global _active
    _workers.set_max_abandoned_threads(settings.timeouts.max_abandoned_threads)
    # Filled before the providers exist: the decorators read the namespace as soon as they see them.
    _state.activate(_state.ActiveState(settings=settings, namespace=settings.metrics.namespace))
    pipeline = build_pipeline(settings)
    if pipeline.tracer_provider is not None:
        from rfobs._conversation_processor import ConversationSpanProcessor

        # Every span on the provider, rfobs's or another tracer's, carries the conversation it started in.
        pipeline.tracer_provider.add_span_processor(ConversationSpanProcessor())
        from rfobs._cost_rollup import CostRollupProcessor

        # Agent spans carry the sum of the costs (`gen_ai.usage.cost`) of the LLM calls made inside them.
        pipeline.tracer_provider.add_span_processor(CostRollupProcessor())
        from rfobs.instrument._cost import warm_up_in_background

        warm_up_in_background()
    from rfobs._instrumentations import start as start_instrumentations

    # The instrumentations of `sdk.instrument`, turned off again by shutdown() (a closer of the pipeline).
    try:
        start_instrumentations(settings, pipeline)
    except ConfigError:
        raise
    except Exception:  # an instrumentation package failing to load must not fail init() after exporters started
        _guard.internal_error("turning on the OpenTelemetry instrumentations")
    _active = Telemetry(settings, pipeline)
    _state.activate(
        _state.ActiveState(
            settings=settings,
            namespace=settings.metrics.namespace,
            health_checker=_active.health,
            prometheus_registry=_active.prometheus_registry,
            limiter_backend=pipeline.fleet.limiter_backend if pipeline.fleet else None,
            breaker_backend=pipeline.fleet.breaker_backend if pipeline.fleet else None,
        )
    )
    return _active


def _refuse_reinit() -> None:
    """OpenTelemetry's global providers are set once per process: after shutdown() they cannot be replaced."""
    from opentelemetry import trace

    if trace.get_tracer_provider() in installed:
        raise RfobsError(
            "rfobs.init() after rfobs.shutdown() in the same process: OpenTelemetry's global providers can be "
            "installed only once, so new ones would never receive the decorators' telemetry. Call rfobs.init() "
            "once for the life of the process (in tests, rfobs.testing.reset_global_telemetry() resets the globals)"
        )


def shutdown(timeout: float | None = None) -> bool:
    """Shut down what `rfobs.init()` installed. True when there was nothing to do or all was delivered."""
    handle = _active
    return True if handle is None else handle.shutdown(timeout)


def flush(timeout: float | None = None) -> bool:
    """Export everything recorded so far, within `timeout` seconds (default `sdk.shutdown_timeout`).

    Call it before a process ends without running `atexit` handlers, such as a forked child that leaves with
    `os._exit()`. (multiprocessing workers and SIGTERM need no call: rfobs flushes them itself.)

    Returns:
        True when everything was exported in time, or there was nothing to export.
    """
    handle = _active
    return True if handle is None else handle.force_flush(timeout)


def active() -> Telemetry | None:
    """The handle of the active `init()`, or None before it (and after its shutdown)."""
    return _active


def get_settings() -> Settings:
    """The settings in effect: those of the active `init()`, else freshly loaded ones."""
    handle = _active
    return handle.settings if handle is not None else load_config()


def _forget_active() -> None:
    """Part of `rfobs._state.reset()`: shut down and forget the active handle."""
    global _active
    handle, _active = _active, None
    if handle is not None:
        handle.shutdown(timeout=1.0)


_state.on_reset(_forget_active)


def _start(action: Callable[[], object]) -> threading.Thread:
    worker = threading.Thread(target=action, name="rfobs-shutdown", daemon=True)
    worker.start()
    return worker


def _run_before(deadline: float, action: Callable[[], object]) -> bool:
    """Run `action` in a daemon thread and wait for it until `deadline`; False if it failed or ran out.

    A thread still running at the deadline is abandoned, not waited for: it is a daemon and cannot hold
    the process open.
    """
    outcome: list[bool] = []

    def run() -> None:
        try:
            outcome.append(action() is not False)
        except Exception as error:  # shutting down must not raise into the agent
            _log.warning("rfobs: telemetry did not flush or shut down cleanly: %s", error)
            _log.debug("rfobs: shutdown failure", exc_info=True)
            outcome.append(False)

    _start(run).join(max(0.0, deadline - time.monotonic()))
    return bool(outcome) and outcome[0]
