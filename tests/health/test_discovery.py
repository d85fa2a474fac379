"""Without configuration, the checker also checks what it finds: the git work tree, `./.env` and `./logs/`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rfobs import load_config
from rfobs.health import EnvFileCheck, GitRepositoryCheck, LogRotationCheck, Status
from rfobs.health.setup import Discovered, build_health_checker, discover

SECRET = "sk-s3cr3t-value"
CALM: dict[str, Any] = {
    "health__cpu_max_percent": 100,
    "health__memory_max_percent": 100,
    "health__disk_max_percent": 100,
}
DEFAULTS = ["cpu", "memory", "disk", "process", "performance"]


def git(cwd: Path, *arguments: str) -> None:
    subprocess.run(["git", *arguments], cwd=cwd, check=True, capture_output=True, timeout=30)


def names(**overrides: Any) -> list[str]:
    return [check.name for check in build_health_checker(load_config(overrides=overrides)).checks]


def test_nothing_found_registers_no_file_check_and_says_why(tmp_path: Path) -> None:
    assert names() == DEFAULTS
    assert discover(load_config().health) == Discovered(
        None,
        (),
        (),
        (
            f"git (no git work tree at {tmp_path} or above; set health.git_path)",
            f"env_files (no {tmp_path / '.env'}; set health.env_files)",
            f"log_rotation (no {tmp_path / 'logs'} directory; set health.log_paths)",
        ),
    )


def test_discovery_can_be_turned_off(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    Path(".env").write_text("A=1\n", encoding="utf-8")
    Path("logs").mkdir()
    assert names(health__discover=False) == DEFAULTS
    assert discover(load_config(overrides={"health__discover": False}).health) == Discovered(None, (), (), ())


async def test_the_git_work_tree_is_found_from_a_folder_inside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "agent").mkdir()
    monkeypatch.chdir(tmp_path / "agent")
    checker = build_health_checker(load_config(overrides=CALM))
    assert [check.name for check in checker.checks] == ["cpu", "memory", "disk", "process", "git", "performance"]
    (check,) = [check for check in checker.checks if isinstance(check, GitRepositoryCheck)]
    assert (check.path, check.critical) == (str(tmp_path), False)
    result = await checker.check("git")
    assert (result.status, result.values["is_repo"], result.values["branch"]) == (Status.HEALTHY, True, "main")


def test_a_configured_git_path_is_used_as_it_is(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    found = discover(load_config(overrides={"health__git_path": "elsewhere"}).health)
    assert found.git_path == "elsewhere"


@pytest.mark.parametrize(
    ("mode", "status", "message"),
    [
        (0o600, Status.HEALTHY, "2 keys in 1 file(s), none required"),
        (0o644, Status.UNHEALTHY, "{path} holds secrets (OPENAI_API_KEY) and is world-readable: chmod 600 it"),
    ],
)
async def test_a_dot_env_beside_the_agent_is_checked(tmp_path: Path, mode: int, status: Status, message: str) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"OPENAI_API_KEY={SECRET}\nMODEL=gpt\n", encoding="utf-8")
    env_file.chmod(mode)
    checker = build_health_checker(load_config(overrides=CALM))
    (check,) = [check for check in checker.checks if isinstance(check, EnvFileCheck)]
    assert (check.paths, check.required_keys, check.critical) == ((str(env_file),), (), False)
    report = await checker.check_all()
    (result,) = [r for r in report.checks if r.name == "env_files"]
    assert (result.status, result.message) == (status, message.format(path=env_file))
    # Not critical without required keys: a readable .env degrades the report, it does not stop the agent.
    assert report.status is (Status.HEALTHY if status is Status.HEALTHY else Status.DEGRADED)
    assert SECRET not in result.message


async def test_required_keys_make_the_dot_env_found_critical(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("MODEL=gpt\n", encoding="utf-8")
    env_file.chmod(0o600)
    checker = build_health_checker(load_config(overrides={**CALM, "health__env_required_keys": "API_KEY,MODEL"}))
    (check,) = [check for check in checker.checks if isinstance(check, EnvFileCheck)]
    assert (check.required_keys, check.critical) == (("API_KEY", "MODEL"), True)
    report = await checker.check_all()
    (result,) = [r for r in report.checks if r.name == "env_files"]
    assert (result.status, result.message, report.status) == (
        Status.UNHEALTHY,
        "missing keys: API_KEY",
        Status.UNHEALTHY,
    )


async def test_a_logs_folder_beside_the_agent_is_checked(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "agent.log").write_text("x" * 2048, encoding="utf-8")
    for index in (1, 2):
        (tmp_path / "logs" / f"agent.log.{index}").write_text("old", encoding="utf-8")
    checker = build_health_checker(load_config(overrides=CALM))
    (check,) = [check for check in checker.checks if isinstance(check, LogRotationCheck)]
    assert check.paths == (str(tmp_path / "logs"),)
    result = await checker.check("log_rotation")
    assert (result.status, result.message) == (Status.HEALTHY, "1 log file(s), 2 rotated, largest 2.0 KiB")


def test_configured_log_paths_win_over_the_logs_folder(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    found = discover(load_config(overrides={"health__log_paths": "var/log"}).health)
    assert found.log_paths == ("var/log",)
    assert os.path.isdir(tmp_path / "logs")


def test_a_removed_working_directory_finds_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert discover(load_config(overrides={"health__log_paths": "logs"}).health) == Discovered(None, (), ("logs",), ())
