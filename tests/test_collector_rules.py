"""collector/'s recording rules, alerts and Grafana dashboard: promtool-valid, unit-tested, and using real names.

The last test runs every dashboard query, through promtool, against the series of a healthy agent whose failure
series (errors, exhausted retries, drops, breaker transitions, Collector refusals) were never created: each one
must return a value, and the failure panels 0.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest

from tests.dashboard_queries import (
    ALERTS,
    COLLECTOR,
    RECORDING,
    dashboard_files,
    dashboard_queries,
    load_dashboard,
    panels,
    recording_rule_names,
    substitute,
    targets,
)
from tests.dashboard_queries import alert_names as read_alert_names

pytestmark = pytest.mark.timeout(120)

ROOT = COLLECTOR.parent
ALERTS_TEST = COLLECTOR / "alerts_test.yml"
RECORDING_TEST = COLLECTOR / "recording_test.yml"

NS = "researchflow_agents"
EXPORTED = {
    f"{NS}_{name}"
    for name in (
        "agent_tasks_total",
        "agent_task_duration_seconds_bucket",
        "api_calls_total",
        "api_call_duration_seconds_bucket",
        "retry_attempts_total",
        "rate_limit_requests_total",
        "circuit_breaker_state",
        "circuit_breaker_state_transitions_total",
        "health_check_status",
        "health_checks_total",
        "telemetry_dropped_total",
        "timeout_operation_duration_seconds_bucket",
        "llm_cost_usd_total",
    )
}
# The GenAI semantic conventions' histograms, as Prometheus names them, and the instrument each one comes from.
GEN_AI_EXPORTED = {
    "gen_ai_client_token_usage_sum": "gen_ai.client.token.usage",
    "gen_ai_client_token_usage_bucket": "gen_ai.client.token.usage",
    "gen_ai_client_operation_duration_seconds_bucket": "gen_ai.client.operation.duration",
    "gen_ai_invoke_agent_duration_seconds_bucket": "gen_ai.invoke_agent.duration",
}
# The Collector's own metrics (otelcol 0.161.0: no _total suffix).
OTELCOL_EXPORTED = {
    f"otelcol_{name}"
    for name in (
        "receiver_accepted_spans",
        "receiver_refused_spans",
        "receiver_refused_metric_points",
        "receiver_refused_log_records",
        "exporter_send_failed_spans",
        "exporter_send_failed_metric_points",
        "exporter_send_failed_log_records",
        "exporter_enqueue_failed_spans",
        "exporter_enqueue_failed_metric_points",
        "exporter_enqueue_failed_log_records",
        "receiver_failed_spans",
        "receiver_failed_metric_points",
        "receiver_failed_log_records",
        "processor_tail_sampling_sampling_trace_dropped_too_early",
        "exporter_queue_size",
        "exporter_queue_capacity",
    )
}
METRIC = re.compile(rf"\b{NS}_[a-z_]+\b")
GEN_AI_METRIC = re.compile(r"\bgen_ai_(?:client|invoke_agent|execute_tool)_[a-z_]+\b")  # not gen_ai_* labels
OTELCOL_METRIC = re.compile(r"(?<!:)\botelcol_[a-z_]+\b")  # not rfobs:otelcol_* rule names
RULE_NAME = re.compile(r"\brfobs:[a-z0-9_]+:[a-z0-9_]+\b")
VARIABLES = ("service", "agent", "environment")
# Panels that show failures: 0 for a healthy agent, even though their failure series do not exist.
FAILURE_PANELS = {
    "Agent task error ratio",
    "API call error ratio",
    "Retries exhausted (share of calls)",
    "Circuit breaker state (0 closed, 1 half-open, 2 open)",
    "Circuit breaker transitions",
    "Telemetry dropped by rfobs / s",
    "Collector: refused or failed to export / s",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    # A missing tool fails the test: a check that silently skips cannot catch anything.
    assert exe is not None, "promtool not found: apt-get install --no-install-recommends prometheus (make servers)"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60, check=False)


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def alert_blocks() -> dict[str, str]:
    """Each alert's rule text in alerts.yml, by alert name."""
    blocks = re.split(r"^      - alert: ", read(ALERTS), flags=re.M)[1:]
    return {block.split("\n", 1)[0].strip(): block for block in blocks}


def test_rule_files_are_valid() -> None:
    result = promtool("check", "rules", str(RECORDING), str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(recording_rule_names())} rules found" in result.stdout
    assert f"SUCCESS: {len(read_alert_names())} rules found" in result.stdout


def test_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RECORDING_TEST), str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == 2, result.stdout


def test_alerts_cover_the_agents_the_targets_and_the_collector() -> None:
    assert read_alert_names() == {
        "RfobsAgentTaskErrorRatioHigh",
        "RfobsApiCallErrorRatioHigh",
        "RfobsCircuitBreakerOpen",
        "RfobsRetriesExhausted",
        "RfobsRateLimiterRejecting",
        "RfobsHealthCheckUnhealthy",
        "RfobsTelemetryDropped",
        "RfobsScrapeTargetDown",
        "RfobsAgentMetricsAbsent",
        "RfobsCollectorDroppingData",
    }
    blocks = alert_blocks()
    assert re.search(r"expr: rfobs:retry_exhausted_ratio:rate5m > 0\.05\n\s+for: 5m", blocks["RfobsRetriesExhausted"])
    for name in ("RfobsAgentTaskErrorRatioHigh", "RfobsApiCallErrorRatioHigh"):
        assert re.search(r"expr: rfobs:\w+_error_ratio:rate5m > 0\.1\n", blocks[name]), name
    assert re.search(r"expr: up == 0\n\s+for: 2m", blocks["RfobsScrapeTargetDown"])
    # One dropped batch keeps the 5m rate above 0 for 5 minutes: only drops that go on longer may alert.
    assert re.search(r"expr: rfobs:telemetry_dropped:rate5m > 0\n\s+for: 10m", blocks["RfobsTelemetryDropped"])
    assert re.search(r"expr: absent\(.*researchflow_agents_.*\)\n\s+for: 5m", blocks["RfobsAgentMetricsAbsent"])


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases = re.findall(r"alertname: (\w+)\n\s+exp_alerts:( \[\])?\n", read(ALERTS_TEST))
    firing = {name for name, empty in cases if not empty}
    quiet = {name for name, empty in cases if empty}
    assert len(cases) == read(ALERTS_TEST).count("alertname:"), "every case in block style, exp_alerts next"
    assert firing == read_alert_names()
    assert quiet == read_alert_names()


def test_every_alert_has_a_severity_summary_description_and_runbook() -> None:
    for name, block in alert_blocks().items():
        assert re.search(r"^\s+severity: (critical|warning|info)$", block, re.M), name
        for annotation in ("summary", "description"):
            assert re.search(rf'^\s+{annotation}: ".+"$', block, re.M), (name, annotation)
        runbook = re.search(r"^\s+runbook: \|-\n((?:\s{12}.+\n?)+)", block, re.M)
        assert runbook is not None, name
        text = runbook.group(1)
        assert len(text.splitlines()) >= 3, name
        assert "First:" in text, f"{name}: say what to check first"
        assert "http://" not in text and "https://" not in text, f"{name}: the runbook itself, not a link"


def test_recording_rules_are_named_by_convention_and_all_tested() -> None:
    names = recording_rule_names()
    assert len(names) == read(RECORDING).count("- record:"), "a recording rule name is used twice"
    for name in names:
        assert re.fullmatch(r"rfobs:[a-z0-9_]+:rate5m", name), name
    tested = set(re.findall(r"^\s+expr: (rfobs:\S+)$", read(RECORDING_TEST), re.M))
    assert tested == names


def test_every_recording_rule_is_used_by_the_dashboard_and_every_used_rule_exists() -> None:
    queries = " ".join(query for _, query in dashboard_queries())
    used = set(RULE_NAME.findall(queries)) | set(RULE_NAME.findall(read(ALERTS)))
    assert set(RULE_NAME.findall(queries)) == recording_rule_names()
    assert used <= recording_rule_names(), sorted(used - recording_rule_names())


def test_rules_and_dashboard_use_only_exported_metric_names() -> None:
    texts = [read(ALERTS), read(RECORDING)] + [read(path) for path in dashboard_files()]
    used = {name for text in texts for name in METRIC.findall(text)}
    assert used <= EXPORTED, sorted(used - EXPORTED)
    assert {f"{NS}_telemetry_dropped_total", f"{NS}_llm_cost_usd_total"} <= used
    gen_ai = {name for text in texts for name in GEN_AI_METRIC.findall(text)}
    assert gen_ai <= set(GEN_AI_EXPORTED), sorted(gen_ai - set(GEN_AI_EXPORTED))
    assert {"gen_ai_client_token_usage_sum", "gen_ai_client_operation_duration_seconds_bucket"} <= gen_ai
    otelcol = {name for text in texts for name in OTELCOL_METRIC.findall(text)}
    assert otelcol <= OTELCOL_EXPORTED, sorted(otelcol - OTELCOL_EXPORTED)
    assert {"otelcol_receiver_refused_spans", "otelcol_exporter_enqueue_failed_spans"} <= otelcol


def test_exported_names_match_docs() -> None:
    docs = read(ROOT / "README.md")
    design = ROOT.parent / "shared" / "DESIGN.md"  # present in the development checkout only
    if design.exists():
        docs += read(design)
    # The README names metrics without the namespace; histograms are documented by base name.
    for name in EXPORTED:
        base = name.removeprefix(f"{NS}_").removesuffix("_bucket")
        assert re.search(rf"(?:\b|\b{NS}_){base}\b", docs), name
    for name, instrument in GEN_AI_EXPORTED.items():
        assert instrument in docs, name


def test_dashboard_targets_have_a_query_legend_and_datasource() -> None:
    found = list(targets())
    assert len(found) >= 17
    for title, target in found:
        assert str(target.get("expr", "")).strip(), title
        assert str(target.get("legendFormat", "")).strip(), f"{title}: legendFormat"
        assert cast("dict[str, Any]", target.get("datasource", {})).get("uid") == "prometheus", title
    titles = {title for title, _ in found}
    assert titles >= FAILURE_PANELS
    for path in dashboard_files():
        dashboard = load_dashboard(path)
        ids = [panel["id"] for panel in panels(dashboard)]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        assert "histogram_quantile" not in read(path), "p95s come from recording.yml"


def test_dashboard_variables_are_multi_with_all_and_used_as_regexes() -> None:
    for path in dashboard_files():
        dashboard = load_dashboard(path)
        variables = {
            str(variable["name"]): variable
            for variable in cast("list[dict[str, Any]]", dashboard["templating"]["list"])
        }
        for name in VARIABLES:
            variable = variables[name]
            assert variable["multi"] is True and variable["includeAll"] is True, name
            assert variable["allValue"] == ".*", f"{name}: All must match series where the label is empty too"
            assert str(variable["query"]).startswith("label_values("), name
        assert "job)" in str(variables["service"]["query"])
        assert "deployment_environment_name)" in str(variables["environment"]["query"])
        for title, target in targets():
            expr = str(target["expr"])
            for name in VARIABLES:
                # A multi-value variable expands to a|b: only a regex matcher takes it.
                assert len(re.findall(rf"\${name}\b", expr)) == len(re.findall(rf'=~"\${name}"', expr)), title


def test_substitute_fills_every_variable_form() -> None:
    query = 'rate(x{job=~"${service:regex}", agent=~"$agent"}[$__rate_interval]) + y[$__range] + z[${__interval}]'
    assert substitute(query) == 'rate(x{job=~".*", agent=~".*"}[1m]) + y[1m] + z[1m]'
    assert substitute('label_replace(x, "a", "$1", "b", "(.*)")') == 'label_replace(x, "a", "$1", "b", "(.*)")'
    with pytest.raises(KeyError, match="unknown Grafana variable"):
        substitute("x[$unknown]")
    for title, query in dashboard_queries():
        assert "$" not in query.replace('"$1"', ""), title


def test_grafana_provisions_the_datasource_and_the_dashboards() -> None:
    datasource = read(COLLECTOR / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    assert "type: prometheus" in datasource and "url: http://prometheus:9090" in datasource
    assert "uid: prometheus" in datasource
    provider = read(COLLECTOR / "grafana" / "provisioning" / "dashboards" / "rfobs.yml")
    assert "path: /var/lib/grafana/dashboards" in provider
    for path in dashboard_files():
        dashboard = load_dashboard(path)
        assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 39


# A healthy agent, scraped every 15 s for 10 minutes: tasks, API and LLM calls succeed, retries succeed, the
# limiter allows, the breaker is closed, checks are healthy. No failure series exists at all.
HEALTHY = 'job="research-agent", instance="a1", service_name="research-agent", deployment_environment_name="dev"'
TASK = f'{HEALTHY}, agent="researcher", task="plan", status="success"'
API = f'{HEALTHY}, service="arxiv", endpoint="search", status="success"'
LLM = f'{HEALTHY}, gen_ai_operation_name="chat", gen_ai_provider_name="openai", gen_ai_request_model="gpt-4o"'
HEALTHY_SERIES = [  # (metric, labels, values)
    (f"{NS}_agent_tasks_total", TASK, "0+1x40"),
    (f"{NS}_agent_task_duration_seconds_bucket", f'{TASK}, le="1"', "0+1x40"),
    (f"{NS}_agent_task_duration_seconds_bucket", f'{TASK}, le="+Inf"', "0+1x40"),
    (f"{NS}_api_calls_total", API, "0+2x40"),
    (f"{NS}_api_call_duration_seconds_bucket", f'{API}, le="0.5"', "0+2x40"),
    (f"{NS}_api_call_duration_seconds_bucket", f'{API}, le="+Inf"', "0+2x40"),
    ("gen_ai_client_token_usage_sum", f'{LLM}, gen_ai_token_type="input"', "0+100x40"),
    ("gen_ai_client_operation_duration_seconds_bucket", f'{LLM}, le="2"', "0+1x40"),
    ("gen_ai_client_operation_duration_seconds_bucket", f'{LLM}, le="+Inf"', "0+1x40"),
    (f"{NS}_llm_cost_usd_total", f'{HEALTHY}, provider="openai", model="gpt-4o"', "0+0.5x40"),
    (f"{NS}_retry_attempts_total", f'{HEALTHY}, operation="arxiv.search", outcome="success"', "0+2x40"),
    (f"{NS}_retry_attempts_total", f'{HEALTHY}, operation="arxiv.search", outcome="retry"', "0+1x40"),
    (f"{NS}_rate_limit_requests_total", f'{HEALTHY}, limiter="arxiv", decision="allowed"', "0+2x40"),
    (f"{NS}_circuit_breaker_state", f'{HEALTHY}, breaker="semantic_scholar"', "0x40"),
    (f"{NS}_health_check_status", f'{HEALTHY}, check="disk"', "1x40"),
    ("otelcol_receiver_accepted_spans", 'job="otel-collector", instance="otel-collector:8888"', "0+50x40"),
]


def test_every_dashboard_query_returns_values_for_a_healthy_agent(tmp_path: Path) -> None:
    queries = dashboard_queries()
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    expected_present: list[str] = []
    expected_zero: list[str] = []
    for index, (title, query) in enumerate(queries):
        # One sample per query that has at least one non-NaN value; the `query` label says which.
        counted = f'label_replace(clamp_max(count(({query}) == ({query})), 1), "query", "{index}", "", "")'
        rules += ["      - record: dashboard_query_answers", f"        expr: {json.dumps(counted)}"]
        expected_present.append(f'dashboard_query_answers{{query="{index}"}}')
        if title in FAILURE_PANELS:
            highest = f'label_replace(max({query}), "query", "{index}", "", "")'
            rules += ["      - record: dashboard_failure_max", f"        expr: {json.dumps(highest)}"]
            expected_zero.append(f'dashboard_failure_max{{query="{index}"}}')
    (tmp_path / "dashboard_rules.yml").write_text("\n".join(rules) + "\n", encoding="utf-8")

    def samples(labels: list[str], value: int) -> list[str]:
        return [f"          - labels: {json.dumps(label)}\n            value: {value}" for label in labels]

    test = [
        "rule_files:",
        f"  - {RECORDING}",
        "  - dashboard_rules.yml",
        "evaluation_interval: 15s",
        "tests:",
        "  - interval: 15s",
        "    input_series:",
        *(
            f"      - series: {json.dumps(f'{metric}{{{labels}}}')}\n        values: {json.dumps(values)}"
            for metric, labels, values in HEALTHY_SERIES
        ),
        "    promql_expr_test:",
        "      - eval_time: 10m",
        "        expr: dashboard_query_answers",
        "        exp_samples:",
        *samples(expected_present, 1),
        "      - eval_time: 10m",
        "        expr: dashboard_failure_max",
        "        exp_samples:",
        *samples(expected_zero, 0),
    ]
    (tmp_path / "dashboard_test.yml").write_text("\n".join(test) + "\n", encoding="utf-8")
    assert len(expected_zero) == len(FAILURE_PANELS)
    result = promtool("test", "rules", str(tmp_path / "dashboard_test.yml"))
    legend = "\n".join(f"query {index}: {title}" for index, (title, _) in enumerate(queries))
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{legend}"
