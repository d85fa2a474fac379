"""`get_metrics_collector()`: the seed's way to serve metrics, with and without `rfobs.init()`."""

from __future__ import annotations

import asyncio
import re
import socket
import urllib.request
import warnings
from collections.abc import Callable, Iterator

import pytest
from opentelemetry import metrics

import rfobs
from rfobs import sdk
from rfobs.exceptions import ConfigError
from rfobs.testing import Capture, reset_global_telemetry
from rfobs.traceview import load_spans

pytestmark = [pytest.mark.usefixtures("clean_globals"), pytest.mark.timeout(60)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _scrape(url: str | None) -> list[str]:
    assert url is not None
    with urllib.request.urlopen(url, timeout=5) as response:
        return [line for line in response.read().decode().splitlines() if not line.startswith("#")]


@pytest.fixture
def stop_rfobs() -> Iterator[None]:
    yield
    rfobs.shutdown(timeout=2)


@pytest.mark.usefixtures("stop_rfobs")
def test_start_http_server_without_init_initialises_rfobs_on_that_port() -> None:
    @rfobs.track_agent_task("DesignOps", "token_extraction")
    async def extract_tokens() -> str:
        return "tokens"

    port = _free_port()
    url = rfobs.get_metrics_collector().start_http_server(port)

    assert url == f"http://127.0.0.1:{port}/metrics"
    handle = sdk.active()
    assert handle is not None
    assert handle.settings.metrics.prometheus_port == port
    assert handle.settings.sources["metrics.prometheus_port"] == "get_metrics_collector().start_http_server()"
    asyncio.run(extract_tokens())
    lines = _scrape(url)
    assert [
        (line.split("{")[0], line.split('status="')[1].split('"')[0], line.rsplit(" ", 1)[1])
        for line in lines
        if 'task="token_extraction"' in line and "_total" in line
    ] == [
        ("researchflow_agents_agent_tasks_total", "success", "1.0"),
        ("researchflow_agents_agent_tasks_total", "error", "0.0"),
    ]
    assert rfobs.flush(timeout=5)
    assert [span.name for span in load_spans(handle.settings.tracing.file_path)] == ["DesignOps.token_extraction"]


@pytest.mark.usefixtures("stop_rfobs")
def test_start_http_server_uses_the_settings_load_config_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RFOBS_SERVICE__NAME", "from-load-config")
    rfobs.load_config("staging")
    monkeypatch.delenv("RFOBS_SERVICE__NAME")  # the loaded settings are used, not a new read

    rfobs.get_metrics_collector().start_http_server(0)

    handle = sdk.active()
    assert handle is not None
    assert (handle.settings.env, handle.settings.service.name) == ("staging", "from-load-config")


@pytest.mark.usefixtures("stop_rfobs")
def test_after_init_start_http_server_serves_the_same_metrics_on_a_second_port() -> None:
    handle = rfobs.init(metrics__prometheus_port=0, logging__enabled=False)
    assert handle.metrics_url is not None
    port = _free_port()

    url = rfobs.get_metrics_collector().start_http_server(port)

    assert url == f"http://127.0.0.1:{port}/metrics"
    assert rfobs.get_metrics_collector().start_http_server(port) == url  # bound once
    rfobs.get_metrics_collector().increment_counter("documents", 3, {"kind": "pdf"})
    for scraped in (url, handle.metrics_url):
        documents = [line for line in _scrape(scraped) if line.startswith("researchflow_agents_documents_total{")]
        assert len(documents) == 1 and documents[0].endswith(" 3.0") and 'kind="pdf"' in documents[0]
    handle.shutdown(timeout=2)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


@pytest.mark.usefixtures("stop_rfobs")
def test_the_port_init_already_serves_is_not_bound_twice() -> None:
    port = _free_port()
    handle = rfobs.init(metrics__prometheus_port=port, logging__enabled=False)

    assert rfobs.get_metrics_collector().start_http_server(port) == handle.metrics_url


@pytest.mark.usefixtures("stop_rfobs")
def test_instruments_of_ones_own_are_namespaced_created_once_and_recorded() -> None:
    handle = rfobs.init(metrics__prometheus_port=0, metrics__namespace="myagents", logging__enabled=False)
    assert handle.metrics_url is not None
    collector = rfobs.get_metrics_collector()

    assert collector.counter("documents") is collector.counter("documents")
    collector.increment_counter("documents")
    collector.increment_counter("documents", 2)
    collector.observe_histogram("parse_seconds", 0.25, {"kind": "pdf"})
    collector.set_gauge("queue_depth", 7)
    collector.set_gauge("queue_depth", 5)
    collector.up_down_counter("in_flight").add(2)
    collector.up_down_counter("in_flight").add(-1)

    values = {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in _scrape(handle.metrics_url)}
    assert values["myagents_documents_total"] == 3.0
    assert values["myagents_parse_seconds_count"] == 1.0
    assert values["myagents_parse_seconds_sum"] == 0.25
    assert values["myagents_queue_depth"] == 5.0
    assert values["myagents_in_flight"] == 1.0


def test_prometheus_off_warns_and_serves_nothing() -> None:
    rfobs.init(metrics__prometheus_enabled=False, logging__enabled=False)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert rfobs.get_metrics_collector().start_http_server(0) is None
        assert [str(w.message) for w in caught if "Prometheus export is off" in str(w.message)]
    finally:
        rfobs.shutdown(timeout=2)


def _port_too_high(collector: rfobs.MetricsCollector) -> object:
    return collector.start_http_server(70000)


def _port_as_text(collector: rfobs.MetricsCollector) -> object:
    return collector.start_http_server("9090")  # pyright: ignore[reportArgumentType]


def _empty_name(collector: rfobs.MetricsCollector) -> object:
    return collector.counter("")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (_port_too_high, "start_http_server(port=70000): expected"),
        (_port_as_text, "start_http_server(port='9090'): expected"),
        (_empty_name, "MetricsCollector.counter(name=''): expected"),
    ],
)
def test_bad_arguments_are_refused_before_anything_starts(
    call: Callable[[rfobs.MetricsCollector], object], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        call(rfobs.get_metrics_collector())
    assert sdk.active() is None


def test_a_collector_kept_in_a_module_global_keeps_recording_under_new_providers() -> None:
    collector = rfobs.get_metrics_collector()  # as the seed does, at import time
    collector.counter("early")  # before anything is installed: the default namespace, the proxy provider
    for _ in range(2):  # two tests in a row, each with fresh providers (as the `capture` fixture installs them)
        reset_global_telemetry()
        capture = Capture()
        metrics.set_meter_provider(capture.meter_provider)
        collector.increment_counter("documents", 2)
        assert capture.metric("researchflow_agents.documents") == [{"attributes": {}, "value": 2}]
        capture.meter_provider.shutdown()


@pytest.mark.usefixtures("stop_rfobs")
def test_instruments_made_before_init_take_the_namespace_init_sets() -> None:
    collector = rfobs.get_metrics_collector()
    collector.counter("docs")  # made under the default namespace
    handle = rfobs.init(metrics__prometheus_port=0, metrics__namespace="myapp", logging__enabled=False)

    collector.increment_counter("docs")

    names = {line.split("{")[0].split(" ")[0] for line in _scrape(handle.metrics_url)}
    assert "myapp_docs_total" in names and "researchflow_agents_docs_total" not in names


@pytest.mark.usefixtures("stop_rfobs")
def test_histograms_are_unitless_by_default_and_seconds_get_duration_buckets() -> None:
    handle = rfobs.init(metrics__prometheus_port=0, logging__enabled=False)
    collector = rfobs.get_metrics_collector()

    collector.observe_histogram("tokens_used", 1234)
    collector.histogram("latency", unit="s").record(0.2)

    lines = _scrape(handle.metrics_url)
    assert [line.split("{")[0] for line in lines if line.startswith("researchflow_agents_tokens_used")] == [
        *["researchflow_agents_tokens_used_bucket"] * 16,
        "researchflow_agents_tokens_used_count",
        "researchflow_agents_tokens_used_sum",
    ]
    latency = [line for line in lines if line.startswith("researchflow_agents_latency_seconds_bucket")]
    bounds = [line.split('le="')[1].split('"')[0] for line in latency]
    assert "0.25" in bounds and "5000.0" not in bounds  # second-scale buckets, not OpenTelemetry's default ones


@pytest.mark.usefixtures("stop_rfobs")
def test_a_taken_port_warns_and_returns_none_whether_or_not_rfobs_was_initialised() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        for _ in range(2):  # the first call initialises rfobs, the second serves one more port
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                assert rfobs.get_metrics_collector().start_http_server(port) is None
            messages = [str(w.message) for w in caught]
            assert any("start_http_server(port=" in m and f"127.0.0.1:{port}" in m for m in messages), messages
    assert sdk.active() is not None  # the agent goes on, traced
