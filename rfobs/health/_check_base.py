"""What the built-in checks share: argument validation, message helpers and `BaseCheck`.

A bad constructor argument raises `ConfigError` naming the check, the argument, its value and what is allowed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Final, cast

from rfobs import _check
from rfobs.health._model import CheckResult, Status, Value

__all__ = [
    "BaseCheck",
    "PathArg",
    "age",
    "names",
    "path",
    "paths",
    "size",
    "status_codes",
    "strings",
]

PathArg = str | os.PathLike[str]
"""A path argument: a string or a `pathlib.Path`."""
_MAX_NAMES: Final = 5  # files or keys named in one message before "and N more"


def paths(owner: str, argument: str, value: object) -> tuple[str, ...]:
    """A non-empty sequence of paths; a bare string is refused (it would be read as one path per character)."""
    if isinstance(value, (str, bytes, os.PathLike)) or not isinstance(value, Sequence):
        raise _check.bad(owner, argument, value, "a list of paths (one path goes in a list too)")
    items = cast("Sequence[object]", value)
    if not items:
        raise _check.bad(owner, argument, value, "at least one path")
    if not all(isinstance(item, (str, os.PathLike)) and os.fspath(cast(PathArg, item)) for item in items):
        raise _check.bad(owner, argument, value, "a list of non-empty paths (str or pathlib.Path)")
    return tuple(os.fspath(cast(PathArg, item)) for item in items)


def path(owner: str, argument: str, value: object) -> str:
    """`value` as a path string, if it is a non-empty str or `os.PathLike`."""
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(cast(PathArg, value)):
        raise _check.bad(owner, argument, value, "a non-empty path (str or pathlib.Path)")
    return os.fspath(cast(PathArg, value))


def strings(owner: str, argument: str, value: object) -> tuple[str, ...]:
    """`value` as a tuple of non-empty strings (a bare string is refused)."""
    items = cast("Sequence[object]", value) if isinstance(value, (list, tuple)) else None
    if items is None or not all(isinstance(item, str) and item for item in items):
        raise _check.bad(owner, argument, value, "a list of non-empty strings")
    return tuple(cast("Sequence[str]", items))


def status_codes(owner: str, argument: str, value: object) -> range | tuple[int, ...]:
    """`value` as HTTP status codes: a non-empty `range` or list of ints within 100-599."""
    if isinstance(value, range):
        codes: Sequence[object] = value
    elif isinstance(value, (list, tuple, set, frozenset)):
        codes = tuple(cast("Sequence[object]", value))
    else:
        codes = ()
    if not codes or not all(isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599 for c in codes):
        raise _check.bad(owner, argument, value, "HTTP status codes within 100-599, e.g. range(200, 400) or [200, 204]")
    return value if isinstance(value, range) else tuple(cast("Sequence[int]", codes))


def names(items: Sequence[str]) -> str:
    """The first few `items`, comma-separated, then "and N more"."""
    shown = ", ".join(items[:_MAX_NAMES])
    return shown if len(items) <= _MAX_NAMES else f"{shown} and {len(items) - _MAX_NAMES} more"


def size(count: float) -> str:
    """A byte count for humans: `512 B`, `1.5 GiB`."""
    if abs(count) < 1024:
        return f"{count:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        count /= 1024
        if abs(count) < 1024:
            return f"{count:.1f} {unit}"
    return f"{count / 1024:.1f} TiB"


def age(seconds: float) -> str:
    """A duration for humans, in hours below a day and days above."""
    return f"{seconds / 86400:g}d" if seconds >= 86400 else f"{seconds / 3600:g}h"


class BaseCheck:
    """Name, critical flag and result building shared by the built-in checks (which satisfy `Check`)."""

    def __init__(self, name: str, critical: bool) -> None:
        owner = type(self).__name__
        self._name = _check.text(owner, "name", name)
        self._critical = _check.flag(owner, "critical", critical)

    @property
    def name(self) -> str:
        """Unique name; a metric label."""
        return self._name

    @property
    def critical(self) -> bool:
        """Whether failing makes the whole report unhealthy."""
        return self._critical

    def _result(self, status: Status, message: str, values: Mapping[str, Value], started: float) -> CheckResult:
        return CheckResult(self._name, status, message, dict(values), time.perf_counter() - started, self._critical)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._name!r}, critical={self._critical})"
