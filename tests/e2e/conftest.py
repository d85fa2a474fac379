# pyright: strict
"""Fixtures and marking for the end-to-end tests, which run against real backends.

Everything collected under ``tests/e2e`` is marked ``e2e`` (select with ``-m e2e``, skip with
``-m "not e2e"``). The servers are started once per session; tests isolate themselves by key
prefix (Redis) or project name (Phoenix: ``x-project-name`` header or the resource attribute
``openinference.project.name``).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Generator
from pathlib import Path
from types import FrameType

import pytest

from tests.e2e.phoenix_server import PhoenixHandle, phoenix
from tests.e2e.redis_server import RedisHandle, redis_server

_E2E_DIR = Path(__file__).resolve().parent


def _sigterm_as_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``e2e`` marker and make SIGTERM stop the servers cleanly.

    By default SIGTERM ends Python without running ``finally`` blocks, which would orphan the
    servers (they run in their own sessions). As a KeyboardInterrupt, pytest unwinds the
    ``with`` blocks and session fixtures instead. A handler someone else installed is kept.
    """
    config.addinivalue_line("markers", "e2e: end-to-end test against real backends (Prometheus, Redis, Phoenix)")
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_as_keyboard_interrupt)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test collected under ``tests/e2e`` with ``pytest.mark.e2e``."""
    for item in items:
        if item.path.resolve().is_relative_to(_E2E_DIR):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def redis_handle() -> Generator[RedisHandle]:
    """One throw-away Redis for the whole session."""
    with redis_server() as handle:
        yield handle


@pytest.fixture(scope="session")
def redis_url(redis_handle: RedisHandle) -> str:
    """``redis://127.0.0.1:PORT/0`` of the session Redis; use unique key prefixes per test."""
    return redis_handle.url


@pytest.fixture(scope="session")
def phoenix_server() -> Generator[PhoenixHandle]:
    """One Phoenix for the whole session (first use builds its venv, ~70 s; startup ~10-12 s).

    Tests must send to their own project (``x-project-name`` header or resource attribute
    ``openinference.project.name``) so they do not see each other's spans.
    """
    with phoenix() as handle:
        yield handle
