"""Health settings, building the checker from them, `rfobs.init()` wiring and `validate_startup_environment()`."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rfobs
from rfobs import ConfigError, RfobsError, _state, load_config
from rfobs._settings_model import BUILT_IN_CHECKS
from rfobs.config import describe_settings
from rfobs.health import HealthChecker, Status
from rfobs.health.checks import CpuCheck, DependencyCheck, DiskCheck, LogRotationCheck, ProcessCheck
from rfobs.health.setup import build_health_checker, get_advanced_health_checker
from rfobs.health.startup import validate_startup_environment
from tests.health.servers import closed_port

SECRET = "s3cr3t-password-value"
QUIET: dict[str, Any] = {"metrics__prometheus_port": 0, "logging__enabled": False}
# Thresholds no machine reaches, so the resource checks are healthy wherever the tests run.
CALM: dict[str, Any] = {
    "health__cpu_max_percent": 100,
    "health__memory_max_percent": 100,
    "health__disk_max_percent": 100,
}


@pytest.fixture(autouse=True)
def _no_default_checker() -> Iterator[None]:
    _state.reset()
    yield
    _state.reset()


# -- settings -----------------------------------------------------------------------------------------------------


def test_health_defaults() -> None:
    health = load_config().health
    assert (health.enabled, health.server_enabled, health.host, health.port) == (True, False, "127.0.0.1", 8081)
    assert (health.cache_ttl, health.check_timeout) == (2.0, 5.0)
    assert (health.cpu_max_percent, health.memory_max_percent, health.disk_max_percent) == (90.0, 90.0, 90.0)
    assert (health.disk_paths, health.max_open_files, health.max_rss_mb, health.git_path) == ((".",), None, None, None)
    assert (health.env_files, health.env_required_keys, health.log_paths) == ((), (), ())
    assert (health.log_max_mb, health.log_max_age_days, health.log_max_rotated) == (100.0, 30.0, 10)
    assert (dict(health.dependencies), health.critical_dependencies) == ({}, ())
    assert (health.baseline_path, health.degradation_factor, health.gpu) == (".rfobs/baseline.json", 1.5, False)


def test_bad_dependency_url_is_shown_without_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"health__dependencies": f"db=redis://app:{SECRET}@cache"})
    assert caught.value.problems[0].value == "{'db': 'redis://app:***@cache'}"


def test_critical_dependency_problems_are_listed_with_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RFOBS_HEALTH__CRITICAL_DEPENDENCIES", "db,cache")
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"health__dependencies": {"db": "tcp://db:5432"}, "metrics__prometheus_port": -1})
    assert [(p.key, p.value, p.allowed, p.source) for p in caught.value.problems] == [
        ("metrics.prometheus_port", "-1", "an integer from 0 to 65535", "init() keyword"),
        (
            "health.critical_dependencies",
            "['cache']",
            "names from health.dependencies (db)",
            "env RFOBS_HEALTH__CRITICAL_DEPENDENCIES",
        ),
    ]


def test_a_bad_dependency_table_is_not_also_reported_as_unknown_names() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"health__dependencies": {"db": "db:5432"}, "health__critical_dependencies": "db"})
    assert [p.key for p in caught.value.problems] == ["health.dependencies"]


def test_lists_and_dependencies_from_environment_and_files(monkeypatch: pytest.MonkeyPatch) -> None:
    Path("settings.toml").write_text(
        '[default.health]\nlog_paths = ["logs", "audit.log"]\n'
        '[default.health.dependencies]\nllm_api = "https://api.example.com/v1"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("RFOBS_HEALTH__DISK_PATHS", " /, /tmp ,")
    monkeypatch.setenv("RFOBS_HEALTH__ENV_REQUIRED_KEYS", '["OPENAI_API_KEY", "DB_URL"]')
    monkeypatch.setenv("RFOBS_HEALTH__CRITICAL_DEPENDENCIES", "llm_api")
    health = load_config().health
    assert health.disk_paths == ("/", "/tmp")
    assert health.env_required_keys == ("OPENAI_API_KEY", "DB_URL")
    assert health.log_paths == ("logs", "audit.log")
    assert dict(health.dependencies) == {"llm_api": "https://api.example.com/v1"}
    assert health.critical_dependencies == ("llm_api",)
    monkeypatch.setenv("RFOBS_HEALTH__DEPENDENCIES", "db=tcp://127.0.0.1:5432,cache=redis://127.0.0.1:6379")
    monkeypatch.delenv("RFOBS_HEALTH__CRITICAL_DEPENDENCIES")
    settings = load_config()
    assert dict(settings.health.dependencies) == {"db": "tcp://127.0.0.1:5432", "cache": "redis://127.0.0.1:6379"}
    assert settings.sources["health.dependencies"] == "env RFOBS_HEALTH__DEPENDENCIES"


def test_config_show_hides_dependency_passwords() -> None:
    settings = load_config(overrides={"health__dependencies": {"db": f"tcp://app:{SECRET}@db:5432"}})
    rows = {key: (value, source) for key, value, source in describe_settings(settings)}
    assert rows["health.dependencies"] == ("{'db': 'tcp://app:***@db:5432'}", "init() keyword")
    assert rows["health.disk_paths"] == ("['.']", "default")
    assert settings.health.dependencies["db"] == f"tcp://app:{SECRET}@db:5432"  # the probe still gets it


# -- building the checker -----------------------------------------------------------------------------------------


def test_default_checker_has_the_resource_and_performance_checks() -> None:
    checker = build_health_checker(load_config())
    assert [(c.name, c.critical) for c in checker.checks] == [
        ("cpu", False),
        ("memory", False),
        ("disk", False),
        ("process", False),
        ("performance", False),
    ]
    assert (checker.timeout, checker.cache_ttl) == (5.0, 2.0)


def test_every_setting_reaches_its_check(tmp_path: Path) -> None:
    settings = load_config(
        overrides={
            "health": {
                "check_timeout": 2.5,
                "cache_ttl": 0,
                "cpu_max_percent": 70,
                "disk_paths": [str(tmp_path), "."],
                "disk_max_percent": 80,
                "max_open_files": 500,
                "max_rss_mb": 256,
                "git_path": str(tmp_path),
                "env_files": [".env"],
                "env_required_keys": ["API_KEY"],
                "log_paths": ["logs"],
                "log_max_mb": 1.5,
                "log_max_age_days": 2,
                "log_max_rotated": 3,
                "dependencies": {"db": "tcp://127.0.0.1:5432", "llm_api": "https://api.example.com"},
                "critical_dependencies": ["db"],
                "gpu": True,
            }
        }
    )
    checker = build_health_checker(settings)
    checks = {check.name: check for check in checker.checks}
    assert list(checks) == [
        "cpu",
        "memory",
        "disk",
        "process",
        "git",
        "env_files",
        "log_rotation",
        "db",
        "llm_api",
        "performance",
        "gpu",
    ]
    assert set(checks) - {"db", "llm_api"} == set(BUILT_IN_CHECKS)
    assert sorted(name for name, check in checks.items() if check.critical) == ["db", "env_files"]
    assert (checker.timeout, checker.cache_ttl) == (2.5, 0.0)
    cpu, disk, process, logs, db = (checks[name] for name in ("cpu", "disk", "process", "log_rotation", "db"))
    assert isinstance(cpu, CpuCheck) and cpu.max_percent == 70.0 and cpu.sample_seconds == 0.2
    assert isinstance(disk, DiskCheck) and (disk.paths, disk.max_percent) == ((str(tmp_path), "."), 80.0)
    assert isinstance(process, ProcessCheck) and (process.max_open_files, process.max_rss_bytes) == (500, 256 << 20)
    assert isinstance(logs, LogRotationCheck)
    assert (logs.max_bytes, logs.max_age_seconds, logs.max_rotated) == (1572864, 172800.0, 3)
    assert isinstance(db, DependencyCheck) and db.timeout == 2.0  # below the checker's own 2.5 s


def write(path: str, text: str) -> None:
    Path(path).write_text(text, encoding="utf-8")


async def test_built_checker_judges_real_dependencies_and_env_files(listener: int) -> None:
    write(".env", "API_KEY=\n")
    port = closed_port()
    settings = load_config(
        overrides={
            **CALM,
            "health__env_files": ".env",
            "health__env_required_keys": "API_KEY",
            "health__dependencies": {"db": f"tcp://127.0.0.1:{listener}", "cache": f"tcp://127.0.0.1:{port}"},
        }
    )
    report = await build_health_checker(settings).check_all()
    results = {r.name: r for r in report.checks}
    assert (results["db"].status, results["cache"].status) == (Status.HEALTHY, Status.UNHEALTHY)
    assert results["env_files"].status is Status.UNHEALTHY and "API_KEY" in results["env_files"].message
    assert report.status is Status.UNHEALTHY  # env_files is critical
    assert not report.ready


# -- the process-wide checker and init() --------------------------------------------------------------------------


def test_without_init_one_default_checker_is_built_once() -> None:
    got: list[HealthChecker] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        got.append(get_advanced_health_checker())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(got) == 8 and all(checker is got[0] for checker in got)
    assert [c.name for c in got[0].checks] == ["cpu", "memory", "disk", "process", "performance"]


@pytest.mark.usefixtures("clean_globals")
def test_init_exposes_the_checker_on_the_handle() -> None:
    telemetry = rfobs.init(health__check_timeout=1.5, **QUIET)
    try:
        assert isinstance(telemetry.health, HealthChecker)
        assert telemetry.health.timeout == 1.5
        assert get_advanced_health_checker() is telemetry.health
        assert telemetry.health_url is None  # the server is off by default
    finally:
        assert telemetry.shutdown(timeout=2)
    assert get_advanced_health_checker() is not telemetry.health


@pytest.mark.usefixtures("clean_globals")
@pytest.mark.parametrize("overrides", [{"health__enabled": False}, {"sdk__disabled": True}])
def test_no_checker_when_health_or_the_sdk_is_off(overrides: dict[str, Any]) -> None:
    telemetry = rfobs.init(**overrides, **QUIET)
    assert (telemetry.health, telemetry.health_url) == (None, None)
    assert telemetry.shutdown(timeout=2)


@pytest.mark.usefixtures("clean_globals")
def test_init_serves_the_endpoints_and_shutdown_stops_them(listener: int) -> None:
    telemetry = rfobs.init(
        health__server_enabled=True,
        health__port=0,
        health__dependencies={"db": f"tcp://127.0.0.1:{listener}"},
        health__critical_dependencies=["db"],
        **CALM,
        **QUIET,
    )
    url = telemetry.health_url
    assert url is not None and url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(f"{url}/health/live", timeout=5) as response:
        assert (response.status, response.read()) == (200, b'{"status":"alive"}')
    with urllib.request.urlopen(f"{url}/health/ready", timeout=10) as response:
        body = json.loads(response.read())
    assert response.status == 200
    assert [(c["name"], c["status"], c["critical"]) for c in body["checks"] if c["name"] == "db"] == [
        ("db", "healthy", True)
    ]
    assert telemetry.shutdown(timeout=5)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/health/live", timeout=2)


@pytest.mark.usefixtures("clean_globals")
def test_taken_health_port_warns_and_everything_else_works() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.warns(RuntimeWarning, match=rf"cannot serve /health on 127.0.0.1:{port} .*health.port") as caught:
            telemetry = rfobs.init(health__server_enabled=True, health__port=port, **QUIET)
    assert caught[0].filename == __file__  # points at the caller
    assert telemetry.health_url is None
    assert isinstance(telemetry.health, HealthChecker)
    with telemetry.tracer.start_as_current_span("still traced"):
        pass
    assert telemetry.shutdown(timeout=5)


# -- validate_startup_environment ---------------------------------------------------------------------------------


def test_startup_validation_runs_only_the_critical_checks(listener: int) -> None:
    Path("settings.toml").write_text(
        f'[default.health.dependencies]\ndb = "tcp://127.0.0.1:{listener}"\ncache = "tcp://127.0.0.1:{closed_port()}"\n'
        '[default.health]\ncritical_dependencies = ["db"]\n',
        encoding="utf-8",
    )
    result = validate_startup_environment()
    assert (bool(result), result.ok, result.problems) == (True, True, ())
    assert result.report is not None
    assert [(r.name, r.status, r.critical) for r in result.report.checks] == [("db", Status.HEALTHY, True)]
    assert result.report.status is Status.HEALTHY


def test_startup_validation_lists_every_failing_critical_check() -> None:
    Path(".env").write_text(f"DB_PASSWORD={SECRET}\n", encoding="utf-8")
    Path(".env").chmod(0o600)
    port = closed_port()
    Path("settings.toml").write_text(
        '[default.health]\nenv_files = [".env"]\nenv_required_keys = ["API_KEY"]\n'
        'critical_dependencies = ["db"]\n'
        f'[default.health.dependencies]\ndb = "tcp://app:{SECRET}@127.0.0.1:{port}"\n',
        encoding="utf-8",
    )
    with pytest.raises(RfobsError) as caught:
        validate_startup_environment(raise_on_failure=True)
    message = str(caught.value)
    assert message.startswith("2 critical health checks failed at start-up:\n  - env_files: ")
    assert "\n  - db: tcp://app:***@127.0.0.1:" in message
    assert "API_KEY" in message
    assert SECRET not in message


def test_startup_validation_reports_every_settings_problem() -> None:
    Path("settings.toml").write_text('[default.health]\nport = "x"\ncheck_timeout = -1\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        validate_startup_environment(raise_on_failure=True)
    assert [p.key for p in caught.value.problems] == ["health.port", "health.check_timeout"]


async def test_startup_validation_works_inside_an_event_loop(listener: int) -> None:
    write(
        "settings.toml",
        f'[default.health]\ncritical_dependencies = ["db"]\n[default.health.dependencies]\ndb = "tcp://127.0.0.1:{listener}"\n',
    )
    result = validate_startup_environment()
    assert result.report is not None and [r.name for r in result.report.checks] == ["db"]
    await asyncio.sleep(0)


@pytest.mark.usefixtures("clean_globals")
def test_startup_validation_uses_the_active_handle(listener: int) -> None:
    port = closed_port()
    telemetry = rfobs.init(
        health__dependencies={"db": f"tcp://127.0.0.1:{port}"}, health__critical_dependencies="db", **QUIET
    )
    try:
        with pytest.raises(RfobsError, match=r"1 critical health check failed at start-up:\n  - db: "):
            validate_startup_environment(raise_on_failure=True)
        assert telemetry.health is not None
        assert [(r.name, r.status) for r in telemetry.health.last_results()] == [("db", Status.UNHEALTHY)]
    finally:
        telemetry.shutdown(timeout=2)
