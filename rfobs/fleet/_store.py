"""The Redis connection the fleet's limiters and breakers share: bounded timeouts, scripts, and a guard.

One `RedisStore` per Redis: a sync client for plain code and one `redis.asyncio` client per event loop, both with
millisecond timeouts and no retries of their own. Every command goes through `run`/`arun`, which run a Lua
script by its SHA (`EVALSHA`, reloading it once on `NOSCRIPT`) behind rfobs's own circuit breaker: after a
failure the store answers `StoreUnavailable` at once, without touching the network, until one probe call after
`retry_after` seconds finds Redis answering again. A dead Redis so costs one call the client timeout, and the
calls after it almost nothing. Calls made while another is on the wire leave together in one round trip
(`_pipelining`), on a connection of the sender's own.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import weakref
from collections.abc import AsyncGenerator, Hashable, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from redis.exceptions import NoScriptError

from rfobs import _check
from rfobs._secrets import redact_url, scrub_text
from rfobs.exceptions import CircuitOpen
from rfobs.fleet._errors import StoreUnavailable, Uncounted, unavailable
from rfobs.fleet._pipelining import AsyncPipeliner, Call, SyncPipeliner
from rfobs.instrument import _deadline
from rfobs.instrument._breaker_state import MemoryBreakerBackend
from rfobs.instrument.breaker import CircuitBreaker

if TYPE_CHECKING:
    import redis
    import redis.asyncio

__all__ = ["RedisStore", "Script", "StoreUnavailable"]

_MAX_KEY_TEXT: Final = 200  # longer keys are hashed: Redis keys stay small


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
        max_connections: Connections per client pool (pings and script loads; script calls are pipelined on one
            connection per process and one per event loop).
        timeout: Seconds a round trip may take (socket read/write), and the longest a call waits for a free
            connection of the pool.
        connect_timeout: Seconds to open a connection. A call waits on Redis at most `connect_timeout` + `timeout`
            (twice that when the script must be loaded again), once: then the guard answers. A call queued behind
            a batch on the wire waits for that batch too (if it fails, the call fails with it, at once).
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
        self._pipeliner: SyncPipeliner | None = None
        self._wire: Any = None  # the sync sender's connection
        self._async: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[redis.asyncio.Redis, Any, AsyncPipeliner]
        ] = weakref.WeakKeyDictionary()
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
        """Run `script` on Redis and return its reply (with calls other threads make meanwhile: one round trip).

        Raises:
            StoreUnavailable: Redis did not answer within the timeout, refused, or the guard is open.
        """
        with _Guarded(), self.guard:
            return self._sync_pipeliner().run(Call(script, keys, args))

    async def arun(self, script: Script, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        """`run` on this event loop's asyncio client (with the loop's other tasks' calls: one round trip)."""
        with _Guarded():
            async with self.guard:
                found = self._async.get(asyncio.get_running_loop())
                pipeliner = found[2] if found is not None else await self._new_async_client()
                return await pipeliner.run(Call(script, keys, args))

    def ping(self) -> None:
        """Ask Redis for PONG through the guard.

        Raises:
            StoreUnavailable: No answer in time, or the guard is open.
        """
        with _Guarded(), self.guard:
            try:
                self._client().ping()  # pyright: ignore[reportUnknownMemberType]
            except self._errors as error:
                raise unavailable(error) from None

    def close(self) -> None:
        """Close the sync client's connections.

        An asyncio client belongs to its event loop and is closed when that loop shuts down (`asyncio.run`
        ending), or by `await store.aclose()` on it.
        """
        with self._lock:
            client, self._sync = self._sync, None
            wire, self._wire = self._wire, None
        if wire is not None:
            wire.disconnect()
        if client is not None:
            client.close()
            client.connection_pool.disconnect()  # a pool given to the client is not closed with it

    async def aclose(self) -> None:
        """Close this event loop's asyncio client now (it is closed when the loop shuts down otherwise)."""
        found = self._async.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found[1].aclose()  # its closer closes the client

    def _send(self, batch: list[Call]) -> StoreUnavailable | None:
        """Send `batch` in one round trip (`SyncSender`); again once if a script was unknown.

        Only the pipeliner's one sending thread is here at a time, so it has a connection of its own: no pool.
        """
        client = self._client()
        if (wire := self._wire) is None:
            wire = self._wire = _connection_like(client)
        todo = batch
        for attempt in range(2):
            try:
                if not (todo := _settle(todo, _exchange(wire, todo), first=attempt == 0)):
                    break
                for script in {call.script for call in todo}:
                    client.script_load(script.source)
            except self._errors as error:
                for call in todo:
                    call.error = unavailable(error)
                break
        return _failure(batch)

    async def _asend(self, client: redis.asyncio.Redis, wire: Any, batch: list[Call]) -> StoreUnavailable | None:
        """`_send` on an event loop's client and connection (`AsyncSender`)."""
        todo = batch
        for attempt in range(2):
            try:
                if not (todo := _settle(todo, await _aexchange(wire, todo), first=attempt == 0)):
                    break
                for script in {call.script for call in todo}:
                    await client.script_load(script.source)
            except self._errors as error:
                for call in todo:
                    call.error = unavailable(error)
                break
        return _failure(batch)

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

    def _sync_pipeliner(self) -> SyncPipeliner:
        pipeliner = self._pipeliner
        if pipeliner is None:
            with self._lock:
                if (pipeliner := self._pipeliner) is None:
                    pipeliner = self._pipeliner = SyncPipeliner(self._send, self._wait_limit())
        return pipeliner

    def _wait_limit(self) -> float:
        # The longest one batch may take: its connection opened and its replies read, then, when Redis lost the
        # script, a pool connection opened, waited for and used to load it, and the batch sent again.
        return 2 * self.connect_timeout + 4 * self.timeout

    async def _new_async_client(self) -> AsyncPipeliner:
        """A client for this event loop, closed when the loop shuts down (`asyncio.run` ending); its pipeliner."""
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
        wire = _connection_like(client)
        closer = _close_at_loop_end(client, wire)
        await anext(closer)
        pipeliner = AsyncPipeliner(partial(self._asend, client, wire), self._wait_limit())
        self._async[loop] = (client, closer, pipeliner)
        return pipeliner

    def _after_fork(self) -> None:
        """In a forked child: new clients and guard (the parent's sockets, loops and locks are not ours)."""
        self._lock = threading.Lock()
        self._sync = None
        self._pipeliner = None
        self._wire = None
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
        if isinstance(error, Uncounted):
            raise error.unavailable from None


async def _close_at_loop_end(client: redis.asyncio.Redis, wire: Any) -> AsyncGenerator[None]:
    try:
        yield
    finally:
        try:
            await wire.disconnect()
        finally:
            await client.aclose(close_connection_pool=True)  # the pool was given, so not closed by default


# One round trip by hand on the sender's own connection, not through redis-py's Pipeline and pool: their
# bookkeeping (reset, retry wrapper, pool accounting) cost half of a decision. Reply errors come back in place; any
# other error leaves the connection closed (reopened by the next send), never half read.


def _commands(calls: list[Call]) -> list[tuple[Any, ...]]:
    return [("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args) for call in calls]


def _connection_like(client: Any) -> Any:
    """A connection of its own with the settings of `client`'s pool (address, timeouts, credentials, TLS)."""
    pool = client.connection_pool
    return pool.connection_class(**pool.connection_kwargs)


def _exchange(connection: Any, calls: list[Call]) -> list[Any]:
    """Send every call's EVALSHA at once, then read the replies (a `ResponseError` in place of a failed one)."""
    from redis.exceptions import ResponseError

    try:
        connection.send_packed_command(connection.pack_commands(_commands(calls)), check_health=False)
        replies: list[Any] = []
        for _ in calls:
            try:
                replies.append(connection.read_response())
            except ResponseError as error:
                replies.append(error)
        return replies
    except BaseException:
        connection.disconnect()  # redis-py closes it on its own errors; also on ours, half read
        raise


async def _aexchange(connection: Any, calls: list[Call]) -> list[Any]:
    """`_exchange` on an asyncio connection."""
    from redis.exceptions import ResponseError

    try:
        await connection.send_packed_command(connection.pack_commands(_commands(calls)), check_health=False)
        replies: list[Any] = []
        for _ in calls:
            try:
                replies.append(await connection.read_response())
            except ResponseError as error:
                replies.append(error)
        return replies
    except BaseException:
        await connection.disconnect(nowait=True)
        raise


def _settle(calls: list[Call], replies: list[Any], *, first: bool) -> list[Call]:
    """Give each call its pipelined reply or error; the calls to load the script for and send again.

    Those are, on the `first` try, the calls whose script Redis did not know (not loaded yet, or flushed by SCRIPT
    FLUSH or a restart).
    """
    unknown: list[Call] = []
    for call, reply in zip(calls, replies, strict=True):
        if first and isinstance(reply, NoScriptError):
            unknown.append(call)
        elif isinstance(reply, Exception):
            call.error = unavailable(reply, call.script.name)
        else:
            call.reply = reply
    return unknown


def _failure(batch: list[Call]) -> StoreUnavailable | None:
    """The first failure in `batch` that says Redis cannot serve (the calls queued behind it then share it)."""
    for call in batch:
        if isinstance(call.error, StoreUnavailable):
            return call.error
    return None
