"""`RedisCheck`: the health of the Redis a fleet's limiters and breakers share: PING latency and the store's guard.

Registered by `rfobs.init()` when `ratelimit.backend` or `breaker.backend` is `redis`. It probes Redis with a
connection of its own, outside the store's guard, so a health probe neither opens nor closes the guard and still
sees Redis answer while the guard keeps calls away from it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rfobs import _check
from rfobs.health._check_base import BaseCheck
from rfobs.health._model import CheckResult, Status, Value

if TYPE_CHECKING:
    from rfobs.fleet._store import RedisStore

__all__ = ["RedisCheck"]


class RedisCheck(BaseCheck):
    """Whether the fleet's Redis answers, how fast, and whether calls reach it.

    Unhealthy when PING gets no answer within `timeout` (or is refused); degraded when it answers but the
    store's guard is not closed (calls are still answered by the fault policy until the guard's next probe
    succeeds), or when PING is slower than the store's command timeout (calls would time out). Messages show
    the URL with its password as `***`.

    Args:
        store: The store whose Redis and guard are checked.
        name: The check's name.
        critical: Whether failing makes the whole report unhealthy (not ready).
        timeout: Seconds the probe (connect and PING) may take.
    """

    def __init__(self, store: RedisStore, *, name: str = "redis", critical: bool = False, timeout: float = 1.0) -> None:
        super().__init__(name, critical)
        self.store = store
        self.timeout = _check.number("RedisCheck", "timeout", timeout, gt=0, le=60, allowed="seconds > 0 and <= 60")

    async def run(self) -> CheckResult:
        """PING Redis on a fresh connection (timed: the second PING, once connected), then judge with the guard."""
        import redis.asyncio
        from redis.exceptions import RedisError

        started = time.perf_counter()
        target = self.store.shown_url
        guard = self.store.guard.state
        values: dict[str, Value] = {"guard": guard}
        client = redis.asyncio.Redis.from_url(  # pyright: ignore[reportUnknownMemberType]
            self.store.url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            retry_on_timeout=False,
            single_connection_client=True,
        )
        try:
            await client.ping()  # pyright: ignore[reportUnknownMemberType]  # connects
            sent = time.perf_counter()
            await client.ping()  # pyright: ignore[reportUnknownMemberType]  # the round trip a call pays
            latency = time.perf_counter() - sent
        except (RedisError, OSError) as error:
            reason = "no answer" if isinstance(error, TimeoutError) or "imeout" in type(error).__name__ else "refused"
            message = f"{target}: {reason} within {self.timeout:g}s ({type(error).__name__}); fault policy in effect"
            return self._result(Status.UNHEALTHY, message, values, started)
        finally:
            await client.aclose()
        values["latency_seconds"] = latency
        answer = f"PONG in {latency * 1000:.1f} ms"
        if guard != "closed":
            message = f"{target}: {answer}, but the guard is {guard}: calls use the fault policy until it closes"
            return self._result(Status.DEGRADED, message, values, started)
        if latency > self.store.timeout:
            message = f"{target}: {answer}, slower than the {self.store.timeout * 1000:g} ms command timeout"
            return self._result(Status.DEGRADED, message, values, started)
        return self._result(Status.HEALTHY, f"{target}: {answer}", values, started)
