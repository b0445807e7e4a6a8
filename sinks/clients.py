"""Clients for the four stores, built in one place from the settings.

Every command and every sink gets its connections from here, so timeouts, TLS and authentication are
decided once: a psycopg connection, a pymongo client, a redis-py client and an influxdb-client
with synchronous writes (a sink's `write_batch` must not return before its points are stored).

A store whose profile marks it embedded and gives no URL is found through the URL the embedded stack
recorded when it started it (`quantbot stack up`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pymongo
import redis
from influxdb_client.client.influxdb_client import InfluxDBClient

from quantbot.errors import ConfigError
from quantbot.redaction import redact_url
from quantbot.settings import Settings
from quantbot.stack_state import recorded_urls

log = logging.getLogger(__name__)

STORES = ("postgres", "mongo", "redis", "influx")


@dataclass(frozen=True)
class Endpoints:
    """The URL each store is reached at, after the embedded stack's recorded ports are applied.

    `None` means the store is not configured: no URL and no running embedded server.
    """

    postgres: str | None
    mongo: str | None
    redis: str | None
    influx: str | None

    def get(self, store: str) -> str | None:
        """The URL of `store` (one of `STORES`)."""
        value: str | None = getattr(self, store)
        return value


def resolve_endpoints(settings: Settings) -> Endpoints:
    """Configured URLs first; for embedded stores without one, the URL the stack recorded."""
    recorded = {str(name): url for name, url in recorded_urls(Path(settings.stack.dir)).items()}

    def pick(store: str) -> str | None:
        section = getattr(settings, store)
        if section.url:
            return str(section.url)
        return recorded.get(store) if section.embedded else None

    return Endpoints(*(pick(store) for store in STORES))


def _require(url: str | None, store: str) -> str:
    if url is None:
        raise ConfigError(
            f"{store}.url",
            f"not set and no embedded {store} is running: set QUANTBOT_{store.upper()}_URL or run `quantbot stack up`",
        )
    return url


def postgres_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection parameters beside the URL: password from the environment, timeouts, TLS."""
    pg = settings.postgres
    kwargs: dict[str, Any] = {
        "connect_timeout": max(1, round(pg.connect_timeout_s)),
        "sslmode": pg.sslmode,
        "application_name": "quantbot",
    }
    # The schema's TIMESTAMP columns hold UTC: the session's time zone is what converts the aware
    # datetimes quantbot sends, so it is pinned rather than left to the server's default.
    kwargs["options"] = f"-c TimeZone=UTC -c statement_timeout={pg.statement_timeout_ms}"
    if pg.password is not None:
        kwargs["password"] = pg.password.get_secret_value()
    if pg.sslrootcert:
        kwargs["sslrootcert"] = pg.sslrootcert
    return kwargs


def postgres_connect(
    settings: Settings, url: str | None, *, autocommit: bool = False, application_name: str | None = None
) -> psycopg.Connection[Any]:
    """One PostgreSQL connection: each sink partition holds one, each command opens its own.

    Args:
        settings: the effective settings (password, timeouts, TLS).
        url: the server's URL (from `resolve_endpoints`).
        autocommit: open the connection in autocommit mode.
        application_name: what `pg_stat_activity` shows for the session; `quantbot` by default.
    """
    kwargs = postgres_kwargs(settings)
    if application_name is not None:
        kwargs["application_name"] = application_name
    return psycopg.connect(_require(url, "postgres"), autocommit=autocommit, **kwargs)


def mongo_client(settings: Settings, url: str | None) -> pymongo.MongoClient[dict[str, Any]]:
    """A pymongo client with the configured timeouts, credentials and TLS."""
    return pymongo.MongoClient(_require(url, "mongo"), **mongo_kwargs(settings))


def mongo_kwargs(settings: Settings) -> dict[str, Any]:
    """`MongoClient` parameters beside the URL: timeouts, credentials (password from the environment), TLS."""
    mongo = settings.mongo
    kwargs: dict[str, Any] = {
        "serverSelectionTimeoutMS": mongo.timeout_ms,
        "connectTimeoutMS": mongo.timeout_ms,
        "socketTimeoutMS": mongo.timeout_ms,
        "appname": "quantbot",
        "tz_aware": True,
    }
    if mongo.username:
        kwargs["username"] = mongo.username
    if mongo.password is not None:
        kwargs["password"] = mongo.password.get_secret_value()
    if mongo.tls:
        kwargs["tls"] = True
        if mongo.tls_ca_file:
            kwargs["tlsCAFile"] = mongo.tls_ca_file
    return kwargs


def redis_client(settings: Settings, url: str | None) -> redis.Redis:
    """A redis-py client with the configured timeouts and password."""
    return redis.Redis.from_url(_require(url, "redis"), **redis_kwargs(settings))


def redis_kwargs(settings: Settings) -> dict[str, Any]:
    """`Redis.from_url` parameters beside the URL: timeouts and the password from the environment."""
    kwargs: dict[str, Any] = {
        "socket_timeout": settings.redis.socket_timeout_s,
        "socket_connect_timeout": settings.redis.socket_timeout_s,
        "health_check_interval": 30,  # seconds: re-check an idle pooled connection before reuse
    }
    if settings.redis.password is not None:
        kwargs["password"] = settings.redis.password.get_secret_value()
    return kwargs


def influx_client(settings: Settings, url: str | None) -> InfluxDBClient:
    """An influxdb-client for the v2 API; callers write with `write_options=SYNCHRONOUS`."""
    influx = settings.influx
    token = influx.token.get_secret_value() if influx.token is not None else ""
    return InfluxDBClient(
        url=_require(url, "influx"),
        token=token,
        org=influx.org,
        timeout=influx.timeout_ms,
        verify_ssl=influx.verify_ssl,
    )


def describe(url: str | None) -> str:
    """A URL fit for printing: every secret it carries masked, `-` when not configured."""
    return redact_url(url) if url else "-"
