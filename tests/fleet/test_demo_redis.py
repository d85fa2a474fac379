# pyright: strict
"""`rfobs demo --redis URL`: the demo's rate limit and breaker live in a real Redis, and say so as it starts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import pytest
import redis

from tests.fleet.conftest import keys_without_ttl

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def key_prefix(redis_url: str, prefix: str) -> Iterator[str]:
    """This test's key prefix; afterwards no key under it may lack a TTL."""
    yield prefix
    assert keys_without_ttl(redis_url, prefix) == []


def demo(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("RFOBS_", "OTEL_"))}
    environment.update(RFOBS_METRICS__PROMETHEUS_PORT="0", **env)
    return subprocess.run(
        [sys.executable, "-m", "rfobs.cli", "demo", "--duration", "1.5", "--concurrency", "2", "--seed", "7", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        timeout=60,
    )


def test_the_demo_keeps_its_limiter_and_breaker_in_redis(
    tmp_path: Path, redis_url: str, key_prefix: str, client: redis.Redis
) -> None:
    seen: dict[str, int] = {}  # key -> its PTTL when first seen
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(demo, tmp_path, "--redis", redis_url, RFOBS_REDIS__KEY_PREFIX=key_prefix)
        # Idle limiter keys expire within a fraction of a second: look while the demo runs.
        while not running.done():
            for key in cast("list[str]", list(client.scan_iter(match=f"{key_prefix}:*"))):  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
                seen.setdefault(key, client.pttl(key))
            time.sleep(0.02)
        done = running.result()
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert lines[0] == "rfobs demo: 2 research agents for 1.5s (environment: development)"
    assert lines[3] == f"  fleet:    limiters and breakers on {redis_url!r} (prefix {key_prefix!r})"
    assert any(re.fullmatch(rf"{key_prefix}:rl:tb:\{{arxiv.*\}}", key) for key in seen), seen
    assert any(re.fullmatch(rf"{key_prefix}:cb:\{{semantic_scholar\}}.*", key) for key in seen), seen
    # -2: gone between SCAN and PTTL; never -1 (no TTL). key_prefix's teardown scans for keys without one too.
    assert all(ttl > 0 or ttl == -2 for ttl in seen.values()), seen


def test_a_password_given_to_demo_redis_is_never_printed(tmp_path: Path) -> None:
    done = demo(tmp_path, "--redis", "redis://agent:demo-Pa55word@127.0.0.1:1/0", "--duration", "0.3")
    assert done.returncode == 0, done.stderr
    assert "demo-Pa55word" not in done.stdout + done.stderr
    assert "  fleet:    limiters and breakers on 'redis://agent:***@127.0.0.1:1/0' (prefix 'rfobs')" in done.stdout


def test_a_bad_redis_url_is_refused_before_the_demo_starts(tmp_path: Path) -> None:
    done = demo(tmp_path, "--redis", "http://cache:6379")
    assert done.returncode == 1 and done.stdout == ""
    assert "redis.url = 'http://cache:6379' (from init() keyword): expected a redis://host:port/db" in done.stderr


def test_the_compose_agent_uses_the_compose_redis() -> None:
    text = (Path(__file__).resolve().parents[2] / "collector" / "docker-compose.yml").read_text(encoding="utf-8")
    agent = text.split("\n  agent:\n", 1)[1].split("\n\n", 1)[0]
    for line in (
        "RFOBS_REDIS__URL: redis://redis:6379/0",
        "RFOBS_RATELIMIT__BACKEND: redis",
        "RFOBS_BREAKER__BACKEND: redis",
        "depends_on: [redis, otel-collector]",
        "exec rfobs demo",
    ):
        assert line in agent, line
    assert "ports:" not in agent  # reached inside the compose network only
