"""Loads, layers and validates rfobs settings into one frozen `Settings`; the only module that reads the environment.

Precedence, highest first:

1. keyword overrides to `rfobs.init(**overrides)` / `load_config(overrides=...)`
   (`tracing__exporter="none"` or `tracing={"exporter": "none"}`);
2. `RFOBS_<GROUP>__<KEY>` environment variables (`RFOBS_OTLP__ENDPOINT`);
3. the settings files, for the active environment over `[default]`: `settings.toml`, `settings.yaml` and
   `.secrets.toml` in the working directory, or the files listed in `RFOBS_SETTINGS_FILES`;
4. the standard OpenTelemetry variables (`OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_ENDPOINT`, ...);
5. the defaults declared on the `Settings` fields.

The environment is `development`, `staging` or `production`, chosen by `load_config(env=...)` or `RFOBS_ENV`.
Values may interpolate the environment with Dynaconf's `@format {env[NAME]}`, which is how secrets stay out
of files.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, cast

from rfobs import _secrets
from rfobs._secrets import REDACTED, Secret, is_secret_key, redact, redact_url, scrub_text
from rfobs._settings_model import ENVIRONMENTS, GROUPS, Invalid, Settings, check_relations
from rfobs.exceptions import ConfigError, ConfigProblem

if TYPE_CHECKING:
    from dynaconf import Dynaconf  # pyright: ignore[reportMissingTypeStubs]

__all__ = ["add_secret_pattern", "describe_settings", "load_config"]

DEFAULT_SETTINGS_FILES: Final = ("settings.toml", "settings.yaml", ".secrets.toml")
_ENV_PREFIX: Final = "RFOBS_"
_HEADER_NAME: Final = re.compile(r"[A-Za-z0-9_.-]+")

# Standard OpenTelemetry variables honoured as fallbacks, by the setting they feed.
_OTEL_FALLBACKS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "OTEL_SERVICE_NAME": "service.name",
        "OTEL_RESOURCE_ATTRIBUTES": "service.resource_attributes",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "otlp.endpoint",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "otlp.protocol",
        "OTEL_EXPORTER_OTLP_HEADERS": "otlp.headers",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "otlp.timeout",
        "OTEL_TRACES_SAMPLER": "tracing.sampler",
        "OTEL_TRACES_SAMPLER_ARG": "tracing.sampler_ratio",
        "OTEL_SDK_DISABLED": "sdk.disabled",
    }
)


def load_config(
    env: str | None = None,
    *,
    settings_files: Iterable[str | os.PathLike[str]] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read, layer and validate the settings.

    Args:
        env: `development`, `staging` or `production`. Default: `RFOBS_ENV`, else `development`.
        settings_files: Files to read instead of `RFOBS_SETTINGS_FILES` or the default ones.
        overrides: Highest-precedence values, as nested mappings or `group__key` names.

    Returns:
        The validated, frozen settings.

    Raises:
        ConfigError: One or more values are invalid; every problem is listed, secrets redacted.

    Example:
        >>> settings = load_config("production", overrides={"service__name": "researcher"})
        >>> settings.service.name
        'researcher'
    """
    problems: list[ConfigProblem] = []
    layers = _Layers()

    env_name, env_source = _resolve_env(env)
    if env_name not in ENVIRONMENTS:
        problems.append(ConfigProblem("env", repr(env_name), " | ".join(ENVIRONMENTS), env_source))
        env_name = "development"

    for variable, key in _OTEL_FALLBACKS.items():
        if (value := os.environ.get(variable)) is not None and value.strip():
            layers.set(key, value, f"env {variable}")
    if os.environ.get("OTEL_TRACES_SAMPLER_ARG") and "OTEL_TRACES_SAMPLER" not in os.environ:
        # The ratio alone means the standard's ratio sampler (respecting the parent's decision).
        layers.set("tracing.sampler", "parentbased_traceidratio", "env OTEL_TRACES_SAMPLER_ARG")

    files, file_problems = _settings_files(settings_files)
    problems.extend(file_problems)
    if not file_problems:
        problems.extend(_read_dynaconf(files, env_name, layers))

    for key, value in _flatten_overrides(overrides or {}).items():
        layers.set(key, value, "init() keyword")

    values, check_problems = _check(layers)
    problems.extend(check_problems)
    # Rules between settings are checked too, in the groups whose values all parsed (a bad value's default
    # stand-in would only add a confusing second message).
    groups = {name: cls(**values.get(name, {})) for name, cls in GROUPS.items()}
    failed = {problem.key.partition(".")[0] for problem in problems}
    for key, value, allowed in check_relations(groups):
        if key.partition(".")[0] not in failed:
            problems.append(ConfigProblem(key, _display(key, value), allowed, layers.sources.get(key, "default")))
    if problems:
        raise ConfigError(problems)
    layers.sources["env"] = env_source
    return Settings(env=env_name, sources=MappingProxyType(dict(layers.sources)), **groups)


def describe_settings(settings: Settings) -> list[tuple[str, str, str]]:
    """Every setting as `(key, shown value, source)` rows, secrets redacted, for `rfobs config show`."""
    rows = [("env", repr(settings.env), settings.sources.get("env", "default"))]
    for group_name in GROUPS:
        group = getattr(settings, group_name)
        for fld in dataclasses.fields(group):
            key = f"{group_name}.{fld.name}"
            rows.append((key, _display(fld.name, getattr(group, fld.name)), settings.sources.get(key, "default")))
    return rows


class _Layers:
    """Raw values by dotted key, later layers winning, and where each one came from."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.sources: dict[str, str] = {}

    def set(self, key: str, value: Any, source: str) -> None:
        self.values[key] = value
        self.sources[key] = source


def _resolve_env(env: str | None) -> tuple[str, str]:
    if env is not None:
        return env.strip().lower(), "init(env=...)"
    if value := os.environ.get("RFOBS_ENV", "").strip():
        return value.lower(), "env RFOBS_ENV"
    return "development", "default"


def _settings_files(explicit: Iterable[str | os.PathLike[str]] | None) -> tuple[list[Path], list[ConfigProblem]]:
    """The files to read. Named files must exist and be readable; default ones are read if present."""
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


def _read_dynaconf(files: list[Path], env: str, layers: _Layers) -> list[ConfigProblem]:
    """Layer the settings files (active environment over [default]) and RFOBS_* variables through Dynaconf."""
    from dynaconf import Dynaconf  # pyright: ignore[reportMissingTypeStubs]

    problems: list[ConfigProblem] = []
    for path in files:
        # Dynaconf reports a bad file with a long internal traceback; parse first for a one-line message.
        if problem := _parse_problem(path):
            problems.append(problem)
    if problems:
        return problems
    # Dynaconf resolves `@format {env[NAME]}` lazily and fails without naming the key; check first.
    problems.extend(_token_problems(files, env))
    if problems:
        return problems
    try:
        dynaconf = Dynaconf(
            envvar_prefix=_ENV_PREFIX.rstrip("_"),
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
    env_keys = _environment_variable_keys()
    for group, table in loaded.items():
        source = _env_source(group, env_keys) or file_sources.get(group, "settings file")
        if group not in GROUPS:
            # Other top-level keys may be the agent's own settings; flag only what looks like a typo of ours.
            if difflib.get_close_matches(group, list(GROUPS), n=1, cutoff=0.75):
                problems.append(_unknown_or_misplaced(group, table, source))
            continue
        if not isinstance(table, Mapping):
            problems.append(_unknown_or_misplaced(group, table, source))
            continue
        for key, value in cast("Mapping[object, Any]", table).items():
            dotted = f"{group}.{str(key).lower()}"
            if variable := env_keys.get(dotted):
                # Dynaconf reads `1.10` as the float 1.1; keep the text and let the field's parser decide,
                # unless it is a Dynaconf token (`@format ...`) that Dynaconf has already resolved.
                text = os.environ[variable]
                layers.set(dotted, value if text.lstrip().startswith("@") else text, f"env {variable}")
            elif variable := _env_source(dotted, env_keys):
                layers.set(dotted, value, f"env {variable}")  # RFOBS_OTLP__HEADERS__X or a whole-group RFOBS_OTLP
            else:
                layers.set(dotted, value, file_sources.get(dotted, "settings file"))
    return problems


def _env_source(dotted: str, env_keys: Mapping[str, str]) -> str | None:
    """The RFOBS_* variable that supplied `dotted` as a whole, through a nested key, or as its whole group."""
    if dotted in env_keys:
        return env_keys[dotted]
    for key, variable in env_keys.items():
        if key.startswith(dotted + "__"):
            return variable
    return env_keys.get(dotted.partition(".")[0])


_ENV_REFERENCE = re.compile(r"env\[\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)['\"]?\s*\]")


def _token_problems(files: list[Path], env: str) -> list[ConfigProblem]:
    """Dynaconf tokens that cannot be resolved: `@format` naming an unset variable, `@jinja` without jinja2."""
    import tomllib

    candidates: list[tuple[str, str, str]] = []  # (key, token, source)
    for path in files:
        if path.suffix.lower() != ".toml":
            continue
        document = tomllib.loads(path.read_text(encoding="utf-8"))
        for section, groups in document.items():
            if section.lower() not in {"default", "global", env} or not isinstance(groups, dict):
                continue
            for group, table in cast("dict[str, Any]", groups).items():
                for key, value in cast("dict[str, Any]", table).items() if isinstance(table, dict) else ():
                    candidates.extend(_tokens(f"{group}.{key}".lower(), value, f"{path.name} [{section.lower()}]"))
    for name, value in os.environ.items():
        if name.upper().startswith(_ENV_PREFIX) and value.lstrip().startswith("@"):
            key = name[len(_ENV_PREFIX) :].lower().replace("__", ".", 1)
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


def _parse_problem(path: Path) -> ConfigProblem | None:
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".toml":
            import tomllib

            document = tomllib.loads(text)
            for section in document:
                if section.lower() in GROUPS:
                    # Dynaconf would silently ignore a group outside an environment section.
                    return ConfigProblem(
                        section,
                        "[" + section + "]",
                        f"a section inside an environment, such as [default.{section}]",
                        str(path),
                    )
    except (OSError, UnicodeDecodeError) as error:
        return ConfigProblem(
            "settings_files", repr(str(path)), f"a readable UTF-8 file ({error.__class__.__name__})", str(path)
        )
    except ValueError as error:
        # tomllib's message names the line and column, never a value.
        return ConfigProblem("settings_files", repr(str(path)), f"valid TOML ({error})", str(path))
    return None


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


def _environment_variable_keys() -> dict[str, str]:
    """Dotted key -> the RFOBS_* variable that sets it."""
    keys: dict[str, str] = {}
    for name in os.environ:
        if name.upper().startswith(_ENV_PREFIX):
            group, _, key = name[len(_ENV_PREFIX) :].lower().partition("__")
            keys[f"{group}.{key}" if key else group] = name
    return keys


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
            problems.append(ConfigProblem(key, _display(key, raw), invalid.allowed, source))
            continue
        group, _, name = key.partition(".")
        values.setdefault(group, {})[name] = parsed
    return values, problems


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


def _display(key: str, value: Any) -> str:
    """Repr of a value for messages and `config show`, with secrets redacted."""
    name = key.rpartition(".")[2]
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
    return repr(redact(value))


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
