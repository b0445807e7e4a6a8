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
from collections.abc import Callable
from typing import Any

from quantbot.ops.stack.process import ServerUnavailableError, first_line
from quantbot.redaction import redact, redact_url
from quantbot.stack_state import StoreName

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


def is_reachable(name: StoreName, url: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the store at `url` answers its own protocol (see `unreachable_reason`)."""
    return unreachable_reason(name, url, timeout_s) is None


def unreachable_reason(name: StoreName, url: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the store at `url` does not answer, or None when it does.

    The check is a real protocol exchange after a TCP connect: PostgreSQL `SELECT 1`, Redis `PING`,
    MongoDB `hello`, InfluxDB `GET /health` (or `/ping`). A port held by another kind of server fails it.

    Args:
        name: which store's protocol to speak.
        url: the store's URL; a password in it is used, never shown.
        timeout_s: bound on each network step.

    Returns:
        None when the store answers, else one sentence naming the redacted URL and the failure.

    Raises:
        ServerUnavailableError: the protocol's client library is missing from this environment.
    """
    shown = redact_url(url)
    refused = _tcp_refusal(url, timeout_s)
    if refused is not None:
        return f"nothing answers at {shown}: {refused}"
    probe = _PROBES[name]
    try:
        problem = probe(url, timeout_s)
    except ImportError as exc:
        raise ServerUnavailableError(f"cannot speak {_PROTOCOLS[name]}: {exc}") from exc
    if problem is None:
        return None
    return f"{shown} does not answer as {_PROTOCOLS[name]}: {problem}"


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


def _probe_postgres(url: str, timeout_s: float) -> str | None:
    import psycopg  # network clients load only when used

    # libpq rounds connect_timeout down to whole seconds and treats anything under 2 as 2.
    try:
        with psycopg.connect(url, connect_timeout=max(2, math.ceil(timeout_s)), autocommit=True) as conn:
            conn.execute("SELECT 1").fetchone()
    except psycopg.Error as exc:
        return first_line(exc)
    return None


def _probe_redis(url: str, timeout_s: float) -> str | None:
    import redis  # network clients load only when used

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return first_line(exc)
    finally:
        client.close()
    return None


def _probe_mongo(url: str, timeout_s: float) -> str | None:
    import pymongo  # network clients load only when used
    import pymongo.errors

    ms = int(timeout_s * 1000)
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        url, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, socketTimeoutMS=ms
    )
    try:
        client.admin.command("hello")
    except pymongo.errors.PyMongoError as exc:
        # Server selection errors append the whole topology description: keep the sentence before it.
        return first_line(exc).split(", Topology Description:")[0]
    finally:
        client.close()
    return None


def _probe_influx(url: str, timeout_s: float) -> str | None:
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

_PROBES: dict[StoreName, Callable[[str, float], str | None]] = {
    StoreName.POSTGRES: _probe_postgres,
    StoreName.REDIS: _probe_redis,
    StoreName.MONGO: _probe_mongo,
    StoreName.INFLUX: _probe_influx,
}
