"""collector/ stays deployable: promtool accepts the Prometheus config; compose publishes on loopback only.

The Collector and Jaeger configs are checked by the binaries themselves in tests/e2e/test_collector_config.py; the
rules and the dashboard in tests/test_collector_rules.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLLECTOR = ROOT / "collector"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    # A missing tool fails the test: a check that silently skips cannot catch anything.
    assert exe is not None, "promtool not found: apt-get install --no-install-recommends prometheus (make servers)"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=30, check=False)


def test_prometheus_config_is_valid() -> None:
    result = promtool("check", "config", str(COLLECTOR / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout


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
    assert {"4317", "4318", "8889", "8888", "13133", "16686", "9090", "3000", "6379"} <= published
    text = "\n".join(lines)
    assert "network_mode" not in text
    for image in re.findall(r"^\s*image:\s*(\S+)", text, re.M):
        tag = image.rpartition(":")[2]
        assert ":" in image and tag not in {"latest", ""}, f"unpinned image {image}"
    mounted_files = (
        "./prometheus.yml",
        "./recording.yml",
        "./alerts.yml",
        "./otel-collector.yaml",
        "./jaeger.yaml",
        "./grafana/provisioning",
        "./grafana/dashboards",
    )
    for mounted in mounted_files:
        assert mounted in text
        assert (COLLECTOR / mounted.removeprefix("./")).exists(), mounted
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE: Viewer" in text


def test_prometheus_scrapes_the_agents_through_the_collector_keeping_their_labels_and_the_collector_itself() -> None:
    text = (COLLECTOR / "prometheus.yml").read_text(encoding="utf-8")
    jobs = dict(re.findall(r"- job_name: (\S+)\n((?:    .*\n)+)", text))
    assert set(jobs) == {"rfobs-agents", "otel-collector"}
    assert "honor_labels: true" in jobs["rfobs-agents"] and "otel-collector:8889" in jobs["rfobs-agents"]
    assert "otel-collector:8888" in jobs["otel-collector"]
    # An agent binds 127.0.0.1 by default: a container can never scrape it on the Docker host.
    assert "host.docker.internal" not in text
    assert re.search(r"rule_files:\s*\n\s*- recording.yml\n\s*- alerts.yml", text)
