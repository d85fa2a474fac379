"""Settings as rfobs shows them (`rfobs config show`, error messages): every value with its secrets hidden.

`display` gives the text of one value; `describe_settings` and `settings_as_json` give every setting, rfobs's
groups and then the application's own sections, with the source of each.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, Final, cast

from rfobs._secrets import REDACTED, Secret, is_secret_key, redact, redact_url, scrub_text
from rfobs._settings_model import GROUPS, Settings
from rfobs._settings_sections import SecretText, shown

__all__ = ["describe_settings", "display", "settings_as_json"]

_HEADER_NAME: Final = re.compile(r"[A-Za-z0-9_.-]+")


def describe_settings(settings: Settings) -> list[tuple[str, str, str]]:
    """Every setting as `(key, shown value, source)` rows, secrets redacted, for `rfobs config show`."""
    return [(key, display(key, value), source) for key, value, source in _rows(settings)]


def settings_as_json(settings: Settings) -> list[dict[str, Any]]:
    """Every setting as `{"key", "value", "source"}`, the value JSON-typed and redacted (`config show --json`)."""
    return [{"key": key, "value": _json_value(key, value), "source": source} for key, value, source in _rows(settings)]


def _rows(settings: Settings) -> list[tuple[str, Any, str]]:
    rows: list[tuple[str, Any, str]] = [("env", settings.env, settings.sources.get("env", "default"))]
    for group_name in GROUPS:
        group = getattr(settings, group_name)
        for fld in dataclasses.fields(group):
            key = f"{group_name}.{fld.name}"
            rows.append((key, getattr(group, fld.name), settings.sources.get(key, "default")))
    for name, value in settings.extra.items():
        rows.extend(_leaves(name, value, settings.sources))
    return rows


def _leaves(key: str, value: Any, sources: Mapping[str, str]) -> list[tuple[str, Any, str]]:
    """One row per value of an application section (tables opened, lists kept whole)."""
    if isinstance(value, Mapping) and value:
        rows: list[tuple[str, Any, str]] = []
        for sub, item in cast("Mapping[str, Any]", value).items():
            rows.extend(_leaves(f"{key}.{sub}", item, sources))
        return rows
    return [(key, value, sources.get(key, "settings file"))]


def _json_value(key: str, value: Any) -> Any:
    """`value` as JSON types (mappings as objects, tuples as lists), with secrets as `***`."""
    name = key.rpartition(".")[2]
    if isinstance(value, (SecretText, Secret)) or (is_secret_key(name) and value not in (None, "", {})):
        return shown(value) if isinstance(value, SecretText) else REDACTED
    if name == "headers" and isinstance(value, Mapping):
        return {
            str(n) if _HEADER_NAME.fullmatch(str(n)) else REDACTED: REDACTED
            for n in cast("Mapping[object, Any]", value)
        }
    if name == "dependencies" and isinstance(value, Mapping):
        items = cast("Mapping[object, object]", value).items()
        return {str(k): _shown_url(v) if isinstance(v, str) else REDACTED for k, v in items}
    if isinstance(value, str):
        return _shown_url(value) if "://" in value else scrub_text(value)
    if isinstance(value, Mapping):
        return {str(k): _json_value(f"{key}.{k}", v) for k, v in cast("Mapping[object, Any]", value).items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(key, item) for item in cast("list[Any]", value)]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return scrub_text(str(value))


def display(key: str, value: Any) -> str:
    """Repr of a value for messages and `config show`, with secrets redacted."""
    name = key.rpartition(".")[2]
    if isinstance(value, SecretText):
        return repr(value)
    if isinstance(value, Secret) or (is_secret_key(name) and value not in (None, "", {})):
        return repr(REDACTED)
    if name == "headers":
        if isinstance(value, str):
            pairs = [p for p in value.split(",") if p.strip()]
            if not all("=" in p for p in pairs):
                return repr(REDACTED)  # a malformed pair may be a bare token: show nothing of it
            value = {p.partition("=")[0].strip(): REDACTED for p in pairs}
        if isinstance(value, Mapping):
            # A name with a space or colon is a pasted `Authorization: Bearer ...` line: it holds the credential.
            names = [
                str(n) if _HEADER_NAME.fullmatch(str(n)) else REDACTED for n in cast("Mapping[object, Any]", value)
            ]
            return "{" + ", ".join(f"{name!r}: {REDACTED!r}" for name in names) + "}"
        return repr(REDACTED)  # headers of the wrong type may still hold a credential
    if name == "dependencies":
        return _display_urls(value)
    if isinstance(value, str) and "://" in value:
        return repr(_shown_url(value))
    return repr(redact(shown(value)))


def _display_urls(value: Any) -> str:
    """A name -> URL table (a mapping or 'name=url,...'), each URL with its password hidden."""
    if isinstance(value, str):
        pairs = [p.partition("=") for p in value.split(",") if p.strip()]
        value = {name.strip(): url.strip() if sep else REDACTED for name, sep, url in pairs}
    if not isinstance(value, Mapping):
        return repr(REDACTED)  # of the wrong type, and may still hold a credential
    items = cast("Mapping[object, object]", value).items()
    return repr(redact({str(k): _shown_url(v) if isinstance(v, str) else REDACTED for k, v in items}))


def _shown_url(url: str) -> str:
    try:
        return scrub_text(redact_url(url))  # the query may hold secrets too (`?token=`, `sig=`)
    except ValueError:
        return REDACTED  # unparsable, and may carry credentials
