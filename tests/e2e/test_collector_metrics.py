"""Agent metrics → the Collector → a real Prometheus running the stack's own config and rules (#12).

The stack's `collector/prometheus.yml` (its targets pointed at the loopback ports of a real otelcol-rfobs, its
intervals shortened to 1 s) runs in Debian's Prometheus with `recording.yml` and `alerts.yml` loaded:

* an agent's OTLP metrics arrive with its service identity as `job`/`instance`/`service_name`/... labels (not
  `exported_*`), and the Collector's own drop counters are scraped;
* after a minute of `rfobs demo`, every dashboard expression returns a series and no outage alert is active;
* with the Collector killed, the outage alerts go pending or firing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
from opentelemetry import trace

import rfobs
from rfobs.testing import reset_global_telemetry
from tests.dashboard_queries import alert_names, dashboard_queries
from tests.e2e.engines import COLLECTOR_DIR, CollectorHandle, JaegerHandle, jaeger, otelcol
from tests.e2e.servers import PrometheusHandle, free_port, http_get, http_json, prometheus, wait_until

DEMO_SECONDS = 60
FALLBACK = re.compile(r"\s*or\s+on\s*\(\)\s*vector\(0\)")
DEMO_SERVICE = "research-agent-demo"
# Alerts for an outage or lost telemetry: none may be active after a healthy minute.
OUTAGE_ALERTS = {"RfobsScrapeTargetDown", "RfobsAgentMetricsAbsent", "RfobsCollectorDroppingData"}
QUIET_ALERTS = OUTAGE_ALERTS | {"RfobsTelemetryDropped", "RfobsHealthCheckUnhealthy", "RfobsAgentTaskErrorRatioHigh"}


def stack_prometheus_config(collector: CollectorHandle) -> tuple[str, dict[str, str]]:
    """`collector/prometheus.yml` with its targets on `collector`'s ports and 1 s intervals, and its rule files."""
    text = (COLLECTOR_DIR / "prometheus.yml").read_text(encoding="utf-8")
    text = text.replace("otel-collector:8889", collector.metrics_target)
    text = text.replace("otel-collector:8888", collector.telemetry_target)
    text = re.sub(r"(scrape_interval|evaluation_interval): \S+", r"\1: 1s", text)
    assert collector.metrics_target in text and collector.telemetry_target in text, "the targets moved: update me"
    rule_files = re.findall(r"^\s*- (\S+\.yml)\s*$", text, re.M)
    assert rule_files == ["recording.yml", "alerts.yml"]
    return text, {name: (COLLECTOR_DIR / name).read_text(encoding="utf-8") for name in rule_files}


def exposed_names(exposition: str) -> set[str]:
    """The metric families (`# TYPE` lines) of a Prometheus exposition, without the exporters' own `target_info`."""
    return {line.split()[2] for line in exposition.splitlines() if line.startswith("# TYPE ")} - {"target_info"}


def alerts(server: PrometheusHandle) -> dict[str, str]:
    """Active alerts by name → state (`pending` / `firing`), from `/api/v1/alerts`."""
    body = http_json(f"{server.url}/api/v1/alerts")
    active: dict[str, str] = {}
    for alert in cast("list[dict[str, Any]]", body["data"]["alerts"]):
        name = alert["labels"]["alertname"]
        if active.get(name) != "firing":
            active[name] = alert["state"]
    return active


def test_agent_metrics_carry_the_service_identity_and_the_collector_drop_counters_are_scraped() -> None:
    service = f"stack-metrics-{uuid.uuid4().hex[:8]}"
    with jaeger() as jaeger_server, otelcol(jaeger_server.otlp_grpc) as collector:
        config, rules = stack_prometheus_config(collector)
        with prometheus([], config_text=config, files=rules) as server:
            reset_global_telemetry()
            try:
                telemetry = rfobs.init(
                    otlp__endpoint=collector.otlp_grpc,
                    service__name=service,
                    service__environment="e2e",
                    metrics__otlp_export=True,
                    metrics__export_interval=1.0,
                    metrics__prometheus_port=0,
                    logging__enabled=False,
                )

                @rfobs.task("metrics-agent", "step")
                def step() -> str:
                    return "done"

                for _ in range(5):
                    step()
                instance = trace.get_tracer_provider().resource.attributes["service.instance.id"]  # type: ignore[attr-defined]
                (sample,) = server.wait_for_value(
                    f'researchflow_agents_agent_tasks_total{{job="{service}",status="success"}}', 5, timeout=60
                )
            finally:
                reset_global_telemetry()
            labels = sample["metric"]
            assert labels["job"] == service and labels["service_name"] == service
            assert labels["instance"] == instance and labels["service_instance_id"] == instance
            assert labels["deployment_environment_name"] == "e2e"
            assert not {name for name in labels if name.startswith("exported_")}
            assert "process_pid" not in labels and "host_name" not in labels
            (error_sample,) = server.query(f'researchflow_agents_agent_tasks_total{{job="{service}",status="error"}}')
            assert error_sample["value"][1] == "0"
            # The Collector's own drop counters are scraped too (at 0: it refused nothing).
            for drops in ("otelcol_receiver_refused_spans", "otelcol_receiver_refused_metric_points"):
                server.wait_for_value(f'sum({drops}{{job="otel-collector"}})', 0, timeout=30)
            del telemetry


@dataclass(frozen=True)
class DemoMinute:
    prometheus: PrometheusHandle
    collector: CollectorHandle
    jaeger: JaegerHandle
    direct_names: set[str]
    collector_names: set[str]
    panels: dict[tuple[str, str], list[dict[str, Any]]]
    """Each dashboard query (without its `or on() vector(0)`) and its result after the minute."""
    alerts: dict[str, str]
    """The alerts active after the minute."""


@pytest.fixture(scope="module")
def demo_minute(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoMinute]:
    """The stack with `rfobs demo` run through it for a minute; the stack keeps running for the tests."""
    workdir = tmp_path_factory.mktemp("demo-minute")
    with jaeger() as jaeger_server, otelcol(jaeger_server.otlp_grpc) as collector:
        config, rules = stack_prometheus_config(collector)
        with prometheus([], config_text=config, files=rules) as server:
            direct_port = free_port()
            env = {
                **os.environ,
                "RFOBS_OTLP__ENDPOINT": collector.otlp_grpc,
                "RFOBS_METRICS__OTLP_EXPORT": "true",
                "RFOBS_METRICS__EXPORT_INTERVAL": "1",
                "RFOBS_METRICS__PROMETHEUS_PORT": str(direct_port),
                "RFOBS_HEALTH__SERVER_ENABLED": "true",
                "RFOBS_HEALTH__PORT": "0",
                "RFOBS_HEALTH__INTERVAL": "2",
            }
            demo_log = workdir / "demo.log"
            argv = [sys.executable, "-m", "rfobs.cli", "demo", "--duration", str(DEMO_SECONDS), "--seed", "3"]
            with open(demo_log, "wb") as log:
                demo = subprocess.Popen(argv, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                # Halfway through, the same metrics read on the agent's own /metrics and through the Collector.
                time.sleep(DEMO_SECONDS / 2)
                direct = exposed_names(http_get(f"http://127.0.0.1:{direct_port}/metrics").decode())
                via_collector = exposed_names(http_get(f"http://{collector.metrics_target}/metrics").decode())
                assert demo.wait(timeout=DEMO_SECONDS + 60) == 0, demo_log.read_text()
            finally:
                if demo.poll() is None:
                    demo.kill()
                    demo.wait()
            time.sleep(3)  # the last metric push, one more scrape and rule evaluation
            # Read now, while the whole stack is up: the outage test kills the Collector, whatever the order.
            panels = {(title, expr): server.query(FALLBACK.sub("", expr)) for title, expr in dashboard_queries()}
            yield DemoMinute(server, collector, jaeger_server, direct, via_collector, panels, alerts(server))


def test_a_minute_of_the_demo_fills_every_dashboard_panel_and_leaves_the_outage_alerts_quiet(
    demo_minute: DemoMinute,
) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 12
    # The panels' `or on() vector(0)` would always give a series: the queries ran without it.
    assert sum(expr != FALLBACK.sub("", expr) for _, expr in queries) >= 10
    empty = [title for (title, _), result in demo_minute.panels.items() if not result]
    assert empty == [], f"dashboard panels with no series after a minute of the demo: {empty}"

    assert alert_names() >= QUIET_ALERTS
    print(f"alerts active after a healthy minute: {demo_minute.alerts or 'none'}")
    assert not (set(demo_minute.alerts) & QUIET_ALERTS), demo_minute.alerts

    # The demo's traces went the other way: through the Collector's tail sampling into Jaeger.
    assert DEMO_SERVICE in demo_minute.jaeger.services()
    kept = demo_minute.jaeger.traces(DEMO_SERVICE, limit=1000)
    assert kept and {span["operationName"] for t in kept for span in t["spans"]} >= {"invoke_agent researcher"}
    # The demo's flaky Semantic Scholar fails now and then: tail sampling kept those traces, errors intact.
    failed = [
        span
        for t in kept
        for span in t["spans"]
        if any(tag["key"] == "otel.status_code" and tag["value"] == "ERROR" for tag in span["tags"])
    ]
    assert failed, "no failing span among the demo's kept traces"
    assert any(field["value"] == "exception" for span in failed for log in span["logs"] for field in log["fields"])


def test_the_collector_exposes_the_same_metric_names_as_the_agents_own_endpoint(demo_minute: DemoMinute) -> None:
    # One dashboard and one set of rules serve both ways of collecting: a unit of "1" on a gauge, for one, would
    # make the Collector's exporter add `_ratio`.
    assert len(demo_minute.direct_names) >= 20
    assert demo_minute.direct_names == demo_minute.collector_names


def test_with_the_collector_killed_the_outage_alerts_go_pending(demo_minute: DemoMinute) -> None:
    # Ends the Collector for good: the other tests of this module read what they check before it.
    killed = time.monotonic()
    demo_minute.collector.kill()
    expected = {"RfobsScrapeTargetDown", "RfobsAgentMetricsAbsent"}

    def outage_alerts() -> dict[str, str] | None:
        found = alerts(demo_minute.prometheus)
        return found if expected <= set(found) else None

    states = wait_until(
        outage_alerts,
        60,
        interval=0.5,
        what=f"alerts {sorted(expected)} pending or firing",
        logs=[demo_minute.prometheus.log_path],
    )
    assert {states[name] for name in expected} <= {"pending", "firing"}
    print(f"outage alerts {states} {time.monotonic() - killed:.1f} s after the Collector was killed")
    # Both of the Collector's targets go down (each on its own scrape schedule).
    wait_until(
        lambda: (
            {s["metric"]["job"] for s in demo_minute.prometheus.query("up == 0")} == {"rfobs-agents", "otel-collector"}
        ),
        30,
        interval=0.5,
        what="up == 0 for the jobs rfobs-agents and otel-collector",
    )
