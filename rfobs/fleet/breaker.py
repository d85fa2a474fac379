"""`RedisBreakerBackend`: circuit breakers shared by every process of a fleet, each transition one script on Redis.

A breaker opened by one worker is open in every worker at its next call: the state is read from Redis on every
call (one round trip to enter, one to settle), never cached. Half-open admits exactly `half_open_max_calls`
probes fleet-wide, each a lease that expires so a crashed worker's probe does not hold its slot. Creating a
breaker writes nothing, so a process that starts while a breaker is open sees it open. When Redis cannot answer
(`StoreUnavailable`), the fault policy decides, and each such decision is counted in
`circuit_breaker_fallbacks{breaker, policy}` and put as a `circuit_breaker.fallback` event on the current span.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal, cast

from opentelemetry import trace

from rfobs import _check
from rfobs.fleet._breaker_scripts import ENTER, READ, RESET, SETTLE
from rfobs.fleet._store import RedisStore, StoreUnavailable
from rfobs.instrument import _telemetry as t
from rfobs.instrument._breaker_state import CLOSED, OPEN, Admission, MemoryBreakerBackend, Move, Rules, Ticket

__all__ = ["BreakerFaultPolicy", "RedisBreakerBackend"]

BreakerFaultPolicy = Literal["local", "fail_open", "fail_closed"]
"""What a breaker does while Redis cannot answer (see `RedisBreakerBackend`)."""

_POLICIES: Final = ("local", "fail_open", "fail_closed")
_OPEN_TICKET: Final = ""  # a call admitted by fail_open: its outcome is counted nowhere


class RedisBreakerBackend:
    """Breaker state in Redis: breakers with the same name in any process that uses this Redis share one state.

    Every operation is one Lua script (`EVALSHA`) that reads Redis's clock (`TIME`), so worker clocks never
    matter and `now` and the breaker's `clock=` are not used. Keys are `store.key("cb", name)` (a hash) and the
    same with `:probes` (the half-open leases); both expire after `idle_ttl` (plus the reset timeout) without
    writes. Each breaker passes its own thresholds with every call: processes sharing a name should configure
    it alike.

    Fault policies, used while the store raises `StoreUnavailable` (a timeout, a refused connection, or the
    store's guard keeping calls off a dead Redis):

    - `local` (the default): an in-process breaker with the same rules decides, as if there were no fleet; a
      dependency that fails while Redis is down still gets its breaker. The shared state is untouched.
    - `fail_open`: admit every call, count nothing (the dependency is not protected during the outage).
    - `fail_closed`: refuse every call with `CircuitOpen` (retry after the store's `retry_after`).

    A call admitted by Redis whose outcome cannot reach Redis is not counted anywhere.

    Args:
        store: The Redis connection.
        on_failure: The fault policy: "local", "fail_open" or "fail_closed".
        probe_lease: Seconds a half-open probe holds its slot at most; the lease is the larger of this and the
            breaker's `reset_timeout`. A probe running longer than its lease may let another one in.
        idle_ttl: Seconds without writes after which a breaker's keys expire (a closed breaker forgets its
            counts; an open one keeps its state at least `reset_timeout` longer).

    Raises:
        ConfigError: An argument is invalid.

    Example:
        >>> from rfobs.fleet import RedisStore
        >>> from rfobs.instrument import CircuitBreaker
        >>> backend = RedisBreakerBackend(RedisStore("redis://127.0.0.1:6379/0"), on_failure="fail_closed")
        >>> arxiv = CircuitBreaker("arxiv", failure_threshold=5, backend=backend)
    """

    def __init__(
        self,
        store: RedisStore,
        *,
        on_failure: BreakerFaultPolicy = "local",
        probe_lease: float = 30.0,
        idle_ttl: float = 3600.0,
    ) -> None:
        owner = "RedisBreakerBackend"
        if not isinstance(store, RedisStore):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise _check.bad(owner, "store", store, "a rfobs.fleet.RedisStore")
        if on_failure not in _POLICIES:
            raise _check.bad(owner, "on_failure", on_failure, " or ".join(repr(p) for p in _POLICIES))
        self.store = store
        self.on_failure: BreakerFaultPolicy = on_failure
        self.probe_lease = _check.number(owner, "probe_lease", probe_lease, gt=0, allowed="seconds > 0")
        self.idle_ttl = _check.number(owner, "idle_ttl", idle_ttl, gt=0, allowed="seconds > 0")
        self._local = MemoryBreakerBackend()
        self._keys: dict[str, list[str]] = {}

    def __repr__(self) -> str:
        return f"RedisBreakerBackend({self.store!r}, on_failure={self.on_failure!r})"

    # -- the four operations, sync

    def enter(self, name: str, rules: Rules, now: float) -> Admission:
        """Admit a call or refuse it, atomically on Redis (see `BreakerBackend.enter`)."""
        try:
            reply = self.store.run(ENTER, self._keys_of(name), self._args(rules))
        except StoreUnavailable as error:
            return self._enter_without_redis(name, rules, now, error)
        return _admission(reply)

    def settle(self, name: str, rules: Rules, ticket: Ticket, outcome: int, now: float) -> Move | None:
        """Count the outcome of the call admitted with `ticket` (see `BreakerBackend.settle`)."""
        if isinstance(ticket, int):
            return self._local.settle(name, rules, ticket, outcome, now)  # admitted by the local fallback
        if ticket == _OPEN_TICKET:
            return None
        try:
            reply = self.store.run(SETTLE, self._keys_of(name), [*self._args(rules), ticket, outcome])
        except StoreUnavailable:
            return None
        return _move(reply)

    def reset(self, name: str, rules: Rules, now: float) -> Move | None:
        """Close the breaker for the whole fleet (with `local`, also the in-process one while Redis is away)."""
        try:
            reply = self.store.run(RESET, self._keys_of(name), self._args(rules))
        except StoreUnavailable as error:
            self._fell_back(name, error)
            return self._local.reset(name, rules, now) if self.on_failure == "local" else None
        self._local.reset(name, rules, now)
        return _move(reply)

    def state(self, name: str, rules: Rules, now: float) -> str:
        """The shared state; while Redis is away, what the fault policy decides by (not counted: not a call)."""
        try:
            return cast("str", _text(self.store.run(READ, self._keys_of(name)[:1], ())))
        except StoreUnavailable:
            return self._state_without_redis(name, rules, now)

    # -- the same, awaited (the breaker's async paths use these)

    async def enter_async(self, name: str, rules: Rules, now: float) -> Admission:
        """`enter` on this event loop's asyncio client."""
        try:
            reply = await self.store.arun(ENTER, self._keys_of(name), self._args(rules))
        except StoreUnavailable as error:
            return self._enter_without_redis(name, rules, now, error)
        return _admission(reply)

    async def settle_async(self, name: str, rules: Rules, ticket: Ticket, outcome: int, now: float) -> Move | None:
        """`settle` on this event loop's asyncio client."""
        if isinstance(ticket, int):
            return self._local.settle(name, rules, ticket, outcome, now)
        if ticket == _OPEN_TICKET:
            return None
        try:
            reply = await self.store.arun(SETTLE, self._keys_of(name), [*self._args(rules), ticket, outcome])
        except StoreUnavailable:
            return None
        return _move(reply)

    # -- helpers

    def _keys_of(self, name: str) -> list[str]:
        keys = self._keys.get(name)
        if keys is None:
            state_key = self.store.key("cb", name)
            keys = self._keys[name] = [state_key, f"{state_key}:probes"]
        return keys

    def _args(self, rules: Rules) -> list[str | int | float]:
        return [
            rules.failure_threshold or 0,
            repr(rules.failure_ratio or 0.0),  # repr: the exact double, so the script compares as `Rules` does
            rules.window,
            rules.minimum_calls,
            _ms(rules.reset_timeout),
            rules.half_open_max_calls,
            rules.success_threshold,
            _ms(max(rules.reset_timeout, self.probe_lease)),
            _ms(self.idle_ttl),
        ]

    def _enter_without_redis(self, name: str, rules: Rules, now: float, error: StoreUnavailable) -> Admission:
        self._fell_back(name, error)
        if self.on_failure == "local":
            return self._local.enter(name, rules, now)
        if self.on_failure == "fail_open":
            return _OPEN_TICKET, 0.0, None
        return None, self.store.retry_after, None

    def _state_without_redis(self, name: str, rules: Rules, now: float) -> str:
        if self.on_failure == "local":
            return self._local.state(name, rules, now)
        return CLOSED if self.on_failure == "fail_open" else OPEN

    def _fell_back(self, name: str, error: StoreUnavailable) -> None:
        instruments = t.current()
        if instruments is None:
            return
        instruments.breaker_fallbacks.add((("breaker", name), ("policy", self.on_failure)))
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(
                t.BREAKER_FALLBACK_EVENT,
                {t.BREAKER_NAME: name, t.BREAKER_POLICY: self.on_failure, t.BREAKER_REASON: error.reason},
            )


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _text(value: Any) -> str | Any:
    return value.decode() if isinstance(value, bytes) else value


def _admission(reply: Sequence[Any]) -> Admission:
    ticket, wait_ms, moved = _text(reply[0]), int(reply[1]), _move(reply[2:])
    if ticket:
        return cast("str", ticket), 0.0, moved
    return None, wait_ms / 1000, moved


def _move(reply: Sequence[Any]) -> Move | None:
    origin = _text(reply[0])
    return (origin, cast("str", _text(reply[1]))) if origin else None
