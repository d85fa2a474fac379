"""Turn on the OpenTelemetry instrumentations of LLM and HTTP clients (`sdk.instrument`) with rfobs's providers.

`rfobs.init(instrument=["openai", "httpx"])` (or `RFOBS_SDK__INSTRUMENT=openai,httpx`) finds each named library's
instrumentation through its `opentelemetry_instrumentor` entry point, turns it on with rfobs's tracer, meter and
logger providers passed explicitly, and turns it off again at `rfobs.shutdown()`. One that is not installed earns one
warning naming the package to install, never an error; an instrumentation that was already on (turned on by the
application itself) is left alone, and left on at shutdown.

One request, one usage (the double-span rule): when another instrumentation's GenAI inference span (`chat`,
`embeddings`, ...) starts directly under an `@llm_call` span, `UsageBelowLLMCallProcessor` marks the `@llm_call`
span with `rfobs.llm.usage_recorded_by` (the instrumentation's scope name). That child span then stands for the
request: it carries the token usage and records `gen_ai.client.token.usage` and `gen_ai.client.operation.duration`;
the `@llm_call` span stays as its parent, with the request and response attributes, the cost and rfobs's own
metrics, but no `gen_ai.usage.*` / `llm.token_count.*` attributes and no GenAI client metrics of its own.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

from opentelemetry import trace

from rfobs import _guard
from rfobs._settings_parsers import Invalid, strings
from rfobs._start_only import StartOnlyProcessor
from rfobs.instrument._telemetry import GEN_AI_OPERATION, OPENINFERENCE_KIND, SCOPE
from rfobs.instrument.llm import OPERATIONS, USAGE_RECORDED_BY

if TYPE_CHECKING:
    from opentelemetry._logs import LoggerProvider
    from opentelemetry.context import Context
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.sdk.trace import Span, SpanProcessor
    from opentelemetry.trace import TracerProvider

    from rfobs._pipeline import Pipeline
    from rfobs._settings_model import Settings

__all__ = [
    "LIBRARIES",
    "Instrumented",
    "Library",
    "UsageBelowLLMCallProcessor",
    "instrument",
    "instrumentation_names",
    "start",
]

_ENTRY_POINT_GROUP: Final = "opentelemetry_instrumentor"


@dataclass(frozen=True, slots=True)
class Library:
    """A client library rfobs can instrument, and where its OpenTelemetry instrumentation comes from.

    Attributes:
        distributions: (distribution, entry point names) of each instrumentation that serves the library, the
            preferred first: the first one installed is used, each of its entry points named here.
        install: What the warning tells to install when none of them is.
    """

    distributions: tuple[tuple[str, tuple[str, ...]], ...]
    install: str


LIBRARIES: Final[Mapping[str, Library]] = {
    "openai": Library(
        (
            ("opentelemetry-instrumentation-genai-openai", ("openai",)),  # the successor of openai-v2
            ("opentelemetry-instrumentation-openai-v2", ("openai",)),
        ),
        "pip install 'rfobs[instrument-openai]'",
    ),
    "anthropic": Library(
        (
            ("opentelemetry-instrumentation-genai-anthropic", ("anthropic",)),
            ("opentelemetry-instrumentation-anthropic", ("anthropic",)),
        ),
        "pip install 'rfobs[instrument-anthropic]'",
    ),
    "google-genai": Library(
        (("opentelemetry-instrumentation-google-genai", ("google-genai",)),),
        "pip install 'rfobs[instrument-google-genai]'",
    ),
    # httpx2 too: the fork that openai 3 and others are built on, instrumented by the same distribution.
    "httpx": Library(
        (("opentelemetry-instrumentation-httpx", ("httpx", "httpx2")),),
        "pip install 'rfobs[instrument-httpx]'",
    ),
    "requests": Library(
        (("opentelemetry-instrumentation-requests", ("requests",)),),
        "pip install 'rfobs[instrument-requests]'",
    ),
    # No extra: the aiohttp client instrumentation lags behind the OpenTelemetry release rfobs pins.
    "aiohttp": Library(
        (("opentelemetry-instrumentation-aiohttp-client", ("aiohttp-client",)),),
        "pip install opentelemetry-instrumentation-aiohttp-client (the release matching opentelemetry-instrumentation)",
    ),
}
"""The names `sdk.instrument` accepts, and their instrumentations."""


def instrumentation_names(value: object) -> tuple[str, ...]:
    """The settings parser of `sdk.instrument`: names from `LIBRARIES`, as a list or `'openai,httpx'`."""
    names = tuple(dict.fromkeys(name.lower() for name in strings(value)))
    if unknown := [name for name in names if name not in LIBRARIES]:
        raise Invalid(f"names from {', '.join(LIBRARIES)} ({', '.join(map(repr, unknown))} is not one)")
    return names


class _Instrumentor(Protocol):
    @property
    def is_instrumented_by_opentelemetry(self) -> bool: ...

    def instrument(self, **kwargs: Any) -> object: ...

    def uninstrument(self, **kwargs: Any) -> object: ...


_lock = threading.Lock()


def _new_lock_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # the parent's may have been held by another thread at fork


os.register_at_fork(after_in_child=_new_lock_in_child)


class Instrumented:
    """The instrumentations one `instrument()` call turned on; `uninstrument()` turns exactly those off."""

    def __init__(self, turned_on: Sequence[tuple[str, _Instrumentor]]) -> None:
        self._turned_on = list(turned_on)

    @property
    def names(self) -> tuple[str, ...]:
        """The library names with an instrumentation turned on, in the order asked."""
        return tuple(dict.fromkeys(name for name, _ in self._turned_on))

    def uninstrument(self) -> None:
        """Turn off what was turned on (once; later calls do nothing). Never raises."""
        with _lock:
            turned_on, self._turned_on = self._turned_on, []
            for name, instrumentor in turned_on:
                try:
                    instrumentor.uninstrument()
                except Exception:
                    _guard.internal_error(f"turning off the {name} instrumentation")


def instrument(
    names: Sequence[str],
    *,
    tracer_provider: TracerProvider,
    meter_provider: MeterProvider,
    logger_provider: LoggerProvider | None = None,
    excluded_urls: Sequence[str] = (),
) -> Instrumented:
    """Turn on the instrumentation of each library in `names` (keys of `LIBRARIES`) with the providers given.

    A library whose instrumentation is not installed, conflicts with the library's installed version, or fails to
    start earns one `RuntimeWarning` and is skipped. One already instrumented is left as it is (and not turned off
    by `Instrumented.uninstrument()`).

    Args:
        names: Library names, already checked (`instrumentation_names`).
        tracer_provider: Where the instrumentations' spans go.
        meter_provider: Where their metrics go.
        logger_provider: Where their events (log records) go; None: nowhere.
        excluded_urls: URLs the HTTP client instrumentations leave out (rfobs's own exports).
    """
    from opentelemetry._logs import NoOpLoggerProvider

    options: dict[str, object] = {
        "tracer_provider": tracer_provider,
        "meter_provider": meter_provider,
        "logger_provider": logger_provider if logger_provider is not None else NoOpLoggerProvider(),
    }
    turned_on: list[tuple[str, _Instrumentor]] = []
    with _lock:
        for name in names:
            library = LIBRARIES[name]
            found = _entry_points(library)
            if found is None:
                _warn(
                    f"sdk.instrument names {name!r}, but no OpenTelemetry instrumentation of it is installed: "
                    f"{library.install}"
                )
                continue
            distribution, points = found
            extra = {"excluded_urls": ",".join(map(re.escape, excluded_urls))} if excluded_urls else {}
            started, failures = _turn_on(points, {**options, **(extra if name in _HTTP_CLIENTS else {})})
            turned_on.extend((name, instrumentor) for instrumentor in started)
            if failures and not started:  # one of several failing is expected (httpx2 without httpx, say)
                _warn(f"the {name} instrumentation ({distribution}) could not be turned on: {'; '.join(failures)}")
    return Instrumented(turned_on)


_HTTP_CLIENTS: Final = frozenset({"httpx", "requests", "aiohttp"})


def _turn_on(points: Sequence[EntryPoint], options: Mapping[str, object]) -> tuple[list[_Instrumentor], list[str]]:
    """Turn on the instrumentor of each entry point: those rfobs turned on, and why others could not be."""
    started: list[_Instrumentor] = []
    failures: list[str] = []
    for point in points:
        try:
            instrumentor = cast("_Instrumentor", point.load()())
            if instrumentor.is_instrumented_by_opentelemetry:
                continue  # turned on by the application, with its own providers: not rfobs's to change or turn off
            # A missing or unsupported client library raises DependencyConflictError instead of only logging it.
            instrumentor.instrument(raise_exception_on_conflict=True, **options)
        except Exception as error:
            failures.append(str(error) or type(error).__name__)
            continue
        if instrumentor.is_instrumented_by_opentelemetry:
            started.append(instrumentor)
    return started, failures


def _entry_points(library: Library) -> tuple[str, list[EntryPoint]] | None:
    """The first installed instrumentation of `library`: its distribution's name and the entry points to load."""
    installed: dict[tuple[str, str], EntryPoint] = {}
    for point in entry_points(group=_ENTRY_POINT_GROUP):
        if point.dist is not None:
            installed.setdefault((_normal(point.dist.name), point.name), point)
    for distribution, names in library.distributions:
        points = [found for name in names if (found := installed.get((_normal(distribution), name))) is not None]
        if points:
            return distribution, points
    return None


def _normal(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


_RFOBS_DIR: Final = str(Path(__file__).resolve().parent)


def _warn(message: str) -> None:
    """A `RuntimeWarning` attributed to the first caller outside rfobs (the application's `init()` call)."""
    level, frame = 2, sys._getframe(1)  # pyright: ignore[reportPrivateUsage]
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(_RFOBS_DIR):
        level, frame = level + 1, frame.f_back
    warnings.warn(f"rfobs: {message}", RuntimeWarning, stacklevel=level)


def start(settings: Settings, pipeline: Pipeline) -> None:
    """For `rfobs.init()`: install the double-span rule and turn on `settings.sdk.instrument` until shutdown.

    Nothing is instrumented when the SDK is disabled or records neither spans nor metrics.
    """
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    if pipeline.tracer_provider is not None:
        pipeline.tracer_provider.add_span_processor(cast("SpanProcessor", UsageBelowLLMCallProcessor()))
    if not settings.sdk.instrument or (pipeline.tracer_provider is None and pipeline.meter_provider is None):
        return
    instrumented = instrument(
        settings.sdk.instrument,
        tracer_provider=pipeline.tracer_provider or NoOpTracerProvider(),
        meter_provider=pipeline.meter_provider or NoOpMeterProvider(),
        logger_provider=pipeline.logger_provider,
        excluded_urls=[settings.otlp.endpoint] if settings.otlp.endpoint else [],
    )
    # A closer with no after-fork release: a forked child keeps the instrumentations and turns them off at its end.
    pipeline.closers.append((instrumented.uninstrument, None))


_INFERENCE: Final = frozenset(OPERATIONS)
_LLM_KINDS: Final = frozenset({"LLM", "EMBEDDING"})


class UsageBelowLLMCallProcessor(StartOnlyProcessor):
    """A span processor: marks an `@llm_call` span under which another instrumentation's GenAI span starts.

    The check runs at span start: rfobs's own spans return at the first comparison; another instrumentation's
    span costs a dictionary look-up, and an attribute set on its parent when that parent is an `@llm_call` span.
    It does not subclass the SDK's `SpanProcessor`, so that importing this module (as the settings do, for
    `instrumentation_names`) does not import the SDK.
    """

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Mark the `@llm_call` parent of a GenAI inference span from another instrumentation."""
        from opentelemetry.sdk.trace import Span as SdkSpan

        try:
            scope = span.instrumentation_scope
            if scope is None or scope.name == SCOPE:
                return
            if (span.attributes or {}).get(GEN_AI_OPERATION) not in _INFERENCE:
                return
            parent = trace.get_current_span(parent_context)
            if not isinstance(parent, SdkSpan) or not parent.is_recording() or span.parent is None:
                return
            if parent.get_span_context().span_id != span.parent.span_id:
                return
            parent_scope = parent.instrumentation_scope
            if parent_scope is None or parent_scope.name != SCOPE:
                return
            if (parent.attributes or {}).get(OPENINFERENCE_KIND) in _LLM_KINDS:
                parent.set_attribute(USAGE_RECORDED_BY, scope.name)
        except Exception:
            _guard.internal_error("checking a GenAI span for an @llm_call around it")
