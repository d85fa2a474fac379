"""Each public package's `__all__` is sorted and names exactly its public attributes."""

from __future__ import annotations

import types

import pytest

import rfobs
import rfobs.instrument
import rfobs.testing


@pytest.mark.parametrize("module", [rfobs, rfobs.instrument, rfobs.testing], ids=lambda m: m.__name__)
def test_all_is_sorted_and_complete(module: types.ModuleType) -> None:
    exported = list(module.__all__)
    assert exported == sorted(exported)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and callable(value)
        and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", module.__name__).startswith("rfobs")
    }
    assert public <= set(exported)
    for name in exported:
        assert hasattr(module, name), name


def test_seed_names_are_public() -> None:
    for name in ("track_agent_task", "load_config", "setup_structured_logging"):
        assert name in rfobs.__all__
