from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rfobs._settings_env import SEED_ALIASES
from rfobs.testing import reset_global_telemetry


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Each test starts in an empty working directory with no RFOBS_*, OTEL_* or seed deployment variables."""
    for name in list(os.environ):
        if name.startswith(("RFOBS_", "OTEL_")) or name in SEED_ALIASES:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def clean_globals() -> Iterator[None]:
    """For tests that call rfobs.init(): OpenTelemetry's set-once globals are reset around them."""
    reset_global_telemetry()
    yield
    reset_global_telemetry()
