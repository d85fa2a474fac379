"""Telemetry across process boundaries: forked children, multiprocessing workers and SIGTERM.

- **fork**: OpenTelemetry's tracer and meter providers re-detect their resource in a forked child with a thread
  pool. `concurrent.futures.thread` resets its own lock in the child from an at-fork handler of its own, and
  at-fork handlers run in the order they were registered: if that module is first imported after a provider
  registers its handler, the provider runs first and waits forever on the lock still held from the fork.
  `import_before_providers()` fixes the order.
- **a forked child starts clean**: metric state inherited from the parent is reset (the parent reports it), so
  the counts of all processes add up; the parent's servers are let go of, not served or stopped.
- **multiprocessing workers** end with `os._exit`, which skips `atexit`: a `multiprocessing.util.Finalize` in the
  worker flushes its telemetry first (Pool, ProcessPoolExecutor and Process, under fork and spawn).
- **SIGTERM** (`docker stop`, Kubernetes): unless the application installed a handler of its own, open spans
  are ended as terminated, everything is flushed within `sdk.shutdown_timeout`, and the process then dies by
  SIGTERM as it would have without rfobs.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider

__all__ = [
    "ShutsDown",
    "at_fork_in_child",
    "die_by_sigterm",
    "import_before_providers",
    "install_sigterm_handler",
    "is_multiprocessing_child",
    "restart_meter_provider_after_fork",
    "run_at_worker_exit",
    "uninstall_sigterm_handler",
    "when_worker_starts",
]

_log = logging.getLogger("rfobs")


class ShutsDown(Protocol):
    """What a worker's exit hook calls: the handle `rfobs.init()` returned."""

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush and stop."""
        ...


def import_before_providers() -> None:
    """Import the thread pool module before any provider registers its at-fork handler (see module docstring)."""
    import concurrent.futures.thread  # noqa: F401  # pyright: ignore[reportUnusedImport]


def restart_meter_provider_after_fork(provider: MeterProvider) -> None:
    """In a forked child: forget the aggregated points the parent recorded, so each process reports its own.

    The SDK gives the child's resource a new `service.instance.id` itself (its process-dependent detector, which
    `_pipeline` uses too), so pre-fork workers pushing through one Collector keep separate series; the child's
    `process.pid` is set here. Reaches into the SDK's storage (opentelemetry-sdk is pinned;
    `tests/reliability/test_fork.py` covers it). The instruments stay valid: their storage is rebuilt on the next
    measurement.
    """
    from opentelemetry.sdk.resources import Resource

    provider._update_resource(Resource({"process.pid": os.getpid()}))  # pyright: ignore[reportPrivateUsage]
    consumer: Any = provider._measurement_consumer  # pyright: ignore[reportPrivateUsage]
    consumer._lock = threading.Lock()
    for storage in consumer._reader_storages.values():
        storage._lock = threading.RLock()
        storage._instrument_view_instrument_matches.clear()


def is_multiprocessing_child() -> bool:
    """Whether this process was started by `multiprocessing` (a Pool or executor worker, a `Process`)."""
    multiprocessing = sys.modules.get("multiprocessing")
    return multiprocessing is not None and multiprocessing.parent_process() is not None


def run_at_worker_exit(handle: ShutsDown) -> None:
    """Shut `handle` down when this multiprocessing worker exits (its `os._exit` skips `atexit`)."""
    from multiprocessing import util

    util.Finalize(None, handle.shutdown, exitpriority=100)


def when_worker_starts(handle: ShutsDown, start: Callable[[Any], None]) -> None:
    """In a forked child that becomes a multiprocessing worker, call `start(handle)` as the worker starts.

    multiprocessing clears the finalizers a child inherits when its worker starts, then runs its after-fork
    hooks: a worker's finalizer has to be registered from one of those. Only when multiprocessing is in use.
    """
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        util.register_after_fork(handle, start)


def at_fork_in_child(method: Callable[[], None]) -> None:
    """Run the bound `method` in a forked child while its object is alive (held weakly: nothing leaks)."""
    reference = weakref.WeakMethod(method)

    def after_in_child() -> None:
        if (bound := reference()) is not None:
            bound()

    os.register_at_fork(after_in_child=after_in_child)


Handler = Callable[[int, FrameType | None], Any]
# rfobs's handler while installed, and what it replaced (restored by `uninstall_sigterm_handler`).
_installed: tuple[Handler, Any] | None = None


def install_sigterm_handler(
    on_terminate: Callable[[], bool], on_application_exit: Callable[[], None], *, chain_only: bool = False
) -> bool:
    """Handle SIGTERM for the process's telemetry. True if a handler was installed.

    - With no handler installed (the default disposition): run `on_terminate`, then die by SIGTERM if it returned
      True (False: the process must finish something first, and calls `die_by_sigterm()` itself).
    - With the application's own handler (a server's graceful shutdown, say): call `on_application_exit`, which
      must not block, then the application's handler exactly as before. Servers such as uvicorn restore the
      default disposition after their graceful shutdown and raise SIGTERM again, so no exit hook would run:
      `on_application_exit` makes telemetry leave as it is recorded until then.
    - Ignored (`SIG_IGN`) or set from C: left alone. Python allows handlers only in the main thread.

    With `chain_only`, the default disposition is left alone (a multiprocessing worker: see `rfobs.sdk`).
    """
    global _installed
    if threading.current_thread() is not threading.main_thread():
        return False
    previous = signal.getsignal(signal.SIGTERM)
    handle: Handler
    if previous is signal.SIG_DFL and chain_only:
        return False
    if previous is signal.SIG_DFL:

        def flush_then_die(_signum: int, _frame: FrameType | None) -> None:
            die = True
            try:
                die = on_terminate()
            except Exception:  # dying must go on whatever telemetry does
                _log.warning("rfobs: flushing at SIGTERM failed", exc_info=True)
            finally:
                if die:
                    die_by_sigterm()

        handle = flush_then_die
    elif callable(previous):
        application_handler: Handler = previous

        def chain(signum: int, frame: FrameType | None) -> Any:
            try:
                on_application_exit()
            except Exception:  # the application's handler must run whatever telemetry does
                _log.warning("rfobs: preparing telemetry for SIGTERM failed", exc_info=True)
            return application_handler(signum, frame)

        handle = chain
    else:
        return False
    signal.signal(signal.SIGTERM, handle)
    _installed = (handle, previous)
    return True


def die_by_sigterm() -> None:
    """End the process by SIGTERM with the default disposition, as if rfobs had never handled it."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def uninstall_sigterm_handler() -> None:
    """Put back what rfobs's handler replaced, if rfobs's handler is still the installed one."""
    global _installed
    installed, _installed = _installed, None
    if installed is None or threading.current_thread() is not threading.main_thread():
        return
    handler, previous = installed
    if signal.getsignal(signal.SIGTERM) is handler:
        signal.signal(signal.SIGTERM, previous)
