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
from collections.abc import AsyncGenerator, Hashable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from redis.exceptions import NoScriptError

from rfobs import _check
from rfobs._secrets import redact_url, scrub_text
from rfobs.exceptions import CircuitOpen, RfobsError
from rfobs.instrument import _deadline
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
        timeout: Seconds a command may take (socket read/write), and the longest a call waits for a free
            connection of the pool.
        connect_timeout: Seconds to open a connection. A call waits on Redis at most `connect_timeout` + `timeout`
            (three times `timeout` when the script must be loaded again), once: then the guard answers.
        key_prefix: First part of every key (`rfobs:rl:tb:{name:'key'}`).
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
        # redis-py also takes a password in the query string (`?password=`): scrub it too.
        self.shown_url = scrub_text(redact_url(url))
        self.max_connections = _check.integer(owner, "max_connections", max_connections, ge=1)
        self.timeout = _check.number(owner, "timeout", timeout, gt=0, le=60, allowed="seconds > 0 and <= 60")
        self.connect_timeout = _check.number(
            owner, "connect_timeout", connect_timeout, gt=0, le=60, allowed="seconds > 0 and <= 60"
        )
        self.key_prefix = _check.text(owner, "key_prefix", key_prefix)
        self.retry_after = _check.number(owner, "retry_after", retry_after, gt=0, allowed="seconds > 0")
        from redis.exceptions import RedisError

        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError)
        self.guard = self._new_guard()
        self._lock = threading.Lock()
        self._sync: redis.Redis | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[redis.asyncio.Redis, Any]] = (
            weakref.WeakKeyDictionary()
        )
        _stores.add(self)

    def _new_guard(self) -> CircuitBreaker:
        # A fixed, short name: it is a metric label and appears in logs (the URL may carry a password).
        return CircuitBreaker(
            "rfobs.redis",
            failure_threshold=1,
            reset_timeout=self.retry_after,
            half_open_max_calls=1,
            counts_as_failure=StoreUnavailable,
            backend=MemoryBreakerBackend(),
        )

    def __repr__(self) -> str:
        return f"RedisStore({self.shown_url!r}, timeout={self.timeout:g})"

    def key(self, kind: str, name: str, key: Hashable = None) -> str:
        """The Redis key of `name`'s state for `key`: `{prefix}:{kind}:{name:key}` (braces: a Cluster hash tag).

        The key is written with `repr`, so a global limiter named `a:b` and limiter `a` with key `"b"` never share a
        key (`{a:b}` and `{a:'b'}`).
        """
        text = name if key is None else f"{name}:{key!r}"
        if len(text) > _MAX_KEY_TEXT or "}" in text:
            text = f"{name[:64]}#{hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()}"
        return f"{self.key_prefix}:{kind}:{{{text}}}"

    # -- running scripts

    def run(self, script: Script, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        """Run `script` on Redis and return its reply.

        Raises:
            StoreUnavailable: Redis did not answer within the timeout, refused, or the guard is open.
        """
        with _Guarded(), self.guard:
            return self._run(self._client(), script, keys, args)

    async def arun(self, script: Script, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        """`run` on this event loop's asyncio client."""
        with _Guarded():
            async with self.guard:
                return await self._arun(self._async_client() or await self._new_async_client(), script, keys, args)

    def ping(self) -> None:
        """Ask Redis for PONG through the guard.

        Raises:
            StoreUnavailable: No answer in time, or the guard is open.
        """
        with _Guarded(), self.guard:
            try:
                self._client().ping()  # pyright: ignore[reportUnknownMemberType]
            except self._errors as error:
                raise _unavailable(error) from None

    def close(self) -> None:
        """Close the sync client's connections.

        An asyncio client belongs to its event loop and is closed when that loop shuts down (`asyncio.run`
        ending), or by `await store.aclose()` on it.
        """
        with self._lock:
            client, self._sync = self._sync, None
        if client is not None:
            client.close()
            client.connection_pool.disconnect()  # a pool given to the client is not closed with it

    async def aclose(self) -> None:
        """Close this event loop's asyncio client now (it is closed when the loop shuts down otherwise)."""
        found = self._async.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found[1].aclose()  # its closer closes the client

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
        # A pool that makes a caller wait (at most `timeout`) for a free connection, instead of failing at once
        # when more calls are in flight than it has connections; no retries of the client's own: the guard
        # decides when Redis is tried again.
        return {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.connect_timeout,
            "max_connections": self.max_connections,
            "timeout": self.timeout,
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
                    pool = redis.BlockingConnectionPool.from_url(  # pyright: ignore[reportUnknownMemberType]
                        self.url, retry=Retry(NoBackoff(), 0), **self._options()
                    )
                    client = self._sync = redis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))
        return client

    def _async_client(self) -> redis.asyncio.Redis | None:
        """This event loop's client, if it has one already."""
        found = self._async.get(asyncio.get_running_loop())
        return None if found is None else found[0]

    async def _new_async_client(self) -> redis.asyncio.Redis:
        """A client for this event loop, closed when the loop shuts down (`asyncio.run` ending)."""
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        loop = asyncio.get_running_loop()
        # Loops that ended: their clients were closed by their closers; forget them.
        for ended in [other for other in self._async if other.is_closed()]:
            del self._async[ended]
        pool = redis.asyncio.BlockingConnectionPool.from_url(  # pyright: ignore[reportUnknownMemberType]
            self.url, retry=Retry(NoBackoff(), 0), **self._options()
        )
        client = redis.asyncio.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))
        # An async generator left suspended is finalized by the loop's shutdown_asyncgens(), which asyncio.run()
        # calls before closing the loop: its `finally` closes the client's sockets while the loop still runs.
        closer = _close_at_loop_end(client)
        await anext(closer)
        self._async[loop] = (client, closer)
        return client

    def _after_fork(self) -> None:
        """In a forked child: new clients and guard (the parent's sockets, loops and locks are not ours)."""
        self._lock = threading.Lock()
        self._sync = None
        self._async = weakref.WeakKeyDictionary()
        self.guard = self._new_guard()


_stores: weakref.WeakSet[RedisStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_stores):
        store._after_fork()  # pyright: ignore[reportPrivateUsage]


# At fork rather than a getpid() per command (3% of a decision): the child never uses the parent's connections.
os.register_at_fork(after_in_child=_after_fork_in_child)


def _is_redis_url(url: object) -> bool:
    return isinstance(url, str) and url.startswith(("redis://", "rediss://", "unix://"))


class _Guarded:
    """Around one guarded Redis call: no caller deadline, and what the guard did not count as `StoreUnavailable`.

    A caller's expired deadline says nothing about Redis, so it is suspended while the guard judges the call; the
    guard's refusal (`CircuitOpen`) and an uncounted failure leave as `StoreUnavailable`.
    """

    __slots__ = ("_token",)

    def __enter__(self) -> None:
        self._token = _deadline.suspend()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        _deadline.leave(self._token)
        if isinstance(error, CircuitOpen):
            raise StoreUnavailable("guard_open", f"retrying in {error.retry_after:.2g}s") from None
        if isinstance(error, _Uncounted):
            raise error.unavailable from None


async def _close_at_loop_end(client: redis.asyncio.Redis) -> AsyncGenerator[None]:
    try:
        yield
    finally:
        await client.aclose(close_connection_pool=True)  # the pool was given, so not closed by default


class _Uncounted(Exception):
    """A failure that says nothing about Redis's health (a busy pool, a script's own error): not held against it."""

    def __init__(self, unavailable: StoreUnavailable) -> None:
        super().__init__(str(unavailable))
        self.unavailable = unavailable


def _unavailable(error: BaseException, script: Script | None = None) -> Exception:
    """What a redis-py error means: `StoreUnavailable` (Redis cannot serve: counted by the guard) or `_Uncounted`."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    if isinstance(error, (RedisTimeoutError, TimeoutError)):
        return StoreUnavailable("timeout")
    if isinstance(error, RedisConnectionError) and str(error).startswith(("No connection available", "Too many conn")):
        return _Uncounted(StoreUnavailable("pool_busy", "every connection is in use; raise redis.max_connections"))
    if isinstance(error, (RedisConnectionError, OSError)):
        return StoreUnavailable("connection", type(error).__name__)
    text = str(error)
    # redis-py 8 strips the error code from some messages (`OutOfMemoryError("command not allowed ...")`).
    if isinstance(code := getattr(error, "status_code", None), str) and not text.startswith(code):
        text = f"{code} {text}"
    for prefix in _UNAVAILABLE_PREFIXES:
        if text.startswith(prefix):
            return StoreUnavailable(prefix.lower(), text.split("\n", 1)[0][:120])
    if script is not None:
        _log.error("rfobs: the Redis script %s failed: %s", script.name, scrub_text(text[:300]))
    return _Uncounted(StoreUnavailable("error", type(error).__name__))
