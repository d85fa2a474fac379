"""The one guard around rfobs's own per-call work: an internal failure is logged and counted, never raised.

Telemetry must not break the agent. Where rfobs code runs inside a user's call (reading a result's token usage,
capturing arguments, recording metrics), a bug or a hostile object is caught here; the user's result or
exception goes on unchanged. `rfobs.testing`'s `capture` fixture fails a test that triggers one.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable

from opentelemetry.metrics import CallbackOptions, Observation

from rfobs import _state

__all__ = ["count", "internal_error", "observe"]

_log = logging.getLogger("rfobs")
_lock = threading.Lock()
_count = 0
_logged: set[str] = set()


def internal_error(where: str) -> None:
    """Call from an `except Exception:` block: log the first failure of each kind with its traceback, count all."""
    global _count
    with _lock:
        _count += 1
        first = where not in _logged
        _logged.add(where)
    if first:
        _log.warning("rfobs internal error while %s; your code keeps running with less telemetry", where, exc_info=True)


def _after_fork_in_child() -> None:
    global _count, _lock
    _lock = threading.Lock()
    _count = 0  # the parent reports the failures it had before the fork


os.register_at_fork(after_in_child=_after_fork_in_child)


def _forget() -> None:
    global _count
    with _lock:
        _count = 0
        _logged.clear()


_state.on_reset(_forget)


def count() -> int:
    """Internal errors so far in this process."""
    return _count


def observe(_options: CallbackOptions) -> Iterable[Observation]:
    """Observable-counter callback publishing the count."""
    return [Observation(_count)]
