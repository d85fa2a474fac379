"""The seed programme's examples run on rfobs as written, and produce the telemetry they promise.

`examples/` holds every code block of the seed's report (`SEED.md`), byte for byte, with only
`from agents.utils import` replaced by `from rfobs import`. Each runs in a subprocess of its own, in an empty
working directory, through `_runner.py`: the seed's fixed ports (9090 for metrics, 3001 for health) become free
loopback ports, names the snippets assume (`my_function`, `client`, `httpx`) are given, and a check then reads
the process's own `/metrics` and trace file.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(120)

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "examples"
MARKER = "SEED-FACTS "

# The production configuration's ${VAR}s, as a deployment would set them (the secrets must never be printed).
SECRETS = {
    "DATABASE_URL": "postgresql://agent:db-Pa55word-7@db.internal:5432/research",
    "REDIS_URL": "redis://:redis-Pa55word-7@redis.internal:6379/0",
    "OPENAI_API_KEY": "sk-proj-Qm9yVGhlU2VlZEV4YW1wbGVzT25seTEyMzQ1Njc4OTA",
    "ANTHROPIC_API_KEY": "sk-ant-api03-U2VlZEV4YW1wbGVPbmx5QW50aHJvcGljS2V5MTIzNDU2",
    "VAULT_URL": "https://vault.prod.example.com",
    "VAULT_TOKEN": "hvs.CAESIseedvaulttoken0123456789abcdef",
}
# The seed's deployment variables (its "Next Deployment Steps"), honoured as low-precedence aliases.
DEPLOYMENT = {
    "ENV": "production",
    "LOG_LEVEL": "INFO",
    "LOG_FORMAT": "json",
    "METRICS_ENABLED": "true",
    "PROMETHEUS_PORT": "9090",
    "SECRET_BACKEND": "vault",
}

START_METRICS = """
from rfobs import get_metrics_collector
get_metrics_collector().start_http_server(PORT)
"""


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without RFOBS_*/OTEL_* variables, with the venv's scripts first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RFOBS_", "OTEL_"))}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return {**env, **extra}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Run:
    """One example's run: its output, exit status and the facts its check printed."""

    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        self.returncode = result.returncode
        self.stdout = result.stdout
        self.stderr = result.stderr
        lines = [line for line in result.stdout.splitlines() if line.startswith(MARKER)]
        self.facts: dict[str, Any] = json.loads(lines[-1][len(MARKER) :]) if lines else {}
        self.printed = [line for line in result.stdout.splitlines() if not line.startswith(MARKER)]

    def sample(self, name: str, **labels: str) -> float | None:
        """The value of the sample `name` whose labels include `labels`, None when there is none."""
        found = [
            s["value"] for s in self.facts["metrics"] if s["name"] == name and labels.items() <= s["labels"].items()
        ]
        assert len(found) <= 1, found
        return found[0] if found else None


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "config").mkdir()
    shutil.copy(EXAMPLES / "config.production.yaml", tmp_path / "config" / "config.production.yaml")
    return tmp_path


def run_example(
    name: str, cwd: Path, *, given: str = "", check: str = "", env: dict[str, str] | None = None
) -> tuple[Run, int, int]:
    metrics_port, health_port = _free_port(), _free_port()
    replaced = {"PORT": str(metrics_port), "HEALTH": str(health_port)}
    environment = clean_environment(**(env or {}))
    for placeholder, port in replaced.items():
        given = given.replace(placeholder, port)
        check = check.replace(placeholder, port)
        environment = {k: v.replace(placeholder, port) if k.startswith("RFOBS_") else v for k, v in environment.items()}
    spec = {"ports": {"9090": metrics_port, "3001": health_port}, "given": given, "check": check}
    result = subprocess.run(
        [sys.executable, str(HERE / "_runner.py"), str(EXAMPLES / name), json.dumps(spec)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=100,
    )
    return Run(result), metrics_port, health_port


def assert_ran(run: Run) -> None:
    assert run.returncode == 0, f"rc {run.returncode}\n{run.stdout}\n{run.stderr}"
    assert "Traceback" not in run.stderr, run.stderr
    assert run.facts, run.stdout


def assert_no_secret_printed(run: Run) -> None:
    for value in (*SECRETS.values(), "db-Pa55word-7", "redis-Pa55word-7"):
        if value.startswith("https://"):
            continue
        assert value not in run.stderr


CHECK = """
import _facts
_facts.emit(metrics=_facts.metrics(PORT), spans=_facts.span_names(), {extra})
"""


def check(extra: str = "") -> str:
    return CHECK.replace("{extra}", extra)


def test_metrics_feature_counts_and_traces_the_task_on_the_port_it_serves(workdir: Path) -> None:
    run, _, _ = run_example("metrics_feature.py", workdir, check="await extract_tokens()\n" + check())

    assert_ran(run)
    labels = {"agent": "DesignOps", "task": "token_extraction", "status": "success"}
    assert run.sample("researchflow_agents_agent_tasks_total", **labels) == 1.0
    assert run.sample("researchflow_agents_agent_task_duration_seconds_count", **labels) == 1.0
    assert run.facts["spans"] == ["DesignOps.token_extraction"]


def test_production_agent_runs_as_written_and_its_tasks_are_counted_and_traced(workdir: Path) -> None:
    env = {**SECRETS, **DEPLOYMENT}
    run, port, _ = run_example(
        "production_agent.py",
        workdir,
        env={**env, "RFOBS_METRICS__PROMETHEUS_PORT": "PORT"},
        check=check("settings_port=__import__('rfobs').get_settings().metrics.prometheus_port"),
    )
    assert_ran(run)
    assert run.facts["settings_port"] == port
    assert run.printed[-2].startswith("System health: ") and run.printed[-2].split(": ")[1] in ("healthy", "degraded")
    assert run.printed[-1] == "Processed 10 items"
    task = {"agent": "ProductionAgent", "task": "data_processing", "status": "success"}
    assert run.sample("researchflow_agents_agent_tasks_total", **task) == 10.0
    assert run.sample("researchflow_agents_retry_attempts_total", operation="process_data", outcome="success") == 10.0
    assert (
        run.sample(
            "researchflow_agents_timeout_operation_duration_seconds_count",
            operation="process_data",
            outcome="completed",
        )
        == 10.0
    )
    allowed = run.sample("researchflow_agents_rate_limit_requests_total", limiter="process_data", decision="allowed")
    delayed = run.sample("researchflow_agents_rate_limit_requests_total", limiter="process_data", decision="delayed")
    assert (allowed or 0) + (delayed or 0) == 10.0
    assert run.facts["spans"] == ["ProductionAgent.data_processing"] * 10
    assert_no_secret_printed(run)
    assert SECRETS["VAULT_TOKEN"] not in run.stdout


def test_config_feature_reads_the_production_yaml_with_its_variables(workdir: Path) -> None:
    run, _, _ = run_example("config_feature.py", workdir, env=SECRETS, check="import _facts\n_facts.emit(ok=True)")

    assert_ran(run)
    # The seed prints them itself: the program gets the real values; rfobs prints none of them.
    assert run.printed == [SECRETS["DATABASE_URL"], SECRETS["OPENAI_API_KEY"]]
    assert_no_secret_printed(run)


def test_config_show_of_the_production_yaml_hides_every_secret(workdir: Path) -> None:
    for arguments in (["config", "show", "--env", "production"], ["config", "show", "--env", "production", "--json"]):
        shown = subprocess.run(
            [sys.executable, "-m", "rfobs.cli", *arguments],
            cwd=workdir,
            env=clean_environment(**SECRETS),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        assert "database" in shown.stdout and "design_ops" in shown.stdout
        for value in ("db-Pa55word-7", "redis-Pa55word-7", SECRETS["OPENAI_API_KEY"], SECRETS["ANTHROPIC_API_KEY"]):
            assert value not in shown.stdout + shown.stderr


def test_health_feature_checks_the_seeds_families_found_beside_the_agent(workdir: Path) -> None:
    subprocess.run(["git", "init", "-q", str(workdir)], check=True, timeout=30)
    run, _, _ = run_example(
        "health_feature.py",
        workdir,
        check="import _facts\n_facts.emit(status=health.status.value, checks=sorted(r.name for r in health.checks))",
    )

    assert_ran(run)
    assert run.facts["status"] in ("healthy", "degraded")
    assert {"cpu", "memory", "disk", "process", "performance", "git"} <= set(run.facts["checks"])


POLICY_CHECK = (
    "await unreliable_api_call()\nawait call_external_api()\nawait user_action('u-1')\nawait slow_api_call()\n"
)


@pytest.mark.parametrize(
    ("example", "calls", "expected"),
    [
        (
            "retry_feature.py",
            "await unreliable_api_call()",
            [("researchflow_agents_retry_attempts_total", {"operation": "unreliable_api_call", "outcome": "success"})],
        ),
        (
            "timeout_feature.py",
            "await slow_api_call()",
            [
                ("researchflow_agents_timeout_operation_duration_seconds_count", {"operation": "slow_api_call"}),
                ("researchflow_agents_timeout_operation_duration_seconds_count", {"operation": "data_processing"}),
            ],
        ),
        (
            "rate_limiting_feature.py",
            "await call_external_api()\nawait user_action('u-1')",
            [
                (
                    "researchflow_agents_rate_limit_requests_total",
                    {"limiter": "call_external_api", "decision": "allowed"},
                ),
                ("researchflow_agents_rate_limit_requests_total", {"limiter": "user_action", "decision": "allowed"}),
            ],
        ),
    ],
)
def test_policy_features_report_what_they_did(
    workdir: Path, example: str, calls: str, expected: list[tuple[str, dict[str, str]]]
) -> None:
    given = START_METRICS + "import asyncio\nasync def process_large_dataset():\n    await asyncio.sleep(0.01)\n"
    run, _, _ = run_example(example, workdir, given=given, check=calls + "\n" + check())

    assert_ran(run)
    for name, labels in expected:
        assert run.sample(name, **labels) == 1.0, (name, labels, run.facts["metrics"])


def test_performance_feature_benchmarks_and_load_tests_as_written(workdir: Path) -> None:
    given = (
        START_METRICS
        + "import httpx\n"
        + "async def my_function():\n    pass\n"
        + "client = httpx.AsyncClient(base_url='http://127.0.0.1:HEALTH')\n"
    )
    run, _, _ = run_example(
        "performance_feature.py",
        workdir,
        env={"RFOBS_HEALTH__SERVER_ENABLED": "true", "RFOBS_HEALTH__PORT": "HEALTH"},
        given=given,
        check=check("result=load_result['total_requests'], failed=load_result['failed_requests']"),
    )

    assert_ran(run)
    assert run.printed[0].startswith("Operations/second: ") and float(run.printed[0].split(": ")[1]) > 0
    assert (run.facts["result"], run.facts["failed"]) == (1000, 0)


def test_performance_setup_load_tests_the_health_endpoint_with_a_ramp_up(workdir: Path) -> None:
    given = START_METRICS + "import httpx\nasync def my_agent_function():\n    pass\n"
    run, _, _ = run_example(
        "performance_setup.py",
        workdir,
        env={"RFOBS_HEALTH__SERVER_ENABLED": "true", "RFOBS_HEALTH__PORT": "HEALTH"},
        given=given,
        check="await run_performance_tests()\n" + check(),
    )

    assert_ran(run)
    agent, load = run.printed[-2:]
    assert agent.startswith("Agent performance: ") and agent.endswith(" ops/sec")
    assert load.startswith("Load test: ") and float(load.split(": ")[1].split()[0]) > 0
    # The load test hit /health: the checks ran and were counted (healthy or degraded: the machine is shared).
    cpu_runs = [
        s["value"]
        for s in run.facts["metrics"]
        if s["name"] == "researchflow_agents_health_checks_total" and s["labels"].get("check") == "cpu"
    ]
    assert sum(cpu_runs) >= 1


def test_final_validation_commands_run_as_written(workdir: Path) -> None:
    script = (EXAMPLES / "final_validation.sh").read_text(encoding="utf-8")
    commands = [block for block in script.split("\n\n") if block.lstrip("# \n").startswith(("Validate", "Performance"))]
    outputs: list[str] = []
    for command in commands:
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=workdir,
            env=clean_environment(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert len(outputs) == 2
    assert outputs[1].startswith("Baseline: ") and outputs[1].rstrip().endswith(" ops/sec")


def test_docker_healthcheck_line_passes_against_the_health_server(workdir: Path) -> None:
    compose = (EXAMPLES / "docker-compose.yml").read_text(encoding="utf-8")
    kind, command = json.loads(compose.split("test: ", 1)[1].splitlines()[0])  # a flow sequence, valid JSON
    assert (kind, command) == ("CMD-SHELL", "curl -f http://localhost:3001/health || exit 1")
    run, _, _ = run_example(
        "metrics_feature.py",
        workdir,
        env={"RFOBS_HEALTH__SERVER_ENABLED": "true", "RFOBS_HEALTH__PORT": "HEALTH"},
        check=(
            "import subprocess, _facts\n"
            f"probe = subprocess.run(['sh', '-c', {command.replace('3001', 'HEALTH')!r}], capture_output=True)\n"
            "_facts.emit(rc=probe.returncode)"
        ),
    )

    assert_ran(run)
    assert run.facts["rc"] == 0


def test_production_agent_with_its_variables_missing_exits_1_listing_them(workdir: Path) -> None:
    # The seed's deployment sets ENV=production; DATABASE_URL and the API keys are not set.
    env = {"ENV": "production", "REDIS_URL": SECRETS["REDIS_URL"], "VAULT_URL": SECRETS["VAULT_URL"]}
    run, _, _ = run_example("production_agent.py", workdir, env=env)

    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    for variable in ("DATABASE_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        assert variable in run.stderr, run.stderr
    assert "redis-Pa55word-7" not in run.stderr
    assert run.printed == []  # it stopped before any work


def test_final_validation_prints_every_problem_of_an_invalid_environment(workdir: Path) -> None:
    script = (EXAMPLES / "final_validation.sh").read_text(encoding="utf-8")
    (validate,) = [block for block in script.split("\n\n") if block.startswith("# Validate")]
    result = subprocess.run(
        ["bash", "-c", validate],
        cwd=workdir,
        env=clean_environment(ENV="production", RFOBS_METRICS__PROMETHEUS_PORT="x"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    # The seed's line discards the result, so the shell sees 0; the problems are printed, without a traceback.
    # (`python -c "import sys, rfobs; sys.exit(not rfobs.validate_startup_environment())"` exits 1.)
    assert "Traceback" not in result.stderr
    for problem in ("DATABASE_URL", "OPENAI_API_KEY", "metrics.prometheus_port"):
        assert problem in result.stderr, result.stderr
