"""Secret values and the redaction of secret-looking text, shared by settings, logs and captured arguments."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Final, cast

__all__ = ["REDACTED", "Secret", "is_secret_key", "redact", "redact_mapping", "redact_url", "scrub_text"]

REDACTED: Final = "***"

# Key names whose values are never shown: matched anywhere in a lower-cased key, so `x-api-key`,
# `OPENAI_API_KEY` and `db_password` all count.
_SECRET_KEY = re.compile(r"pass(word|wd)?|secret|token|api[-_]?key|auth|credential|private[-_]?key|cookie|session")

# Secret-looking fragments inside free text (log messages, captured arguments): `key=value` pairs with a
# secret-looking key, bearer tokens, and well-known credential prefixes.
_SECRET_TEXT = re.compile(
    r"(?i)(?P<key>[\w.-]*(?:pass(?:word|wd)?|secret|token|api[-_]?key|authorization)[\w.-]*)"
    # A quoted key (`'password': 'x'`, `"token": "x"`) closes its quote before the separator.
    r"(?P<sep>['\"]?\s*[=:]\s*)(?P<q>['\"]?)(?P<val>(?:bearer\s+)?[^\s'\",;&}]+)"
    r"|(?P<bearer>\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}"
    r"|\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}"
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"
    r"|\bAKIA[0-9A-Z]{16}\b"
)


class Secret:
    """A value that must not be shown: its `repr` and `str` are `'***'`.

    Call `get_secret_value()` at the one place that needs the real value (an exporter header).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        """Return the real value."""
        return self._value

    def __repr__(self) -> str:
        return f"'{REDACTED}'"

    def __str__(self) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def is_secret_key(key: str) -> bool:
    """Whether a setting, header or attribute name looks like it holds a secret.

    Plural `...tokens` (`input_tokens`, `max_tokens`) are LLM token counts, not credentials.
    """
    lowered = key.lower()
    return _SECRET_KEY.search(lowered) is not None and not lowered.endswith("tokens")


def scrub_text(text: str) -> str:
    """Replace secret-looking fragments of free text by `***`, keeping the key names readable."""

    def replace(match: re.Match[str]) -> str:
        if match.group("key") and not is_secret_key(match.group("key")):
            return match.group(0)  # `input_tokens: 12` is a count
        if match.group("key"):
            return f"{match.group('key')}{match.group('sep')}{match.group('q')}{REDACTED}"
        if match.group("bearer"):
            return f"{match.group('bearer')}{REDACTED}"
        return REDACTED

    return _SECRET_TEXT.sub(replace, text)


def redact(value: object, key: str = "") -> object:
    """A copy of `value` safe to show: secret-keyed entries replaced, strings scrubbed, containers walked."""
    if isinstance(value, Secret) or (key and is_secret_key(key) and value not in (None, "", {})):
        return REDACTED
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        items = cast("Mapping[object, object]", value).items()
        return {str(k): redact(v, str(k)) for k, v in items}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact(item) for item in cast("Iterable[object]", value)]
    return value


def redact_url(url: str) -> str:
    """`url` with the password of its user-info part (`https://user:pw@host`) replaced by `***`."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:{REDACTED}@{host}"))


def redact_mapping(values: Mapping[str, object]) -> dict[str, object]:
    """Copy of a (possibly nested) mapping with secret-keyed values and `Secret` objects shown as `***`."""
    redacted: dict[str, object] = {}
    for key, value in values.items():
        if isinstance(value, Secret) or (is_secret_key(key) and value not in (None, "", {})):
            redacted[key] = REDACTED
        elif isinstance(value, Mapping):
            redacted[key] = redact_mapping(value)  # pyright: ignore[reportUnknownArgumentType]
        else:
            redacted[key] = value
    return redacted
