"""`RedisRateLimitBackend`: one rate limit shared by every process of a fleet, one Lua script per decision.

A token bucket is GCRA on one key per limit (its theoretical arrival time: O(1) memory and time, cost-weighted,
burst = capacity, waiters reserve and sleep once, in arrival order). A sliding window is a sorted set of the
admissions still in the window with their costs, exact: no reservations, a waiter asks again. Both run on Redis
server time and answer relative waits, so worker clocks never matter.

When Redis cannot answer (`StoreUnavailable`: down, slow past the store's timeout, full, or resting behind the
store's guard) the backend decides by its `on_failure` policy; each such decision is counted as
`rate_limit_requests{decision="fallback"}` and leaves a `rate_limit.fallback` event on the current span.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any, Final, Literal

from rfobs import _check
from rfobs.fleet._limiter_scripts import GCRA, GCRA_REFUND, SLIDING_WINDOW
from rfobs.fleet._store import RedisStore, Script, StoreUnavailable
from rfobs.instrument._limiter_telemetry import note_fallback
from rfobs.instrument.backends import Limit, MemoryBackend, SlidingWindow, TokenBucket, split_slot

__all__ = ["LimiterFaultPolicy", "RedisRateLimitBackend"]

LimiterFaultPolicy = Literal["fail_open", "fail_closed", "local"]
_POLICIES: Final[tuple[LimiterFaultPolicy, ...]] = ("fail_open", "fail_closed", "local")
_US: Final = 1_000_000.0


class RedisRateLimitBackend:
    """Limiter state in Redis, shared by every limiter, thread, task and process that uses this backend.

    Pass it as `RateLimiter(..., backend=...)`, or let `rfobs.init()` make it the default
    (`ratelimit.backend = "redis"`). Per-key and adaptive limits work as in memory, since every call sends the
    limit it enforces. Keys are `store.key("rl:tb", limiter_name, key)` for a token bucket, and for a sliding window
    `store.key("rl:sw", limiter_name, key)` (the sorted set) plus the same with `:m` (its hash, in the same Cluster
    slot): the algorithm is part of the key, so workers of a rolling deploy that changes a limiter's algorithm keep
    separate state instead of meeting the other's key type (`WRONGTYPE`).

    A sliding window is exact where the caller runs: an admission stays in the window for `window` plus the
    store's timeout, the longest its reply can take to reach the caller, so N+1 admissions land in one window as
    the callers see them only if a caller is held up longer than that after the reply arrives (a blocked event
    loop, a thread waiting for the GIL). The price is a rate of N per (window + timeout).

    Args:
        store: The Redis connection.
        on_failure: What a decision does when Redis cannot answer: "fail_open" admits the call (the default:
            an outage of the limiter's store does not stop the agent), "fail_closed" refuses it
            (`RateLimited` with the store's `retry_after`), "local" applies the limit in this process,
            scaled by `local_share`.
        local_share: The share of the fleet's rate one process allows itself under "local" (0 < share <= 1;
            with 4 workers, 0.25 keeps the fleet near its limit).

    Raises:
        ConfigError: An argument is invalid.
    """

    def __init__(
        self, store: RedisStore, *, on_failure: LimiterFaultPolicy = "fail_open", local_share: float = 0.25
    ) -> None:
        owner = "RedisRateLimitBackend"
        if not isinstance(store, RedisStore):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise _check.bad(owner, "store", store, "a rfobs.fleet.RedisStore")
        self.store = store
        self.on_failure: LimiterFaultPolicy = _check.one_of(owner, "on_failure", on_failure, _POLICIES)
        self.local_share = _check.number(owner, "local_share", local_share, gt=0, le=1, allowed="a number in (0, 1]")
        self._local = MemoryBackend()
        self._margin_us = store.timeout * _US

    def __repr__(self) -> str:
        return f"RedisRateLimitBackend({self.store!r}, on_failure={self.on_failure!r})"

    def acquire(self, limit: Limit, key: Hashable, cost: float, now: float, max_wait: float) -> float:
        """Take or reserve `cost` units for `key` on Redis (see `RateLimitBackend.acquire`); `now` is not used."""
        script, keys, args = self._call(limit, key, cost, max_wait)
        try:
            return int(self.store.run(script, keys, args)) / _US
        except StoreUnavailable as failure:
            return self._fallback(limit, key, cost, now, max_wait, failure)

    async def acquire_async(self, limit: Limit, key: Hashable, cost: float, now: float, max_wait: float) -> float:
        """`acquire` on this event loop's asyncio client: the round trip never blocks the loop."""
        script, keys, args = self._call(limit, key, cost, max_wait)
        try:
            return int(await self.store.arun(script, keys, args)) / _US
        except StoreUnavailable as failure:
            return self._fallback(limit, key, cost, now, max_wait, failure)

    def refund(self, limit: Limit, key: Hashable, cost: float, at: float) -> None:
        """Give back a cancelled waiter's token-bucket reservation (a sliding window reserves nothing)."""
        if isinstance(limit, TokenBucket):
            try:
                self.store.run(GCRA_REFUND, [self._key("rl:tb", key)], [_US / limit.rate, cost])
            except StoreUnavailable:
                self._local.refund(limit.scaled(self.local_share), key, cost, at)

    async def refund_async(self, limit: Limit, key: Hashable, cost: float, at: float) -> None:
        """`refund` on this event loop's asyncio client."""
        if isinstance(limit, TokenBucket):
            try:
                await self.store.arun(GCRA_REFUND, [self._key("rl:tb", key)], [_US / limit.rate, cost])
            except StoreUnavailable:
                self._local.refund(limit.scaled(self.local_share), key, cost, at)

    def _key(self, kind: str, slot: Hashable) -> str:
        name, key = split_slot(slot)
        return self.store.key(kind, name, key)

    def _call(self, limit: Limit, slot: Hashable, cost: float, max_wait: float) -> tuple[Script, list[str], list[Any]]:
        wait_us = -1 if math.isinf(max_wait) else max(0, math.floor(max_wait * _US))
        if isinstance(limit, SlidingWindow):
            window_us = limit.window * _US + self._margin_us
            key = self._key("rl:sw", slot)
            return (
                SLIDING_WINDOW,
                [key, key + ":m"],  # after the closing brace: the same hash tag, so the same Cluster slot
                [repr(float(limit.limit)), repr(window_us), repr(float(cost)), wait_us],
            )
        return (
            GCRA,
            [self._key("rl:tb", slot)],
            [repr(_US / limit.rate), repr(float(limit.capacity)), repr(float(cost)), wait_us],
        )

    def _fallback(
        self, limit: Limit, slot: Hashable, cost: float, now: float, max_wait: float, failure: StoreUnavailable
    ) -> float:
        policy = self.on_failure
        note_fallback(split_slot(slot)[0], policy, failure.reason)
        if policy == "fail_open":
            return 0.0
        if policy == "fail_closed":
            return -self.store.retry_after
        return self._local.acquire(limit.scaled(self.local_share), slot, cost, now, max_wait)
