"""Whether a store answers its own protocol, and why not: the one reachability probe.

`stack up`/`status` use it to decide what to start and to report; `doctor` and `migrate` use it to
say whether a store is reachable before reading its version and schema. A probe is a TCP connect,
then a real protocol exchange (PostgreSQL `SELECT 1`, Redis `PING`, MongoDB `hello`, InfluxDB
`GET /health`), so a port held by another kind of server fails it. Network clients are imported inside
the probe that needs them, so that importing this module stays cheap.
"""

from __future__ import annotations

import math
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from quantbot.ops.stack.process import ServerUnavailableError, first_line
from quantbot.redaction import redact, redact_url
from quantbot.stack_state import StoreName
from quantbot.units import MS_PER_S

PROBE_TIMEOUT_S = 2.0
"""One reachability probe. Loopback servers answer in milliseconds; 2 s is also libpq's smallest
`connect_timeout`, and short enough that `stack status` over four dead stores stays quick."""

DEFAULT_PORTS = {
    "postgresql": 5432,
    "postgres": 5432,
    "redis": 6379,
    "rediss": 6379,
    "mongodb": 27017,
    "http": 80,
    "https": 443,
}
"""The port each URL scheme implies when the URL names none."""


ClientOptions = Mapping[str, Any]
"""Keyword arguments for the store's client beside the URL (credentials, TLS, timeouts): psycopg's
`connect`, redis-py's `Redis.from_url`, pymongo's `MongoClient`; unused for the InfluxDB API."""


def is_reachable(
    name: StoreName, url: str, timeout_s: float = PROBE_TIMEOUT_S, options: ClientOptions | None = None
) -> bool:
    """Whether the store at `url` answers its own protocol (see `unreachable_reason`)."""
    return unreachable_reason(name, url, timeout_s, options) is None


def unreachable_reason(
    name: StoreName,
    url: str,
    timeout_s: float = PROBE_TIMEOUT_S,
    options: ClientOptions | None = None,
    *,
    with_url: bool = True,
) -> str | None:
    """Why the store at `url` does not answer, or None when it does.

    The check is a real protocol exchange after a TCP connect: PostgreSQL `SELECT 1`, Redis `PING`,
    MongoDB `hello`, InfluxDB `GET /health` (or `/ping`). A port held by another kind of server fails it.

    Args:
        name: which store's protocol to speak.
        url: the store's URL; a password in it is used, never shown.
        timeout_s: bound on each network step.
        options: the client's keyword arguments beside the URL, as the commands' clients use them
            (a password or TLS settings from the configuration); they override the probe's timeouts.
        with_url: name the (redacted) URL in the sentence; False where it is shown beside it anyway.

    Returns:
        None when the store answers, else one sentence naming the redacted URL and the failure.

    Raises:
        ServerUnavailableError: the protocol's client library is missing from this environment.
    """
    shown = redact_url(url)
    refused = _tcp_refusal(url, timeout_s)
    if refused is not None:
        return f"nothing answers at {shown}: {refused}" if with_url else f"nothing answers: {refused}"
    probe = _PROBES[name]
    try:
        problem = probe(url, timeout_s, options or {})
    except ImportError as exc:
        raise ServerUnavailableError(f"cannot speak {_PROTOCOLS[name]}: {exc}") from exc
    if problem is None:
        return None
    subject = f"{shown} does not" if with_url else "does not"
    return f"{subject} answer as {_PROTOCOLS[name]}: {problem}"


def _tcp_refusal(url: str, timeout_s: float) -> str | None:
    """Why a TCP connection to the URL's host and port fails, or None (also when the URL has no single host)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"malformed URL ({exc})"
    host = parts.hostname
    if not host or "," in parts.netloc or parts.scheme in {"unix", "mongodb+srv"}:
        return None  # several hosts, a socket or DNS seed list: the protocol client decides
    port = port or DEFAULT_PORTS.get(parts.scheme)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


def _probe_postgres(url: str, timeout_s: float, options: ClientOptions) -> str | None:
    import psycopg  # network clients load only when used

    # libpq rounds connect_timeout down to whole seconds and treats anything under 2 as 2.
    try:
        kwargs = {"connect_timeout": max(2, math.ceil(timeout_s)), **options, "autocommit": True}
        with psycopg.connect(url, **kwargs) as conn:
            conn.execute("SELECT 1").fetchone()
    except psycopg.Error as exc:
        return first_line(exc)
    return None


def _probe_redis(url: str, timeout_s: float, options: ClientOptions) -> str | None:
    import redis  # network clients load only when used

    kwargs = {"socket_connect_timeout": timeout_s, "socket_timeout": timeout_s, **options}
    client = redis.Redis.from_url(url, **kwargs)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return first_line(exc)
    finally:
        client.close()
    return None


def _probe_mongo(url: str, timeout_s: float, options: ClientOptions) -> str | None:
    import pymongo  # network clients load only when used
    import pymongo.errors

    ms = int(timeout_s * MS_PER_S)
    kwargs = {"serverSelectionTimeoutMS": ms, "connectTimeoutMS": ms, "socketTimeoutMS": ms, **options}
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(url, **kwargs)
    try:
        client.admin.command("hello")
    except pymongo.errors.PyMongoError as exc:
        # Server selection errors append the whole topology description: keep the sentence before it.
        return first_line(exc).split(", Topology Description:")[0]
    finally:
        client.close()
    return None


def _probe_influx(url: str, timeout_s: float, options: ClientOptions) -> str | None:
    base = url.rstrip("/")
    problem = "no answer"
    for path, accepted in (("/health", {200}), ("/ping", {200, 204})):
        try:
            with urllib.request.urlopen(f"{base}{path}", timeout=timeout_s) as response:  # noqa: S310 - http(s) only
                if response.status in accepted:
                    return None
                problem = f"GET {path} answered {response.status}"
        except urllib.error.HTTPError as exc:
            if exc.code in {401, 403}:
                return None  # an InfluxDB that wants a token for this endpoint: it is up
            problem = f"GET {path} answered {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            return f"GET {path} failed: {first_line(reason) if isinstance(reason, BaseException) else redact(reason)}"
        except Exception as exc:  # http.client raises HTTPException kinds on a peer that is not HTTP
            return f"GET {path} failed: not HTTP ({first_line(exc)})"
    return problem


_PROTOCOLS = {
    StoreName.POSTGRES: "PostgreSQL",
    StoreName.REDIS: "Redis",
    StoreName.MONGO: "MongoDB",
    StoreName.INFLUX: "the InfluxDB API",
}

_PROBES: dict[StoreName, Callable[[str, float, ClientOptions], str | None]] = {
    StoreName.POSTGRES: _probe_postgres,
    StoreName.REDIS: _probe_redis,
    StoreName.MONGO: _probe_mongo,
    StoreName.INFLUX: _probe_influx,
}
