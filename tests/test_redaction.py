"""Secrets in every spelling a URL or DSN can carry them are redacted in every output, log and error."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from quantbot.errors import EX_CONFIG, ConfigError
from quantbot.ops.cli import configure_logging
from quantbot.redaction import redact, redact_url, without_secrets
from quantbot.settings import load_settings
from tests.conftest import run_cli

EX_UNAVAILABLE = 69


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://bob:S1@db.example:6543/q?x=1", "postgresql://bob:***@db.example:6543/q?x=1"),
        ("postgresql://db/q?password=S1", "postgresql://db/q?password=***"),
        ("postgresql://db/q?sslmode=require&sslpassword=S1", "postgresql://db/q?sslmode=require&sslpassword=***"),
        ("https://mainnet.helius-rpc.com/?api-key=S1", "https://mainnet.helius-rpc.com/?api-key=***"),
        ("wss://mainnet.helius-rpc.com/?API-KEY=S1&x=2", "wss://mainnet.helius-rpc.com/?API-KEY=***&x=2"),
        ("https://rpc.example/?api_key=S1", "https://rpc.example/?api_key=***"),
        ("https://rpc.example/?apikey=S1", "https://rpc.example/?apikey=***"),
        ("https://rpc.example/?x-api-key=S1", "https://rpc.example/?x-api-key=***"),
        ("https://grpc.example:443/?token=S1", "https://grpc.example:443/?token=***"),
        ("https://rpc.example/?Access_Token=S1#frag", "https://rpc.example/?Access_Token=***#frag"),
        ("http://influx:8086/?auth=S1", "http://influx:8086/?auth=***"),
        ("redis://:S1@cache:6379/0", "redis://:***@cache:6379/0"),
        ("mongodb://u:S1@h1:27017,h2:27017/?authSource=admin", "mongodb://u:***@h1:27017,h2:27017/?authSource=admin"),
        ("postgresql://u:p@S1@db/q", "postgresql://u:***@db/q"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("postgresql://u:S1@[::1/q", "***"),
        (
            "https://name.solana-mainnet.quiknode.pro/0a1b2c3d4e5f60718293a4b5c6d7e8f9/",
            "https://name.solana-mainnet.quiknode.pro/***/",
        ),
        (
            "wss://name.solana-mainnet.quiknode.pro/0a1b2c3d4e5f60718293a4b5c6d7e8f9",
            "wss://name.solana-mainnet.quiknode.pro/***",
        ),
        (
            "https://name.mainnet.rpcpool.com/6a3e9c2b-1f4d-4b7a-9c1e-2f3a4b5c6d7e",
            "https://name.mainnet.rpcpool.com/***",
        ),
        (
            "http://127.0.0.1:8428/api/v1/export?match=token_prices",
            "http://127.0.0.1:8428/api/v1/export?match=token_prices",
        ),
        ("http://127.0.0.1:8428/internal/force_flush", "http://127.0.0.1:8428/internal/force_flush"),
    ],
)
def test_redact_url_masks_every_secret_spelling(url: str, shown: str) -> None:
    """User-info passwords and secret query parameters are masked; host, port, path and the rest stay."""
    assert redact_url(url) == shown


def test_without_secrets_drops_what_redact_url_masks() -> None:
    """The form the stack records keeps user, host, path and harmless parameters, and no secret at all."""
    assert without_secrets("postgresql://bob:S1@db:5432/q?sslmode=disable&Password=S2") == (
        "postgresql://bob@db:5432/q?sslmode=disable"
    )
    assert without_secrets("redis://:S1@cache:6379/0") == "redis://cache:6379/0"
    assert without_secrets("mongodb://h:27017/") == "mongodb://h:27017/"


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        ("host=db port=5432 user=bob password=S1 dbname=q", "S1", "host=db port=5432 user=bob"),
        ("host=db password='s p\\'S1' dbname=q", "S1", "dbname=q"),
        ("host=db PASSWORD = S1 dbname=q", "S1", "dbname=q"),
        ('connection to "postgresql://bob:S1@db:5432/q" failed', "S1", "db:5432/q"),
        ("GET https://mainnet.helius-rpc.com/?api-key=S1 failed: 429", "S1", "mainnet.helius-rpc.com"),
        ("dial wss://x.example/ws?token=S1, retrying", "S1", "x.example/ws"),
        ("bad url postgresql://u:S1@[::1/q in config", "S1", "in config"),
    ],
)
def test_redact_masks_secrets_in_free_text(text: str, secret: str, kept: str) -> None:
    """Free text (an error, a log line) loses the secret of any URL or DSN in it and keeps the rest."""
    shown = redact(text)

    assert secret not in shown
    assert kept in shown


def test_a_query_secret_in_a_file_url_is_refused(tmp_path: Path) -> None:
    """A token or password in a query parameter of a URL in a profile file is refused like a password."""
    (tmp_path / "default.toml").write_text('[influx]\nurl = "http://influx:8086/?token=S1"\n')

    with pytest.raises(ConfigError) as caught:
        load_settings("default", config_dir=tmp_path, environ={})

    assert caught.value.key == "influx.url"
    assert "S1" not in str(caught.value)


SECRET_URLS = {
    "QUANTBOT_POSTGRES_URL": "postgresql://bob@db.example:5432/q?sslpassword=pgS2&password=pgS1",
    "QUANTBOT_MONGO_URL": "mongodb://m:mgS1@mongo.example:27017/?authSource=admin",
    "QUANTBOT_REDIS_URL": "redis://cache.example:6379/0?password=rdS1",
    "QUANTBOT_INFLUX_URL": "http://influx.example:8086/?token=ifS1",
}
SECRETS = ("pgS1", "pgS2", "mgS1", "rdS1", "ifS1")


@pytest.mark.parametrize("fmt", ["toml", "json"])
def test_config_show_redacts_query_secrets(fmt: str, tmp_path: Path) -> None:
    """`config show` masks secrets in query parameters too, and still shows host and database."""
    result = run_cli("config", "show", "--format", fmt, env={**SECRET_URLS, "QUANTBOT_STACK_DIR": str(tmp_path)})

    assert result.returncode == 0, result.stderr
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr
    assert "db.example:5432/q" in result.stdout
    assert "cache.example:6379/0" in result.stdout


def test_doctor_redacts_query_secrets_of_unreachable_stores(tmp_path: Path) -> None:
    """`doctor` on stores that do not answer prints no secret of their URLs, but their hosts."""
    port = closed_port()
    env = {
        "QUANTBOT_PROFILE": "default",
        "QUANTBOT_STACK_DIR": str(tmp_path),
        "QUANTBOT_POSTGRES_URL": f"postgresql://bob:pgS2@127.0.0.1:{port}/qdb?password=pgS1",
        "QUANTBOT_REDIS_URL": f"redis://127.0.0.1:{port}/0?password=rdS1",
        "QUANTBOT_INFLUX_URL": f"http://127.0.0.1:{port}/?token=ifS1",
        "QUANTBOT_MONGO_URL": f"mongodb://m:mgS1@127.0.0.1:{port}/",
    }

    result = run_cli("doctor", env=env)

    assert result.returncode == EX_UNAVAILABLE, result.stdout + result.stderr
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr
    assert f"127.0.0.1:{port}/qdb" in result.stdout


@pytest.mark.parametrize(
    "value",
    [
        "host=db.example dbname=qdb password=pgS1",
        "host=db.example dbname=qdb password='pg pgS1'",
        "mysql://bob:pgS1@db.example/qdb",
        "http://db.example/qdb?password=pgS1",
    ],
)
def test_configuration_error_on_a_url_redacts_it(value: str, tmp_path: Path) -> None:
    """A URL-bearing key from the environment with a bad value fails naming the key, never the secret."""
    result = run_cli("config", "show", env={"QUANTBOT_POSTGRES_URL": value, "QUANTBOT_STACK_DIR": str(tmp_path)})

    assert result.returncode == EX_CONFIG
    assert "postgres.url" in result.stderr
    assert "pgS1" not in result.stdout + result.stderr
    assert "db.example" in result.stderr


def test_stack_status_redacts_query_secrets(tmp_path: Path) -> None:
    """`stack status` on configured URLs that do not answer masks their secrets and keeps their hosts."""
    port = closed_port()
    env = {
        "QUANTBOT_PROFILE": "default",
        "QUANTBOT_STACK_DIR": str(tmp_path),
        "QUANTBOT_POSTGRES_URL": f"postgresql://127.0.0.1:{port}/qdb?password=pgS1",
        "QUANTBOT_REDIS_URL": f"redis://127.0.0.1:{port}/0?password=rdS1",
        "QUANTBOT_INFLUX_URL": f"http://127.0.0.1:{port}/?api-key=ifS1",
        "QUANTBOT_MONGO_URL": f"mongodb://m:mgS1@127.0.0.1:{port}/",
    }

    result = run_cli("stack", "status", env=env)

    assert result.returncode == EX_UNAVAILABLE, result.stdout + result.stderr
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr
    assert f"127.0.0.1:{port}/qdb" in result.stdout


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_records_are_redacted(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Every log record, from any library, loses URL and DSN secrets in its message and traceback."""
    configure_logging("INFO", fmt)
    other = logging.getLogger("some.library")
    try:
        other.warning("connecting to %s", "https://mainnet.helius-rpc.com/?api-key=lgS1")
        other.warning('dsn host=db.example password="lgS3"')
        try:
            raise ValueError("bad dsn host=db.example password=lgS2")
        except ValueError:
            other.exception("failed")
    finally:
        logging.getLogger().handlers.clear()

    err = capsys.readouterr().err
    assert "lgS1" not in err and "lgS2" not in err and "lgS3" not in err
    assert "mainnet.helius-rpc.com" in err and "host=db.example" in err
