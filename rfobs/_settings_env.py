"""The environment variables behind the settings: the active environment, the fallbacks, and `RFOBS_*` names.

`RFOBS_<GROUP>__<KEY>` variables are read by Dynaconf; here every `RFOBS_*` name is checked against the
settings (a name that sets nothing is an error, with the name it was probably meant to be). Two kinds of
foreign variables are honoured below the settings files: the OpenTelemetry standard ones (`OTEL_*`) and the
seed programme's deployment variables (`ENV`, `LOG_LEVEL`, ...), whose rfobs names `rfobs config validate`
recommends.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

from rfobs import _state
from rfobs._settings_model import ENVIRONMENTS, GROUPS, Settings
from rfobs._settings_parsers import Invalid
from rfobs.exceptions import ConfigProblem

__all__ = [
    "ENV_PREFIX",
    "FALLBACKS",
    "SEED_ALIASES",
    "apply_fallbacks",
    "env_source",
    "environment_variable_keys",
    "honoured_aliases",
    "ignored_aliases",
    "preferred_variable",
    "resolve_env",
    "variable_problems",
]

ENV_PREFIX: Final = "RFOBS_"

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

SEED_ALIASES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "ENV": "env",
        "LOG_LEVEL": "logging.level",
        "LOG_FORMAT": "logging.format",
        "METRICS_ENABLED": "metrics.enabled",
        "PROMETHEUS_PORT": "metrics.prometheus_port",
    }
)
"""The seed programme's deployment variables, honoured with the precedence of the OTEL_* fallbacks."""

FALLBACKS: Final[Mapping[str, str]] = MappingProxyType(
    {**_OTEL_FALLBACKS, **{name: key for name, key in SEED_ALIASES.items() if key != "env"}}
)

# RFOBS_* variables that are not settings: rfobs reads them itself (the first two), or its test suite does.
_NOT_SETTINGS: Final = frozenset(
    {"RFOBS_ENV", "RFOBS_SETTINGS_FILES", "RFOBS_TEST_OUT", "RFOBS_PHOENIX_VENV", "RFOBS_ENGINES_DIR"}
)


def resolve_env(env: str | None) -> tuple[str, str]:
    """The active environment and where it came from: the argument, `RFOBS_ENV`, `ENV`, else development.

    `ENV` counts only when it names an environment: the name is too common (`sh` reads a start-up file from it)
    for another value to be an rfobs mistake; `ignored_aliases()` reports it instead.
    """
    if env is not None:
        return env.strip().lower(), "init(env=...)"
    if value := os.environ.get("RFOBS_ENV", "").strip():
        return value.lower(), "env RFOBS_ENV"
    if (value := os.environ.get("ENV", "").strip().lower()) in ENVIRONMENTS:
        return value, "env ENV"
    return "development", "default"


def apply_fallbacks(set_value: Callable[[str, Any, str], None]) -> None:
    """Layer the OTEL_* and seed variables that are set, as `set_value(key, text, "env NAME")`.

    A seed variable whose value the setting would refuse is skipped, with one warning per process and variable
    (see `ignored_aliases`): `PROMETHEUS_PORT`, `LOG_LEVEL` and friends are common names, set for other programs
    (Kubernetes sets `PROMETHEUS_PORT=tcp://...` in every pod beside a `prometheus` service), and must not stop an
    agent from starting.
    """
    ignored = ignored_aliases()
    _warn_once(ignored)
    skipped = {variable for variable, _, _ in ignored}
    for variable, key in FALLBACKS.items():
        if variable in skipped:
            continue
        if (value := os.environ.get(variable)) is not None and value.strip():
            set_value(key, value, f"env {variable}")
    if os.environ.get("OTEL_TRACES_SAMPLER_ARG") and "OTEL_TRACES_SAMPLER" not in os.environ:
        # The ratio alone means the standard's ratio sampler (respecting the parent's decision).
        set_value("tracing.sampler", "parentbased_traceidratio", "env OTEL_TRACES_SAMPLER_ARG")


def ignored_aliases() -> list[tuple[str, str, str]]:
    """`(variable, shown value, what is allowed)` for each seed variable that is set to a value its setting refuses."""
    from rfobs._secrets import scrub_text

    fields = {f"{g}.{f.name}": f for g, cls in GROUPS.items() for f in dataclasses.fields(cls)}
    ignored: list[tuple[str, str, str]] = []
    for variable, key in SEED_ALIASES.items():
        value = os.environ.get(variable, "").strip()
        if not value:
            continue
        if key == "env":
            if value.lower() not in ENVIRONMENTS:
                ignored.append((variable, repr(scrub_text(value)), " | ".join(ENVIRONMENTS)))
            continue
        try:
            fields[key].metadata["parse"](value)
        except Invalid as error:
            ignored.append((variable, repr(scrub_text(value)), error.allowed))
    return ignored


def _warn_once(ignored: list[tuple[str, str, str]]) -> None:
    """Log, once per process and variable, each of the `ignored_aliases()`."""
    for variable, shown, allowed in ignored:
        if variable not in _warned:
            _warned.add(variable)
            _log.warning(
                "rfobs: ignoring %s=%s (expected %s for %s); set %s to configure rfobs",
                variable,
                shown,
                allowed,
                SEED_ALIASES[variable],
                "RFOBS_ENV" if variable == "ENV" else preferred_variable(SEED_ALIASES[variable]),
            )


_warned: set[str] = set()
_log = logging.getLogger("rfobs")
_state.on_reset(_warned.clear)


def preferred_variable(key: str) -> str:
    """The `RFOBS_*` variable of a dotted setting (`logging.level` -> `RFOBS_LOGGING__LEVEL`)."""
    return ENV_PREFIX + key.upper().replace(".", "__", 1)


def honoured_aliases(settings: Settings) -> list[tuple[str, str, str]]:
    """`(variable, setting, rfobs variable to prefer)` for each seed variable whose value is in effect."""
    return [
        (variable, key, preferred_variable(key))
        for variable, key in SEED_ALIASES.items()
        if settings.sources.get(key) == f"env {variable}"
    ]


def environment_variable_keys() -> dict[str, str]:
    """Dotted key -> the RFOBS_* variable that sets it."""
    keys: dict[str, str] = {}
    for name in os.environ:
        if name.startswith(ENV_PREFIX) and name not in _NOT_SETTINGS:
            group, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
            keys[f"{group}.{key}" if key else group] = name
    return keys


def env_source(dotted: str, env_keys: Mapping[str, str]) -> str | None:
    """The RFOBS_* variable that supplied `dotted` as a whole, through a nested key, or as its whole group."""
    if dotted in env_keys:
        return env_keys[dotted]
    for key, variable in env_keys.items():
        # `tracing` from RFOBS_TRACING__EXPORTER; `otlp.headers` from RFOBS_OTLP__HEADERS__X.
        if key.startswith((dotted + ".", dotted + "__")):
            return variable
    return env_keys.get(dotted.partition(".")[0])


def variable_problems() -> tuple[list[ConfigProblem], set[str]]:
    """A problem for each `RFOBS_*` variable that names no setting, and those variables' names."""
    fields = {f"{g}.{f.name}": f for g, cls in GROUPS.items() for f in dataclasses.fields(cls)}
    tables = {key for key, fld in fields.items() if isinstance(_default(fld), Mapping)}
    candidates = [*_NOT_SETTINGS, *(ENV_PREFIX + g.upper() for g in GROUPS), *map(preferred_variable, fields)]
    problems: list[ConfigProblem] = []
    flagged: set[str] = set()
    for name in sorted(os.environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or name in _NOT_SETTINGS:
            continue
        parts = upper[len(ENV_PREFIX) :].lower().split("__")
        dotted = ".".join(parts[:2])
        valid = (len(parts) == 1 and parts[0] in GROUPS) or (  # a whole group: RFOBS_TRACING='@json {...}'
            # a setting, or a key of a table setting (RFOBS_OTLP__HEADERS__AUTHORIZATION)
            all(parts) and (dotted in fields if len(parts) == 2 else dotted in tables)
        )
        if valid and name.startswith(ENV_PREFIX):
            continue
        close = difflib.get_close_matches(upper, candidates, n=1, cutoff=0.6)
        if len(parts) > 2 and dotted in fields:
            close = [preferred_variable(dotted)]
        elif not name.startswith(ENV_PREFIX) and (upper in _NOT_SETTINGS or len(parts) < 3):
            close = [ENV_PREFIX + name[len(ENV_PREFIX) :]]  # Dynaconf reads the prefix in capitals only
        hint = f" (did you mean {close[0]}?)" if close else ""
        allowed = f"RFOBS_<GROUP>__<KEY> naming a setting{hint}; see `rfobs config show`"
        # The value is never shown: a misnamed variable may well hold a secret.
        problems.append(ConfigProblem(name, "<str>", allowed, f"env {name}"))
        flagged.add(name)
    return problems, flagged


def _default(fld: dataclasses.Field[Any]) -> object:
    if fld.default_factory is not dataclasses.MISSING:
        return fld.default_factory()
    return fld.default
