"""collector/ stays deployable: Prometheus config, rules and rule tests pass promtool; names match rfobs's metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLLECTOR = ROOT / "collector"
DASHBOARDS = COLLECTOR / "grafana" / "dashboards"

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
    )
}
METRIC = re.compile(rf"\b{NS}_[a-z_]+\b")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    # A missing tool fails the test: a check that silently skips cannot catch anything.
    assert exe is not None, "promtool not found: apt-get install --no-install-recommends prometheus (make servers)"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=30, check=False)


def test_prometheus_config_is_valid() -> None:
    result = promtool("check", "config", str(COLLECTOR / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_alert_rules_are_valid() -> None:
    result = promtool("check", "rules", str(COLLECTOR / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(COLLECTOR / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_unit_tests() -> None:
    alerts = set(re.findall(r"^\s*- alert: (\w+)", (COLLECTOR / "alerts.yml").read_text(encoding="utf-8"), re.M))
    tested = set(re.findall(r"alertname: (\w+)", (COLLECTOR / "alerts_test.yml").read_text(encoding="utf-8")))
    assert len(alerts) == 7
    assert alerts == tested
    rules = (COLLECTOR / "alerts.yml").read_text(encoding="utf-8")
    assert rules.count("severity:") == len(alerts)
    assert rules.count("summary:") == len(alerts)


def test_alerts_and_dashboard_use_only_exported_metric_names() -> None:
    dashboards = sorted(DASHBOARDS.glob("*.json"))
    assert dashboards
    used: set[str] = set(METRIC.findall((COLLECTOR / "alerts.yml").read_text(encoding="utf-8")))
    for path in dashboards:
        used |= set(METRIC.findall(path.read_text(encoding="utf-8")))
    assert used, "no rfobs metric names found"
    assert used <= EXPORTED, sorted(used - EXPORTED)
    assert f"{NS}_telemetry_dropped_total" in used


def test_exported_names_match_docs() -> None:
    docs = (ROOT / "README.md").read_text(encoding="utf-8")
    design = ROOT.parent / "shared" / "DESIGN.md"  # present in the development checkout only
    if design.exists():
        docs += design.read_text(encoding="utf-8")
    # The README names metrics without the namespace; histograms are documented by base name.
    for name in EXPORTED:
        base = name.removeprefix(f"{NS}_").removesuffix("_bucket")
        assert re.search(rf"(?:\b|\b{NS}_){base}\b", docs), name


def test_dashboard_json_parses() -> None:
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(dashboard, dict)
        panels = dashboard.get("panels")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        assert isinstance(panels, list) and panels
        text = path.read_text(encoding="utf-8")
        assert "histogram_quantile(0.95" in text


def top_level_keys(lines: list[str], section: str) -> set[str]:
    """Keys indented two spaces under a top-level `section:` of a YAML file."""
    keys: set[str] = set()
    inside = False
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            inside = line.rstrip() == f"{section}:"
            continue
        match = re.match(r"^  ([\w/.-]+):", line)
        if inside and match:
            keys.add(match.group(1))
    return keys


def pipelines(lines: list[str]) -> dict[str, dict[str, list[str]]]:
    """`service.pipelines` as {pipeline: {receivers|processors|exporters: [names]}} (inline lists only)."""
    found: dict[str, dict[str, list[str]]] = {}
    in_service = in_pipelines = False
    current = ""
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            in_service = line.rstrip() == "service:"
            in_pipelines = False
            continue
        if not in_service:
            continue
        if re.match(r"^  \w", line):
            in_pipelines = line.strip() == "pipelines:"
            continue
        if not in_pipelines:
            continue
        if match := re.match(r"^    ([\w/.-]+):\s*$", line):
            current = match.group(1)
            found[current] = {}
        elif match := re.match(r"^      (receivers|processors|exporters): \[(.*)\]\s*$", line):
            found[current][match.group(1)] = [n.strip() for n in match.group(2).split(",") if n.strip()]
        else:
            raise AssertionError(f"unexpected line in service.pipelines (use inline lists): {line!r}")
    return found


def test_collector_pipelines_reference_defined_components() -> None:
    lines = (COLLECTOR / "otel-collector.yaml").read_text(encoding="utf-8").splitlines()
    defined = {kind: top_level_keys(lines, kind) for kind in ("receivers", "processors", "exporters")}
    assert {"otlp", "otlpjsonfile"} <= defined["receivers"]
    assert {"batch", "memory_limiter"} <= defined["processors"]
    assert {"otlp/jaeger", "prometheus", "debug"} <= defined["exporters"]
    found = pipelines(lines)
    assert {"traces", "metrics", "logs"} <= set(found)
    used: dict[str, set[str]] = {kind: set() for kind in defined}
    for name, parts in found.items():
        assert parts.get("receivers") and parts.get("exporters"), name
        for kind, names in parts.items():
            assert set(names) <= defined[kind], (name, kind, set(names) - defined[kind])
            used[kind] |= set(names)
        processors = parts.get("processors", [])
        if "memory_limiter" in processors:
            assert processors[0] == "memory_limiter", f"{name}: memory_limiter must come first"
    assert found["traces"]["exporters"] == ["otlp/jaeger"]
    assert "prometheus" in found["metrics"]["exporters"]
    assert any("otlpjsonfile" in parts.get("receivers", []) for parts in found.values())
    assert used == defined, "components defined but unused"
    text = "\n".join(lines)
    assert "0.0.0.0:4317" in text and "0.0.0.0:4318" in text and "0.0.0.0:8889" in text
    assert "endpoint: jaeger:4317" in text and "insecure: true" in text
    assert "/var/lib/rfobs/traces.jsonl" in text


def test_compose_publishes_ports_on_loopback_only() -> None:
    lines = (COLLECTOR / "docker-compose.yml").read_text(encoding="utf-8").splitlines()
    services = top_level_keys(lines, "services")
    assert {"otel-collector", "jaeger", "prometheus", "grafana", "redis"} <= services
    mappings: list[str] = []
    ports_indent: int | None = None
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if ports_indent is not None and stripped and indent <= ports_indent:
            ports_indent = None
        if stripped == "ports:":
            ports_indent = indent
        elif ports_indent is not None and stripped.startswith("- "):
            mappings.append(stripped[2:].split("#")[0].strip().strip("\"'"))
    assert len(mappings) >= 7
    for mapping in mappings:
        assert mapping.startswith("127.0.0.1:"), mapping
    published = {m.split(":")[1] for m in mappings}
    assert {"4317", "4318", "8889", "16686", "9090", "3000", "6379"} <= published
    text = "\n".join(lines)
    assert "network_mode" not in text
    for image in re.findall(r"^\s*image:\s*(\S+)", text, re.M):
        tag = image.rpartition(":")[2]
        assert ":" in image and tag not in {"latest", ""}, f"unpinned image {image}"
    for mounted in ("./prometheus.yml", "./alerts.yml", "./otel-collector.yaml", "./grafana/provisioning"):
        assert mounted in text
        assert (COLLECTOR / mounted.removeprefix("./")).exists(), mounted
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE: Viewer" in text


def test_prometheus_scrapes_collector_and_agent() -> None:
    text = (COLLECTOR / "prometheus.yml").read_text(encoding="utf-8")
    assert "otel-collector:8889" in text
    assert "host.docker.internal:9464" in text
    assert re.search(r"rule_files:\s*\n\s*- alerts.yml", text)


def test_grafana_datasource_is_provisioned() -> None:
    text = (COLLECTOR / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    assert "type: prometheus" in text and "url: http://prometheus:9090" in text
    assert "uid: prometheus" in text
