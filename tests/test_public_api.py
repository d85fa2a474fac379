"""Each public package's `__all__` is sorted, names exactly its public attributes, and every name resolves."""

from __future__ import annotations

import importlib
import types

import pytest

import rfobs
from rfobs._compat import SEED_NAMES

PUBLIC = ["rfobs", "rfobs.instrument", "rfobs.testing", "rfobs.health", "rfobs.perf", "rfobs.propagation"]


@pytest.mark.parametrize("name", PUBLIC)
def test_all_is_sorted_and_every_name_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported)
    for attribute in exported:  # lazily loaded names too: each access imports its module
        assert getattr(module, attribute) is not None, attribute


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_definition_is_exported(name: str) -> None:
    module = importlib.import_module(name)
    public = {
        attribute
        for attribute, value in vars(module).items()
        if not attribute.startswith("_")
        and callable(value)
        and not isinstance(value, types.ModuleType)
        # Defined in the module itself or in its package's own submodules, not imported from elsewhere in rfobs.
        and (getattr(value, "__module__", "") == name or getattr(value, "__module__", "").startswith(f"{name}."))
    }
    assert public <= set(module.__all__)


@pytest.mark.parametrize("name", ["rfobs", "rfobs.instrument"])
def test_lazy_names_are_exactly_the_rest_of_all(name: str) -> None:
    # `__all__` has to be a literal for type checkers; this keeps it equal to what the package can load.
    module = importlib.import_module(name)
    lazy = set(module._LAZY)
    eager = {attribute for attribute in module.__all__ if attribute in vars(module)} - lazy
    assert set(module.__all__) == eager | lazy


def test_every_seed_name_is_public_and_comes_from_its_module() -> None:
    for name, module_name in SEED_NAMES.items():
        assert name in rfobs.__all__
        assert getattr(rfobs, name) is getattr(importlib.import_module(module_name), name)


def test_storage_backends_stay_off_the_agent_facing_api() -> None:
    from rfobs.instrument import backends

    for name in ("MemoryBackend", "RateLimitBackend", "TokenBucket", "SlidingWindow"):
        assert name not in rfobs.instrument.__all__
        assert hasattr(backends, name)
