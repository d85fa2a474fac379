"""Build the fleet's Redis store, default backends and health check from the settings, for `rfobs.init()`.

`ratelimit.backend = redis` and `breaker.backend = redis` make every limiter and breaker created without a
`backend=` keep its state in the Redis of `redis.url`: `rfobs.init()` puts the backends built here into the
process-wide state, registers a `RedisCheck`, and closes the store at shutdown. `init()` does not wait for
Redis: a Redis that is down at start is handled like one that goes down later, by the fault policies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from rfobs.exceptions import ConfigError

if TYPE_CHECKING:
    from rfobs._settings_model import RedisSettings, Settings
    from rfobs.fleet._store import RedisStore
    from rfobs.fleet.health import RedisCheck
    from rfobs.health.checker import HealthChecker

__all__ = ["Fleet", "start_fleet", "store_from_settings"]

_INSTALL_HINT = "pip install 'rfobs[redis]'"


@dataclass(frozen=True)
class Fleet:
    """What `start_fleet` built: the store and the default backends (None: in-process).

    Attributes:
        store: The one `RedisStore` of `redis.url`.
        limiter_backend: The `RedisRateLimitBackend` of limiters given no backend, or None (`ratelimit.backend`
            is `memory`).
        breaker_backend: The `RedisBreakerBackend` of breakers given no backend, or None.
        policies: The fault policies (`on_failure`) of the backends built.
    """

    store: RedisStore
    limiter_backend: Any = None
    breaker_backend: Any = None
    policies: tuple[str, ...] = ()

    def register_check(self, checker: HealthChecker, *, critical: bool | None = None) -> RedisCheck:
        """Add a `RedisCheck` of the store to `checker`, named `redis` (`fleet_redis` if that name is taken).

        Args:
            checker: The health checker.
            critical: Whether Redis gates readiness. Default: only when a policy is `fail_closed`, since then
                calls are refused while Redis is away; with `fail_open` or `local` the agent keeps working.
        """
        from rfobs.fleet.health import RedisCheck

        if critical is None:
            critical = "fail_closed" in self.policies
        taken = {check.name for check in checker.checks}
        name = "redis" if "redis" not in taken else "fleet_redis"
        check = RedisCheck(self.store, name=name, critical=critical)
        checker.register(check)
        return check

    def close(self) -> None:
        """Close the store's connections (the backends hold no connections of their own)."""
        self.store.close()


def store_from_settings(redis: RedisSettings) -> RedisStore:
    """The `RedisStore` the `redis` settings group describes.

    Raises:
        ConfigError: `redis.url` is not set, or redis-py is not installed (the message says how to install it).
    """
    if redis.url is None:
        raise ConfigError("redis.url is not set: a Redis backend needs it (RFOBS_REDIS__URL=redis://host:6379/0)")
    try:
        from rfobs.fleet._store import RedisStore
    except ImportError as error:  # pragma: no cover - redis is a dependency of the test environment
        raise ConfigError(f"a Redis backend needs redis-py ({_INSTALL_HINT}): {error}") from None
    return RedisStore(
        str(redis.url),
        max_connections=redis.max_connections,
        timeout=redis.timeout_ms / 1000,
        connect_timeout=redis.connect_timeout_ms / 1000,
        key_prefix=redis.key_prefix,
        retry_after=redis.retry_after,
    )


def start_fleet(settings: Settings) -> Fleet | None:
    """The store and default backends `ratelimit.backend` / `breaker.backend` ask for; None when both are `memory`.

    Raises:
        ConfigError: A backend is `redis` but `redis.url` is not set, or redis-py is missing.
    """
    on_redis = (settings.ratelimit.backend == "redis", settings.breaker.backend == "redis")
    if not any(on_redis):
        return None
    store = store_from_settings(settings.redis)
    limiter_backend: Any = None
    breaker_backend: Any = None
    policies: list[str] = []
    if on_redis[0]:
        from rfobs.fleet.limiter import RedisRateLimitBackend

        limiter_backend = RedisRateLimitBackend(
            store,
            on_failure=cast(Any, settings.ratelimit.on_failure),  # checked by the settings parser
            local_share=settings.ratelimit.local_share,
        )
        policies.append(settings.ratelimit.on_failure)
    if on_redis[1]:
        from rfobs.fleet.breaker import RedisBreakerBackend

        breaker_backend = RedisBreakerBackend(store, on_failure=cast(Any, settings.breaker.on_failure))
        policies.append(settings.breaker.on_failure)
    return Fleet(store, limiter_backend, breaker_backend, tuple(policies))
