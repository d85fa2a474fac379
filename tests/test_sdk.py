from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

import rfobs
from rfobs.traceview import load_spans

pytestmark = pytest.mark.usefixtures("clean_globals")


class _Quiet(TypedDict):
    metrics__prometheus_port: int
    logging__enabled: bool


# A TypedDict, so that `**QUIET` cannot be mistaken for the positional `env` argument of `rfobs.init`.
QUIET: _Quiet = {"metrics__prometheus_port": 0, "logging__enabled": False}


@pytest.fixture
def handle() -> Iterator[rfobs.Telemetry]:
    telemetry = rfobs.init("staging", service__name="researcher", service__version="2.1.0", **QUIET)
    yield telemetry
    telemetry.shutdown(timeout=2)


def test_init_builds_resource_and_providers_from_settings(handle: rfobs.Telemetry) -> None:
    provider = trace.get_tracer_provider()
    assert provider is handle.tracer_provider
    assert metrics.get_meter_provider() is handle.meter_provider
    assert isinstance(provider, TracerProvider)
    attributes = dict(provider.resource.attributes)
    assert {k: attributes[k] for k in ("service.name", "service.version", "deployment.environment.name")} == {
        "service.name": "researcher",
        "service.version": "2.1.0",
        "deployment.environment.name": "staging",
    }
    assert {"host.name", "process.pid", "process.runtime.version", "telemetry.sdk.version"} <= attributes.keys()
    assert attributes["telemetry.distro.name"] == "rfobs"
    assert "process.command_args" not in attributes  # agents are started with API keys on the command line
    assert handle.trace_file == ".rfobs/traces.jsonl"
    assert handle.metrics_url is not None and handle.metrics_url.startswith("http://127.0.0.1:")


def test_metrics_endpoint_serves_rfobs_metrics(handle: rfobs.Telemetry) -> None:
    @rfobs.task("researcher", "search")
    def search() -> None:
        pass

    search()
    search()
    assert handle.metrics_url is not None
    with urllib.request.urlopen(handle.metrics_url, timeout=5) as response:
        body = response.read().decode()
    line = 'researchflow_agents_agent_tasks_total{agent="researcher",otel_scope_name="rfobs",'
    assert any(row.startswith(line) and 'status="success"' in row and row.endswith(" 2.0") for row in body.splitlines())


def test_every_rfobs_series_on_metrics_names_the_rfobs_version(handle: rfobs.Telemetry) -> None:
    from rfobs._version import __version__

    @rfobs.task("researcher", "search")
    def search() -> None:
        pass

    search()
    handle.drops.add("logs", "queue_full", 3)
    assert handle.metrics_url is not None
    with urllib.request.urlopen(handle.metrics_url, timeout=5) as response:
        rows = [row for row in response.read().decode().splitlines() if 'otel_scope_name="rfobs"' in row]
    dropped = [row for row in rows if row.startswith("researchflow_agents_telemetry_dropped_total{")]
    prefix = (
        'researchflow_agents_telemetry_dropped_total{otel_scope_name="rfobs",'
        f'otel_scope_schema_url="",otel_scope_version="{__version__}",'
    )
    # The span processor's four reasons at 0 from init() on, then the drops counted.
    assert dropped == [
        f'{prefix}reason="{reason}",signal="spans"}} 0.0'
        for reason in ("queue_full", "after_shutdown", "shutdown_timeout", "export_failed")
    ] + [f'{prefix}reason="queue_full",signal="logs"}} 3.0']
    assert rows and all(f'otel_scope_version="{__version__}"' in row for row in rows)


def test_second_init_warns_at_the_caller_and_returns_the_same_handle(handle: rfobs.Telemetry) -> None:
    with pytest.warns(RuntimeWarning, match=r"rfobs.init\(\) was already called") as caught:
        again = rfobs.init(service__name="other")
    assert again is handle
    assert caught[0].filename == __file__


def test_shutdown_flushes_queued_spans_to_the_trace_file() -> None:
    telemetry = rfobs.init(tracing__schedule_delay=3600, **QUIET)

    @rfobs.task("researcher", "step")
    def step() -> None:
        pass

    for _ in range(5):
        step()
    assert not Path(".rfobs/traces.jsonl").exists()  # still queued: the delay is an hour
    assert telemetry.shutdown(timeout=5) is True
    assert [s.name for s in load_spans(".rfobs/traces.jsonl")] == ["researcher.step"] * 5
    assert rfobs.shutdown() is True  # nothing left to do


def test_force_flush_exports_without_shutting_down() -> None:
    telemetry = rfobs.init(tracing__schedule_delay=3600, **QUIET)
    with telemetry.tracer.start_as_current_span("one"):
        pass
    assert telemetry.force_flush(timeout=5) is True
    assert [s.name for s in load_spans(".rfobs/traces.jsonl")] == ["one"]
    with telemetry.tracer.start_as_current_span("two"):
        pass
    telemetry.shutdown(timeout=5)
    assert [s.name for s in load_spans(".rfobs/traces.jsonl")] == ["one", "two"]


def test_sampler_ratio_is_respected() -> None:
    telemetry = rfobs.init(
        tracing__sampler="traceidratio", tracing__sampler_ratio=0.25, tracing__exporter="none", **QUIET
    )
    provider = telemetry.tracer_provider
    assert provider is not None
    assert isinstance(provider.sampler, TraceIdRatioBased) and provider.sampler.rate == 0.25
    sampled = 0
    for _ in range(4000):
        with telemetry.tracer.start_as_current_span("root") as span:
            sampled += span.is_recording()
    # Binomial(4000, 0.25): mean 1000, standard deviation 27.4; five deviations either side.
    assert 863 <= sampled <= 1137


def test_default_sampler_follows_the_parent() -> None:
    telemetry = rfobs.init(tracing__exporter="none", **QUIET)
    assert telemetry.tracer_provider is not None
    assert isinstance(telemetry.tracer_provider.sampler, ParentBased)


def test_taken_metrics_port_warns_and_everything_else_works() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.warns(
            RuntimeWarning, match=rf"cannot serve /metrics on 127.0.0.1:{port} .*metrics.prometheus_port"
        ) as caught:
            telemetry = rfobs.init(metrics__prometheus_port=port, logging__enabled=False)
    assert caught[0].filename == __file__  # points at the caller
    assert telemetry.metrics_url is None
    with telemetry.tracer.start_as_current_span("still traced"):
        pass
    assert telemetry.shutdown(timeout=5)
    assert [s.name for s in load_spans(".rfobs/traces.jsonl")] == ["still traced"]


def test_sdk_disabled_installs_nothing() -> None:
    telemetry = rfobs.init(sdk__disabled=True, **QUIET)
    assert telemetry.tracer_provider is None and telemetry.meter_provider is None
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)

    @rfobs.task("researcher", "noop")
    def noop() -> int:
        return 7

    assert noop() == 7
    assert telemetry.shutdown() is True
    assert not Path(".rfobs").exists()


def test_init_wires_json_logging_with_trace_correlation(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)  # init()'s own handler writes to standard error
    telemetry = rfobs.init(metrics__prometheus_port=0, logging__level="DEBUG")
    try:
        with telemetry.tracer.start_as_current_span("work") as span:
            logging.getLogger("agent").info("calling api token=abc123secret", extra={"user": "u1", "password": "pw"})
        record = json.loads(stream.getvalue().splitlines()[-1])
        context = span.get_span_context()
        assert record["trace_id"] == format(context.trace_id, "032x")
        assert record["span_id"] == format(context.span_id, "016x")
        assert record["message"] == "calling api token=***"
        assert (record["level"], record["logger"], record["user"], record["password"]) == ("INFO", "agent", "u1", "***")
        assert logging.getLogger().level == logging.DEBUG
    finally:
        telemetry.shutdown(timeout=2)
        for handler in list(logging.getLogger().handlers):
            if getattr(handler, "_rfobs_handler", False):
                logging.getLogger().removeHandler(handler)


def test_logged_secrets_in_quoted_and_nested_forms_are_redacted() -> None:
    stream = io.StringIO()
    handler = rfobs.setup_logging("INFO", json_format=True, stream=stream)
    try:
        log = logging.getLogger("agent")
        log.info("calling with %s", {"password": "hunter2", "api_key": "abc123"})
        log.info('config {"token": "hunter2"}')
        log.info("request", extra={"request": {"headers": {"Authorization": "Bearer hunter2xyz"}}, "tokens": [1]})
        log.info("usage input_tokens: 12")
    finally:
        logging.getLogger().removeHandler(handler)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert "hunter2" not in stream.getvalue() and "abc123" not in stream.getvalue()
    assert records[0]["message"] == "calling with {'password': '***', 'api_key': '***'}"
    assert records[1]["message"] == 'config {"token": "***"}'
    assert records[2]["request"] == {"headers": {"Authorization": "***"}}
    assert records[3]["message"] == "usage input_tokens: 12"  # a token count is not a credential


def test_init_after_shutdown_is_refused_clearly() -> None:
    rfobs.init(**QUIET).shutdown(timeout=2)
    with pytest.raises(rfobs.RfobsError, match=r"rfobs.init\(\) after rfobs.shutdown\(\) in the same process"):
        rfobs.init(**QUIET)


def test_zero_timeout_shutdown_with_nothing_pending_is_complete() -> None:
    telemetry = rfobs.init(**QUIET)
    assert telemetry.shutdown(timeout=0) is True
    assert telemetry.drops.get("spans") == 0


def test_text_logging_is_readable_and_never_duplicated() -> None:
    stream = io.StringIO()
    rfobs.setup_logging("INFO", json_format=False, stream=stream)
    handler = rfobs.setup_structured_logging("INFO", json_format=False, stream=stream)
    try:
        logging.getLogger("agent").warning("disk %s", "full", extra={"api_key": "sk-live"})
        (line,) = stream.getvalue().splitlines()
        assert line.endswith(" WARNING agent: disk full api_key=***")
    finally:
        logging.getLogger().removeHandler(handler)


def test_bad_log_level_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"setup_logging\(level='LOUD'\): expected one of"):
        rfobs.setup_logging("LOUD")


def test_dropped_spans_are_counted_when_the_queue_is_full() -> None:
    telemetry = rfobs.init(tracing__max_queue_size=10, tracing__schedule_delay=3600, **QUIET)
    for _ in range(25):
        with telemetry.tracer.start_as_current_span("burst"):
            pass
    assert telemetry.drops.get("spans", "queue_full") == 15
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert telemetry.shutdown(timeout=5)


def test_spans_are_flushed_at_interpreter_exit(tmp_path: Path) -> None:
    script = (
        "import rfobs\n"
        "rfobs.init(metrics__prometheus_port=0, logging__enabled=False, tracing__schedule_delay=3600)\n"
        "@rfobs.task('researcher', 'last_words')\n"
        "def last_words() -> None:\n"
        "    pass\n"
        "last_words()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RFOBS_", "OTEL_"))}
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, check=True, timeout=30)
    assert [s.name for s in load_spans(tmp_path / ".rfobs" / "traces.jsonl")] == ["researcher.last_words"]
