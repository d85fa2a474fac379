"""Adaptive rate control for `RateLimiter`: the settings (`Adaptive`) and the AIMD arithmetic that applies them.

The controller only computes: which share of the configured rate is in force after a batch of samples or a
push-back. The limiter owns the lock it runs under and turns the share into the limit it enforces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rfobs import _check

__all__ = ["Adaptive", "RateController"]


@dataclass(frozen=True, slots=True)
class Adaptive:
    """How an adaptive limiter moves its rate: additive increase, multiplicative decrease (AIMD).

    Samples (`RateLimiter.record`) are judged in consecutive batches of `window`. A batch whose `percentile`
    latency exceeds `target_latency`, or whose error rate exceeds `max_error_rate`, multiplies the rate by
    `decrease` (not below `min_factor` of the configured rate); a healthy batch adds `increase` of the configured
    rate back, up to all of it. `RateLimiter.backoff()` (a 429 or `Retry-After` seen by `@retry`) also decreases.
    A changed rate applies from each key's next call on (a bucket refills its idle gap at the rate in force then).

    Attributes:
        target_latency: Seconds; None judges by error rate only.
        percentile: Which latency percentile is compared with the target (0.9 is p90).
        max_error_rate: The error share a batch may have and still count as healthy.
        window: Samples per batch.
        decrease: The factor applied on an unhealthy batch or a backoff.
        increase: The share of the configured rate restored per healthy batch.
        min_factor: The floor, as a share of the configured rate.
    """

    target_latency: float | None = None
    percentile: float = 0.9
    max_error_rate: float = 0.1
    window: int = 20
    decrease: float = 0.5
    increase: float = 0.1
    min_factor: float = 0.1

    def __post_init__(self) -> None:
        owner = "Adaptive"
        if self.target_latency is not None:
            _check.number(owner, "target_latency", self.target_latency, gt=0, allowed="seconds > 0, or None")
        _check.number(owner, "percentile", self.percentile, gt=0, le=1, allowed="a number in (0, 1]")
        _check.number(owner, "max_error_rate", self.max_error_rate, ge=0, lt=1, allowed="a number in [0, 1)")
        _check.integer(owner, "window", self.window, ge=1, allowed="an integer >= 1 (samples per batch)")
        _check.number(owner, "decrease", self.decrease, gt=0, lt=1, allowed="a number in (0, 1)")
        _check.number(owner, "increase", self.increase, gt=0, le=1, allowed="a number in (0, 1]")
        _check.number(owner, "min_factor", self.min_factor, gt=0, le=1, allowed="a number in (0, 1]")


class RateController:
    """One limiter's AIMD state: the samples of the batch being filled and the share of the rate in force.

    Not thread-safe on its own: the limiter calls it under its lock.
    """

    __slots__ = ("_errors", "_samples", "factor", "settings")

    def __init__(self, settings: Adaptive) -> None:
        self.settings = settings
        self.factor = 1.0
        """The share of the configured rate in force."""
        self._samples: list[float] = []
        self._errors = 0

    def record(self, latency_s: float, ok: bool) -> float | None:
        """Add one call's sample; the new share of the rate when it completes a batch that moves it, else None."""
        settings = self.settings
        self._samples.append(latency_s)
        if not ok:
            self._errors += 1
        count = len(self._samples)
        if count < settings.window:
            return None
        samples, errors = sorted(self._samples), self._errors
        self._samples.clear()
        self._errors = 0
        high = samples[max(0, math.ceil(settings.percentile * count) - 1)]
        slow = settings.target_latency is not None and high > settings.target_latency
        if slow or errors / count > settings.max_error_rate:
            return self._decrease()
        if self.factor < 1.0:
            self.factor = min(1.0, self.factor + settings.increase)
            return self.factor
        return None

    def push_back(self) -> float:
        """The service refused calls (HTTP 429, Retry-After): drop the batch so far and cut the rate."""
        self._samples.clear()
        self._errors = 0
        return self._decrease()

    def _decrease(self) -> float:
        self.factor = max(self.settings.min_factor, self.factor * self.settings.decrease)
        return self.factor
