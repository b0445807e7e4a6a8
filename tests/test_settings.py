"""Configuration: profiles, environment overrides, secrets, and the errors a user sees."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from quantbot.errors import EX_CONFIG, ConfigError
from quantbot.settings import load_settings, redact_url
from tests.conftest import REPO_ROOT, run_cli

CONFIG_DIR = REPO_ROOT / "config"


def test_local_is_the_default_profile_and_marks_every_store_embedded() -> None:
    """With no profile chosen, the embedded stack's profile is active."""
    settings = load_settings(config_dir=CONFIG_DIR, environ={})

    assert settings.profile == "local"
    assert all(getattr(settings, s).embedded for s in ("postgres", "mongo", "redis", "influx"))


def test_profile_chosen_by_environment_layers_over_default() -> None:
    """QUANTBOT_PROFILE picks the file; its keys override default.toml, the others stay."""
    settings = load_settings(config_dir=CONFIG_DIR, environ={"QUANTBOT_PROFILE": "production"})

    assert settings.profile == "production"
    assert settings.postgres.url == "postgresql://quantbot@postgres:5432/quantbot"
    assert settings.influx.retention_days == 365
    assert settings.postgres.statement_timeout_ms == 30_000  # from default.toml


def test_any_key_is_overridable_from_the_environment_with_its_type() -> None:
    """QUANTBOT_<SECTION>_<KEY> overrides a file value and is parsed to the key's type."""
    env = {
        "QUANTBOT_POSTGRES_STATEMENT_TIMEOUT_MS": "60000",
        "QUANTBOT_INFLUX_VERIFY_SSL": "false",
        "QUANTBOT_MONGO_DB": "12345",
        "QUANTBOT_LOGGING_LEVEL": "DEBUG",
    }

    settings = load_settings(config_dir=CONFIG_DIR, environ=env)

    assert settings.postgres.statement_timeout_ms == 60_000
    assert settings.influx.verify_ssl is False
    assert settings.mongo.db == "12345"  # a name stays a string even when it looks like a number
    assert settings.logging.level == "DEBUG"


def test_conventional_connection_variables_are_honoured() -> None:
    """The documented QUANTBOT_*_URL, _TOKEN, _ORG, _BUCKET variables reach the settings."""
    env = {
        "QUANTBOT_POSTGRES_URL": "postgresql://u@db:5432/q",
        "QUANTBOT_MONGO_URL": "mongodb://m:27017/",
        "QUANTBOT_MONGO_DB": "qb",
        "QUANTBOT_REDIS_URL": "redis://r:6379/2",
        "QUANTBOT_INFLUX_URL": "https://influx:8086",
        "QUANTBOT_INFLUX_TOKEN": "tok",
        "QUANTBOT_INFLUX_ORG": "acme",
        "QUANTBOT_INFLUX_BUCKET": "prices",
    }

    settings = load_settings(config_dir=CONFIG_DIR, environ=env)

    assert settings.postgres.url == "postgresql://u@db:5432/q"
    assert (settings.mongo.url, settings.mongo.db) == ("mongodb://m:27017/", "qb")
    assert settings.redis.url == "redis://r:6379/2"
    assert settings.influx.token is not None and settings.influx.token.get_secret_value() == "tok"
    influx = settings.influx
    assert (influx.url, influx.org, influx.bucket) == ("https://influx:8086", "acme", "prices")


@pytest.mark.parametrize(
    ("env", "key", "fragment"),
    [
        ({"QUANTBOT_POSTGRES_STATEMENT_TIMEOUT_MS": "many"}, "postgres.statement_timeout_ms", "integer"),
        ({"QUANTBOT_REDIS_PRICE_TTL_S": "0"}, "redis.price_ttl_s", "greater than 0"),
        ({"QUANTBOT_REDIS_URL": "http://localhost"}, "redis.url", "not a redis"),
        ({"QUANTBOT_POSTGRES_SSLMODE": "sometimes"}, "postgres.sslmode", "disable"),
        ({"QUANTBOT_POSTGRS_URL": "postgresql://x"}, "QUANTBOT_POSTGRS_URL", "not a configuration key"),
        ({"QUANTBOT_PROFILE": "staging"}, "profile", "unknown profile `staging`"),
    ],
)
def test_bad_configuration_names_the_key(env: dict[str, str], key: str, fragment: str) -> None:
    """A bad value or unknown key raises one ConfigError naming the key and the problem."""
    with pytest.raises(ConfigError) as caught:
        load_settings(config_dir=CONFIG_DIR, environ=env)

    assert caught.value.key == key
    assert fragment in str(caught.value)


def test_secret_in_a_file_is_refused(tmp_path: Path) -> None:
    """A token or a URL password written in a profile file is refused: secrets come from the environment."""
    (tmp_path / "default.toml").write_text('[influx]\ntoken = "abc"\n')

    with pytest.raises(ConfigError, match="QUANTBOT_INFLUX_TOKEN"):
        load_settings("default", config_dir=tmp_path, environ={})

    (tmp_path / "default.toml").write_text('[postgres]\nurl = "postgresql://u:hunter2@db/q"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings("default", config_dir=tmp_path, environ={})
    assert caught.value.key == "postgres.url"
    assert "hunter2" not in str(caught.value)


def test_unknown_key_in_a_file_is_refused_with_its_file(tmp_path: Path) -> None:
    """A misspelt key in a profile is an error naming key and file, not silently ignored."""
    (tmp_path / "default.toml").write_text("[redis]\nsocket_timeout = 3\n")

    with pytest.raises(ConfigError) as caught:
        load_settings("default", config_dir=tmp_path, environ={})

    assert caught.value.key == "redis.socket_timeout"
    assert str(tmp_path / "default.toml") in str(caught.value)


def test_redact_url_hides_only_the_password() -> None:
    """Printing a URL keeps user, host, port and path and masks the password."""
    assert redact_url("postgresql://bob:s3cret@db.example:6543/q?x=1") == "postgresql://bob:***@db.example:6543/q?x=1"
    assert redact_url("redis://r:6379/0") == "redis://r:6379/0"


def test_config_show_redacts_every_secret() -> None:
    """`quantbot config show` prints no secret and no URL password, in either format."""
    env = {
        "QUANTBOT_POSTGRES_URL": "postgresql://bob:pg-secret-1@db/q",
        "QUANTBOT_POSTGRES_PASSWORD": "pg-secret-2",
        "QUANTBOT_MONGO_URL": "mongodb://m:mongo-secret-1@m:27017/",
        "QUANTBOT_REDIS_PASSWORD": "redis-secret",
        "QUANTBOT_INFLUX_TOKEN": "influx-secret",
    }
    for fmt in ("toml", "json"):
        result = run_cli("config", "show", "--format", fmt, env=env)

        assert result.returncode == 0, result.stderr
        assert "secret" not in result.stdout
        assert "postgresql://bob:***@db/q" in result.stdout
    shown = orjson.loads(run_cli("config", "show", "--format", "json", env=env).stdout)
    assert shown["influx"]["token"] == "***"


def test_bad_configuration_exits_78_with_one_message() -> None:
    """The CLI turns a ConfigError into status 78 (EX_CONFIG) and one line on stderr, no traceback."""
    result = run_cli("config", "show", env={"QUANTBOT_POSTGRES_STATEMENT_TIMEOUT_MS": "many"})

    assert result.returncode == EX_CONFIG
    assert "postgres.statement_timeout_ms" in result.stderr
    assert "Traceback" not in result.stderr


def test_solana_urls_from_the_environment_are_masked_when_shown(tmp_path: Path) -> None:
    """Provider keys in a query string or a path never reach `config show`; the token is a secret."""
    env = {
        "QUANTBOT_SOLANA_RPC_URL": "https://mainnet.helius-rpc.com/?api-key=K1",
        "QUANTBOT_SOLANA_WS_URL": "wss://n.solana-mainnet.quiknode.pro/0a1b2c3d4e5f60718293a4b5c6d7e8f9/",
        "QUANTBOT_SOLANA_GRPC_TOKEN": "K3",
    }
    settings = load_settings("default", environ=env)
    shown = str(settings.redacted())
    assert settings.solana.rpc_url == env["QUANTBOT_SOLANA_RPC_URL"]
    assert "K1" not in shown and "0a1b2c3d4e5f" not in shown and "K3" not in shown


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("QUANTBOT_SOLANA_PROGRAMS", '["not-a-key"]', "is not a base58 program id"),
        ("QUANTBOT_SOLANA_PROGRAM_GROUPS", "[[]]", "a program group is empty"),
        ("QUANTBOT_SOLANA_COMMITMENT", "fast", "confirmed"),
        ("QUANTBOT_SOLANA_WS_URL", "https://rpc.example", "is not a ws or wss URL"),
    ],
)
def test_bad_solana_settings_name_the_key(name: str, value: str, problem: str) -> None:
    """A bad [solana] value fails at start naming the key and what is wrong."""
    with pytest.raises(ConfigError) as caught:
        load_settings("default", environ={name: value})
    assert name.removeprefix("QUANTBOT_").lower().replace("solana_", "solana.", 1) in str(caught.value)
    assert problem in str(caught.value)
