"""Attribute and metric names, and the instruments shared by every decorator, made once per installed provider.

Instruments are bound to the *current* global providers and rebuilt when those change (as `rfobs.testing`
does around each test), so a function decorated at import time reports to whichever SDK is installed now.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Iterable
from typing import Any, Final, Protocol

from opentelemetry import metrics, trace
from opentelemetry import trace as _trace_api
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.metrics import _internal as _metrics_api
from opentelemetry.metrics._internal import _ProxyMeterProvider  # pyright: ignore[reportPrivateUsage]
from opentelemetry.trace import Tracer

from rfobs import _guard, _state
from rfobs.instrument import _workers
from rfobs.instrument._counts import Counts, Labels
from rfobs.instrument._deferred import DeferredHistograms

__all__ = [
    "BreakerState",
    "Counts",
    "HealthState",
    "Instruments",
    "Labels",
    "current",
    "register_breaker",
    "register_health_checker",
]

SCOPE: Final = "rfobs"

# Span attributes: OTel GenAI semantic conventions, OpenInference, and rfobs's own.
GEN_AI_OPERATION: Final = "gen_ai.operation.name"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
OPENINFERENCE_KIND: Final = "openinference.span.kind"
ERROR_TYPE: Final = "error.type"
RFOBS_AGENT: Final = "rfobs.agent"
RFOBS_TASK: Final = "rfobs.task"
RFOBS_SERVICE: Final = "rfobs.api.service"
RFOBS_ENDPOINT: Final = "rfobs.api.endpoint"
HTTP_STATUS: Final = "http.response.status_code"
GEN_AI_PROVIDER: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
RFOBS_INPUT: Final = "rfobs.input"
RFOBS_OUTPUT: Final = "rfobs.output"
# Agent and tool spans (GenAI conventions), and OpenInference's content and tool attributes.
GEN_AI_AGENT_ID: Final = "gen_ai.agent.id"
GEN_AI_AGENT_VERSION: Final = "gen_ai.agent.version"
GEN_AI_AGENT_DESCRIPTION: Final = "gen_ai.agent.description"
GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"
GEN_AI_TOOL_DESCRIPTION: Final = "gen_ai.tool.description"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"
OI_INPUT_VALUE: Final = "input.value"
OI_INPUT_MIME_TYPE: Final = "input.mime_type"
OI_OUTPUT_VALUE: Final = "output.value"
OI_OUTPUT_MIME_TYPE: Final = "output.mime_type"
OI_TOOL_NAME: Final = "tool.name"
OI_TOOL_DESCRIPTION: Final = "tool.description"

# Policy attributes and events on the enclosing span.
RETRY_EVENT: Final = "retry"
RETRY_ATTEMPT: Final = "rfobs.retry.attempt"
RETRY_DELAY: Final = "rfobs.retry.delay_s"
RETRY_OUTCOME: Final = "rfobs.retry.outcome"
RETRY_ATTEMPTS: Final = "rfobs.retry.attempts"
RETRY_OPERATION: Final = "rfobs.retry.operation"
EXCEPTION_TYPE: Final = "exception.type"
TIMEOUT_EVENT: Final = "timeout"
TIMEOUT_LIMIT: Final = "rfobs.timeout.seconds"
TIMEOUT_OPERATION: Final = "rfobs.timeout.operation"
RATE_LIMIT_EVENT: Final = "rate_limit"
RATE_LIMIT_NAME: Final = "rfobs.rate_limit.limiter"
RATE_LIMIT_DECISION: Final = "rfobs.rate_limit.decision"
RATE_LIMIT_WAIT: Final = "rfobs.rate_limit.wait_s"
RATE_LIMIT_RETRY_AFTER: Final = "rfobs.rate_limit.retry_after_s"
RATE_LIMIT_FALLBACK_EVENT: Final = "rate_limit.fallback"
RATE_LIMIT_POLICY: Final = "rfobs.rate_limit.policy"
RATE_LIMIT_FALLBACK_REASON: Final = "rfobs.rate_limit.reason"
BREAKER_EVENT: Final = "circuit_breaker.transition"
BREAKER_NAME: Final = "rfobs.circuit_breaker.name"
BREAKER_FROM: Final = "rfobs.circuit_breaker.from_state"
BREAKER_TO: Final = "rfobs.circuit_breaker.to_state"
BREAKER_REJECTED_EVENT: Final = "circuit_breaker.rejected"
BREAKER_STATE: Final = "rfobs.circuit_breaker.state"
BREAKER_RETRY_AFTER: Final = "rfobs.circuit_breaker.retry_after_s"
BREAKER_FALLBACK_EVENT: Final = "circuit_breaker.fallback"
BREAKER_POLICY: Final = "rfobs.circuit_breaker.policy"
BREAKER_REASON: Final = "rfobs.circuit_breaker.fallback_reason"

# The GenAI semantic conventions' advisory buckets for token counts and operation durations.
TOKEN_BUCKETS: Final = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
# The GenAI conventions' advice for gen_ai.invoke_agent.duration: agent runs last longer than single calls.
AGENT_DURATION_BUCKETS: Final = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 102.4, 204.8, 409.6)
GEN_AI_DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92
)  # fmt: skip

# Seconds; covers a 1 ms tool call up to a 5-minute agent task.
DURATION_BUCKETS: Final = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)


class Instruments:
    """The tracer, histograms and counts for one pair of installed providers."""

    def __init__(self, tracer_provider: trace.TracerProvider, meter_provider: metrics.MeterProvider, ns: str) -> None:
        from rfobs._version import __version__

        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.installed = not (
            isinstance(tracer_provider, trace.ProxyTracerProvider) and isinstance(meter_provider, _ProxyMeterProvider)
        )
        """False while neither a tracer nor a meter provider is installed: nothing to report to."""
        self.tracer: Tracer = tracer_provider.get_tracer(SCOPE, __version__)
        # Before an SDK is installed the global meter provider is a proxy that would bind these instruments to
        # the first real provider later, next to the ones made for that provider: two series for one metric.
        # Calls made before init() are not measured; their instruments come from the no-op provider.
        source = metrics.NoOpMeterProvider() if isinstance(meter_provider, _ProxyMeterProvider) else meter_provider
        meter: Meter = source.get_meter(SCOPE, __version__)
        self._counts: list[Counts] = []
        self._histograms = histograms = DeferredHistograms(meter, f"{ns}.telemetry.histogram_flush")
        self.task_counts = self._counter(
            meter, f"{ns}.agent_tasks", "Agent task and tool runs, by status.", ("status", "error")
        )
        self.task_duration = histograms.create(
            f"{ns}.agent_task_duration", description="Agent task and tool duration.", unit="s", buckets=DURATION_BUCKETS
        )
        self.api_counts = self._counter(meter, f"{ns}.api_calls", "External API calls, by status.", ("status", "error"))
        self.api_duration = histograms.create(
            f"{ns}.api_call_duration", description="External API call duration.", unit="s", buckets=DURATION_BUCKETS
        )
        meter.create_observable_counter(
            f"{ns}.telemetry.internal_errors",
            callbacks=[_guard.observe],
            unit="1",
            description="Failures inside rfobs's own per-call work, caught and logged (the agent was not affected).",
        )
        self.retry_counts = self._counter(
            meter, f"{ns}.retry_attempts", "Retry attempts, by outcome.", ("outcome", "exhausted")
        )
        self.timeout_duration = histograms.create(
            f"{ns}.timeout_operation_duration",
            description="Duration of operations under a timeout, by outcome.",
            unit="s",
            buckets=DURATION_BUCKETS,
        )
        meter.create_observable_gauge(
            f"{ns}.timeout_abandoned_threads",
            callbacks=[_workers.observe],
            unit="{thread}",
            description="Worker threads of sync calls that timed out, still running (capped).",
        )
        self.rate_limit_counts = self._counter(meter, f"{ns}.rate_limit_requests", "Rate-limiter decisions.")
        self.breaker_transitions = self._counter(
            meter, f"{ns}.circuit_breaker_state_transitions", "Circuit breaker state changes."
        )
        self.breaker_fallbacks = self._counter(
            meter,
            f"{ns}.circuit_breaker_fallbacks",
            "Circuit breaker decisions made without the shared store (Redis), by fault policy.",
        )
        self.health_counts = self._counter(meter, f"{ns}.health_checks", "Health check runs, by check and status.")
        meter.create_observable_gauge(
            f"{ns}.health_check_status",
            callbacks=[_observe_health_status],
            # A unit in braces adds no suffix: with "1" a Collector's Prometheus exporter would call it `..._ratio`.
            unit="{status}",
            description="Each health check's last status: 1 healthy, 0.5 degraded, 0 unhealthy.",
        )
        meter.create_observable_gauge(
            f"{ns}.health_check_value",
            callbacks=[_observe_health_values],
            description="The numeric values each health check measured on its last run.",
        )
        meter.create_observable_gauge(
            f"{ns}.circuit_breaker_state",
            callbacks=[_observe_breakers],
            unit="{state}",
            description="Circuit breaker state: 0 closed, 1 half-open, 2 open.",
        )
        self.llm_token_usage = histograms.create(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Tokens used by LLM calls, by token type.",
            buckets=TOKEN_BUCKETS,
        )
        self.llm_duration = histograms.create(
            "gen_ai.client.operation.duration",
            unit="s",
            description="Duration of LLM calls.",
            buckets=GEN_AI_DURATION_BUCKETS,
        )
        self.llm_time_to_first_chunk = histograms.create(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time from a streaming LLM call's start to its first chunk.",
            buckets=GEN_AI_DURATION_BUCKETS,
        )
        self.invoke_agent_duration = histograms.create(
            "gen_ai.invoke_agent.duration",
            unit="s",
            description="Duration of agent invocations (`@agent`).",
            buckets=AGENT_DURATION_BUCKETS,
        )
        self.execute_tool_duration = histograms.create(
            "gen_ai.execute_tool.duration",
            unit="s",
            description="Duration of tool executions (`@tool`).",
            buckets=GEN_AI_DURATION_BUCKETS,
        )
        # A float sum, so a synchronous counter rather than `Counts`; one add per priced LLM call. The unit is an
        # annotation, so Prometheus adds no suffix: `{ns}_llm_cost_usd_total`.
        self.llm_cost = meter.create_counter(
            f"{ns}.llm_cost_usd",
            unit="{USD}",
            description="Estimated cost of LLM calls in US dollars (genai-prices), by provider and model.",
        )
        self.llm_cost_unknown = self._counter(
            meter,
            f"{ns}.llm_cost_unknown",
            "LLM calls that could not be priced, by provider and reason (provider, model or usage unknown).",
        )

    def _counter(self, meter: Meter, name: str, description: str, zero: tuple[str, str] | None = None) -> Counts:
        counts = Counts(zero)
        meter.create_observable_counter(name, callbacks=[counts.observe], unit="1", description=description)
        self._counts.append(counts)
        return counts

    def restart_after_fork(self) -> None:
        """In a forked child: forget the parent's counts and queued histogram values (see `Counts`)."""
        for counts in self._counts:
            counts.restart_after_fork()
        self._histograms.discard_pending()


class BreakerState(Protocol):
    """What the state gauge reads from a circuit breaker."""

    @property
    def name(self) -> str:
        """The breaker's name (its metric label)."""
        ...

    def state_value(self) -> float:
        """0 closed, 1 half-open, 2 open."""
        ...


_breakers: weakref.WeakSet[BreakerState] = weakref.WeakSet()


def register_breaker(breaker: BreakerState) -> None:
    """Report `breaker` in the `circuit_breaker_state` gauge for as long as it exists."""
    _breakers.add(breaker)


def _observe_breakers(_options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(b.state_value(), {"breaker": b.name}) for b in list(_breakers)]


class HealthState(Protocol):
    """What the health gauges read from a health checker."""

    def last_results(self) -> Iterable[Any]:
        """The latest `CheckResult` of each check."""
        ...


_health_checkers: weakref.WeakSet[HealthState] = weakref.WeakSet()


def register_health_checker(checker: HealthState) -> None:
    """Report `checker`'s last results in the health gauges for as long as it exists."""
    _health_checkers.add(checker)


def _observe_health_status(_options: CallbackOptions) -> Iterable[Observation]:
    return [
        Observation(result.status.gauge, {"check": result.name})
        for checker in list(_health_checkers)
        for result in checker.last_results()
    ]


def _observe_health_values(_options: CallbackOptions) -> Iterable[Observation]:
    return [
        Observation(value, {"check": result.name, "measure": measure})
        for checker in list(_health_checkers)
        for result in checker.last_results()
        for measure, value in result.values.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    ]


_lock = threading.Lock()
_current: Instruments | None = None


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    if (found := _current) is not None:
        found.restart_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def current(call: str | None = None) -> Instruments | None:
    """The instruments for the providers installed right now, or None while no SDK is installed.

    None lets a decorator skip all telemetry work before `rfobs.init()`: the OpenTelemetry API's no-op span
    alone costs microseconds. The globals are read directly because `get_tracer_provider()` and
    `get_meter_provider()` look up an environment variable on every call until a provider is set (opentelemetry-api
    is pinned; tests cover this path).

    Args:
        call: How to name the decorated call being made, when this lookup is for one: the first such call with
            no SDK installed logs the one warning per process (`report_no_sdk`).
    """
    tracer_provider = _trace_api._TRACER_PROVIDER  # pyright: ignore[reportPrivateUsage]
    meter_provider = _metrics_api._METER_PROVIDER  # pyright: ignore[reportPrivateUsage]
    if tracer_provider is None:
        if meter_provider is None:
            if call is not None and no_sdk_unreported:
                report_no_sdk(call)
            return None
        tracer_provider = trace.get_tracer_provider()
    elif meter_provider is None:
        meter_provider = metrics.get_meter_provider()
    found = _current
    if found is None or found.tracer_provider is not tracer_provider or found.meter_provider is not meter_provider:
        found = _rebuild(tracer_provider, meter_provider)
    return found if found.installed else None


def _rebuild(tracer_provider: trace.TracerProvider, meter_provider: metrics.MeterProvider) -> Instruments:
    global _current
    with _lock:
        found = _current
        if found is None or found.tracer_provider is not tracer_provider or found.meter_provider is not meter_provider:
            found = _current = Instruments(tracer_provider, meter_provider, _state.current().namespace)
        return found


no_sdk_unreported = True
"""True until the first decorated call made with no SDK installed has been reported."""


def report_no_sdk(call: str) -> None:
    """Say once per process that decorated calls run unrecorded (not after `init(sdk__disabled=True)`)."""
    global no_sdk_unreported
    no_sdk_unreported = False
    settings = _state.current().settings
    if settings is not None and settings.sdk.disabled:
        return  # turned off on purpose
    logging.getLogger("rfobs").warning(
        "rfobs: %s ran, but no OpenTelemetry SDK is installed, so nothing was recorded (no span, no metric). Call "
        "rfobs.init() at start-up, before the first decorated call. (Reported once per process.)",
        call,
    )


def _forget() -> None:
    global _current, no_sdk_unreported
    _current = None
    no_sdk_unreported = True


_state.on_reset(_forget)
