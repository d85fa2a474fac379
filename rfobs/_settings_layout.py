"""Read the seed programme's settings layout: `config/config.yaml` under `config/config.<env>.yaml`, `${VAR}` filled in.

Each file holds one environment. Its top-level keys are rfobs's groups (`logging`, `metrics`, ...), which join
the settings layers and are validated strictly, and the application's own sections (`database`, `api`, ...)
and scalars (`debug`), kept as written for `settings.database.url`. Files later in the list win, key by key;
a table of the application's is merged with the earlier one, a group's setting replaces the earlier value.

Every string may read the environment: `${NAME}` (an unset NAME is an error naming the key and the variable),
`${NAME:-default}` (the default when NAME is unset or empty) and `$${` for a literal `${`. The result is text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

from rfobs._settings_files import read_document
from rfobs._settings_model import GROUPS, Settings
from rfobs._settings_sections import freeze
from rfobs._settings_show import display
from rfobs.exceptions import ConfigProblem

__all__ = ["Layout", "read_layout"]

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_VARIABLE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
# Top-level names a file may not take: `settings.<name>` is already rfobs's (`env` is checked like `environment`).
_TAKEN: Final = frozenset(name for name in dir(Settings) if not name.startswith("_")) - {"env"}


@dataclass
class Layout:
    """What the layout files hold: rfobs's settings, the application's sections, their sources and problems."""

    values: dict[str, tuple[Any, str]] = field(default_factory=dict[str, tuple[Any, str]])
    """rfobs's settings by dotted key (`logging.level`): the raw value (variables filled in) and its file."""
    extra: dict[str, Any] = field(default_factory=dict[str, Any])
    """The application's top-level keys, frozen (`Section`, tuples, `SecretText` for secrets)."""
    sources: dict[str, str] = field(default_factory=dict[str, str])
    """The file of each application value, by dotted key (`database.url`)."""
    problems: list[ConfigProblem] = field(default_factory=list[ConfigProblem])


def read_layout(paths: list[Path], env: str) -> Layout:
    """Read, merge and interpolate the layout files (lowest precedence first) for the environment `env`."""
    layout = Layout()
    merged: dict[str, Any] = {}
    for path in paths:
        where = str(path)
        document, problem = read_document(path, where)
        if problem is not None:
            layout.problems.append(problem)
            continue
        for name, value in document.items():
            group = name.lower()
            if group in GROUPS and isinstance(value, Mapping):
                for key, raw in cast("Mapping[object, Any]", value).items():
                    layout.values[f"{group}.{str(key).lower()}"] = (raw, where)
            elif group in GROUPS:
                layout.values[group] = (value, where)  # not a table: reported by the settings check
            else:
                merged[name] = _merge(merged.get(name), value, name, where, layout.sources)
    for key, (raw, where) in list(layout.values.items()):
        reported = len(layout.problems)
        layout.values[key] = (_interpolate(key, raw, where, layout.problems), where)
        if len(layout.problems) > reported:
            del layout.values[key]  # its half-filled text would only earn a second, confusing message
    for name, value in merged.items():
        filled = _interpolate(name, value, layout.sources.get(name, "settings file"), layout.problems, layout.sources)
        if name.lower() in {"environment", "env"}:
            if not isinstance(filled, str) or filled.strip().lower() != env:
                allowed = f"{env!r}, the active environment (chosen by load_config(env=...), RFOBS_ENV or ENV)"
                layout.problems.append(ConfigProblem(name, display(name, filled), allowed, layout.sources[name]))
            if name.lower() == "env":
                continue  # `settings.env` is rfobs's: the value only has to agree
        elif name in _TAKEN:
            allowed = f"a name rfobs's Settings does not use ({', '.join(sorted(_TAKEN))} are taken)"
            layout.problems.append(ConfigProblem(name, f"<{type(filled).__name__}>", allowed, layout.sources[name]))
            continue
        layout.extra[name] = freeze(name, filled)
    return layout


def _merge(old: Any, new: Any, key: str, where: str, sources: dict[str, str]) -> Any:
    """`new` over `old`: tables merged key by key, anything else replaced; notes each value's file."""
    if isinstance(old, dict) and isinstance(new, Mapping):
        merged = dict(cast("dict[str, Any]", old))
        for sub, value in cast("Mapping[object, Any]", new).items():
            merged[str(sub)] = _merge(merged.get(str(sub)), value, f"{key}.{sub}", where, sources)
        sources[key] = where
        return merged
    for noted in [k for k in sources if k.startswith(key + ".")]:
        del sources[noted]  # the earlier table is gone with its values
    sources[key] = where
    if isinstance(new, Mapping):
        return _merge({}, new, key, where, sources)
    return new


def _interpolate(
    key: str, value: Any, where: str, problems: list[ConfigProblem], sources: Mapping[str, str] | None = None
) -> Any:
    """`value` with `${NAME}` references in every string filled from the environment; problems for the rest."""
    if isinstance(value, Mapping):
        table = cast("Mapping[object, Any]", value)
        return {
            str(sub): _interpolate(f"{key}.{sub}", item, (sources or {}).get(f"{key}.{sub}", where), problems, sources)
            for sub, item in table.items()
        }
    if isinstance(value, list):
        return [_interpolate(key, item, where, problems, sources) for item in cast("list[Any]", value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def fill(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        reference = _VARIABLE.fullmatch(match.group(1).strip())
        if reference is None:
            allowed = "a ${NAME} or ${NAME:-default} reference to an environment variable"
            problems.append(ConfigProblem(key, display(key, value), allowed, where))
            return ""
        name, default = reference.group(1), reference.group(2)
        found = os.environ.get(name)
        if default is not None and not found:
            return default
        if found is None:
            allowed = f"an environment variable {name} that is set, or a default after ':-' in the reference"
            problems.append(ConfigProblem(key, display(key, value), allowed, where))
            return ""
        return found

    return _REFERENCE.sub(fill, value)
