from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rfobs import ConfigError, load_config
from rfobs.cli import main
from rfobs.config import describe_settings

SECRET = "s3cr3t-token-value"


def write(path: str, text: str) -> Path:
    file = Path(path)
    file.write_text(text, encoding="utf-8")
    return file


def test_defaults_without_files_or_environment() -> None:
    settings = load_config()
    assert settings.env == "development"
    assert settings.service.name == "rfobs-agent"
    assert settings.trace_exporter == "file"
    assert settings.tracing.file_path == ".rfobs/traces.jsonl"
    assert settings.metrics.namespace == "researchflow_agents"
    assert (settings.metrics.prometheus_host, settings.metrics.prometheus_port) == ("127.0.0.1", 9464)
    assert settings.otlp.endpoint is None
    assert settings.deployment_environment == "development"
    assert dict(settings.sources) == {"env": "default"}


def test_environment_sections_are_layered_over_default(monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        "settings.toml",
        """
[default.service]
name = "researcher"
[default.tracing]
sampler_ratio = 0.5
[production.tracing]
exporter = "none"
sampler_ratio = 0.1
[staging.tracing]
exporter = "console"
""",
    )
    assert load_config().tracing.sampler_ratio == 0.5
    assert load_config("staging").trace_exporter == "console"
    monkeypatch.setenv("RFOBS_ENV", "production")
    production = load_config()
    assert (production.env, production.trace_exporter, production.tracing.sampler_ratio) == ("production", "none", 0.1)
    assert production.service.name == "researcher"
    assert production.sources["tracing.exporter"] == "settings.toml [production]"
    assert production.sources["service.name"] == "settings.toml [default]"
    assert production.sources["env"] == "env RFOBS_ENV"


def test_precedence_keyword_over_rfobs_env_over_file_over_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    write("settings.toml", '[default.service]\nname = "from-file"\nversion = "1.0"\n')
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-otel")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    assert load_config().service.name == "from-file"
    assert load_config().otlp.endpoint == "http://collector:4317"
    assert load_config().sources["otlp.endpoint"] == "env OTEL_EXPORTER_OTLP_ENDPOINT"
    monkeypatch.setenv("RFOBS_SERVICE__NAME", "from-rfobs-env")
    monkeypatch.setenv("RFOBS_OTLP__ENDPOINT", "http://other:4318")
    settings = load_config()
    assert (settings.service.name, settings.otlp.endpoint) == ("from-rfobs-env", "http://other:4318")
    assert settings.sources["service.name"] == "env RFOBS_SERVICE__NAME"
    overridden = load_config(overrides={"service__name": "from-keyword", "otlp": {"endpoint": "http://kw:4317"}})
    assert (overridden.service.name, overridden.otlp.endpoint) == ("from-keyword", "http://kw:4317")
    assert overridden.sources["service.name"] == "init() keyword"
    assert overridden.service.version == "1.0"


def test_environment_values_keep_their_text(monkeypatch: pytest.MonkeyPatch) -> None:
    # Dynaconf would read 1.10 as the float 1.1.
    monkeypatch.setenv("RFOBS_SERVICE__VERSION", "1.10")
    monkeypatch.setenv("RFOBS_METRICS__PROMETHEUS_PORT", "9999")
    monkeypatch.setenv("RFOBS_TRACING__ENABLED", "false")
    settings = load_config()
    assert (settings.service.version, settings.metrics.prometheus_port, settings.tracing.enabled) == (
        "1.10",
        9999,
        False,
    )


def test_otel_standard_variables_are_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=search,region=eu%2Dwest")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"api-key={SECRET}")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    settings = load_config()
    assert dict(settings.service.resource_attributes) == {"team": "search", "region": "eu-west"}
    assert settings.otlp.protocol == "http/protobuf"
    assert settings.otlp.headers["api-key"].get_secret_value() == SECRET
    assert (settings.tracing.sampler, settings.tracing.sampler_ratio) == ("traceidratio", 0.25)
    assert settings.sdk.disabled is True


def test_sampler_arg_alone_selects_the_parent_based_ratio_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.5")
    settings = load_config()
    assert (settings.tracing.sampler, settings.tracing.sampler_ratio) == ("parentbased_traceidratio", 0.5)


def test_secrets_file_and_format_interpolation_stay_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTOR_TOKEN", SECRET)
    write(".secrets.toml", '[default.otlp]\nheaders = {authorization = "@format Bearer {env[COLLECTOR_TOKEN]}"}\n')
    settings = load_config()
    assert settings.otlp.headers["authorization"].get_secret_value() == f"Bearer {SECRET}"
    shown = describe_settings(settings)
    assert ("otlp.headers", "{'authorization': '***'}", ".secrets.toml [default]") in shown
    assert SECRET not in repr(settings)
    assert SECRET not in str(shown)


def test_settings_files_named_by_environment_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config_dir = tmp_path / "conf"
    config_dir.mkdir()
    (config_dir / "rfobs.yaml").write_text("default:\n  metrics:\n    prometheus_port: 9500\n", encoding="utf-8")
    monkeypatch.setenv("RFOBS_SETTINGS_FILES", str(config_dir / "rfobs.yaml"))
    assert load_config().metrics.prometheus_port == 9500


def test_settings_are_frozen() -> None:
    settings = load_config()
    with pytest.raises(AttributeError):
        settings.service.name = "changed"  # pyright: ignore[reportAttributeAccessIssue]


BAD_OVERRIDES: list[tuple[str, dict[str, Any], str]] = [
    ("metrics.prometheus_port", {"metrics__prometheus_port": 70000}, "an integer from 0 to 65535"),
    ("metrics.prometheus_port", {"metrics__prometheus_port": "http"}, "an integer from 0 to 65535"),
    ("tracing.max_queue_size", {"tracing__max_queue_size": -5}, "an integer from 1"),
    ("tracing.file_max_bytes", {"tracing__file_max_bytes": 10}, "an integer from 1024"),
    ("tracing.exporter", {"tracing__exporter": "jaeger"}, "one of file | otlp | console | none"),
    ("otlp.protocol", {"otlp__protocol": "http/json"}, "one of grpc | http/protobuf"),
    ("otlp.endpoint", {"otlp__endpoint": "collector:4317"}, "an http:// or https:// URL"),
    ("otlp.endpoint", {"otlp__endpoint": "http://:4317"}, "an http:// or https:// URL"),
    ("otlp.endpoint", {"otlp__endpoint": "http://host:99999"}, "an http:// or https:// URL"),
    ("tracing.sampler_ratio", {"tracing__sampler_ratio": 1.5}, "a number from 0 to 1"),
    ("tracing.sampler", {"tracing__sampler": "sometimes"}, "one of always_on"),
    ("logging.level", {"logging__level": "LOUD"}, "one of DEBUG | INFO | WARNING | ERROR | CRITICAL"),
    ("logging.format", {"logging__format": "xml"}, "one of json | text"),
    ("tracing.enabled", {"tracing__enabled": "maybe"}, "true or false"),
    ("otlp.timeout", {"otlp__timeout": True}, "a number from 0.001 to 600"),
    ("service.name", {"service__name": ""}, "a non-empty string"),
    ("metrics.namespace", {"metrics__namespace": "my-agents"}, "letters, digits and underscores"),
    ("otlp.compression", {"otlp__compression": "brotli"}, "one of none | gzip | deflate"),
    ("otlp.headers", {"otlp__headers": f"broken{SECRET}"}, "a table of strings or 'key=value,key2=value2'"),
    ("tracing.exportr", {"tracing__exportr": "file"}, "did you mean 'tracing.exporter'?"),
]


BAD_HEALTH: list[tuple[str, dict[str, Any], str]] = [  # the health group's own rules
    ("health.port", {"health__port": 70000}, "an integer from 0 to 65535"),
    ("health.cache_ttl", {"health__cache_ttl": -1}, "a number from 0 to 3600"),
    ("health.check_timeout", {"health__check_timeout": 0}, "a number from 0.001 to 600"),
    ("health.cpu_max_percent", {"health__cpu_max_percent": 150}, "a number from 0 to 100"),
    ("health.disk_paths", {"health__disk_paths": 5}, "a list of non-empty strings or 'a,b,c'"),
    ("health.disk_paths", {"health__disk_paths": ["/", ""]}, "a list of non-empty strings"),
    ("health.env_files", {"health__env_files": "[.env"}, "a list of non-empty strings"),
    ("health.max_open_files", {"health__max_open_files": 0}, "an integer from 1 to 10000000"),
    ("health.degradation_factor", {"health__degradation_factor": 1}, "a number greater than 1 and at most 1000"),
    ("health.enabled", {"health__enabled": "maybe"}, "true or false"),
    ("health.dependencies", {"health__dependencies": "database"}, "a table of strings or 'key=value,key2=value2'"),
    ("health.dependencies", {"health__dependencies": {"db": "localhost:5432"}}, "tcp://host:port, an http(s):// URL"),
    ("health.dependencies", {"health__dependencies": {"db": f"redis://u:{SECRET}@cache"}}, "a host and port"),
    ("health.dependencies", {"health__dependencies": {"9db": "tcp://db:5432"}}, "starting with a letter (not '9db')"),
    ("health.dependencies", {"health__dependencies": {"cpu": "tcp://db:5432"}}, "other than the built-in checks'"),
    ("health.critical_dependencies", {"health__critical_dependencies": "db"}, "names from health.dependencies (none"),
]


@pytest.mark.parametrize(
    ("key", "overrides", "allowed"),
    BAD_OVERRIDES + BAD_HEALTH,
    ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(BAD_OVERRIDES + BAD_HEALTH)],
)
def test_bad_value_names_key_value_allowed_and_source(key: str, overrides: dict[str, Any], allowed: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides=overrides)
    error = caught.value
    assert [p.key for p in error.problems] == [key]
    assert allowed in error.problems[0].allowed
    assert error.problems[0].source == "init() keyword"
    assert key in str(error)
    assert SECRET not in str(error)
    assert error.__context__ is None and error.__cause__ is None


def test_secret_values_are_redacted_in_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"otlp__headers": f"authorization=Bearer {SECRET},broken"})
    assert SECRET not in str(caught.value)
    assert "'***'" in str(caught.value)


def test_every_problem_is_listed_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RFOBS_METRICS__PROMETHEUS_PORT", "-1")
    write("settings.toml", '[default.tracing]\nexporter = "zipkin"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"logging__level": "verbose"})
    assert {(p.key, p.source) for p in caught.value.problems} == {
        ("metrics.prometheus_port", "env RFOBS_METRICS__PROMETHEUS_PORT"),
        ("tracing.exporter", "settings.toml [default]"),
        ("logging.level", "init() keyword"),
    }
    assert str(caught.value).startswith("3 invalid settings:\n")


def test_unknown_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RFOBS_ENV", "prod")
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert [(p.key, p.value, p.source) for p in caught.value.problems] == [("env", "'prod'", "env RFOBS_ENV")]
    assert "development | staging | production" in str(caught.value)


def test_malformed_toml_names_the_file_and_line() -> None:
    write("settings.toml", '[default.tracing]\nexporter = "file\n')
    with pytest.raises(ConfigError) as caught:
        load_config()
    (problem,) = caught.value.problems
    assert problem.key == "settings_files"
    assert "settings.toml" in problem.value
    assert "valid TOML" in problem.allowed and "line 2" in problem.allowed


def test_named_settings_file_must_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RFOBS_SETTINGS_FILES", "missing.toml")
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert [(p.key, p.allowed, p.source) for p in caught.value.problems] == [
        ("settings_files", "an existing file", "env RFOBS_SETTINGS_FILES")
    ]


def test_settings_path_that_is_not_a_file() -> None:
    Path("conf.toml").mkdir()
    with pytest.raises(ConfigError) as caught:
        load_config(settings_files=["conf.toml"])
    assert [p.allowed for p in caught.value.problems] == ["an existing file"]


def test_settings_file_that_is_not_utf8() -> None:
    Path("settings.toml").write_bytes(b"[default.service]\nname = '\xff\xfe'\n")
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert [p.allowed for p in caught.value.problems] == ["a readable UTF-8 file (UnicodeDecodeError)"]


def test_format_token_naming_an_unset_variable_names_the_key() -> None:
    write(".secrets.toml", '[default.otlp]\nheaders = {authorization = "@format Bearer {env[COLLECTOR_TOKEN]}"}\n')
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert [(p.key, p.value, p.allowed, p.source) for p in caught.value.problems] == [
        (
            "otlp.headers.authorization",
            "'@format Bearer {env[COLLECTOR_TOKEN]}'",
            "an environment variable COLLECTOR_TOKEN that is set (the @format token reads it)",
            ".secrets.toml [default]",
        )
    ]


def test_format_token_in_an_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RFOBS_OTLP__TIMEOUT", "@format {env[NOT_SET_ANYWHERE]}")
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert [(p.key, p.source) for p in caught.value.problems] == [("otlp.timeout", "env RFOBS_OTLP__TIMEOUT")]


def test_nested_and_group_environment_variables_are_attributed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RFOBS_OTLP__HEADERS__AUTHORIZATION", SECRET)
    monkeypatch.setenv("RFOBS_TRACING", '@json {"exporter": "none"}')
    settings = load_config()
    assert settings.trace_exporter == "none"
    assert settings.sources["tracing.exporter"] == "env RFOBS_TRACING"
    assert settings.sources["otlp.headers"] == "env RFOBS_OTLP__HEADERS__AUTHORIZATION"


@pytest.mark.parametrize(
    ("overrides", "shown"),
    [
        ({"otlp__endpoint": f"https://user:{SECRET}@collector:4318"}, "'https://user:***@collector:4318'"),
        ({"otlp__endpoint": f"collector:4318?token={SECRET}"}, "'collector:4318?token=***'"),
        ({"otlp__header": f"authorization=Bearer {SECRET}"}, "<str>"),
        ({"otlp__headers": [f"authorization: Bearer {SECRET}"]}, "'***'"),
        ({"otpl": {"headers": {"authorization": SECRET}}}, "<dict>"),
    ],
)
def test_no_secret_in_any_error(overrides: dict[str, Any], shown: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides=overrides)
    assert SECRET not in str(caught.value)
    assert [p.value for p in caught.value.problems] == [shown]


def test_secret_named_resource_attributes_are_redacted_in_config_show(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"api_key={SECRET},team=search")
    rows = describe_settings(load_config())
    assert (
        "service.resource_attributes",
        "{'api_key': '***', 'team': 'search'}",
        "env OTEL_RESOURCE_ATTRIBUTES",
    ) in rows


def test_group_outside_an_environment_section_is_reported() -> None:
    write("settings.toml", '[tracing]\nexporter = "none"\n')
    with pytest.raises(ConfigError, match=r"a section inside an environment, such as \[default.tracing\]"):
        load_config()


def test_misspelled_group_is_reported_but_foreign_keys_are_ignored() -> None:
    write("settings.toml", '[default.tracng]\nexporter = "none"\n[default.my_app]\ncolour = "blue"\n')
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert [p.key for p in caught.value.problems] == ["tracng"]


def test_config_validate_and_show_commands(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RFOBS_OTLP__HEADERS", f"x-api-key={SECRET}")
    assert main(["config", "validate"]) == 0
    assert capsys.readouterr().out == "settings are valid (environment: development)\n"
    assert main(["config", "show"]) == 0
    shown = capsys.readouterr().out
    assert SECRET not in shown
    assert "otlp.headers" in shown and "{'x-api-key': '***'}" in shown and "env RFOBS_OTLP__HEADERS" in shown
    monkeypatch.setenv("RFOBS_TRACING__SAMPLER_RATIO", "2")
    monkeypatch.setenv("RFOBS_LOGGING__LEVEL", "chatty")
    assert main(["config", "validate"]) == 1
    errors = capsys.readouterr().err
    assert "tracing.sampler_ratio = '2'" in errors and "logging.level = 'chatty'" in errors
    assert SECRET not in errors
