"""The seed programme's settings layout: `config/config.<env>.yaml` over `config/config.yaml`, `${VAR}` filled in."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

import rfobs
from rfobs import ConfigError, _state, load_config
from rfobs.cli import main
from rfobs.config import describe_settings, settings_as_json

# /work/shared/SEED.md, "3. Advanced Configuration", verbatim.
SEED_PRODUCTION_YAML = """\
# config/config.production.yaml
environment: production
debug: false

database:
  url: ${DATABASE_URL}
  pool_size: 20
  pool_timeout: 30

redis:
  url: ${REDIS_URL}
  max_connections: 20

api:
  openai_api_key: ${OPENAI_API_KEY}
  anthropic_api_key: ${ANTHROPIC_API_KEY}
  max_retries: 5
  timeout_seconds: 60

logging:
  level: INFO
  format: json
  structured: true

metrics:
  enabled: true
  prometheus_enabled: true
  prometheus_port: 9090

security:
  secret_backend: vault
  vault_url: ${VAULT_URL}
  rate_limit_per_minute: 1000

design_ops:
  model: gpt-4o
  temperature: 0.7
  timeout_seconds: 120
"""

DATABASE_PASSWORD = "db-pa55w0rd-xyz"
OPENAI_KEY = "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
ANTHROPIC_KEY = "sk-ant-api03-abcdefghijklmnop0123456789"
SEED_VARIABLES = {
    "DATABASE_URL": f"postgresql://agent:{DATABASE_PASSWORD}@db.internal:5432/research",
    "REDIS_URL": "redis://cache.internal:6379/0",
    "OPENAI_API_KEY": OPENAI_KEY,
    "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
    "VAULT_URL": "https://vault.prod.example.com",
}
SECRETS = (DATABASE_PASSWORD, OPENAI_KEY, ANTHROPIC_KEY, "vault.prod.example.com")


@pytest.fixture(autouse=True)
def _no_seed_variables(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in [*SEED_VARIABLES, "ENV", "LOG_LEVEL", "LOG_FORMAT", "METRICS_ENABLED", "PROMETHEUS_PORT", "POOL"]:
        monkeypatch.delenv(name, raising=False)
    yield


@pytest.fixture
def seed_layout(monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in SEED_VARIABLES.items():
        monkeypatch.setenv(name, value)
    Path("config").mkdir()
    path = Path("config/config.production.yaml")
    path.write_text(SEED_PRODUCTION_YAML, encoding="utf-8")
    return path


def write(path: str, text: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text, encoding="utf-8")


def test_the_seed_production_file_is_read_with_its_own_sections(seed_layout: Path) -> None:
    config = load_config("production")
    assert (config.env, config.environment, config.debug) == ("production", "production", False)
    assert (config.logging.level, config.logging.format, config.logging.structured) == ("INFO", "json", True)
    assert (config.metrics.enabled, config.metrics.prometheus_enabled, config.metrics.prometheus_port) == (
        True,
        True,
        9090,
    )
    assert config.database.url == SEED_VARIABLES["DATABASE_URL"]
    assert (config.database.pool_size, config.database.pool_timeout) == (20, 30)
    assert (config.redis.url, config.redis.max_connections) == ("redis://cache.internal:6379/0", 20)
    assert (config.api.max_retries, config.api.timeout_seconds) == (5, 60)
    assert config.api.openai_api_key == OPENAI_KEY and f"{config.api.anthropic_api_key}" == ANTHROPIC_KEY
    assert config.security.vault_url == "https://vault.prod.example.com"
    assert dict(config.design_ops) == {"model": "gpt-4o", "temperature": 0.7, "timeout_seconds": 120}
    assert config["database"]["url"] == SEED_VARIABLES["DATABASE_URL"]
    assert config["api"].max_retries == 5
    assert config.sources["metrics.prometheus_port"] == "config/config.production.yaml"
    assert config.sources["database.pool_size"] == "config/config.production.yaml"


def test_sections_are_read_only_and_name_their_keys_when_a_name_is_unknown(seed_layout: Path) -> None:
    config = load_config("production")
    with pytest.raises(AttributeError) as caught:
        config.database.pool_sise  # noqa: B018
    assert str(caught.value) == (
        "settings section 'database' has no key 'pool_sise' (did you mean 'pool_size'?); "
        "its keys are: url, pool_size, pool_timeout"
    )
    with pytest.raises(KeyError, match="settings section 'api' has no key 'retries'"):
        config["api"]["retries"]
    with pytest.raises(AttributeError, match=r"settings have no section 'databse' \(did you mean 'database'\?\)"):
        config.databse  # noqa: B018
    with pytest.raises(AttributeError, match="is read-only"):
        config.database.url = "changed"
    copied = pickle.loads(pickle.dumps(config.database))
    assert (copied, repr(copied.url)) == (config.database, "'postgresql://agent:***@db.internal:5432/research'")


def test_secrets_of_the_seed_file_never_show_but_the_program_reads_them(
    seed_layout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_config("production")
    assert repr(config.api) == (
        "Section('api', {'openai_api_key': '***', 'anthropic_api_key': '***', 'max_retries': 5, 'timeout_seconds': 60})"
    )
    assert repr(config.database.url) == "'postgresql://agent:***@db.internal:5432/research'"
    assert repr(config.security.vault_url) == "'***'"
    rows = {key: (value, source) for key, value, source in describe_settings(config)}
    assert rows["database.url"] == (
        "'postgresql://agent:***@db.internal:5432/research'",
        "config/config.production.yaml",
    )
    assert rows["api.openai_api_key"] == ("'***'", "config/config.production.yaml")
    assert rows["design_ops.temperature"] == ("0.7", "config/config.production.yaml")
    assert rows["environment"] == ("'production'", "config/config.production.yaml")
    shown = [repr(config), str(config.api), repr(config.security), str(rows), json.dumps(settings_as_json(config))]
    assert main(["config", "show", "--env", "production"]) == 0
    assert main(["config", "show", "--env", "production", "--json"]) == 0
    out = capsys.readouterr().out
    for secret in SECRETS:
        assert all(secret not in text for text in [*shown, out])
    typed = {row["key"]: row["value"] for row in settings_as_json(config)}
    assert (typed["database.url"], typed["api.openai_api_key"], typed["api.max_retries"], typed["debug"]) == (
        "postgresql://agent:***@db.internal:5432/research",
        "***",
        5,
        False,
    )


def test_a_missing_variable_is_an_error_naming_the_key_and_the_variable(
    seed_layout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.delenv("OPENAI_API_KEY")
    # The base file's logging.level is replaced by the production file's before variables are read: no error.
    write("config/config.yaml", "logging:\n  level: ${LEVEL_UNSET}\nservice:\n  name: ${AGENT_NAME_UNSET}\n")
    with pytest.raises(ConfigError) as caught:
        load_config("production")
    assert [(p.key, p.value, p.allowed, p.source) for p in caught.value.problems] == [
        (
            "service.name",
            "'${AGENT_NAME_UNSET}'",
            "an environment variable AGENT_NAME_UNSET that is set, or a default after ':-' in the reference",
            "config/config.yaml",
        ),
        (
            "database.url",
            "'${DATABASE_URL}'",
            "an environment variable DATABASE_URL that is set, or a default after ':-' in the reference",
            "config/config.production.yaml",
        ),
        (
            "api.openai_api_key",
            "'***'",
            "an environment variable OPENAI_API_KEY that is set, or a default after ':-' in the reference",
            "config/config.production.yaml",
        ),
    ]


def test_defaults_literal_dollars_and_nested_values_are_interpolated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST", "db.internal")
    monkeypatch.setenv("EMPTY", "")
    write(
        "config/config.yaml",
        "environment: development\n"
        "metrics:\n  prometheus_port: ${PORT:-9500}\n"
        'database:\n  url: postgresql://${HOST}:${POOL:-5432}/x\n  hosts: ["${HOST}", "$${HOST}"]\n'
        "  fallback: ${EMPTY:-used}\n",
    )
    config = load_config()
    assert config.metrics.prometheus_port == 9500
    assert config.database.url == "postgresql://db.internal:5432/x"
    assert config.database.hosts == ("db.internal", "${HOST}")
    assert config.database.fallback == "used"
    write("config/config.yaml", "database:\n  url: ${1BAD}\n")
    with pytest.raises(
        ConfigError, match=r"database.url = '\$\{1BAD\}' .*a \$\{NAME\} or \$\{NAME:-default\} reference"
    ):
        load_config()


def test_the_environment_file_is_layered_over_the_base_file(monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        "config/config.yaml",
        "logging:\n  level: DEBUG\n  format: text\ndatabase:\n  pool_size: 5\n  pool_timeout: 30\nteam: search\n",
    )
    write("config/config.staging.yml", "environment: staging\nlogging:\n  level: WARNING\ndatabase:\n  pool_size: 50\n")
    config = load_config("staging")
    assert (config.logging.level, config.logging.format) == ("WARNING", "text")
    assert dict(config.database) == {"pool_size": 50, "pool_timeout": 30}
    assert config.team == "search"
    assert config.sources["logging.level"] == "config/config.staging.yml"
    assert config.sources["logging.format"] == "config/config.yaml"
    assert config.sources["database.pool_size"] == "config/config.staging.yml"
    assert config.sources["database.pool_timeout"] == "config/config.yaml"
    assert load_config("development").logging.level == "DEBUG"  # the staging file is not read
    # rfobs's own settings files win over the seed layout; RFOBS_* over both.
    write("settings.toml", '[default.logging]\nlevel = "ERROR"\n')
    assert load_config("staging").logging.level == "ERROR"
    monkeypatch.setenv("RFOBS_LOGGING__LEVEL", "CRITICAL")
    assert load_config("staging").logging.level == "CRITICAL"


def test_environment_in_the_file_must_agree_with_the_active_one(seed_layout: Path) -> None:
    write("config/config.yaml", "environment: staging\n")
    assert load_config("production").environment == "production"  # the production file wins
    with pytest.raises(ConfigError) as caught:
        load_config("development")
    assert [(p.key, p.value, p.source) for p in caught.value.problems] == [
        ("environment", "'staging'", "config/config.yaml")
    ]
    assert "'development', the active environment" in caught.value.problems[0].allowed


def test_rfobs_groups_in_the_layout_stay_strict(seed_layout: Path) -> None:
    write("config/config.yaml", "metrics:\n  prometheus_prot: 9091\nsources: {}\n")
    with pytest.raises(ConfigError) as caught:
        load_config("production")
    assert [(p.key, p.source) for p in caught.value.problems] == [
        ("sources", "config/config.yaml"),
        ("metrics.prometheus_prot", "config/config.yaml"),
    ]
    assert "did you mean 'metrics.prometheus_port'?" in str(caught.value)


def test_structured_false_means_text_unless_format_is_set() -> None:
    write("config/config.yaml", "logging:\n  structured: false\n")
    config = load_config()
    assert (config.logging.structured, config.logging.format) == (False, "text")
    assert config.sources["logging.format"] == "logging.structured = false (config/config.yaml)"
    write("config/config.yaml", "logging:\n  structured: false\n  format: json\n")
    assert load_config().logging.format == "json"
    assert load_config(overrides={"logging__structured": True}).logging.format == "json"
    with pytest.raises(ConfigError, match=r"logging\.structured = 'sometimes'"):
        load_config(overrides={"logging__structured": "sometimes"})


def test_application_tables_of_rfobs_settings_files_are_kept_too() -> None:
    write("settings.toml", "[default.database]\npool_size = 5\n[production.database]\npool_size = 40\n")
    assert load_config().database.pool_size == 5
    production = load_config("production")
    assert production.database.pool_size == 40
    assert production.sources["database.pool_size"] == "settings.toml [production]"


def test_a_listed_layout_file_is_read_as_the_seed_layout(seed_layout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed_layout.rename("prod.yaml")
    Path("conf").mkdir()
    Path("prod.yaml").rename("conf/config.production.yaml")
    monkeypatch.setenv("RFOBS_SETTINGS_FILES", "conf/config.production.yaml")
    assert load_config("production").design_ops.model == "gpt-4o"


def test_load_config_notes_the_settings_it_returns(seed_layout: Path) -> None:
    config = load_config("production")
    assert _state.last_loaded_settings() is config
    with pytest.raises(ConfigError):
        load_config("production", overrides={"metrics__prometheus_port": -1})
    assert _state.last_loaded_settings() is config  # a failed load leaves the last good one


@pytest.mark.usefixtures("clean_globals")
def test_init_reads_the_seed_layout(seed_layout: Path) -> None:
    telemetry = rfobs.init("production", metrics__prometheus_port=0, tracing__exporter="none")
    try:
        assert telemetry.settings.design_ops.model == "gpt-4o"
        assert telemetry.settings.logging.level == "INFO"
    finally:
        telemetry.shutdown(timeout=2)


def test_every_text_under_a_secret_named_table_is_a_secret(capsys: pytest.CaptureFixture[str]) -> None:
    write(
        "config/config.yaml",
        "api:\n  tokens:\n    github: plainsecretvalue99\n    used: 12\n  max_retries: 5\n"
        "secrets:\n  smtp: smtpSecretPassw0rd\n  rotation_days: 30\n",
    )
    settings = load_config()

    assert (settings.api.tokens.github, settings.secrets.smtp) == ("plainsecretvalue99", "smtpSecretPassw0rd")
    assert (settings.api.tokens.used, settings.secrets.rotation_days, settings.api.max_retries) == (12, 30, 5)
    assert main(["config", "show"]) == 0
    assert main(["config", "show", "--json"]) == 0
    shown = (
        capsys.readouterr().out + repr(settings.api) + repr(settings.secrets) + json.dumps(settings_as_json(settings))
    )
    assert "plainsecretvalue99" not in shown and "smtpSecretPassw0rd" not in shown
    assert "api.tokens.used" in shown and "rotation_days" in shown
