"""Exceptions raised by rfobs.

rfobs raises only at configuration time; at run time it logs and counts instead. The hierarchy::

    RfobsError
    └── ConfigError (also a ValueError): a setting or decorator argument is invalid
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ConfigError", "ConfigProblem", "RfobsError"]


class RfobsError(Exception):
    """Base class of every exception rfobs raises."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One invalid setting: which key, the (already redacted) value, what is allowed, and where it came from."""

    key: str
    value: str
    allowed: str
    source: str

    def __str__(self) -> str:
        return f"{self.key} = {self.value} (from {self.source}): expected {self.allowed}"


class ConfigError(RfobsError, ValueError):
    """Invalid settings. Lists every problem found, not just the first."""

    def __init__(self, problems: Sequence[ConfigProblem] | str) -> None:
        if isinstance(problems, str):
            self.problems: tuple[ConfigProblem, ...] = ()
            message = problems
        else:
            self.problems = tuple(problems)
            count = len(self.problems)
            lines = "\n".join(f"  - {p}" for p in self.problems)
            message = f"{count} invalid setting{'s' if count != 1 else ''}:\n{lines}"
        super().__init__(message)
