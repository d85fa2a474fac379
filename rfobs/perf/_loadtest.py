"""`load_test`: drive a function or URL with async virtual users and measure throughput, latency and errors."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import InitVar, asdict, dataclass, fields
from typing import Any, Final, TypedDict, Unpack, cast

from rfobs import _check
from rfobs._version import __version__
from rfobs.exceptions import ConfigError
from rfobs.instrument._wrap import is_coroutine_callable
from rfobs.perf._benchmark import run_blocking
from rfobs.perf._http import HttpClient, HttpStatusError
from rfobs.perf._results import HIGHEST_US, LatencyHistogram, LoadTestResult

__all__ = ["LoadTestConfig", "LoadTestSettings", "Progress", "load_test", "load_test_async", "load_test_sync"]

SPAN_NAME: Final = "load_test.request"
_RESOURCE_INTERVAL: Final = 0.5
_MIN_CPU_INTERVAL: Final = 0.1  # shorter than this, a CPU share is not a measurement

Target = Callable[[], Any] | str
Clock = Callable[[], float]


@dataclass(frozen=True)
class LoadTestConfig:
    """How to load a target: how many virtual users, for how many requests or how long, and how they pace.

    Exactly one of `total_requests` and `duration` is given.

    Args:
        concurrent_users: Virtual users, each sending one request at a time (>= 1).
        total_requests: Stop after this many requests in all (>= 1).
        duration: Stop starting requests after this many seconds (> 0).
        ramp_up: Seconds over which the users start, evenly spread (>= 0).
        ramp_up_duration: The seed programme's name for `ramp_up`, accepted when constructing (give one of them).
        think_time: Seconds each user waits between its requests (>= 0).
        timeout: Seconds a request may take before it is abandoned and counted as a timeout (> 0, or None).
        name: The result's name (default: the target's name or URL).
        sample_spans: Fraction of requests traced as `load_test.request` spans (0 to 1).

    Raises:
        ConfigError: A value is out of range, or both or neither of `total_requests` and `duration` are given.
    """

    concurrent_users: int
    total_requests: int | None = None
    duration: float | None = None
    ramp_up: float = 0.0
    think_time: float = 0.0
    timeout: float | None = None
    name: str | None = None
    sample_spans: float = 0.0
    ramp_up_duration: InitVar[float | None] = None

    def __post_init__(self, ramp_up_duration: float | None) -> None:
        if ramp_up_duration is not None:
            if self.ramp_up not in (0.0, ramp_up_duration):
                raise ConfigError(
                    f"LoadTestConfig(ramp_up={self.ramp_up!r}, ramp_up_duration={ramp_up_duration!r}): "
                    "expected one of them (ramp_up_duration is the seed's name for ramp_up)"
                )
            _seconds("ramp_up_duration", ramp_up_duration)
            object.__setattr__(self, "ramp_up", ramp_up_duration)  # frozen: the alias sets the one real field
        if (self.total_requests is None) == (self.duration is None):
            raise ConfigError(
                f"LoadTestConfig(total_requests={self.total_requests!r}, duration={self.duration!r}): "
                "expected exactly one of them"
            )
        _check.integer("LoadTestConfig", "concurrent_users", self.concurrent_users, ge=1)
        if self.total_requests is not None:
            _check.integer("LoadTestConfig", "total_requests", self.total_requests, ge=1)
        if self.duration is not None:
            _seconds("duration", self.duration, positive=True)
        _seconds("ramp_up", self.ramp_up)
        _seconds("think_time", self.think_time)
        if self.timeout is not None:
            _seconds("timeout", self.timeout, positive=True)
        _check.number("LoadTestConfig", "sample_spans", self.sample_spans, ge=0, le=1, allowed="a fraction from 0 to 1")


def _seconds(argument: str, value: object, *, positive: bool = False) -> None:
    _check.number(
        "LoadTestConfig",
        argument,
        value,
        gt=0 if positive else None,
        ge=None if positive else 0,
        what="a finite number of seconds",
    )


class LoadTestSettings(TypedDict, total=False):
    """The `LoadTestConfig` fields, given to `load_test` as keyword arguments instead of a config."""

    concurrent_users: int
    total_requests: int | None
    duration: float | None
    ramp_up: float
    ramp_up_duration: float | None
    think_time: float
    timeout: float | None
    name: str | None
    sample_spans: float


_SETTING_NAMES: Final = (*(f.name for f in fields(LoadTestConfig)), "ramp_up_duration")


@dataclass(frozen=True)
class Progress:
    """A snapshot passed to the `progress` callback once per second of the run."""

    elapsed_s: float
    requests: int
    errors: int
    rps: float
    p95_s: float
    fraction: float
    """Share of the run done (by requests or by time), 0 to 1."""


class _Run:
    """The state of one run; every field is touched only from the event loop thread."""

    def __init__(self, config: LoadTestConfig, clock: Clock, progress: Callable[[Progress], None] | None) -> None:
        self.config = config
        self.clock = clock
        self.progress = progress
        self.histogram = LatencyHistogram()
        self.second_histogram = LatencyHistogram()
        self.record_us = self.histogram.record_us
        self.requests = 0
        self.issued = 0
        self.errors = 0
        self.timeouts = 0
        self.errors_by_type: dict[str, int] = {}
        self.series: list[dict[str, Any]] = []
        self.second = 0
        self.second_requests = 0
        self.second_errors = 0
        self.started = clock()
        self.deadline = self.started + config.duration if config.duration is not None else math.inf
        self.limit = config.total_requests if config.total_requests is not None else -1
        self.tracer: Any = None
        self.latencies_for_metric: list[float] | None = None

    def close_second(self, now_second: int, last_span: float = 1.0) -> None:
        """Close the current one-second bucket (and any empty ones up to `now_second`).

        `last_span` is the length of the bucket closing last: less than a second for the run's final bucket,
        whose rate is its requests over the time it really covered, not over a whole second.
        """
        while self.second < now_second:
            span = last_span if self.second == now_second - 1 else 1.0
            self.series.append(
                {
                    "second": self.second,
                    "span_s": span,
                    "requests": self.second_requests,
                    "rps": self.second_requests / span,
                    "p95_s": self.second_histogram.percentile(95),
                    "errors": self.second_errors,
                }
            )
            self.second_histogram.reset()
            self.second += 1
            self.second_requests = self.second_errors = 0
            if self.progress is not None:
                self.report()

    def report(self) -> None:
        """Send a `Progress` to the callback."""
        assert self.progress is not None
        elapsed = self.clock() - self.started
        last = self.series[-1] if self.series else {"rps": 0.0, "p95_s": 0.0}
        if self.config.total_requests is not None:
            fraction = self.requests / self.config.total_requests
        else:
            fraction = min(elapsed / cast(float, self.config.duration), 1.0)
        self.progress(Progress(elapsed, self.requests, self.errors, last["rps"], last["p95_s"], fraction))

    def fail(self, error: BaseException) -> None:
        """Count a failed request by its error type."""
        key = str(error) if isinstance(error, HttpStatusError) else type(error).__name__
        self.errors_by_type[key] = self.errors_by_type.get(key, 0) + 1
        self.errors += 1
        self.second_errors += 1


async def _user(run: _Run, request: Callable[[], Awaitable[object]], delay: float) -> None:
    config, clock = run.config, run.clock
    if delay > 0:
        await asyncio.sleep(delay)
    timeout, think, sample = config.timeout, config.think_time, config.sample_spans
    record_us, second_record = run.record_us, run.second_histogram.record_us
    started = run.started
    while True:
        if run.issued == run.limit or clock() >= run.deadline:
            return
        run.issued += 1
        span = run.tracer.start_span(SPAN_NAME) if sample and random.random() < sample else None
        start = clock()
        try:
            if timeout is None:
                await request()
            else:
                async with asyncio.timeout(timeout):
                    await request()
        except TimeoutError as error:
            run.timeouts += 1
            run.fail(error)
            if span is not None:
                span.set_attribute("error.type", "TimeoutError")
        except Exception as error:
            run.fail(error)
            if span is not None:
                span.set_attribute("error.type", type(error).__name__)
        end = clock()
        if span is not None:
            span.end()
        micros = int((end - start) * 1e6) or 1
        if micros > HIGHEST_US:
            micros = HIGHEST_US
        record_us(micros)
        second_record(micros)
        if run.latencies_for_metric is not None:
            run.latencies_for_metric.append(end - start)
        run.requests += 1
        second = int(end - started)
        if second != run.second:
            run.close_second(second)
        run.second_requests += 1
        if think:
            await asyncio.sleep(think)


def _resource_sample(process: Any, clock: Clock, started: float, samples: list[dict[str, Any]]) -> dict[str, Any]:
    second = round(clock() - started, 3)
    previous = samples[-1] if samples else None
    if second - (previous["second"] if previous else 0.0) < _MIN_CPU_INTERVAL:
        # CPU time over a few microseconds is noise (a 2-core machine showed 422%): repeat the last figure.
        process.cpu_percent(None)
        cpu = previous["cpu_percent"] if previous else 0.0
    else:
        cpu = process.cpu_percent(None)
    return {"second": second, "cpu_percent": cpu, "rss_bytes": process.memory_info().rss}


async def _sample_resources(samples: list[dict[str, Any]], process: Any, clock: Clock, started: float) -> None:
    process.cpu_percent(None)
    while True:
        await asyncio.sleep(_RESOURCE_INTERVAL)
        samples.append(_resource_sample(process, clock, started, samples))


def _requests(target: Target, users: int, executor: ThreadPoolExecutor) -> list[Callable[[], Awaitable[object]]]:
    """One request callable per user: an HTTP client each for a URL, the function itself for a coroutine."""
    if isinstance(target, str):
        return [HttpClient(target).get for _ in range(users)]
    if is_coroutine_callable(target):
        return [cast(Callable[[], Awaitable[object]], target)] * users

    def in_thread() -> Awaitable[object]:
        return asyncio.get_running_loop().run_in_executor(executor, target)

    return [in_thread] * users


def _config(config: LoadTestConfig | None, settings: LoadTestSettings) -> LoadTestConfig:
    """The run's config: the one given, or one built from keyword settings (never both)."""
    if config is None:
        _check.options("load_test", settings, _SETTING_NAMES)
        if "concurrent_users" not in settings:
            raise ConfigError(
                f"load_test(): expected a LoadTestConfig or keyword settings with concurrent_users=, got "
                f"{dict(settings)!r}"
            )
        return LoadTestConfig(**settings)
    if not isinstance(cast(object, config), LoadTestConfig):
        raise ConfigError(f"load_test(config={config!r}): expected a LoadTestConfig")
    if settings:
        raise ConfigError(
            f"load_test(config=..., {', '.join(f'{k}={v!r}' for k, v in settings.items())}): "
            "expected a LoadTestConfig or keyword settings, not both"
        )
    return config


async def load_test(
    fn: Target,
    config: LoadTestConfig | None = None,
    *,
    progress: Callable[[Progress], None] | None = None,
    clock: Clock = time.perf_counter,
    **settings: Unpack[LoadTestSettings],
) -> LoadTestResult:
    """Drive `fn` with `config.concurrent_users` async virtual users and measure what happens.

    A coroutine function, as the seed programme calls it: `await load_test(fn, config)` inside a running event
    loop, or `asyncio.run(load_test(fn, config))` from plain code; `load_test_sync` is the same run as a plain
    call. The settings are a `LoadTestConfig` or its fields as keywords:
    `await load_test(fn, concurrent_users=50, total_requests=1000)`.

    `fn` is a coroutine function (awaited on the event loop: the fastest path, well over 50,000 requests/s for a
    no-op), a plain function (run in a thread pool with one thread per user, so blocking calls overlap), or an
    `http://` URL (each user GETs it over its own kept-alive HTTP/1.1 connection; a status >= 400 is an error
    named `HTTP <status>`). Exceptions are counted by class name, never raised. Latency percentiles come from
    an HDR histogram (bounded memory at any request count). When `rfobs.init()` has run, the figures are also
    metrics (`<namespace>.load_test_requests` by outcome, `<namespace>.load_test_request_duration`), and
    `config.sample_spans` of the requests are traced as `load_test.request` spans.

    Example:
        >>> async def noop() -> None: ...
        >>> result = asyncio.run(load_test(noop, concurrent_users=2, total_requests=10))
        >>> result["total_requests"], result["failed_requests"]
        (10, 0)

    Args:
        fn: The target.
        config: Users, length and pacing of the run (or give its fields as keyword `settings`).
        progress: Called about once per second of the run with a `Progress` snapshot.
        clock: The monotonic clock in seconds (injectable for tests).
        **settings: `LoadTestConfig` fields, when `config` is not given.

    Returns:
        The `LoadTestResult`: attributes, or keys such as `result["throughput_rps"]`.

    Raises:
        ConfigError: `fn`, `config` or a setting is invalid, or both `config` and settings are given
            (a `ValueError`).
        ImportError: `hdrhistogram` is missing: `pip install 'rfobs[perf]'`.
    """
    config = _config(config, settings)
    if not isinstance(fn, str) and not callable(fn):
        raise ConfigError(f"load_test(fn={fn!r}): expected a callable or an http:// URL")
    from rfobs.instrument import _telemetry

    instruments = _telemetry.current()
    users = config.concurrent_users
    with ThreadPoolExecutor(max_workers=users, thread_name_prefix="rfobs-load") as executor:
        requests = _requests(fn, users, executor)
        run = _Run(config, clock, progress)
        if instruments is not None:
            run.tracer = instruments.tracer
            run.latencies_for_metric = []
        elif config.sample_spans:
            from opentelemetry import trace

            run.tracer = trace.get_tracer("rfobs", __version__)
        import psutil

        process = psutil.Process()
        resources: list[dict[str, Any]] = []
        sampler = asyncio.create_task(_sample_resources(resources, process, clock, run.started))
        try:
            async with asyncio.TaskGroup() as group:
                for index, request in enumerate(requests):
                    group.create_task(_user(run, request, config.ramp_up * index / users))
            # A closing sample, so even a run shorter than the sampling interval shows its memory.
            resources.append(_resource_sample(process, clock, run.started, resources))
        finally:
            sampler.cancel()
            for request in requests:
                owner = getattr(request, "__self__", None)
                if isinstance(owner, HttpClient):
                    await owner.close()
    duration = max(clock() - run.started, 1e-9)
    if run.second_requests:
        run.close_second(run.second + 1, last_span=min(max(duration - run.second, 1e-9), 1.0))
    name = config.name or (fn if isinstance(fn, str) else getattr(fn, "__qualname__", repr(fn)))
    result = LoadTestResult(
        name=name,
        config=asdict(config),
        requests=run.requests,
        errors=run.errors,
        errors_by_type=dict(sorted(run.errors_by_type.items())),
        timeouts=run.timeouts,
        duration_s=duration,
        latency_s=run.histogram.summary(),
        series=tuple(run.series),
        resources=tuple(resources),
    )
    if instruments is not None:
        _report_metrics(instruments.meter_provider, result, run.latencies_for_metric or [])
    return result


def _report_metrics(meter_provider: Any, result: LoadTestResult, latencies: list[float]) -> None:
    """Publish the run as metrics: requests by outcome, and each request's latency."""
    from rfobs import _state
    from rfobs.instrument._telemetry import DURATION_BUCKETS

    ns = _state.current().namespace
    meter = meter_provider.get_meter("rfobs.perf", __version__)
    counter = meter.create_counter(f"{ns}.load_test_requests", unit="1", description="Load-test requests by outcome.")
    histogram = meter.create_histogram(
        f"{ns}.load_test_request_duration",
        unit="s",
        description="Load-test request latency.",
        explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
    )
    attributes = {"load_test": result.name}
    failed = result.errors - result.timeouts
    for outcome, n in (("ok", result.requests - result.errors), ("error", failed), ("timeout", result.timeouts)):
        if n:
            counter.add(n, {**attributes, "outcome": outcome})
    for seconds in latencies:
        histogram.record(seconds, attributes)


def load_test_sync(
    fn: Target,
    config: LoadTestConfig | None = None,
    *,
    progress: Callable[[Progress], None] | None = None,
    clock: Clock = time.perf_counter,
    **settings: Unpack[LoadTestSettings],
) -> LoadTestResult:
    """`load_test` as a plain call, for synchronous code: the same arguments, run and result.

    The run gets an event loop of its own (in a worker thread when this thread already runs one); inside a
    running loop prefer `await load_test(...)`.

    Example:
        >>> load_test_sync(lambda: None, concurrent_users=2, total_requests=10)["total_requests"]
        10

    Raises:
        ConfigError: `fn`, `config` or a setting is invalid (a `ValueError`).
        ImportError: `hdrhistogram` is missing: `pip install 'rfobs[perf]'`.
    """
    return run_blocking(load_test(fn, config, progress=progress, clock=clock, **settings))


load_test_async = load_test
"""The name `load_test` had when it was synchronous; the same coroutine function."""
