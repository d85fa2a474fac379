"""The application's own settings sections (`config.database.url`): read-only, nested, with secrets kept hidden.

rfobs validates only its own groups; every other top-level key of a settings file is kept as it was written,
wrapped here so that the program reads real values while anything rfobs prints (`config show`, a `repr`, an
error) shows secrets as `***`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, NoReturn, cast

from rfobs._secrets import REDACTED, is_secret_key, redact_url, scrub_text

__all__ = ["SecretText", "Section", "freeze", "shown"]

# Not secret by name, but the address of the secret store: kept out of output like its token.
_ALSO_SECRET_KEYS = frozenset({"vault_url", "vault_addr", "vault_address"})


class SecretText(str):
    """A secret setting: a real `str` to the program, shown as `***` by its `repr` (and in rfobs's output).

    Only `repr` is redacted, so that `client(api_key=config.api.openai_api_key)` and f-strings get the value;
    `str()` returns the value too, since libraries call it on what they are given.
    """

    __slots__ = ("_shown",)

    _shown: str

    def __new__(cls, value: str, shown: str = REDACTED) -> SecretText:
        """A secret `value`, displayed as `shown` (`***`, or a URL with its password hidden)."""
        text = super().__new__(cls, value)
        text._shown = shown
        return text

    @property
    def shown(self) -> str:
        """The value as rfobs displays it, secrets hidden."""
        return self._shown

    def __repr__(self) -> str:
        return repr(self._shown)

    def __reduce__(self) -> tuple[Any, ...]:
        return (SecretText, (str.__str__(self), self._shown))


class Section(Mapping[str, Any]):
    """One section of the application's settings: values by attribute (`section.url`) or key (`section["url"]`).

    Read-only. Nested tables are sections too and lists are tuples. An unknown name raises `AttributeError`
    (or `KeyError`) naming the section and its keys. `repr` shows secrets as `***`.
    """

    __slots__ = ("_name", "_values")

    _name: str
    _values: Mapping[str, Any]

    def __init__(self, name: str, values: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", MappingProxyType(dict(values)))

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        try:
            return self._values[key]
        except KeyError:
            self._missing(key, AttributeError)

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            self._missing(key, KeyError)

    def _missing(self, key: str, error: type[Exception]) -> NoReturn:
        keys = ", ".join(self._values) or "none"
        close = difflib.get_close_matches(key, list(self._values), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise error(f"settings section {self._name!r} has no key {key!r}{hint}; its keys are: {keys}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __setattr__(self, key: str, value: object) -> NoReturn:
        raise AttributeError(f"settings section {self._name!r} is read-only (set {key!r} in the settings file)")

    def __repr__(self) -> str:
        return f"Section({self._name!r}, {shown(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Section, (self._name, dict(self._values)))


def freeze(key: str, value: Any, *, under_secret: bool = False) -> Any:
    """`value` of the dotted `key` as the program reads it: tables as `Section`, lists as tuples, secrets hidden.

    Every text under a secret-named table (`tokens: {github: ...}`, `secrets: {smtp: ...}`) is a secret too.
    """
    name = key.rpartition(".")[2]
    secret_name = under_secret or is_secret_key(name) or name.lower() in _ALSO_SECRET_KEYS
    if isinstance(value, Mapping):
        # A table named in the plural (`tokens`, `passwords`, `api_keys`) holds secrets; counts in it stay numbers.
        secret_table = secret_name or (name.endswith("s") and is_secret_key(name[:-1]))
        table = cast("Mapping[object, Any]", value)
        return Section(key, {str(k): freeze(f"{key}.{k}", v, under_secret=secret_table) for k, v in table.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(key, item, under_secret=secret_name) for item in cast("list[Any]", value))
    if under_secret and not isinstance(value, str):
        return value  # a number or a flag beside secrets (`secrets: {rotation_days: 30}`)
    if secret_name and value not in (None, ""):
        return SecretText(str(value))
    if isinstance(value, str):
        try:
            safe = scrub_text(redact_url(value)) if "://" in value else scrub_text(value)
        except ValueError:
            safe = REDACTED  # an unparsable URL may still carry credentials
        if safe != value:
            return SecretText(value, safe)
    return value


def shown(value: Any) -> Any:
    """`value` with every secret replaced by its displayed form: plain dicts, lists and scalars, for output."""
    if isinstance(value, SecretText):
        return value.shown
    if isinstance(value, Mapping):
        return {str(k): shown(v) for k, v in cast("Mapping[object, Any]", value).items()}
    if isinstance(value, (list, tuple)):
        return [shown(item) for item in cast("list[Any]", value)]
    return value
