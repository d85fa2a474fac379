"""The stack's Collector and Jaeger configs, checked by the binaries the tests build (#12).

`validate` and `print-config` of otelcol-rfobs and Jaeger resolve the very files docker-compose.yml mounts, once
with no environment (a user running them outside containers: every listener on loopback) and once with the
environment compose sets. The images compose pins are the versions built here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import pytest

from tests.e2e.engines import COLLECTOR_CONFIG, COLLECTOR_DIR, JAEGER_CONFIG, engine_binary

COMPOSE = COLLECTOR_DIR / "docker-compose.yml"
# Jaeger tags its v2 releases v2.x, but publishes the Go module as v1.x: v1.76.0 is v2.13.0.
JAEGER_MODULE_TO_RELEASE = {"v1.76.0": "2.13.0"}
# healthcheckv2's legacy `endpoint` defaults to localhost:13133 (unused with use_v2, and loopback anyway).
LOOPBACK = ("127.0.0.1", "localhost")


def compose_service(name: str) -> str:
    """The text of one service of docker-compose.yml (up to the next service)."""
    text = COMPOSE.read_text(encoding="utf-8")
    match = re.search(rf"^  {re.escape(name)}:\n(.*?)(?=^  \S|^\S)", text, re.M | re.S)
    assert match, f"no service {name} in {COMPOSE}"
    return match.group(1)


def compose_environment(name: str) -> dict[str, str]:
    block = re.search(r"^    environment:\n((?:^      .*\n)+)", compose_service(name), re.M)
    assert block, name
    pairs = (line.strip().split(":", 1) for line in block.group(1).splitlines())
    return {key.strip(): value.strip().strip("\"'") for key, value in pairs}


def compose_image(name: str) -> str:
    match = re.search(r"^    image: (\S+)$", compose_service(name), re.M)
    assert match, name
    return match.group(1)


def run(binary: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTELCOL_", "JAEGER_"))}
    return subprocess.run(
        [str(binary), *args], capture_output=True, text=True, timeout=60, check=False, env={**clean, **(env or {})}
    )


def resolved(binary: Path, config: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    result = run(binary, "print-config", f"--config={config}", "--format=json", env=env)
    assert result.returncode == 0, result.stderr
    return cast("dict[str, Any]", json.loads(result.stdout))


def addresses(config: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every (path, value) of an `endpoint` or telemetry `host` in a resolved config."""
    if isinstance(config, dict):
        for key, value in cast("dict[str, Any]", config).items():
            if key in ("endpoint", "host") and isinstance(value, str) and value:
                yield f"{path}.{key}", value
            else:
                yield from addresses(value, f"{path}.{key}")
    elif isinstance(config, list):
        for index, value in enumerate(cast("list[Any]", config)):
            yield from addresses(value, f"{path}[{index}]")


@pytest.mark.parametrize("name, config", [("otelcol-rfobs", COLLECTOR_CONFIG), ("jaeger", JAEGER_CONFIG)])
@pytest.mark.parametrize("environment", ["none", "compose"])
def test_the_mounted_config_validates(name: str, config: Path, environment: str) -> None:
    service = {"otelcol-rfobs": "otel-collector", "jaeger": "jaeger"}[name]
    mount = next(line for line in compose_service(service).splitlines() if f"./{config.name}:" in line)
    container_path = mount.split(":")[1]
    assert f'"--config={container_path}"' in compose_service(service), "compose runs a config it does not mount"
    env = compose_environment(service) if environment == "compose" else None
    result = run(engine_binary(name), "validate", f"--config={config}", env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_outside_compose_every_listener_is_on_loopback() -> None:
    for binary, config in (
        (engine_binary("otelcol-rfobs"), COLLECTOR_CONFIG),
        (engine_binary("jaeger"), JAEGER_CONFIG),
    ):
        found = dict(addresses(resolved(binary, config)))
        assert found, config
        assert {path: value for path, value in found.items() if not value.startswith(LOOPBACK)} == {}


def test_in_compose_the_listeners_open_inside_the_container_and_traces_go_to_the_jaeger_service() -> None:
    collector = resolved(engine_binary("otelcol-rfobs"), COLLECTOR_CONFIG, compose_environment("otel-collector"))
    found = dict(addresses(collector))
    assert found.pop(".exporters.otlp_grpc/jaeger.endpoint") == "jaeger:4317"
    assert set(found.values()) == {"0.0.0.0:4317", "0.0.0.0:4318", "0.0.0.0:8889", "0.0.0.0:13133", "0.0.0.0"}
    jaeger_found = set(
        dict(addresses(resolved(engine_binary("jaeger"), JAEGER_CONFIG, compose_environment("jaeger")))).values()
    )
    assert {"0.0.0.0:4317", "0.0.0.0:16686"} <= jaeger_found
    assert not [v for v in jaeger_found if not v.startswith(("0.0.0.0", *LOOPBACK))]


def test_the_pipelines_sample_redact_keep_logs_and_label_metrics_by_service() -> None:
    config = resolved(engine_binary("otelcol-rfobs"), COLLECTOR_CONFIG)
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == {"traces", "metrics", "logs"}
    for name, pipeline in pipelines.items():
        assert pipeline["receivers"] == ["otlp"], name
        assert pipeline["processors"][0] == "memory_limiter" and pipeline["processors"][-1] == "batch", name
        assert "redaction" in pipeline["processors"], name
    traces = pipelines["traces"]["processors"]
    assert traces.index("tail_sampling") < traces.index("redaction")
    assert pipelines["traces"]["exporters"] == ["otlp_grpc/jaeger"]
    assert pipelines["logs"]["exporters"] == ["file/logs"]  # not `debug`, which drops them
    assert pipelines["metrics"]["exporters"] == ["prometheus"]

    # print-config drops a policy's squashed fields (name, type): read them from the file.
    assert len(config["processors"]["tail_sampling"]["policies"]) == 3
    policies = re.findall(r"- name: (\S+)\n\s+type: (\S+)", COLLECTOR_CONFIG.read_text(encoding="utf-8"))
    assert dict(policies) == {"errors": "status_code", "slow": "latency", "share-of-the-rest": "probabilistic"}
    assert config["processors"]["redaction"]["allow_all_keys"] is True
    assert len(config["processors"]["redaction"]["blocked_values"]) >= 10
    labels = config["exporters"]["prometheus"]["resource_constant_labels"]["included"]
    assert {"service.name", "service.instance.id", "deployment.environment.name"} <= set(labels)
    rotation = config["exporters"]["file/logs"]["rotation"]
    assert rotation["max_megabytes"] > 0 and rotation["max_backups"] > 0
    (reader,) = config["service"]["telemetry"]["metrics"]["readers"]
    assert reader["pull"]["exporter"]["prometheus"]["port"] == 8888
    assert "otlpjsonfile" not in json.dumps(config)


def test_compose_pins_the_versions_the_tests_build_and_run() -> None:
    manifest = (COLLECTOR_DIR / "otelcol" / "builder-config.yaml").read_text(encoding="utf-8")
    go_mod = (COLLECTOR_DIR / "otelcol" / "go.mod").read_text(encoding="utf-8")
    (dist_version,) = re.findall(r"^  version: (\S+)$", manifest, re.M)
    component_versions = set(re.findall(r"^  - gomod: \S+ v(\S+)$", manifest, re.M))
    assert component_versions == {dist_version}, "every Collector module at one release"
    assert set(re.findall(r"opentelemetry-collector-contrib/\S+ v(\S+)", go_mod)) == {dist_version}
    assert compose_image("otel-collector") == f"otel/opentelemetry-collector-contrib:{dist_version}"

    (jaeger_module,) = re.findall(
        r"github.com/jaegertracing/jaeger (v\S+)", (COLLECTOR_DIR / "jaeger" / "go.mod").read_text()
    )
    assert compose_image("jaeger") == f"jaegertracing/jaeger:{JAEGER_MODULE_TO_RELEASE[jaeger_module]}"

    for service, binary, pattern in (
        ("prometheus", "prometheus", r"prometheus, version (\d+\.\d+\.\d+)"),
        ("redis", "redis-server", r"v=(\d+\.\d+\.\d+)"),
    ):
        exe = shutil.which(binary)
        assert exe, f"{binary} not installed (make servers)"
        output = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30, check=False)
        match = re.search(pattern, output.stdout + output.stderr)
        assert match, output
        assert match.group(1) in compose_image(service), (service, compose_image(service), match.group(1))
