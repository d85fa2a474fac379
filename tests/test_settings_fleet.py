"""The fleet's settings groups: `redis` (its URL a secret), `ratelimit` and `breaker`, strictly validated."""

from __future__ import annotations

import json

import pytest

from rfobs import ConfigError, load_config
from rfobs._settings_sections import SecretText
from rfobs.cli import main
from rfobs.config import describe_settings, settings_as_json

PASSWORD = "r3dis-Pa55word-9"
URL = f"redis://agent:{PASSWORD}@cache.internal:6380/2"


def rows(prefix: str) -> dict[str, tuple[str, str]]:
    settings = load_config(overrides={"redis": {"url": URL}})
    return {key: (value, source) for key, value, source in describe_settings(settings) if key.startswith(prefix)}


def test_defaults() -> None:
    settings = load_config()
    assert (settings.redis.url, settings.redis.max_connections, settings.redis.timeout_ms) == (None, 50, 50)
    assert (settings.redis.connect_timeout_ms, settings.redis.key_prefix, settings.redis.retry_after) == (
        200,
        "rfobs",
        1.0,
    )
    assert (settings.ratelimit.backend, settings.ratelimit.on_failure, settings.ratelimit.local_share) == (
        "memory",
        "fail_open",
        0.25,
    )
    assert (settings.breaker.backend, settings.breaker.on_failure) == ("memory", "local")


def test_the_url_reads_as_itself_but_is_shown_without_its_password() -> None:
    settings = load_config(overrides={"redis": {"url": URL}})
    assert settings.redis.url == URL and isinstance(settings.redis.url, SecretText)
    assert f"{settings.redis.url}" == URL
    assert repr(settings.redis.url) == "'redis://agent:***@cache.internal:6380/2'"
    assert PASSWORD not in repr(settings) and PASSWORD not in repr(settings.redis)
    assert rows("redis.url") == {"redis.url": ("'redis://agent:***@cache.internal:6380/2'", "init() keyword")}
    shown = [row for row in settings_as_json(settings) if row["key"] == "redis.url"]
    assert shown == [
        {"key": "redis.url", "value": "redis://agent:***@cache.internal:6380/2", "source": "init() keyword"}
    ]


def test_a_lone_user_part_and_query_secrets_are_hidden_too() -> None:
    lone = load_config(overrides={"redis": {"url": f"redis://{PASSWORD}@cache:6379"}}).redis.url
    assert repr(lone) == "'redis://***@cache:6379'"
    query = load_config(overrides={"redis": {"url": f"rediss://cache:6379/0?password={PASSWORD}"}}).redis.url
    assert PASSWORD not in repr(query) and str(query).endswith(PASSWORD)


def test_unix_and_tls_urls_are_accepted() -> None:
    assert load_config(overrides={"redis": {"url": "unix:///run/redis.sock"}}).redis.url == "unix:///run/redis.sock"
    assert load_config(overrides={"redis": {"url": " rediss://cache:6379 "}}).redis.url == "rediss://cache:6379"


def test_the_environment_sets_the_fleet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RFOBS_REDIS__URL", URL)
    monkeypatch.setenv("RFOBS_REDIS__TIMEOUT_MS", "20")
    monkeypatch.setenv("RFOBS_RATELIMIT__BACKEND", "redis")
    monkeypatch.setenv("RFOBS_RATELIMIT__LOCAL_SHARE", "0.5")
    monkeypatch.setenv("RFOBS_BREAKER__BACKEND", "REDIS")
    monkeypatch.setenv("RFOBS_BREAKER__ON_FAILURE", "fail_closed")
    settings = load_config()
    assert (settings.redis.url, settings.redis.timeout_ms) == (URL, 20)
    assert (settings.ratelimit.backend, settings.ratelimit.local_share) == ("redis", 0.5)
    assert (settings.breaker.backend, settings.breaker.on_failure) == ("redis", "fail_closed")
    assert settings.sources["redis.url"] == "env RFOBS_REDIS__URL"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"redis": {"url": f"http://agent:{PASSWORD}@cache:6379"}},
            "redis.url = 'http://agent:***@cache:6379' (from init() keyword): expected a redis://host:port/db, "
            "rediss://host:port/db or unix:///path/to/redis.sock URL",
        ),
        (
            {"redis": {"url": "redis://cache:6379/zero"}},
            "redis.url = 'redis://cache:6379/zero' (from init() keyword): expected a redis://host:port/db, "
            "rediss://host:port/db or unix:///path/to/redis.sock URL (the path is a database number)",
        ),
        ({"redis": {"url": 6379}}, "redis.url = 6379 (from init() keyword): expected a redis://host:port/db"),
        ({"redis": {"timeout_ms": 0}}, "redis.timeout_ms = 0 (from init() keyword): expected an integer from 1 to"),
        (
            {"ratelimit": {"on_failure": "ignore"}},
            "ratelimit.on_failure = 'ignore' (from init() keyword): expected one of fail_open | fail_closed | local",
        ),
        (
            {"ratelimit": {"local_share": 0}},
            "ratelimit.local_share = 0 (from init() keyword): expected a number greater than 0 and at most 1",
        ),
        (
            {"breaker": {"backend": "etcd"}},
            "breaker.backend = 'etcd' (from init() keyword): expected one of memory | redis",
        ),
        (
            {"redis": {"pool": 3}},
            "redis.pool = <int> (from init() keyword): expected a known setting",
        ),
    ],
)
def test_bad_values_fail_naming_key_value_and_what_is_allowed(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides=overrides)
    assert message in str(caught.value)
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize("group", ["ratelimit", "breaker"])
def test_a_redis_backend_without_a_url_names_both_keys(group: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={group: {"backend": "redis"}})
    assert f"{group}.backend = 'redis'" in str(caught.value)
    assert "redis.url is not set" in str(caught.value)
    load_config(overrides={group: {"backend": "redis"}, "redis": {"url": URL}})  # with one: fine


def test_config_show_never_prints_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RFOBS_REDIS__URL", URL)
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "redis://agent:***@cache.internal:6380/2" in out and PASSWORD not in out
    assert main(["config", "show", "--json"]) == 0
    out = capsys.readouterr().out
    assert PASSWORD not in out
    assert {
        "key": "redis.url",
        "value": "redis://agent:***@cache.internal:6380/2",
        "source": "env RFOBS_REDIS__URL",
    } in (json.loads(out))
