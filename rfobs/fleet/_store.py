"""The Redis connection the fleet's limiters and breakers share: bounded timeouts, scripts, and a guard.

One `RedisStore` per Redis: a sync client for plain code and one `redis.asyncio` client per event loop, both with
millisecond timeouts and no retries of their own. Every command goes through `run`/`arun`, which run a Lua
script by its SHA (`EVALSHA`, reloading it once on `NOSCRIPT`) behind rfobs's own circuit breaker: after a
failure the store answers `StoreUnavailable` at once, without touching the network, until one probe call after
`retry_after` seconds finds Redis answering again. A dead Redis so costs one call the client timeout, and the
calls after it almost nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import weakref
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from redis.exceptions import NoScriptError

from rfobs import _check
from rfobs._secrets import redact_url
from rfobs.exceptions import CircuitOpen, RfobsError
from rfobs.instrument._breaker_state import MemoryBreakerBackend
from rfobs.instrument.breaker import CircuitBreaker

if TYPE_CHECKING:
    import redis
    import redis.asyncio

__all__ = ["RedisStore", "Script", "StoreUnavailable"]

_log = logging.getLogger("rfobs")
_MAX_KEY_TEXT: Final = 200  # longer keys are hashed: Redis keys stay small
# Redis errors that say the store cannot serve now (a full, loading or read-only Redis), not that a script is wrong.
_UNAVAILABLE_PREFIXES: Final = ("OOM", "LOADING", "READONLY", "MASTERDOWN", "BUSY", "CLUSTERDOWN", "TRYAGAIN")


class StoreUnavailable(RfobsError):
    """Redis did not answer in time, refused the command, or is being given a rest after a failure.

    Attributes:
        reason: What happened, for logs and span events (`timeout`, `connection`, `guard_open`, `oom`, ...).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"Redis is unavailable ({reason}){': ' + detail if detail else ''}")
        self.reason = reason


@dataclass(frozen=True)
class Script:
    """A Lua script, known by its SHA1 once loaded.

    Attributes:
        name: For messages.
        source: The Lua text.
        sha: The SHA1 Redis knows the script by (computed once).
    """

    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest())


class RedisStore:
    """The clients, key layout and guard shared by every fleet backend on one Redis.

    Args:
        url: `redis://`, `rediss://` or `unix://` URL (its password is never printed).
        max_connections: Connections per client pool.
        timeout: Seconds a command may take (socket read/write), e.g. 0.05; the longest a call waits on Redis.
        connect_timeout: Seconds to open a connection.
        key_prefix: First part of every key (`rfobs:rl:{name:key}`).
        retry_after: Seconds the guard keeps calls off Redis after a failure before one probe call tries again.

    Raises:
        ConfigError: An argument is invalid (the URL is shown redacted).
    """

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 50,
        timeout: float = 0.05,
        connect_timeout: float = 0.2,
        key_prefix: str = "rfobs",
        retry_after: float = 1.0,
    ) -> None:
        owner = "RedisStore"
        if not _is_redis_url(url):
            shown: object = redact_url(url) if isinstance(url, str) else url  # pyright: ignore[reportUnnecessaryIsInstance]
            raise _check.bad(owner, "url", shown, "a redis://, rediss:// or unix:// URL")
        self.url = url
        self.shown_url = redact_url(url)
        self.max_connections = _check.integer(owner, "max_connections", max_connections, ge=1)
        self.timeout = _check.number(owner, "timeout", timeout, gt=0, le=60, allowed="seconds > 0 and <= 60")
        self.connect_timeout = _check.number(
            owner, "connect_timeout", connect_timeout, gt=0, le=60, allowed="seconds > 0 and <= 60"
        )
        self.key_prefix = _check.text(owner, "key_prefix", key_prefix)
        self.retry_after = _check.number(owner, "retry_after", retry_after, gt=0, allowed="seconds > 0")
        from redis.exceptions import RedisError

        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError)
        self.guard = CircuitBreaker(
            f"redis {self.shown_url}",
            failure_threshold=1,
            reset_timeout=self.retry_after,
            half_open_max_calls=1,
            counts_as_failure=StoreUnavailable,
            backend=MemoryBreakerBackend(),
        )
        self._lock = threading.Lock()
        self._sync: redis.Redis | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis] = (
            weakref.WeakKeyDictionary()
        )
        _stores.add(self)

    def __repr__(self) -> str:
        return f"RedisStore({self.shown_url!r}, timeout={self.timeout:g})"

    def key(self, kind: str, name: str, key: Hashable = None) -> str:
        """The Redis key of `name`'s state for `key`: `{prefix}:{kind}:{name:key}` (braces: a Cluster hash tag)."""
        text = name if key is None else f"{name}:{key}"
        if len(text) > _MAX_KEY_TEXT or "}" in text:
            text = f"{name[:64]}#{hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()}"
        return f"{self.key_prefix}:{kind}:{{{text}}}"

    # -- running scripts

    def run(self, script: Script, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        """Run `script` on Redis and return its reply.

        Raises:
            StoreUnavailable: Redis did not answer within the timeout, refused, or the guard is open.
        """
        try:
            with self.guard:
                return self._run(self._client(), script, keys, args)
        except CircuitOpen as refused:
            raise StoreUnavailable("guard_open", f"retrying in {refused.retry_after:.2g}s") from None

    async def arun(self, script: Script, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        """`run` on this event loop's asyncio client."""
        try:
            async with self.guard:
                return await self._arun(self._async_client(), script, keys, args)
        except CircuitOpen as refused:
            raise StoreUnavailable("guard_open", f"retrying in {refused.retry_after:.2g}s") from None

    def ping(self) -> None:
        """Ask Redis for PONG through the guard.

        Raises:
            StoreUnavailable: No answer in time, or the guard is open.
        """
        try:
            with self.guard:
                try:
                    self._client().ping()  # pyright: ignore[reportUnknownMemberType]
                except self._errors as error:
                    raise _unavailable(error) from None
        except CircuitOpen as refused:
            raise StoreUnavailable("guard_open", f"retrying in {refused.retry_after:.2g}s") from None

    def close(self) -> None:
        """Close the sync client's connections (asyncio clients close with their loops)."""
        with self._lock:
            client, self._sync = self._sync, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close this event loop's asyncio client; call it before the loop ends (its sockets die with the loop)."""
        client = self._async.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def _run(self, client: redis.Redis, script: Script, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        # execute_command, not evalsha(): the latter's deprecation wrapper costs a tenth of a decision.
        command: Any = client.execute_command  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        try:
            try:
                return command("EVALSHA", script.sha, len(keys), *keys, *args)
            except NoScriptError:
                # Not loaded yet, or flushed (SCRIPT FLUSH, a restart): load it and run it once more.
                client.script_load(script.source)
                return command("EVALSHA", script.sha, len(keys), *keys, *args)
        except self._errors as error:
            raise _unavailable(error, script) from None

    async def _arun(
        self, client: redis.asyncio.Redis, script: Script, keys: Sequence[str], args: Sequence[str | int | float]
    ) -> Any:
        command: Any = client.execute_command  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        try:
            try:
                return await command("EVALSHA", script.sha, len(keys), *keys, *args)
            except NoScriptError:
                await client.script_load(script.source)
                return await command("EVALSHA", script.sha, len(keys), *keys, *args)
        except self._errors as error:
            raise _unavailable(error, script) from None

    # -- clients

    def _options(self) -> dict[str, Any]:
        return {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.connect_timeout,
            "max_connections": self.max_connections,
            "retry_on_timeout": False,
            "health_check_interval": 0,
        }

    def _client(self) -> redis.Redis:
        client = self._sync
        if client is None:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            with self._lock:
                if (client := self._sync) is None:
                    # No retries of the client's own: the guard decides when Redis is tried again.
                    client = self._sync = redis.Redis.from_url(  # pyright: ignore[reportUnknownMemberType]
                        self.url, retry=Retry(NoBackoff(), 0), **self._options()
                    )
        return client

    def _async_client(self) -> redis.asyncio.Redis:
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            import redis.asyncio
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            client = self._async[loop] = redis.asyncio.Redis.from_url(  # pyright: ignore[reportUnknownMemberType]
                self.url, retry=Retry(NoBackoff(), 0), **self._options()
            )
        return client

    def _after_fork(self) -> None:
        """In a forked child: new clients (the parent's sockets and loops are not ours to use)."""
        self._lock = threading.Lock()
        self._sync = None
        self._async = weakref.WeakKeyDictionary()


_stores: weakref.WeakSet[RedisStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_stores):
        store._after_fork()  # pyright: ignore[reportPrivateUsage]


# At fork rather than a getpid() per command (3% of a decision): the child never uses the parent's connections.
os.register_at_fork(after_in_child=_after_fork_in_child)


def _is_redis_url(url: object) -> bool:
    return isinstance(url, str) and url.startswith(("redis://", "rediss://", "unix://"))


def _unavailable(error: BaseException, script: Script | None = None) -> StoreUnavailable:
    """The `StoreUnavailable` for a redis-py error; a script's own bug is logged, since no retry will fix it."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    if isinstance(error, (RedisTimeoutError, TimeoutError)):
        return StoreUnavailable("timeout")
    if isinstance(error, (RedisConnectionError, OSError)):
        return StoreUnavailable("connection", type(error).__name__)
    text = str(error)
    # redis-py strips the error code it maps to a class (`OOM ...` becomes OutOfMemoryError("command not ...")).
    if isinstance(code := getattr(error, "status_code", None), str) and not text.startswith(code):
        text = f"{code} {text}"
    for prefix in _UNAVAILABLE_PREFIXES:
        if text.startswith(prefix):
            return StoreUnavailable(prefix.lower(), text.split("\n", 1)[0][:120])
    if script is not None:
        _log.error("rfobs: the Redis script %s failed: %s", script.name, text[:300])
    return StoreUnavailable("error", type(error).__name__)
