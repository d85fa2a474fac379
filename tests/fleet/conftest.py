"""Fixtures of the fleet tests: the session's real Redis, and a store per test whose keys must all expire."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import cast

import pytest
import redis

from rfobs.fleet import RedisStore
from tests.e2e.conftest import redis_handle, redis_url

__all__ = ["redis_handle", "redis_url"]


def keys_without_ttl(url: str, prefix: str) -> list[str]:
    """Keys under `prefix` that would never expire (`PTTL == -1`)."""
    client = redis.Redis.from_url(url, decode_responses=True)  # pyright: ignore[reportUnknownMemberType]
    try:
        keys = cast("list[str]", list(client.scan_iter(f"{prefix}:*")))  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
        return [key for key in keys if client.pttl(key) == -1]
    finally:
        client.close()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def key_prefix(redis_url: str, prefix: str) -> Iterator[str]:
    """This test's key prefix; afterwards no key under it may lack a TTL."""
    yield prefix
    assert keys_without_ttl(redis_url, prefix) == []


@pytest.fixture
def store(redis_url: str, prefix: str) -> Iterator[RedisStore]:
    """A store on the session Redis under this test's prefix; afterwards no key of it may lack a TTL.

    The timeout is generous: the machine is shared, and a slow reply would turn a decision into a fallback. An
    async test closes its loop's client itself (`await store.aclose()`).
    """
    store = RedisStore(redis_url, key_prefix=prefix, timeout=0.25, connect_timeout=1.0)
    yield store
    store.close()
    assert keys_without_ttl(redis_url, prefix) == []


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client of the session Redis, to look at the keys."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)  # pyright: ignore[reportUnknownMemberType]
    yield client
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client of the session Redis answering bytes."""
    client = redis.Redis.from_url(redis_url)  # pyright: ignore[reportUnknownMemberType]
    yield client
    client.close()
