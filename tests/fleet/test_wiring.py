# pyright: strict
"""`rfobs.init()` with `ratelimit.backend` / `breaker.backend` = redis: the default backends, the Redis health
check, shutdown; and `RedisCheck` in each of its states against a real Redis."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import TypedDict, cast

import pytest
import redis

import rfobs
from rfobs import _state
from rfobs.exceptions import ConfigError
from rfobs.fleet import RedisStore, StoreUnavailable
from rfobs.fleet.health import RedisCheck
from rfobs.fleet.wiring import store_from_settings
from rfobs.health import CheckResult, Status
from rfobs.instrument import CircuitBreaker
from tests.e2e.redis_server import DelayProxy, RedisHandle
from tests.e2e.servers import free_port
from tests.fleet.conftest import keys_without_ttl

pytestmark = [pytest.mark.usefixtures("clean_globals"), pytest.mark.timeout(60)]


@pytest.fixture
def key_prefix(redis_url: str, prefix: str) -> Iterator[str]:
    """This test's key prefix; afterwards no key under it may lack a TTL."""
    yield prefix
    assert keys_without_ttl(redis_url, prefix) == []


needs_limiter = pytest.mark.skipif(
    importlib.util.find_spec("rfobs.fleet.limiter") is None,
    reason="rfobs/fleet/limiter.py (RedisRateLimitBackend) is written by another engineer and not there yet",
)
needs_breaker = pytest.mark.skipif(
    importlib.util.find_spec("rfobs.fleet.breaker") is None,
    reason="rfobs/fleet/breaker.py (RedisBreakerBackend) is written by another engineer and not there yet",
)


class _Quiet(TypedDict):
    metrics__prometheus_port: int
    logging__enabled: bool


QUIET: _Quiet = {"metrics__prometheus_port": 0, "logging__enabled": False}


def run(check: RedisCheck) -> CheckResult:
    return asyncio.run(check.run())


def scan(client: redis.Redis, pattern: str) -> list[str]:
    return sorted(cast("list[str]", list(client.scan_iter(match=pattern))))  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]


@needs_limiter
@needs_breaker
def test_init_puts_the_redis_backends_in_the_state_registers_the_check_and_shutdown_clears_them(
    redis_url: str, key_prefix: str, client: redis.Redis
) -> None:
    handle = rfobs.init(
        ratelimit__backend="redis",
        ratelimit__on_failure="local",
        ratelimit__local_share=0.5,
        breaker__backend="redis",
        redis__url=redis_url,
        redis__key_prefix=key_prefix,
        redis__timeout_ms=500,
        **QUIET,
    )
    state = _state.current()
    limiter, breaker = state.limiter_backend, state.breaker_backend
    assert (type(limiter).__name__, type(breaker).__name__) == ("RedisRateLimitBackend", "RedisBreakerBackend")
    assert limiter.store is breaker.store  # one connection pool for both
    store: RedisStore = breaker.store
    assert (store.url, store.key_prefix, store.timeout, store.connect_timeout) == (redis_url, key_prefix, 0.5, 0.2)
    assert (limiter.on_failure, breaker.on_failure) == ("local", "local")
    assert handle.health is not None
    check = next(c for c in handle.health.checks if c.name == "redis")
    assert isinstance(check, RedisCheck) and check.store is store and check.critical is False
    result = next(r for r in handle.health.report_sync().checks if r.name == "redis")
    assert result.status is Status.HEALTHY, result.message

    # A breaker given no backend now keeps its state in this Redis.
    wired = CircuitBreaker("wired", failure_threshold=1, reset_timeout=30)
    with pytest.raises(ZeroDivisionError), wired:
        raise ZeroDivisionError
    assert wired.state == "open"
    keys = scan(client, f"{key_prefix}:*")
    assert keys and all(k.startswith(f"{key_prefix}:cb:{{wired") for k in keys), keys
    assert all(client.pttl(k) > 0 for k in keys)

    assert handle.shutdown(timeout=5)
    assert (_state.current().limiter_backend, _state.current().breaker_backend) == (None, None)
    # Shutdown closed the store's pool: the state it held went with it, a new call opens a new connection.
    assert store._sync is None  # pyright: ignore[reportPrivateUsage]


@needs_breaker
def test_a_breaker_only_fleet_leaves_limiters_in_process_and_fail_closed_makes_redis_critical(
    redis_url: str, key_prefix: str
) -> None:
    handle = rfobs.init(
        breaker__backend="redis",
        breaker__on_failure="fail_closed",
        redis__url=redis_url,
        redis__key_prefix=key_prefix,
        **QUIET,
    )
    try:
        assert _state.current().limiter_backend is None
        assert _state.current().breaker_backend.on_failure == "fail_closed"
        assert handle.health is not None
        check = next(c for c in handle.health.checks if c.name == "redis")
        assert check.critical is True
    finally:
        handle.shutdown(timeout=5)


@needs_breaker
def test_the_check_is_renamed_when_a_dependency_is_called_redis(redis_handle: RedisHandle, key_prefix: str) -> None:
    handle = rfobs.init(
        breaker__backend="redis",
        redis__url=redis_handle.url,
        redis__key_prefix=key_prefix,
        health__dependencies={"redis": f"tcp://127.0.0.1:{redis_handle.port}"},
        **QUIET,
    )
    try:
        assert handle.health is not None
        names = [c.name for c in handle.health.checks]
        assert "redis" in names and "fleet_redis" in names
        assert isinstance(next(c for c in handle.health.checks if c.name == "fleet_redis"), RedisCheck)
    finally:
        handle.shutdown(timeout=5)


@needs_breaker
def test_the_fleet_is_wired_when_the_sdk_is_disabled(redis_url: str, key_prefix: str) -> None:
    handle = rfobs.init(
        sdk__disabled=True, breaker__backend="redis", redis__url=redis_url, redis__key_prefix=key_prefix
    )
    try:
        assert type(_state.current().breaker_backend).__name__ == "RedisBreakerBackend"
    finally:
        handle.shutdown(timeout=5)
    assert _state.current().breaker_backend is None


def test_memory_backends_import_no_fleet_code() -> None:
    code = "import sys, rfobs; h = rfobs.init(metrics__prometheus_port=0, logging__enabled=False); "
    code += "print(sorted(m for m in sys.modules if m.startswith(('rfobs.fleet', 'redis')))); h.shutdown(timeout=2)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stderr


def test_store_from_settings_takes_every_redis_setting(redis_url: str) -> None:
    settings = rfobs.load_config(
        overrides={
            "redis": {
                "url": redis_url,
                "max_connections": 7,
                "timeout_ms": 30,
                "connect_timeout_ms": 150,
                "key_prefix": "fleet-a",
                "retry_after": 2.5,
            }
        }
    )
    store = store_from_settings(settings.redis)
    assert (store.url, store.max_connections, store.timeout, store.connect_timeout) == (redis_url, 7, 0.03, 0.15)
    assert (store.key_prefix, store.retry_after) == ("fleet-a", 2.5)
    with pytest.raises(ConfigError, match=r"redis\.url is not set"):
        store_from_settings(rfobs.load_config().redis)


# -- RedisCheck


def test_redis_check_is_healthy_with_the_ping_latency(redis_url: str) -> None:
    store = RedisStore(redis_url, timeout=0.5)
    result = run(RedisCheck(store))
    assert (result.name, result.status, result.critical) == ("redis", Status.HEALTHY, False)
    assert result.values["guard"] == "closed"
    assert 0 < float(result.values["latency_seconds"]) < 0.5
    assert result.message.startswith(f"{redis_url}: PONG in ")


def test_redis_check_is_unhealthy_when_nothing_answers_and_hides_the_password() -> None:
    url = f"redis://agent:s3cret-pw@127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    result = run(RedisCheck(RedisStore(url), name="cache", critical=True, timeout=0.5))
    assert time.monotonic() - started < 2
    assert (result.name, result.status, result.critical) == ("cache", Status.UNHEALTHY, True)
    assert "s3cret-pw" not in result.message
    assert result.message.startswith(f"redis://agent:***@127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}/0: refused")


def test_redis_check_is_degraded_while_the_guard_is_open_and_when_slower_than_the_timeout(
    redis_handle: RedisHandle,
) -> None:
    with DelayProxy(redis_handle.port, delay=0.2) as proxy:
        store = RedisStore(proxy.url(), timeout=0.05, retry_after=30)
        check = RedisCheck(store, timeout=2)
        slow = run(check)
        assert slow.status is Status.DEGRADED
        assert "slower than the 50 ms command timeout" in slow.message and slow.values["guard"] == "closed"
        with pytest.raises(StoreUnavailable) as caught:
            store.ping()  # times out: the guard opens for retry_after
        assert caught.value.reason == "timeout"
        proxy.delay = 0.0
        guarded = run(check)
        assert guarded.status is Status.DEGRADED and guarded.values["guard"] == "open"
        assert "the guard is open: calls use the fault policy until it closes" in guarded.message


def test_redis_check_rejects_a_bad_timeout(redis_url: str) -> None:
    with pytest.raises(ConfigError, match="timeout"):
        RedisCheck(RedisStore(redis_url), timeout=0)
