"""Loads, layers and validates rfobs settings into one frozen `Settings`; the only module that reads the environment.

Precedence, highest first:

1. keyword overrides to `rfobs.init(**overrides)` / `load_config(overrides=...)`
   (`tracing__exporter="none"` or `tracing={"exporter": "none"}`);
2. `RFOBS_<GROUP>__<KEY>` environment variables (`RFOBS_OTLP__ENDPOINT`); any other `RFOBS_*` name is an error;
3. rfobs's settings files, for the active environment over `[default]`: `settings.toml`, `settings.yaml` and
   `.secrets.toml` in the working directory, or the files listed in `RFOBS_SETTINGS_FILES`;
4. the seed programme's layout, one environment per file: `config/config.<env>.yaml` (or `.yml`) over
   `config/config.yaml`, in the working directory (a listed file named `config[.<env>].yaml` is read this way);
5. the standard OpenTelemetry variables (`OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_ENDPOINT`, ...) and the seed
   programme's deployment variables (`LOG_LEVEL`, `LOG_FORMAT`, `METRICS_ENABLED`, `PROMETHEUS_PORT`);
6. the defaults declared on the `Settings` fields.

The environment is `development`, `staging` or `production`, chosen by `load_config(env=...)`, `RFOBS_ENV` or
`ENV`. Values may interpolate the environment, which is how secrets stay out of files: Dynaconf's
`@format {env[NAME]}` in rfobs's files, `${NAME}` or `${NAME:-default}` in the seed layout. Top-level keys
rfobs does not own (`database`, `api`, `debug`, ...) are kept, read-only, as `settings.database.url`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

from rfobs import _secrets, _state
from rfobs._settings_env import (
    ENV_PREFIX,
    apply_fallbacks,
    env_source,
    environment_variable_keys,
    resolve_env,
    variable_problems,
)
from rfobs._settings_files import (
    find_settings_files,
    is_layout_file,
    layout_files,
    read_document,
    section_problems,
    token_problems,
)
from rfobs._settings_layout import read_layout
from rfobs._settings_model import ENVIRONMENTS, GROUPS, Invalid, Settings, check_relations
from rfobs._settings_sections import freeze
from rfobs._settings_show import describe_settings, display, settings_as_json
from rfobs.exceptions import ConfigError, ConfigProblem

if TYPE_CHECKING:
    from dynaconf import Dynaconf  # pyright: ignore[reportMissingTypeStubs]

__all__ = ["add_secret_pattern", "describe_settings", "load_config", "settings_as_json"]


def load_config(
    env: str | None = None,
    *,
    settings_files: Iterable[str | os.PathLike[str]] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read, layer and validate the settings.

    Args:
        env: `development`, `staging` or `production`. Default: `RFOBS_ENV`, else `ENV`, else `development`.
        settings_files: Files to read instead of `RFOBS_SETTINGS_FILES` or the default ones.
        overrides: Highest-precedence values, as nested mappings or `group__key` names.

    Returns:
        The validated, frozen settings; the application's own sections are attributes (`settings.database`).

    Raises:
        ConfigError: One or more values are invalid; every problem is listed, secrets redacted.

    Example:
        >>> settings = load_config("production", overrides={"service__name": "researcher"})
        >>> settings.service.name
        'researcher'
    """
    problems: list[ConfigProblem] = []
    layers = _Layers()

    env_name, env_origin = resolve_env(env)
    if env_name not in ENVIRONMENTS:
        problems.append(ConfigProblem("env", repr(env_name), " | ".join(ENVIRONMENTS), env_origin))
        env_name = "development"

    apply_fallbacks(layers.set)
    variable_issues, flagged = variable_problems()
    problems.extend(variable_issues)

    layout_paths, files, file_problems = _files(settings_files, env_name)
    problems.extend(file_problems)
    layout = read_layout(layout_paths, env_name)
    problems.extend(layout.problems)
    for key, (value, source) in layout.values.items():
        layers.set(key, value, source)
    extra, extra_sources = dict(layout.extra), dict(layout.sources)
    if not file_problems:
        problems.extend(_read_dynaconf(files, env_name, layers, flagged, (extra, extra_sources)))

    for key, value in _flatten_overrides(overrides or {}).items():
        layers.set(key, value, "init() keyword")

    values, check_problems = _check(layers)
    problems.extend(check_problems)
    _apply_structured(values, layers)
    # Rules between settings are checked too, in the groups whose values all parsed (a bad value's default
    # stand-in would only add a confusing second message).
    groups = {name: cls(**values.get(name, {})) for name, cls in GROUPS.items()}
    failed = {problem.key.partition(".")[0] for problem in problems}
    for key, value, allowed in check_relations(groups):
        if key.partition(".")[0] not in failed:
            problems.append(ConfigProblem(key, display(key, value), allowed, layers.sources.get(key, "default")))
    if problems:
        raise ConfigError(problems)
    sources = {**extra_sources, **layers.sources, "env": env_origin}
    settings = Settings(env=env_name, sources=MappingProxyType(sources), extra=MappingProxyType(extra), **groups)
    _state.note_loaded_settings(settings)
    return settings


class _Layers:
    """Raw values by dotted key, later layers winning, and where each one came from."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.sources: dict[str, str] = {}

    def set(self, key: str, value: Any, source: str) -> None:
        self.values[key] = value
        self.sources[key] = source


def _files(
    explicit: Iterable[str | os.PathLike[str]] | None, env: str
) -> tuple[list[Path], list[Path], list[ConfigProblem]]:
    """The seed layout's files and rfobs's own settings files to read, and the problems finding them."""
    named, problems = find_settings_files(explicit)
    if explicit is None and not os.environ.get("RFOBS_SETTINGS_FILES", "").strip():
        return layout_files(env), named, problems
    return [p for p in named if is_layout_file(p)], [p for p in named if not is_layout_file(p)], problems


def _read_dynaconf(
    files: list[Path],
    env: str,
    layers: _Layers,
    flagged: set[str],
    extra: tuple[dict[str, Any], dict[str, str]],
) -> list[ConfigProblem]:
    """Layer the settings files (active environment over [default]) and RFOBS_* variables through Dynaconf.

    `flagged` are the RFOBS_* variables already reported as naming no setting; the application's own tables
    from the files go to `extra` (values, and sources by dotted key).
    """
    from dynaconf import Dynaconf  # pyright: ignore[reportMissingTypeStubs]

    problems: list[ConfigProblem] = []
    documents: list[tuple[Path, dict[str, Any]]] = []
    for path in files:
        # Dynaconf reports a bad file with a long internal traceback, or ignores a misnamed section.
        document, problem = read_document(path)
        problems.extend([problem] if problem else section_problems(path, document))
        documents.append((path, document))
    if problems:
        return problems
    # Dynaconf resolves `@format {env[NAME]}` lazily and fails without naming the key; check first.
    problems.extend(token_problems(documents, env))
    if problems:
        return problems
    try:
        dynaconf = Dynaconf(
            envvar_prefix=ENV_PREFIX.rstrip("_"),
            settings_files=[str(p) for p in files],
            environments=True,
            env=env,
            merge_enabled=True,
            load_dotenv=False,
        )
        as_dict = cast("dict[str, Any]", dynaconf.as_dict(env=env))
        loaded: dict[str, Any] = {k.lower(): v for k, v in as_dict.items()}
    except Exception as error:
        where = ", ".join(str(p) for p in files) or "RFOBS_* environment"
        return [ConfigProblem("settings_files", repr(where), f"loadable settings ({type(error).__name__})", "dynaconf")]

    file_sources = _file_sources(dynaconf, env)
    env_keys = environment_variable_keys()
    for group, table in loaded.items():
        variable = env_source(group, env_keys)
        source = f"env {variable}" if variable else file_sources.get(group, "settings file")
        if group not in GROUPS:
            if group not in file_sources:
                continue  # from RFOBS_* variables: checked by name already
            # The application's own tables are kept; flag only what looks like a typo of ours.
            _keep_extra(group, table, file_sources, extra)
            if difflib.get_close_matches(group, list(GROUPS), n=1, cutoff=0.75):
                problems.append(_unknown_or_misplaced(group, table, file_sources[group]))
            continue
        if not isinstance(table, Mapping):
            problems.append(_unknown_or_misplaced(group, table, source))
            continue
        for key, value in cast("Mapping[object, Any]", table).items():
            dotted = f"{group}.{str(key).lower()}"
            if (variable := env_keys.get(dotted)) in flagged:
                continue  # reported with the name it was probably meant to be
            if variable:
                # Dynaconf reads `1.10` as the float 1.1; keep the text and let the field's parser decide,
                # unless it is a Dynaconf token (`@format ...`) that Dynaconf has already resolved.
                text = os.environ[variable]
                layers.set(dotted, value if text.lstrip().startswith("@") else text, f"env {variable}")
            elif variable := env_source(dotted, env_keys):
                if variable not in flagged:  # RFOBS_OTLP__HEADERS__X or a whole-group RFOBS_OTLP
                    layers.set(dotted, value, f"env {variable}")
            else:
                layers.set(dotted, value, file_sources.get(dotted, "settings file"))
    return problems


def _keep_extra(
    name: str, table: Any, file_sources: Mapping[str, str], extra: tuple[dict[str, Any], dict[str, str]]
) -> None:
    """An application table of an rfobs settings file (`[default.database]`), over the seed layout's."""
    values, sources = extra
    values[name] = freeze(name, table)
    for key in [k for k in sources if k == name or k.startswith(name + ".")]:
        del sources[key]
    sources.update({k: v for k, v in file_sources.items() if k == name or k.startswith(name + ".")})


def _file_sources(dynaconf: Dynaconf, env: str) -> dict[str, str]:
    """Dotted key -> `file [section]` for each value a settings file supplied, last one winning."""
    from dynaconf.utils.inspect import get_history  # pyright: ignore[reportMissingTypeStubs, reportUnknownVariableType]

    sources: dict[str, str] = {}
    # Dynaconf is untyped: each history entry is a plain dict (loader, identifier, env, value).
    history = cast("list[dict[str, Any]]", get_history(dynaconf))
    for entry in history:
        if entry.get("loader") in {"set_method", "env_global", "validation_default"}:
            continue
        if str(entry.get("env", "")).lower() not in {"default", "global", env}:
            continue
        where = f"{Path(str(entry['identifier'])).name} [{str(entry['env']).lower()}]"
        for group, table in dict(entry.get("value") or {}).items():
            sources[str(group).lower()] = where
            if isinstance(table, Mapping):
                for key in cast("Mapping[object, Any]", table):
                    sources[f"{str(group).lower()}.{str(key).lower()}"] = where
    return sources


def _flatten_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in overrides.items():
        group, _, key = name.lower().partition("__")
        if key:
            flat[f"{group}.{key}"] = value
        elif isinstance(value, Mapping):
            for sub, sub_value in cast("Mapping[object, Any]", value).items():
                flat[f"{group}.{str(sub).lower()}"] = sub_value
        else:
            flat[group] = value
    return flat


def _check(layers: _Layers) -> tuple[dict[str, dict[str, Any]], list[ConfigProblem]]:
    """Parse every raw value with its field's parser; unknown keys are problems too."""
    values: dict[str, dict[str, Any]] = {}
    problems: list[ConfigProblem] = []
    known = {f"{g}.{f.name}": f for g, cls in GROUPS.items() for f in dataclasses.fields(cls)}
    for key, raw in layers.values.items():
        source = layers.sources[key]
        fld = known.get(key)
        if fld is None:
            problems.append(_unknown_or_misplaced(key, raw, source))
            continue
        try:
            parsed = fld.metadata["parse"](raw)
        except Invalid as invalid:
            problems.append(ConfigProblem(key, display(key, raw), invalid.allowed, source))
            continue
        group, _, name = key.partition(".")
        values.setdefault(group, {})[name] = parsed
    return values, problems


def _apply_structured(values: dict[str, dict[str, Any]], layers: _Layers) -> None:
    """`logging.structured = false` means the text format, unless `logging.format` was set too."""
    if values.get("logging", {}).get("structured") is False and "logging.format" not in layers.values:
        values["logging"]["format"] = "text"
        layers.sources["logging.format"] = f"logging.structured = false ({layers.sources['logging.structured']})"


def _unknown_or_misplaced(key: str, raw: Any, source: str) -> ConfigProblem:
    candidates = [f"{g}.{f.name}" for g, cls in GROUPS.items() for f in dataclasses.fields(cls)]
    if "." not in key:
        candidates = [*GROUPS, *ENVIRONMENTS, "default"]
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    allowed = f"a known setting (did you mean {close[0]!r}?)" if close else "a known setting; see `rfobs config show`"
    if key in GROUPS:
        return ConfigProblem(key, f"<{type(raw).__name__}>", f"a table of settings, such as [default.{key}]", source)
    # An unknown key may be a misspelt secret (`otlp.header`): show its type, never its value.
    return ConfigProblem(key, f"<{type(raw).__name__}>", allowed, source)


def add_secret_pattern(pattern: str) -> None:
    r"""Also scrub text matching `pattern`, a regular expression, wherever rfobs scrubs.

    That is span names and attributes, events, log lines and records, metric labels, health responses and
    config output, from now on and for the life of the process (`sdk.scrub_patterns` does the same from the
    settings). The whole match becomes `***`; when the pattern has a group named `secret`, only that group
    does, e.g. `r"acme-id=(?P<secret>[0-9a-f]{32})"`.

    Write patterns that cannot backtrack far: a literal prefix and bounded runs (`acme_[A-Za-z0-9]{32}`).
    A pattern is refused when it does not compile, matches the empty string, or repeats a group that itself
    holds a variable repeat or an alternation (`(a+)+`, `(a|ab)*`), which can take exponential time.

    Raises:
        ConfigError: The pattern is refused (the message says why).
    """
    try:
        _secrets.add_pattern(pattern)
    except ValueError as error:
        raise ConfigError(f"add_secret_pattern({pattern!r}): {error}") from None
