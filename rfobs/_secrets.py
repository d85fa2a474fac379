"""Secret values, and the redaction of secrets in text shared by settings, logs, spans, metrics and health.

`scrub_text` runs in time linear in its input; the patterns and the key judgement are in `_scrubber`.
"""

from __future__ import annotations

import functools
import re
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any, cast

from rfobs import _state
from rfobs._scrubber import REDACTED, is_secret_key, secret_spans

__all__ = [
    "REDACTED",
    "Secret",
    "add_pattern",
    "compile_secret_pattern",
    "is_secret_key",
    "redact",
    "redact_mapping",
    "redact_url",
    "scrub_text",
    "secret_patterns",
    "set_configured_patterns",
]


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


# Patterns added with `add_secret_pattern` (kept for the life of the process) and from `sdk.scrub_patterns`
# (replaced at each `init()`). Tuples, swapped whole under the lock, so readers need no lock.
_lock = threading.Lock()
_added: tuple[re.Pattern[str], ...] = ()
_configured: tuple[re.Pattern[str], ...] = ()


def scrub_text(text: str) -> str:
    """Replace the secrets in free text by `***`, keeping key names and auth schemes readable.

    Recognised: well-known credential formats (cloud, source-hosting, payment and AI-provider keys, JWTs, PEM
    private keys, Slack and Discord webhooks), `Bearer`/`Basic` credentials, URL passwords, values of
    secret-named keys (`password=`, `"api_key": "..."`, `AccountKey=`, `sig=`, `--token x`,
    `<password>x</password>`), and the patterns added with `add_secret_pattern` or `sdk.scrub_patterns`.
    Linear in the length of `text`.
    """
    patterns = secret_patterns()
    # Short texts repeat (attribute values, label values, names): their results are kept, per set of patterns.
    return _scrub_short(text, patterns) if len(text) <= 256 else _scrub(text, patterns)


@functools.lru_cache(maxsize=4096)
def _scrub_short(text: str, patterns: tuple[re.Pattern[str], ...]) -> str:
    return _scrub(text, patterns)


def _scrub(text: str, patterns: tuple[re.Pattern[str], ...]) -> str:
    if len(text) >= 4 and (spans := secret_spans(text)):
        parts: list[str] = []
        position = -1  # end of the last hidden span
        for start, end in spans:
            if start > position:
                parts.append(text[max(position, 0) : start])
                parts.append(REDACTED)
            position = max(position, end)  # overlapping or adjacent spans become one `***`
        parts.append(text[position:])
        text = "".join(parts)
    for pattern in patterns:
        text = pattern.sub(_replace_user_match, text)
    return text


def secret_patterns() -> tuple[re.Pattern[str], ...]:
    """The patterns added with `add_secret_pattern` and from `sdk.scrub_patterns`, in that order."""
    return _added + _configured


def _replace_user_match(match: re.Match[str]) -> str:
    if "secret" not in match.re.groupindex or match.group("secret") is None:
        return REDACTED
    whole, (start, end) = match.group(0), match.span("secret")
    offset = match.start()
    return whole[: start - offset] + REDACTED + whole[end - offset :]


def add_pattern(pattern: str) -> None:
    """Scrub matches of `pattern` too, for the life of the process (public as `rfobs.add_secret_pattern`).

    Raises:
        ValueError: The pattern is refused (see `compile_secret_pattern`).
    """
    global _added
    compiled = compile_secret_pattern(pattern)
    with _lock:
        _added = (*_added, compiled)


def set_configured_patterns(patterns: Iterable[str]) -> None:
    """Replace the patterns that came from `sdk.scrub_patterns` (already validated by the settings)."""
    global _configured
    compiled = tuple(compile_secret_pattern(pattern) for pattern in patterns)
    with _lock:
        _configured = compiled


# Patterns from settings go with the settings; those added in code (`add_secret_pattern`) stay.
_state.on_reset(lambda: set_configured_patterns(()))


def compile_secret_pattern(pattern: str) -> re.Pattern[str]:
    """`pattern` compiled, or ValueError saying why it cannot be a scrub pattern."""
    if not isinstance(pattern, str) or not pattern:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError("expected a non-empty regular expression string")
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ValueError(f"does not compile ({error})") from None
    if compiled.search("") is not None:
        raise ValueError("matches the empty string")
    if (problem := _backtracking_problem(pattern)) is not None:
        raise ValueError(problem)
    return compiled


def _backtracking_problem(pattern: str) -> str | None:
    """Why `pattern` may backtrack exponentially (a repeated group holding a repeat or alternation), or None."""
    import importlib

    # The parser `re` itself uses; importing it by name keeps its deprecated `sre_parse` alias out.
    parser: Any = importlib.import_module("re._parser")
    constants: Any = importlib.import_module("re._constants")
    repeats = {constants.MAX_REPEAT, constants.MIN_REPEAT}
    variable = {*repeats, constants.BRANCH}

    def items(node: Any) -> list[tuple[Any, Any]]:
        """The (op, argument) pairs directly inside `node`, descending through groups and assertions."""
        found: list[tuple[Any, Any]] = []
        for op, argument in node:
            found.append((op, argument))
            if op == constants.SUBPATTERN:
                found.extend(items(argument[-1]))
            elif op in (constants.ASSERT, constants.ASSERT_NOT):
                found.extend(items(argument[1]))
            elif op == constants.BRANCH:
                for branch in argument[1]:
                    found.extend(items(branch))
            elif op in repeats or op == constants.POSSESSIVE_REPEAT:
                found.extend(items(argument[2]))
            elif op == constants.ATOMIC_GROUP:
                found.extend(items(argument))
            elif op == constants.GROUPREF_EXISTS:
                found.extend(item for branch in argument[1:] if branch is not None for item in items(branch))
        return found

    for op, argument in items(parser.parse(pattern)):
        if op in repeats and argument[1] > 1:
            inner = items(argument[2])
            if any(o in variable and (o == constants.BRANCH or a[0] != a[1]) for o, a in inner):
                return "repeats a group holding a variable repeat or an alternation: it can backtrack exponentially"
    return None


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
