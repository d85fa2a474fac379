"""Process-wide state in one place: what `rfobs.init()` set up, read by the layers below it, and one `reset()`.

The decorator core, the policies and the health checks never import `rfobs.sdk`: they read the slot they need
here, and `init()` fills the slots. Modules that keep a process-wide cache of their own (the internal error
count, the text limits, the scrub patterns, ...) register how to forget it with `on_reset`, so that
`reset()` (called by `rfobs.testing` between tests) is the one way back to a fresh process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from rfobs._settings_model import Settings

__all__ = [
    "DEFAULT_NAMESPACE",
    "ActiveState",
    "activate",
    "active",
    "current",
    "deactivate",
    "last_loaded_settings",
    "note_loaded_settings",
    "on_reset",
    "reset",
]

DEFAULT_NAMESPACE: Final = "researchflow_agents"
"""The metric namespace before `init()` (and the default of `metrics.namespace`)."""


@dataclass(frozen=True)
class ActiveState:
    """What the active `init()` set up; every field is None (or the default) before it and after shutdown.

    Attributes:
        settings: The validated settings in effect.
        namespace: The metric namespace (`metrics.namespace`).
        health_checker: The `rfobs.health.HealthChecker` built from the settings.
        prometheus_registry: The `prometheus_client` registry rfobs's metrics are exposed through.
        limiter_backend: The `RateLimitBackend` of limiters given none (`ratelimit.backend=redis`), or None for
            their own in-process one.
        breaker_backend: The `BreakerBackend` of breakers given none (`breaker.backend=redis`), or None for the
            in-process default.
    """

    settings: Settings | None = None
    namespace: str = DEFAULT_NAMESPACE
    health_checker: Any = None
    prometheus_registry: Any = None
    limiter_backend: Any = None
    breaker_backend: Any = None


_INACTIVE: Final = ActiveState()
active: ActiveState = _INACTIVE
"""The active state; `current()` returns it. Hot paths read this attribute directly (a call costs ~40 ns)."""
_last_loaded: Settings | None = None
_resetters: list[Callable[[], None]] = []
_lock = threading.Lock()


def _new_lock_in_child() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


def current() -> ActiveState:
    """The state of the active `init()` (one attribute read: cheap enough for any path)."""
    return active


def activate(state: ActiveState) -> None:
    """Make `state` the active one (`rfobs.init()`)."""
    global active
    active = state


def deactivate() -> None:
    """Back to no active `init()` (`shutdown()`)."""
    global active
    active = _INACTIVE


def note_loaded_settings(settings: Settings) -> None:
    """Remember the settings a successful `load_config()` returned (the seed's code loads, then serves metrics)."""
    global _last_loaded
    _last_loaded = settings


def last_loaded_settings() -> Settings | None:
    """The settings of the latest successful `load_config()`, None before any."""
    return _last_loaded


def on_reset(forget: Callable[[], None]) -> None:
    """Register how a module forgets its process-wide state; `reset()` calls it."""
    with _lock:
        _resetters.append(forget)


def reset() -> None:
    """Forget everything rfobs keeps per process: the active state and every registered cache."""
    global _last_loaded
    deactivate()
    _last_loaded = None
    with _lock:
        resetters = list(_resetters)
    for forget in resetters:
        forget()
