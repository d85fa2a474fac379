"""Find and check the settings files: which ones are read, and the problems of each before Dynaconf reads it.

Two layouts are read. rfobs's own (`settings.toml`, `settings.yaml`, `.secrets.toml`) holds environment
sections (`[default.otlp]`, `[production.otlp]`). The seed programme's (`config/config.yaml` under
`config/config.<env>.yaml`) holds one environment per file, its groups at the top level, next to the
application's own sections; `rfobs._settings_layout` reads it.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, cast

from rfobs._settings_model import ENVIRONMENTS, GROUPS
from rfobs.exceptions import ConfigProblem

__all__ = [
    "DEFAULT_SETTINGS_FILES",
    "LAYOUT_DIRECTORY",
    "find_settings_files",
    "is_layout_file",
    "layout_files",
    "read_document",
    "section_problems",
    "token_problems",
]

DEFAULT_SETTINGS_FILES: Final = ("settings.toml", "settings.yaml", ".secrets.toml")
LAYOUT_DIRECTORY: Final = "config"
_SECTIONS: Final = ("default", "global", *ENVIRONMENTS)
_LAYOUT_NAME = re.compile(r"config(\.[A-Za-z0-9_-]+)?\.ya?ml", re.IGNORECASE)
_ENV_REFERENCE = re.compile(r"env\[\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)['\"]?\s*\]")


def layout_files(env: str) -> list[Path]:
    """The seed layout's files in the working directory that exist, lowest precedence first."""
    names = ("config.yaml", "config.yml", f"config.{env}.yaml", f"config.{env}.yml")
    return [path for name in names if (path := Path(LAYOUT_DIRECTORY) / name).is_file()]


def is_layout_file(path: Path) -> bool:
    """Whether `path` is named like a seed layout file (`config.yaml`, `config.production.yml`)."""
    return bool(_LAYOUT_NAME.fullmatch(path.name))


def find_settings_files(
    explicit: Iterable[str | os.PathLike[str]] | None,
) -> tuple[list[Path], list[ConfigProblem]]:
    """The files of rfobs's own layout to read: named ones must exist and be readable, default ones may be absent."""
    if explicit is not None:
        named, source = [Path(p) for p in explicit], "load_config(settings_files=...)"
    elif listed := os.environ.get("RFOBS_SETTINGS_FILES", "").strip():
        named = [Path(p.strip()) for p in listed.replace(";", ",").split(",") if p.strip()]
        source = "env RFOBS_SETTINGS_FILES"
    else:
        present = [Path(name) for name in DEFAULT_SETTINGS_FILES if Path(name).exists()]
        named, source = present, "working directory"
    problems: list[ConfigProblem] = []
    for path in named:
        if path.suffix.lower() not in {".toml", ".yaml", ".yml", ".json"}:
            problems.append(ConfigProblem("settings_files", repr(str(path)), "a .toml, .yaml or .json file", source))
        elif not path.is_file():
            problems.append(ConfigProblem("settings_files", repr(str(path)), "an existing file", source))
    return [p.resolve() for p in named], problems


def read_document(path: Path, shown_as: str | None = None) -> tuple[dict[str, Any], ConfigProblem | None]:
    """The parsed top-level table of a TOML, YAML or JSON file, or the problem naming the file, line and column."""
    where = shown_as or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        allowed = f"a readable UTF-8 file ({error.__class__.__name__})"
        return {}, ConfigProblem("settings_files", repr(where), allowed, where)
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            document: object = tomllib.loads(text)
        elif suffix == ".json":
            document = json.loads(text) if text.strip() else {}
        else:
            document = _load_yaml(text)
    except ValueError as error:
        # tomllib's and json's messages name the line and column, never a value.
        kind = {".toml": "TOML", ".json": "JSON"}.get(suffix, "YAML")
        return {}, ConfigProblem("settings_files", repr(where), f"valid {kind} ({error})", where)
    if document is None:
        return {}, None  # an empty YAML file
    if not isinstance(document, dict):
        allowed = "a table of settings at the top level"
        return {}, ConfigProblem("settings_files", repr(where), f"{allowed}, not a {type(document).__name__}", where)
    return {str(k): v for k, v in cast("dict[object, Any]", document).items()}, None


def _load_yaml(text: str) -> object:
    """YAML 1.2 through the parser Dynaconf vendors; a syntax error becomes ValueError with its line and column."""
    from dynaconf.vendor.ruamel import yaml  # pyright: ignore[reportMissingTypeStubs]

    try:
        return cast(object, yaml.safe_load(text))  # pyright: ignore[reportUnknownMemberType]
    except yaml.YAMLError as error:
        mark: Any = getattr(error, "problem_mark", None)
        problem = str(getattr(error, "problem", None) or type(error).__name__)
        if mark is None:
            raise ValueError(problem) from None
        # The parser counts from 0; editors (and tomllib) count from 1. The message names no value.
        raise ValueError(f"{problem} (at line {mark.line + 1}, column {mark.column + 1})") from None


def section_problems(path: Path, document: dict[str, Any]) -> list[ConfigProblem]:
    """Top-level keys of an rfobs settings file that are not environment sections (`[prodution.otlp]`)."""
    problems: list[ConfigProblem] = []
    for section in document:
        name = section.lower()
        if name in _SECTIONS or name.startswith("dynaconf_"):
            continue
        if name in GROUPS:
            # Dynaconf would silently ignore a group outside an environment section.
            allowed = f"a section inside an environment, such as [default.{section}]"
        else:
            close = difflib.get_close_matches(name, _SECTIONS, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            allowed = f"an environment section: {', '.join(_SECTIONS)}{hint}"
        problems.append(ConfigProblem(section, f"[{section}]", allowed, str(path)))
    return problems


def token_problems(documents: Iterable[tuple[Path, dict[str, Any]]], env: str) -> list[ConfigProblem]:
    """Dynaconf tokens that cannot be resolved: `@format` naming an unset variable, `@jinja` without jinja2."""
    candidates: list[tuple[str, str, str]] = []  # (key, token, source)
    for path, document in documents:
        for section, groups in document.items():
            if section.lower() not in {"default", "global", env} or not isinstance(groups, dict):
                continue
            for group, table in cast("dict[str, Any]", groups).items():
                for key, value in cast("dict[str, Any]", table).items() if isinstance(table, dict) else ():
                    candidates.extend(_tokens(f"{group}.{key}".lower(), value, f"{path.name} [{section.lower()}]"))
    for name, value in os.environ.items():
        if name.upper().startswith("RFOBS_") and value.lstrip().startswith("@"):
            key = name[len("RFOBS_") :].lower().replace("__", ".", 1)
            candidates.append((key, value.strip(), f"env {name}"))
    problems: list[ConfigProblem] = []
    for key, token, source in candidates:
        if token.startswith("@format"):
            for variable in _ENV_REFERENCE.findall(token):
                if variable not in os.environ:
                    allowed = f"an environment variable {variable} that is set (the @format token reads it)"
                    problems.append(ConfigProblem(key, repr(token), allowed, source))
        elif token.startswith("@jinja") and importlib.util.find_spec("jinja2") is None:
            problems.append(
                ConfigProblem(key, repr(token), "a @format token (@jinja needs the jinja2 package)", source)
            )
    return problems


def _tokens(key: str, value: Any, source: str) -> list[tuple[str, str, str]]:
    """`(key, token, source)` for each Dynaconf token string in `value` (nested tables included)."""
    if isinstance(value, str) and value.lstrip().startswith("@"):
        return [(key, value.strip(), source)]
    if isinstance(value, dict):
        found: list[tuple[str, str, str]] = []
        for sub, sub_value in cast("dict[str, Any]", value).items():
            found.extend(_tokens(f"{key}.{sub}", sub_value, source))
        return found
    return []
