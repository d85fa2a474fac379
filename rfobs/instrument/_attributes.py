"""The constant span attributes a decorator is given (`attributes=`), checked when decorating.

The OpenTelemetry SDK drops an invalid attribute with a log line when the span starts, and an integer beyond
64 bits fails the OTLP export of the whole batch later; a decorator rejects both at once instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, cast

from opentelemetry.util.types import AttributeValue

from rfobs import _check
from rfobs._secrets import REDACTED, is_secret_key
from rfobs.exceptions import ConfigError

__all__ = ["check_attributes"]

_INT64: Final = range(-(2**63), 2**63)
_ALLOWED: Final = "values of type str, bool, int (64-bit) or float, or a list or tuple of one of those types (not None)"
_LONGEST_SHOWN: Final = 200


def _kind(value: object) -> type | None:
    """The attribute type `value` is one of, or None."""
    if isinstance(value, bool):
        return bool
    if isinstance(value, int):
        return int if value in _INT64 else None
    if isinstance(value, float | str):
        return float if isinstance(value, float) else str
    return None


def _checked(value: object) -> AttributeValue | None:
    if _kind(value) is not None:
        return cast("AttributeValue", value)
    if not isinstance(value, list | tuple):
        return None
    items = tuple(cast("list[object] | tuple[object, ...]", value))
    kinds = {_kind(item) for item in items}
    if None in kinds or len(kinds) > 1:
        return None
    return cast("AttributeValue", items)


def _shown(key: object, value: object) -> str:
    if isinstance(key, str) and is_secret_key(key):
        return repr(REDACTED)
    text = repr(value)
    return text if len(text) <= _LONGEST_SHOWN else text[: _LONGEST_SHOWN - 3] + "..."


def check_attributes(attributes: object, decorator: str) -> dict[str, AttributeValue]:
    """`attributes` as a fresh dict with sequences frozen into tuples, or a ConfigError naming the bad entry.

    Args:
        attributes: What the decorator's `attributes=` was given: a mapping or None.
        decorator: The decorator's name, for the message (`task`, `tool`, `api_call`).

    Raises:
        ConfigError: Not a mapping, a key that is not a non-empty string, or a value the OpenTelemetry SDK
            would drop (None, a dict, an object, a mixed-type sequence, an integer beyond 64 bits).
    """
    if attributes is None:
        return {}
    if not isinstance(attributes, Mapping):
        raise _check.bad(f"@{decorator}", "attributes", attributes, "a mapping of names to values, or None")
    checked: dict[str, AttributeValue] = {}
    for key, value in cast("Mapping[object, object]", attributes).items():
        if not isinstance(key, str) or not key:
            raise ConfigError(
                f"@{decorator}(attributes={{{key!r}: {_shown(key, value)}}}): expected names that are non-empty strings"
            )
        cleaned = _checked(value)
        if cleaned is None:
            raise ConfigError(f"@{decorator}(attributes={{{key!r}: {_shown(key, value)}}}): expected {_ALLOWED}")
        checked[key] = cleaned
    return checked
