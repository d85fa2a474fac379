"""Where rate-limiter state lives: the backend protocol, the arithmetic of the two algorithms, and the memory store.

A backend answers one question atomically: may `cost` units for `key` go at `now`, and if not, when? It answers
with one number, so a Redis backend can answer it from a Lua script (`EVALSHA` returning a number) with the same
arithmetic as the memory backend here:

- `0.0`: admitted now; the units are taken.
- `w > 0`: not now. A token bucket *reserves* a slot `w` seconds ahead (its level goes negative, a debt paid back
  by the refill, as in the generic cell rate algorithm): the caller sleeps `w` once and goes, so waiters are
  admitted first come, first served. A sliding window takes nothing: the caller sleeps `w` and asks again, so
  "never more than `limit` in any window" holds at the moment each admission is granted.
- `-r < 0`: refused (the wait `r` would exceed `max_wait`); nothing is taken; `r` is the retry-after estimate.

The `key` a limiter passes is its name for a global limit, or `(name, key)` for a per-key one (`split_slot`).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from collections.abc import Hashable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, cast

from rfobs import _check
from rfobs.exceptions import ConfigError

__all__ = [
    "Algorithm",
    "Limit",
    "MemoryBackend",
    "RateLimitBackend",
    "SlidingWindow",
    "TokenBucket",
    "check_backend",
    "limit_of",
    "split_slot",
]

_NO_KEY: Final = object()

# Floating-point sums of costs drift by a few ulps; a shortfall smaller than this is no shortfall.
_EPSILON: Final = 1e-9


@dataclass(frozen=True, slots=True)
class TokenBucket:
    """A bucket of `capacity` tokens refilled at `rate` tokens per second; a call takes `cost` tokens.

    Attributes:
        rate: Tokens added per second.
        capacity: The most tokens the bucket holds: the burst admitted at once after a quiet spell.
    """

    rate: float
    capacity: float

    @property
    def max_cost(self) -> float:
        """The largest cost one call can ever take."""
        return self.capacity

    def scaled(self, factor: float) -> TokenBucket:
        """The same bucket refilling at `factor` times the rate (the burst is kept)."""
        return TokenBucket(self.rate * factor, self.capacity)

    def new_state(self, now: float) -> _State:
        """A full bucket."""
        return _Bucket(self, self.capacity, now)


@dataclass(frozen=True, slots=True)
class SlidingWindow:
    """At most `limit` units in any `window` seconds, exactly: a log of admission times (a sliding log).

    An admission at time `a` counts in every window `(t - window, t]` with `a` inside, so no half-open interval
    of `window` seconds ever holds more than `limit` units. Admissions are logged when they are granted, never
    ahead (no reservations): a caller told to wait asks again after the wait. Memory per key is one entry per
    admission still in the window (at most `limit` entries for unit costs).

    Attributes:
        limit: Units admitted per window.
        window: The window's length in seconds.
    """

    limit: float
    window: float

    @property
    def max_cost(self) -> float:
        """The largest cost one call can ever take."""
        return self.limit

    def scaled(self, factor: float) -> SlidingWindow:
        """The same window admitting `factor` times the limit."""
        return SlidingWindow(self.limit * factor, self.window)

    def new_state(self, now: float) -> _State:
        """An empty log."""
        del now
        return _Log(self)


Limit = TokenBucket | SlidingWindow
"""An algorithm and its parameters: what a backend is asked to enforce for one key."""

Algorithm = Literal["token_bucket", "sliding_window"]


def limit_of(owner: str, rate: float, per: float, algorithm: Algorithm, burst: object) -> Limit:
    """The `Limit` of a limiter admitting `rate` per `per` seconds (both checked already).

    Raises:
        ConfigError: `burst` is given for a sliding window or is below 1, or a sliding window's rate is below 1.
    """
    if algorithm == "sliding_window":
        if burst is not None:
            raise ConfigError(
                f"{owner}(burst={burst!r}): burst applies to algorithm='token_bucket'; a sliding window "
                "admits up to `rate` at once"
            )
        if rate < 1:
            raise ConfigError(
                f"{owner}(rate={rate!r}): a sliding window admits at least 1 per window; for fewer, lengthen `per`"
            )
        return SlidingWindow(rate, per)
    capacity = max(1.0, rate) if burst is None else _check.number(owner, "burst", burst, ge=1)
    return TokenBucket(rate / per, capacity)


class _State(Protocol):
    """One key's state; `limit` is the limit it was last asked to enforce (adaptive limiters change it)."""

    limit: Any

    def take(self, cost: float, now: float, max_wait: float) -> float: ...
    def give_back(self, cost: float, at: float) -> None: ...
    def free_at(self) -> float: ...


class _Bucket:
    __slots__ = ("last", "limit", "tokens")

    def __init__(self, limit: TokenBucket, tokens: float, last: float) -> None:
        self.limit = limit
        self.tokens = tokens
        self.last = last

    def take(self, cost: float, now: float, max_wait: float) -> float:
        limit, tokens = self.limit, self.tokens
        # A caller that read the clock before another took the lock brings a `now` older than `last`; its wait is
        # measured from its own `now`, so the lag is added, or it would be admitted that much early.
        lag = 0.0
        if now > self.last:
            tokens += (now - self.last) * limit.rate
            if tokens > limit.capacity:
                tokens = limit.capacity
            self.last = now
        else:
            lag = self.last - now
        if tokens >= cost:
            self.tokens = tokens - cost
            return 0.0
        wait = (cost - tokens) / limit.rate + lag
        if wait > max_wait:
            self.tokens = tokens
            return -wait
        self.tokens = tokens - cost  # a debt: later callers queue behind this reservation
        return wait

    def give_back(self, cost: float, at: float) -> None:
        del at
        self.tokens = min(self.limit.capacity, self.tokens + cost)

    def free_at(self) -> float:
        return self.last + (self.limit.capacity - self.tokens) / self.limit.rate


class _Log:
    __slots__ = ("entries", "limit", "total")

    def __init__(self, limit: SlidingWindow) -> None:
        self.limit = limit
        self.entries: deque[tuple[float, float]] = deque()  # (admission time, cost), times non-decreasing
        self.total = 0.0

    def take(self, cost: float, now: float, max_wait: float) -> float:
        limit, entries = self.limit, self.entries
        window = limit.window
        if entries and entries[-1][0] > now:
            # A caller that read the clock before another took the lock: log it no earlier than the last one, so
            # the log stays sorted and the entry leaves no sooner than the admission it follows.
            now = entries[-1][0]
        horizon = now - window
        while entries and entries[0][0] <= horizon:
            self.total -= entries.popleft()[1]
        if not entries:
            self.total = 0.0
        # A cost above a lowered (adaptive) limit still goes through, alone in its window.
        excess = self.total + cost - max(limit.limit, cost)
        if excess <= _EPSILON:
            entries.append((now, cost))
            self.total += cost
            return 0.0
        wait = window  # not reached: the entries hold more than the excess
        dropped = 0.0
        for admitted, units in entries:
            dropped += units
            if dropped >= excess - _EPSILON:
                wait = admitted + window - now
                break
        return -wait if wait > max_wait else wait

    def give_back(self, cost: float, at: float) -> None:
        del cost, at  # a sliding window never reserves: a waiter that gives up took nothing

    def free_at(self) -> float:
        return self.entries[-1][0] + self.limit.window if self.entries else -math.inf


class RateLimitBackend(Protocol):
    """Stores per-key limiter state and applies a `Limit` to it atomically.

    `now` is the caller's monotonic clock reading. A backend shared between processes (Redis) may use its own
    clock instead (Redis `TIME`), since the answer is relative to the moment of the call. A backend that cannot
    reach its store decides by its own fault policy and counts the fallback; it never raises for it.

    A backend may also have `acquire_async` and `refund_async`, coroutine functions with the same arguments:
    the limiter awaits them in its async paths, so a round trip to a store never blocks the event loop.
    """

    def acquire(self, limit: Limit, key: Hashable, cost: float, now: float, max_wait: float) -> float:
        """Take or reserve `cost` units for `key` under `limit`.

        Returns:
            0.0 when admitted now; `w > 0` when not now (a token bucket reserved a slot `w` seconds ahead, a
            sliding window took nothing and the caller asks again after `w`); or `-r` when refused because `r`
            exceeds `max_wait` (nothing taken).
        """
        ...

    def refund(self, limit: Limit, key: Hashable, cost: float, at: float) -> None:
        """Give back a reservation for `at` (on the caller's clock) that will not be used: its waiter was cancelled."""
        ...


class MemoryBackend:
    """Limiter state in this process's memory, behind one lock (thread-safe; never awaits while holding it).

    Memory stays bounded: a key whose state has returned to that of a new key (a full bucket, an empty window)
    is dropped by a sweep that runs at most once per `sweep_interval` seconds, which changes no decision. Above
    `max_keys` keys the least recently used key is evicted even if it is not idle; that key's next call starts
    from a fresh state (more lenient, never stricter).

    Args:
        max_keys: The most keys held at once.
        sweep_interval: Seconds between sweeps for idle keys.
        lock: False when the caller serializes every call itself (a `RateLimiter` does, for the backend it
            creates, so one lock covers both the decision and its count).
    """

    def __init__(self, max_keys: int = 10_000, sweep_interval: float = 1.0, *, lock: bool = True) -> None:
        self._max_keys = _check.integer("MemoryBackend", "max_keys", max_keys, ge=1)
        self._sweep_interval = _check.number(
            "MemoryBackend", "sweep_interval", sweep_interval, gt=0, allowed="seconds > 0"
        )
        self._lock: AbstractContextManager[object] = threading.Lock() if lock else nullcontext()
        self._states: OrderedDict[Hashable, _State] = OrderedDict()
        self._next_sweep = -math.inf
        self._hot_key: Hashable = _NO_KEY
        self._hot: _State = _Bucket(TokenBucket(1.0, 1.0), 1.0, 0.0)  # never used while _hot_key is _NO_KEY

    def __len__(self) -> int:
        """The number of keys held."""
        return len(self._states)

    def acquire(self, limit: Limit, key: Hashable, cost: float, now: float, max_wait: float) -> float:
        """Take or reserve `cost` units for `key` under `limit` (see `RateLimitBackend.acquire`)."""
        with self._lock:
            return self.acquire_unlocked(limit, key, cost, now, max_wait)

    def acquire_unlocked(self, limit: Limit, key: Hashable, cost: float, now: float, max_wait: float) -> float:
        """`acquire` for a caller that holds its own lock around every call to this backend."""
        if now >= self._next_sweep:
            self._sweep(now)
        if key is self._hot_key:
            # The same key object as last time (a global limiter's): skip the lookup and the LRU update.
            state = self._hot
        else:
            states = self._states
            if self._hot_key is not _NO_KEY:
                states.move_to_end(self._hot_key)  # its hits skipped the LRU update
            state = states.get(key)
            if state is None:
                if len(states) >= self._max_keys:
                    self._evict()
                state = states[key] = limit.new_state(now)
            else:
                states.move_to_end(key)
            self._hot_key, self._hot = key, state
        state.limit = limit
        return state.take(cost, now, max_wait)

    def refund(self, limit: Limit, key: Hashable, cost: float, at: float) -> None:
        """Give back an unused reservation (see `RateLimitBackend.refund`)."""
        with self._lock:
            state = self._states.get(key)
            if state is not None:
                state.limit = limit
                state.give_back(cost, at)

    def _sweep(self, now: float) -> None:
        # Oldest-used first; stop at the first key still busy: the rest were used more recently.
        states = self._states
        while states:
            key, state = next(iter(states.items()))
            if state.free_at() > now:
                break
            del states[key]
            if key == self._hot_key:
                self._hot_key = _NO_KEY
        self._next_sweep = now + self._sweep_interval

    def _evict(self) -> None:
        key, _ = self._states.popitem(last=False)
        if key == self._hot_key:
            self._hot_key = _NO_KEY


def split_slot(slot: Hashable) -> tuple[str, Hashable]:
    """The limiter name and the per-call key (None for a global limit) of the `key` a limiter passes a backend."""
    if isinstance(slot, tuple):
        name, key = cast("tuple[str, Hashable]", slot)
        return name, key
    return str(slot), None


def check_backend(owner: str, backend: object) -> RateLimitBackend | None:
    """`backend` if it is None or has `acquire` and `refund` methods.

    Raises:
        ConfigError: Anything else.
    """
    if backend is not None and not all(callable(getattr(backend, m, None)) for m in ("acquire", "refund")):
        raise _check.bad(owner, "backend", backend, "a RateLimitBackend (acquire, refund) or None")
    return cast("RateLimitBackend | None", backend)
