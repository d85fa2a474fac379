"""Environment variables and settings files: the seed's deployment variables, misnamed variables and sections."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rfobs import ConfigError, load_config
from rfobs.cli import main
from rfobs.config import describe_settings

SEED_VARIABLES = ("ENV", "LOG_LEVEL", "LOG_FORMAT", "METRICS_ENABLED", "PROMETHEUS_PORT")


@pytest.fixture(autouse=True)
def _no_seed_variables(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in SEED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    yield


@pytest.fixture
def seed_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables of the seed's `docker-compose.yml`."""
    for name, value in {
        "ENV": "production",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "text",
        "METRICS_ENABLED": "false",
        "PROMETHEUS_PORT": "9090",
    }.items():
        monkeypatch.setenv(name, value)


def problems(caught: pytest.ExceptionInfo[ConfigError]) -> list[tuple[str, str, str]]:
    return [(p.key, p.allowed, p.source) for p in caught.value.problems]


@pytest.mark.usefixtures("seed_deployment")
def test_the_seed_deployment_variables_are_honoured_with_their_sources() -> None:
    settings = load_config()
    assert (settings.env, settings.logging.level, settings.logging.format) == ("production", "WARNING", "text")
    assert (settings.metrics.enabled, settings.metrics.prometheus_port) == (False, 9090)
    rows = {key: (value, source) for key, value, source in describe_settings(settings)}
    assert rows["env"] == ("'production'", "env ENV")
    assert rows["logging.level"] == ("'WARNING'", "env LOG_LEVEL")
    assert rows["metrics.prometheus_port"] == ("9090", "env PROMETHEUS_PORT")


@pytest.mark.usefixtures("seed_deployment")
def test_the_seed_variables_rank_below_files_and_rfobs_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    Path("settings.toml").write_text('[default.logging]\nlevel = "ERROR"\n', encoding="utf-8")
    monkeypatch.setenv("RFOBS_ENV", "staging")
    monkeypatch.setenv("RFOBS_METRICS__PROMETHEUS_PORT", "9999")
    settings = load_config()
    assert (settings.env, settings.logging.level, settings.metrics.prometheus_port) == ("staging", "ERROR", 9999)
    assert settings.logging.format == "text"  # nothing above LOG_FORMAT
    assert load_config("development").env == "development"


@pytest.mark.usefixtures("clean_globals")  # the warning is once per process: reset between cases
@pytest.mark.parametrize(
    ("variable", "value", "key", "default"),
    [
        ("ENV", "/root/.shrc", "env", "development"),  # sh reads its start-up file from ENV
        ("ENV", "prod", "env", "development"),
        ("LOG_LEVEL", "verbose", "logging.level", "INFO"),
        ("PROMETHEUS_PORT", "tcp://10.0.0.5:9090", "metrics.prometheus_port", 9464),  # Kubernetes service links
        ("METRICS_ENABLED", "perhaps", "metrics.enabled", True),
    ],
)
def test_a_seed_variable_set_for_something_else_is_ignored_with_one_warning(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    key: str,
    default: object,
) -> None:
    monkeypatch.setenv(variable, value)
    with caplog.at_level("WARNING", logger="rfobs"):
        settings = load_config()
        load_config()
    group, _, name = key.partition(".")
    assert (getattr(getattr(settings, group), name) if name else settings.env) == default
    assert settings.sources.get(key, "default") == "default"
    warnings = [r.getMessage() for r in caplog.records if variable in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith(f"rfobs: ignoring {variable}={value!r} (expected ")
    assert main(["config", "validate"]) == 0
    assert f"note: {variable}={value!r} is ignored: rfobs reads it as {key} only when it is " in capsys.readouterr().out


def test_a_bad_rfobs_env_is_still_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RFOBS_ENV", "prod")
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert problems(caught) == [("env", "development | staging | production", "env RFOBS_ENV")]


@pytest.mark.usefixtures("seed_deployment")
def test_config_validate_lists_the_honoured_seed_variables_without_failing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RFOBS_LOGGING__FORMAT", "json")  # LOG_FORMAT is then not in effect
    assert main(["config", "validate"]) == 0
    assert capsys.readouterr().out == (
        "settings are valid (environment: production)\n"
        "note: ENV is honoured as env; prefer RFOBS_ENV\n"
        "note: LOG_LEVEL is honoured as logging.level; prefer RFOBS_LOGGING__LEVEL\n"
        "note: METRICS_ENABLED is honoured as metrics.enabled; prefer RFOBS_METRICS__ENABLED\n"
        "note: PROMETHEUS_PORT is honoured as metrics.prometheus_port; prefer RFOBS_METRICS__PROMETHEUS_PORT\n"
    )


@pytest.mark.parametrize(
    ("variable", "meant"),
    [
        ("RFOBS_OTLP_ENDPOINT", "RFOBS_OTLP__ENDPOINT"),
        ("RFOBS_TRACING__EXPORTR", "RFOBS_TRACING__EXPORTER"),
        ("RFOBS_TRACNG__EXPORTER", "RFOBS_TRACING__EXPORTER"),
        ("RFOBS_SETTINGS_FILE", "RFOBS_SETTINGS_FILES"),
        ("RFOBS_TRACING__SAMPLER__RATIO", "RFOBS_TRACING__SAMPLER"),
    ],
)
def test_an_rfobs_variable_that_names_no_setting_is_an_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, meant: str
) -> None:
    monkeypatch.setenv(variable, "http://collector:4317")
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert problems(caught) == [
        (
            variable,
            f"RFOBS_<GROUP>__<KEY> naming a setting (did you mean {meant}?); see `rfobs config show`",
            f"env {variable}",
        )
    ]
    assert "collector" not in str(caught.value)


def test_variables_rfobs_reads_itself_are_not_settings_but_are_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RFOBS_ENV", "staging")
    monkeypatch.setenv("RFOBS_SETTINGS_FILES", "")
    monkeypatch.setenv("RFOBS_OTLP__HEADERS__AUTHORIZATION", "Bearer x")
    monkeypatch.setenv("RFOBS_TRACING", '@json {"exporter": "none"}')
    settings = load_config()
    assert (settings.env, settings.trace_exporter) == ("staging", "none")
    monkeypatch.setenv("RFOBS_tracing__sampler_ratio", "0.5")  # the prefix in capitals, the rest in any case
    assert load_config().tracing.sampler_ratio == 0.5


def test_an_rfobs_prefix_in_lower_case_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("rfobs_tracing__sampler_ratio", "0.5")  # Dynaconf would ignore it
    with pytest.raises(ConfigError, match="did you mean RFOBS_tracing__sampler_ratio"):
        load_config()


def test_bad_keys_and_values_from_variables_are_attributed_to_them(monkeypatch: pytest.MonkeyPatch) -> None:
    # The tracing group also comes from a file: its values must not take the file's name.
    Path("settings.toml").write_text("[default.tracing]\nsampler_ratio = 0.5\n", encoding="utf-8")
    monkeypatch.setenv("RFOBS_TRACING__EXPORTER", "jaeger")
    monkeypatch.setenv("RFOBS_TRACNG__ENABLED", "true")
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert [(p.key, p.source) for p in caught.value.problems] == [
        ("RFOBS_TRACNG__ENABLED", "env RFOBS_TRACNG__ENABLED"),
        ("tracing.exporter", "env RFOBS_TRACING__EXPORTER"),
    ]


def test_an_unknown_environment_section_is_an_error() -> None:
    Path("settings.toml").write_text('[prodution.otlp]\nendpoint = "http://collector:4317"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config("production")
    assert [(p.key, p.value) for p in caught.value.problems] == [("prodution", "[prodution]")]
    assert caught.value.problems[0].allowed == (
        "an environment section: default, global, development, staging, production (did you mean 'production'?)"
    )
    assert caught.value.problems[0].source.endswith("settings.toml")


def test_a_broken_yaml_settings_file_names_the_file_line_and_column() -> None:
    Path("settings.yaml").write_text("default:\n  tracing:\n    exporter: [file\n  otlp: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config()
    (problem,) = caught.value.problems
    assert problem.key == "settings_files" and problem.source.endswith("settings.yaml")
    assert problem.allowed == "valid YAML (expected ',' or ']', but got ':' (at line 4, column 7))"
    Path("config").mkdir()
    Path("config/config.yaml").write_text("database:\n  url: 'unterminated\n", encoding="utf-8")
    Path("settings.yaml").unlink()
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert [(p.value, p.source) for p in caught.value.problems] == [("'config/config.yaml'", "config/config.yaml")]
    assert "at line 3, column 1" in caught.value.problems[0].allowed


def test_a_broken_json_settings_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "rfobs.json"
    path.write_text('{"default": {"tracing": {"exporter": "file",}}}', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"valid JSON \(.*line 1 column 45"):
        load_config(settings_files=[path])
