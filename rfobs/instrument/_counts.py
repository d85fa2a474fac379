"""Per-label-set counts published as an observable counter: counting is a dict update, not a metric call.

A counter can zero-initialise a failure series (`zero=("status", "error")`) next to each success series, so
failure ratios read 0, not empty, for a healthy agent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Observation

__all__ = ["Counts", "Labels"]

Labels = tuple[tuple[str, str], ...]


def _zero_series(labels: Labels, key: str, value: str) -> Labels | None:
    """`labels` with the value of `key` replaced by `value`, or None when `labels` has no `key` label."""
    if not any(name == key for name, _ in labels):
        return None
    return tuple((name, value if name == key else current) for name, current in labels)


class Counts:
    """Plain per-label-set counts, published as an observable counter.

    Counting costs a dict update, not a metric call (DESIGN decision 10).

    Args:
        zero: A `(key, value)` label, e.g. `("status", "error")`: the first time a label set with a `key` label
            is counted, the same set with `key=value` is published too, at 0 until it is counted itself. A
            failure series then exists from an operation's first call on, so `rate(failures) / rate(all)` is 0
            for a healthy agent, not empty (Prometheus's "avoid missing metrics").
    """

    def __init__(self, zero: tuple[str, str] | None = None) -> None:
        self._lock = threading.Lock()
        self._counts: dict[Labels, int] = {}
        self._sources: list[Callable[[], Iterable[tuple[Labels, int]]]] = []
        self._zero = zero

    def add(self, labels: Labels, amount: int = 1) -> None:
        """Add `amount` to the count of `labels`."""
        with self._lock:
            counts = self._counts
            n = counts.get(labels)
            if n is not None:
                counts[labels] = n + amount
                return
            counts[labels] = amount
            # Once per label set: its zero series, if any (the set itself when it is the failure series).
            if self._zero is not None and (other := _zero_series(labels, *self._zero)) is not None:
                counts.setdefault(other, 0)

    def add_source(self, source: Callable[[], Iterable[tuple[Labels, int]]]) -> None:
        """Also publish counts kept elsewhere, read at collection time and summed per label set.

        For a hot path that already holds a lock of its own (the rate limiter): it bumps a plain int under that
        lock instead of paying for `add`'s lock and label hashing on every call.
        """
        with self._lock:
            self._sources.append(source)

    def restart_after_fork(self) -> None:
        """In a forked child: count from zero, since the parent reports what it counted before the fork.

        Sources are read once now and their totals subtracted from then on (a source reads plain integers
        without a lock, so this is safe in a child whose other threads are gone).
        """
        self._lock = threading.Lock()
        inherited: dict[Labels, int] = {}
        for source in self._sources:
            for labels, n in source():
                inherited[labels] = inherited.get(labels, 0) - n
        self._counts = inherited

    def observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        """Observable-counter callback."""
        with self._lock:
            totals = dict(self._counts)
            sources = list(self._sources)
        for source in sources:
            for labels, n in source():
                totals[labels] = totals.get(labels, 0) + n
        return [Observation(n, dict(labels)) for labels, n in totals.items()]
