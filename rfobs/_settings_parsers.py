"""Field parsers of the settings model: each takes a raw value and returns the typed one or raises `Invalid`.

A raw value comes from TOML, YAML, an environment variable's text or an `init()` keyword, so every parser
accepts the forms those sources produce (`"8"` and `8`, `"a,b"` and `["a", "b"]`).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import socket
import urllib.parse
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, cast

from rfobs._secrets import REDACTED, Secret, compile_secret_pattern, redact_url, scrub_text
from rfobs._settings_sections import SecretText

__all__ = [
    "Invalid",
    "Parser",
    "above",
    "attributes",
    "boolean",
    "choice",
    "dependencies",
    "host",
    "integer",
    "metric_namespace",
    "number",
    "optional",
    "otlp_headers",
    "pairs",
    "redis_url",
    "scrub_patterns",
    "secret_pairs",
    "string",
    "strings",
    "unresolvable",
    "url",
]


class Invalid(Exception):
    """Raised by a field parser; carries the description of what is allowed."""

    def __init__(self, allowed: str) -> None:
        super().__init__(allowed)
        self.allowed = allowed


Parser = Callable[[Any], Any]


def string(value: Any) -> str:
    """A non-empty string, stripped (a number is taken as its text)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or str(value).strip() == "":
        raise Invalid("a non-empty string")
    return str(value).strip()


def boolean(value: Any) -> bool:
    """true/false, also as 1/0, yes/no or on/off."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "1", "yes", "on", "false", "0", "no", "off"}:
        return value.strip().lower() in {"true", "1", "yes", "on"}
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise Invalid("true or false")


def integer(low: int, high: int) -> Parser:
    """A parser of integers from `low` to `high` (an integral float or numeric text too)."""

    def parse(value: Any) -> int:
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            number = int(value)
        except (TypeError, ValueError, OverflowError):
            raise Invalid(f"an integer from {low} to {high}") from None
        if not low <= number <= high:
            raise Invalid(f"an integer from {low} to {high}")
        return number

    return parse


def number(low: float, high: float) -> Parser:
    """A parser of numbers from `low` to `high`, not NaN."""

    def parse(value: Any) -> float:
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise Invalid(f"a number from {low:g} to {high:g}") from None
        if math.isnan(number) or not low <= number <= high:
            raise Invalid(f"a number from {low:g} to {high:g}")
        return number

    return parse


def off_or_number(low: float, high: float) -> Parser:
    """A parser of 0 (off) or a number from `low` to `high`, for a period where a tiny one would be a busy loop."""
    allowed = f"0 (off) or a number from {low:g} to {high:g}"
    parsers = (number(0.0, 0.0), number(low, high))

    def parse(value: Any) -> float:
        for parser in parsers:
            try:
                return parser(value)
            except Invalid:
                pass
        raise Invalid(allowed)

    return parse


def choice(*options: str, aliases: Mapping[str, str] | None = None, upper: bool = False) -> Parser:
    """A parser of one of `options`, case-insensitive, after `aliases`."""
    allowed = " | ".join(options)

    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid(f"one of {allowed}")
        text = value.strip().upper() if upper else value.strip().lower()
        text = (aliases or {}).get(text, text)
        if text not in options:
            raise Invalid(f"one of {allowed}")
        return text

    return parse


def optional(parse: Parser) -> Parser:
    """`parse`, or None for None, an empty string or `null`."""

    def parse_optional(value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in {"", "null"}):
            return None
        return parse(value)

    return parse_optional


def url(value: Any) -> str:
    """An http(s) URL with a host and no credentials, without a trailing slash."""
    allowed = "an http:// or https:// URL with a host, such as http://127.0.0.1:4317"
    if not isinstance(value, str):
        raise Invalid(allowed)
    try:
        parts = urllib.parse.urlsplit(value.strip())
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise Invalid(allowed) from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise Invalid(allowed)
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs and dumps; headers are redacted everywhere.
        raise Invalid("a URL without credentials: put them in otlp.headers (redacted everywhere)")
    return value.strip().rstrip("/")


def redis_url(value: Any) -> SecretText:
    """A `redis://`, `rediss://` (TLS) or `unix://` URL, kept as `SecretText`: its password is never shown.

    The program reads the real URL; rfobs shows it with its password and secret-looking query values as `***`.
    """
    allowed = "a redis://host:port/db, rediss://host:port/db or unix:///path/to/redis.sock URL"
    if not isinstance(value, str):
        raise Invalid(allowed)
    text = value.strip()
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
        shown = scrub_text(redact_url(text))
    except ValueError:
        raise Invalid(allowed) from None
    if parts.scheme == "unix":
        if not parts.path:
            raise Invalid(allowed)
    elif parts.scheme not in {"redis", "rediss"} or not parts.hostname:
        raise Invalid(allowed)
    if parts.path.strip("/") and parts.scheme != "unix" and not parts.path.strip("/").isdigit():
        raise Invalid(f"{allowed} (the path is a database number)")
    if parts.username and parts.password is None:
        # `redis://secret@host`: a lone user-info part is often the password itself.
        shown = text.replace(f"{parts.username}@", f"{REDACTED}@", 1)
    return SecretText(text, shown)


def pairs(value: Any) -> dict[str, str]:
    """A mapping given as a table/dict or as the OTel `key=value,key2=value2` string (values URL-decoded)."""
    allowed = "a table of strings or 'key=value,key2=value2'"
    items: list[tuple[object, object]]
    if isinstance(value, Mapping):
        items = list(cast("Mapping[object, object]", value).items())
    elif isinstance(value, str):
        items = []
        for pair in filter(None, (p.strip() for p in value.split(","))):
            key, sep, val = pair.partition("=")
            if not sep or not key.strip():
                raise Invalid(allowed)
            items.append((key.strip(), urllib.parse.unquote(val.strip())))
    else:
        raise Invalid(allowed)
    if not all(isinstance(k, str) and isinstance(v, (str, int, float, bool)) for k, v in items):
        raise Invalid(allowed)
    return {str(k): str(v) for k, v in items}


def secret_pairs(value: Any) -> Mapping[str, Secret]:
    """`pairs` with each value kept as a `Secret`."""
    return MappingProxyType({k: Secret(v) for k, v in pairs(value).items()})


def attributes(value: Any) -> Mapping[str, str]:
    """`pairs`, read-only."""
    return MappingProxyType(pairs(value))


def metric_namespace(value: Any) -> str:
    """A metric name prefix: letters, digits and underscores, starting with a letter."""
    text = string(value)
    if not text.replace("_", "a").isalnum() or not text[0].isalpha():
        raise Invalid("letters, digits and underscores, starting with a letter")
    return text


def strings(value: Any) -> tuple[str, ...]:
    """A list given as a TOML/YAML list, a JSON list string or a comma-separated string (empty items dropped)."""
    allowed = "a list of non-empty strings or 'a,b,c'"
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise Invalid(allowed) from None
        else:
            return tuple(item.strip() for item in text.split(",") if item.strip())
    if isinstance(value, Mapping) or not isinstance(value, (list, tuple)):
        raise Invalid(allowed)
    items = cast("list[object] | tuple[object, ...]", value)
    if not all(isinstance(item, str) and item.strip() for item in items):
        raise Invalid(allowed)
    return tuple(str(item).strip() for item in items)


def above(low: float, high: float) -> Parser:
    """A number strictly greater than `low`, up to `high`."""
    allowed = f"a number greater than {low:g} and at most {high:g}"

    def parse(value: Any) -> float:
        try:
            parsed = number(low, high)(value)
        except Invalid:
            raise Invalid(allowed) from None
        if parsed <= low:
            raise Invalid(allowed)
        return parsed

    return parse


_DEPENDENCY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


def _dependency_url(value: str) -> str:
    allowed = "tcp://host:port, an http(s):// URL, or another scheme with a host and port (redis://host:6379)"
    try:
        parts = urllib.parse.urlsplit(value.strip())
        port = parts.port
    except ValueError:
        raise Invalid(allowed) from None
    if not parts.hostname or (port is None and parts.scheme not in {"http", "https"}):
        raise Invalid(allowed)
    return value.strip()


def dependencies(value: Any) -> Mapping[str, str]:
    """Dependency name -> probe URL (`tcp://host:port`, `http(s)://...`, `redis://host:port`)."""
    table = pairs(value)
    for name, address in table.items():
        if not _DEPENDENCY_NAME.fullmatch(name):
            raise Invalid(f"names of letters, digits, '_', '.' or '-' starting with a letter (not {name!r})")
        table[name] = _dependency_url(address)
    return MappingProxyType(table)


# What gRPC accepts in a metadata key once lower-cased (HTTP/2 header names, without pseudo-headers).
_HEADER_NAME = re.compile(r"[0-9a-z_.-]+")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")


def otlp_headers(value: Any) -> Mapping[str, Secret]:
    """Export headers that gRPC and HTTP both send: checked here, since a bad one fails every export later.

    Names are lower-cased at export, so `Authorization` is fine; they must then be HTTP/2 header names gRPC
    accepts (a-z, 0-9, `-`, `_`, `.`), not reserved (`grpc-...`), and not binary (`...-bin`, which gRPC sends
    as bytes a setting cannot hold). Values are printable ASCII: no CR, LF, tab or other control character.
    A bad name is not echoed: a malformed pair may hold part of a credential.
    """
    table = pairs(value)
    for name, text in table.items():
        lowered = name.lower()
        if not _HEADER_NAME.fullmatch(lowered) or lowered.startswith("grpc-"):
            raise Invalid("header names of letters, digits, '-', '_' and '.', not starting with 'grpc-' or ':'")
        if lowered.endswith("-bin"):
            raise Invalid(f"text headers; {name!r} ends in '-bin', which gRPC reserves for binary values")
        if not _HEADER_VALUE.fullmatch(text):
            raise Invalid(f"header values of printable ASCII, without CR, LF or tabs (the value of {name!r} is not)")
    return MappingProxyType({name: Secret(text) for name, text in table.items()})


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def _ip_literal(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def host(value: Any) -> str:
    """An address to bind a server to: an IP literal, `localhost` or a host name (`unresolvable` looks it up)."""
    allowed = "an IP address or a host name, such as 127.0.0.1, 0.0.0.0, ::1 or localhost"
    try:
        text = string(value)
    except Invalid:
        raise Invalid(allowed) from None
    if text == "localhost" or _ip_literal(text):
        return text
    name = text.removesuffix(".")
    if len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in name.split(".")):
        raise Invalid(allowed)
    return text


def unresolvable(address: str) -> str | None:
    """What is allowed, when `address` does not resolve through the local resolver; None when it does.

    IP literals and `localhost` are accepted without a lookup.
    """
    if address == "localhost" or _ip_literal(address):
        return None
    try:
        socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:  # socket.gaierror is an OSError
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        return f"an IP address, localhost, or a host name that resolves here (looking it up failed: {reason})"
    return None


def scrub_patterns(value: object) -> tuple[str, ...]:
    """The settings parser of `sdk.scrub_patterns`: a list of regular expressions, each checked as above."""
    patterns: tuple[str, ...] = strings(value)
    for pattern in patterns:
        try:
            compile_secret_pattern(pattern)
        except ValueError as error:
            raise Invalid(f"regular expressions usable as scrub patterns ({pattern!r} {error})") from None
    return patterns
