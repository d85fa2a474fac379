"""What a failed Redis command means for the fleet: Redis cannot serve (counted by the guard), or a call's own error."""

from __future__ import annotations

import logging
from typing import Final

from rfobs._secrets import scrub_text
from rfobs.exceptions import RfobsError

__all__ = ["StoreUnavailable", "Uncounted", "unavailable"]

_log = logging.getLogger("rfobs")
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


class Uncounted(Exception):
    """A failure that says nothing about Redis's health (a busy pool, a script's own error): not held against it."""

    def __init__(self, unavailable: StoreUnavailable) -> None:
        super().__init__(str(unavailable))
        self.unavailable = unavailable


def unavailable(error: BaseException, script_name: str | None = None) -> StoreUnavailable | Uncounted:
    """What a redis-py error means: `StoreUnavailable` (Redis cannot serve: counted by the guard) or `Uncounted`."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    if isinstance(error, (RedisTimeoutError, TimeoutError)):
        return StoreUnavailable("timeout")
    if isinstance(error, RedisConnectionError) and str(error).startswith(("No connection available", "Too many conn")):
        return Uncounted(StoreUnavailable("pool_busy", "every connection is in use; raise redis.max_connections"))
    if isinstance(error, (RedisConnectionError, OSError)):
        return StoreUnavailable("connection", type(error).__name__)
    text = str(error)
    # redis-py 8 strips the error code from some messages (`OutOfMemoryError("command not allowed ...")`).
    if isinstance(code := getattr(error, "status_code", None), str) and not text.startswith(code):
        text = f"{code} {text}"
    for prefix in _UNAVAILABLE_PREFIXES:
        if text.startswith(prefix):
            return StoreUnavailable(prefix.lower(), text.split("\n", 1)[0][:120])
    if script_name is not None:
        _log.error("rfobs: the Redis script %s failed: %s", script_name, scrub_text(text[:300]))
    return Uncounted(StoreUnavailable("error", type(error).__name__))
