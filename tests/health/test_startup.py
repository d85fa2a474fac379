"""`validate_startup_environment()` as the seed uses it: `if not validate_startup_environment(): exit(1)`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rfobs import ConfigError
from rfobs.health import StartupCheck, Status
from rfobs.health.startup import validate_startup_environment
from tests.health.servers import closed_port

SECRET = "s3cr3t-password-value"
# The seed's production agent, as written: validation first thing in `async def main()`.
SEED_AGENT = """\
import asyncio

from rfobs import validate_startup_environment


async def main():
    # 1. Validate environment
    if not validate_startup_environment():
        exit(1)
    print("agent started")


asyncio.run(main())
"""
DEPLOYMENT_CHECK = "from rfobs import validate_startup_environment; validate_startup_environment()"


def run_python(cwd: Path, *arguments: str, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RFOBS_", "OTEL_"))} | variables
    return subprocess.run(
        [sys.executable, *arguments], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def seed_agent(cwd: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    (cwd / "agent.py").write_text(SEED_AGENT, encoding="utf-8")
    return run_python(cwd, "agent.py", **variables)


def test_seed_agent_starts_in_a_valid_environment(tmp_path: Path) -> None:
    started = seed_agent(tmp_path)
    assert (started.returncode, started.stdout, started.stderr) == (0, "agent started\n", "")


def test_seed_agent_exits_1_listing_every_invalid_setting(tmp_path: Path) -> None:
    stopped = seed_agent(
        tmp_path,
        RFOBS_METRICS__PROMETHEUS_PORT="99999",
        RFOBS_HEALTH__DEPENDENCIES=f"db=redis://app:{SECRET}@cache",
    )
    assert (stopped.returncode, stopped.stdout) == (1, "")
    assert stopped.stderr == (
        "rfobs: the start-up environment is not valid (2 problems):\n"
        "  - metrics.prometheus_port = '99999' (from env RFOBS_METRICS__PROMETHEUS_PORT): "
        "expected an integer from 0 to 65535\n"
        "  - health.dependencies = {'db': 'redis://app:***@cache'} (from env RFOBS_HEALTH__DEPENDENCIES): "
        "expected tcp://host:port, an http(s):// URL, or another scheme with a host and port (redis://host:6379)\n"
    )
    assert "Traceback" not in stopped.stderr


def test_seed_agent_exits_1_listing_every_failing_critical_check(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"OPENAI_API_KEY={SECRET}\n", encoding="utf-8")
    env_file.chmod(0o600)
    port = closed_port()
    stopped = seed_agent(
        tmp_path,
        RFOBS_HEALTH__ENV_REQUIRED_KEYS="API_KEY,MODEL_NAME",  # checked in the ./.env found
        RFOBS_HEALTH__DEPENDENCIES=f"db=tcp://app:{SECRET}@127.0.0.1:{port}",
        RFOBS_HEALTH__CRITICAL_DEPENDENCIES="db",
    )
    assert (stopped.returncode, stopped.stdout) == (1, "")
    assert stopped.stderr.splitlines() == [
        "rfobs: the start-up environment is not valid (2 problems):",
        "  - critical check env_files: missing keys: API_KEY, MODEL_NAME",
        f"  - critical check db: tcp://app:***@127.0.0.1:{port}: [Errno 111] Connect call failed ('127.0.0.1', {port})",
    ]
    assert "Traceback" not in stopped.stderr
    assert SECRET not in stopped.stderr


def test_the_deployment_check_prints_the_problems(tmp_path: Path) -> None:
    checked = run_python(tmp_path, "-c", DEPLOYMENT_CHECK, RFOBS_HEALTH__CHECK_TIMEOUT="-1")
    assert checked.stderr == (
        "rfobs: the start-up environment is not valid (1 problem):\n"
        "  - health.check_timeout = '-1' (from env RFOBS_HEALTH__CHECK_TIMEOUT): expected a number from 0.001 "
        "to 600\n"
    )
    assert (checked.returncode, checked.stdout) == (0, "")  # the seed's one-liner ignores the result


def test_a_failed_result_is_false_and_holds_every_problem(capsys: pytest.CaptureFixture[str]) -> None:
    Path(".env").write_text(f"DB_PASSWORD={SECRET}\n", encoding="utf-8")
    Path(".env").chmod(0o644)  # world-readable, with a secret in it
    Path("settings.toml").write_text('[default.health]\nenv_required_keys = ["DB_PASSWORD"]\n', encoding="utf-8")
    result = validate_startup_environment(quiet=True)
    assert isinstance(result, StartupCheck)
    assert (bool(result), result.ok) == (False, False)
    assert result.problems == (
        f"critical check env_files: {Path('.env').resolve()} holds secrets (DB_PASSWORD) and is world-readable: "
        "chmod 600 it",
    )
    assert result.report is not None
    assert [(r.name, r.status) for r in result.report.checks] == [("env_files", Status.UNHEALTHY)]
    assert capsys.readouterr() == ("", "")  # quiet
    Path(".env").chmod(0o600)
    passed = validate_startup_environment()
    assert (bool(passed), passed.problems) == (True, ())
    assert capsys.readouterr() == ("", "")


def test_invalid_settings_give_a_result_without_a_report(capsys: pytest.CaptureFixture[str]) -> None:
    Path("settings.toml").write_text('[default.health]\nport = "x"\n', encoding="utf-8")
    result = validate_startup_environment()
    assert (bool(result), result.report) == (False, None)
    assert result.problems == ("health.port = 'x' (from settings.toml [default]): expected an integer from 0 to 65535",)
    assert capsys.readouterr().err == (
        "rfobs: the start-up environment is not valid (1 problem):\n"
        "  - health.port = 'x' (from settings.toml [default]): expected an integer from 0 to 65535\n"
    )
    with pytest.raises(ConfigError):
        validate_startup_environment(raise_on_failure=True)
