"""Redis schema: key builders, hash field mappers and the TTL policy of the four key patterns.

From the schema document's "Cache Schema" section:

==================================== ====== ==================================================
key                                  type   expiry
==================================== ====== ==================================================
`price:{token_address}`              hash   `PRICE_TTL`, 30 s from the last write
`signal:{signal_id}`                 hash   until the signal's `expires_at` (`signal_ttl`)
`session:{session_id}`               hash   `SESSION_TTL`, 24 h, restarted on every activity
`api:{endpoint}:{parameters_hash}`   string `api_cache_ttl(endpoint)`, 30 s unless overridden
==================================== ====== ==================================================

Everything that becomes part of a key is validated first, so a malformed value is an error naming
it, never a strange key: a token address must be base58 for exactly 32 bytes, ids must be UUIDs
(written in canonical lower-case form, so one id is always one key), an endpoint must use a small
charset. Hash values are strings as the document specifies: decimals in plain positional notation
(never `1e-05`), timestamps as fixed-width ISO-8601 UTC (`2023-06-01T12:00:00.000000Z`, so they also
sort as text).

A writer replaces a hash as a whole (`DEL`, `HSET`, `PEXPIRE` in one `MULTI`): optional fields are
omitted when unknown, and a plain `HSET` over an older hash would keep that hash's stale values.

Exceptions::

    ValueError
     └── CacheSchemaError
          ├── InvalidKeyPartError   an address, id or endpoint that must not become part of a key
          ├── InvalidFieldError     a value the document's hash fields cannot hold
          └── SignalExpiredError    the signal's expiry has passed: it has no place among active signals
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from quantbot.solana.codec import CodecError, b58decode, b58encode

__all__ = [
    "API_CACHE_DEFAULT_TTL",
    "PRICE_TTL",
    "SESSION_TTL",
    "SOLANA_ADDRESS_BYTES",
    "CacheSchemaError",
    "InvalidFieldError",
    "InvalidKeyPartError",
    "SignalExpiredError",
    "api_cache_key",
    "api_cache_ttl",
    "parameters_hash",
    "price_fields",
    "price_key",
    "session_activity_fields",
    "session_fields",
    "session_key",
    "signal_fields",
    "signal_key",
    "signal_ttl",
    "validate_endpoint",
    "validate_solana_address",
    "validate_uuid",
]

PRICE_TTL = timedelta(seconds=30)
"""The document's expiry for `price:{token_address}`: a price not refreshed for 30 s is gone."""

SESSION_TTL = timedelta(hours=24)
"""The document's expiry for `session:{session_id}`, restarted on every activity: a session ends after
24 hours without any. Refresh with `HSET` of `session_activity_fields` and `EXPIRE` in one `MULTI`."""

API_CACHE_DEFAULT_TTL = timedelta(seconds=30)
"""Expiry of `api:` responses for endpoints without their own: equal to `PRICE_TTL`, because the
platform's responses are built from prices, and caching one longer than the prices it was built
from would serve data staler than the price cache itself."""

SOLANA_ADDRESS_BYTES = 32
"""An address (public key) is an ed25519 point: 32 bytes, 32 to 44 characters in base58."""

_ENDPOINT = re.compile(r"^[A-Za-z0-9_./-]{1,128}$")
# No `:` (the key's separator), no glob characters (`*?[]`, which SCAN MATCH would interpret), no `{}`
# (Redis Cluster hash tags), no whitespace. 128 characters exceed every route the platform has and
# catch a whole URL with its query string passed by mistake.
_DIRECTIONS = frozenset({"buy", "sell"})


class CacheSchemaError(ValueError):
    """A value cannot be written to the cache as the schema document lays it out."""


class InvalidKeyPartError(CacheSchemaError):
    """A value that must not become part of a key: a malformed address, id or endpoint."""


class InvalidFieldError(CacheSchemaError):
    """A value that the document's hash fields cannot hold."""


class SignalExpiredError(CacheSchemaError):
    """A signal whose expiry has passed; the active-signals cache must not receive it."""


# Validated addresses, remembered: the flow builds a key for the same few thousand tokens again and
# again, and base58 decoding is most of the cost of a key. Bounded, as the set of tokens is not.
ADDRESS_CACHE_SIZE = 1 << 16


def validate_solana_address(value: str) -> str:
    """Return `value` if it is a Solana address: base58 for exactly 32 bytes, canonically encoded.

    Raises:
        InvalidKeyPartError: `value` is not a string, is not base58, or does not decode to 32 bytes.
    """
    if not isinstance(value, str):
        raise InvalidKeyPartError(f"solana address must be a string, got {value!r}")
    return _checked_address(value)


@functools.lru_cache(maxsize=ADDRESS_CACHE_SIZE)
def _checked_address(value: str) -> str:
    try:
        raw = b58decode(value)
    except CodecError as exc:
        raise InvalidKeyPartError(f"solana address `{value}` is not base58: {exc}") from None
    if len(raw) != SOLANA_ADDRESS_BYTES:
        raise InvalidKeyPartError(f"solana address `{value}` decodes to {len(raw)} bytes, not {SOLANA_ADDRESS_BYTES}")
    if b58encode(raw) != value:
        raise InvalidKeyPartError(f"solana address `{value}` is not canonically encoded")
    return value


def validate_uuid(value: str | uuid.UUID, what: str = "id") -> str:
    """Return the canonical lower-case hyphenated form of a UUID given as text or `uuid.UUID`.

    Args:
        value: The id.
        what: What the id is, for the error message (`signal id`, `session id`, ...).

    Raises:
        InvalidKeyPartError: `value` is not a UUID.
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        raise InvalidKeyPartError(f"{what} must be a UUID, got {value!r}")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidKeyPartError(f"{what} `{value}` is not a UUID") from None


def validate_endpoint(endpoint: str) -> str:
    """Return `endpoint` if it is 1 to 128 characters of `A-Z a-z 0-9 _ . / -`.

    Raises:
        InvalidKeyPartError: `endpoint` has another character, or none, or too many.
    """
    if not isinstance(endpoint, str) or _ENDPOINT.fullmatch(endpoint) is None:
        raise InvalidKeyPartError(f"api endpoint {endpoint!r} must be 1-128 characters of A-Z a-z 0-9 _ . / -")
    return endpoint


def price_key(token_address: str) -> str:
    """`price:{token_address}`, the recent-price hash of a token."""
    return f"price:{validate_solana_address(token_address)}"


def signal_key(signal_id: str | uuid.UUID) -> str:
    """`signal:{signal_id}`, the active-signal hash, with the id in canonical UUID form."""
    return f"signal:{validate_uuid(signal_id, 'signal id')}"


def session_key(session_id: str | uuid.UUID) -> str:
    """`session:{session_id}`, a user session's hash, with the id in canonical UUID form."""
    return f"session:{validate_uuid(session_id, 'session id')}"


def parameters_hash(parameters: Mapping[str, Any]) -> str:
    """The sha256 (hex) of `parameters` as canonical JSON: sorted keys, no whitespace, UTF-8.

    Canonical JSON makes equal parameters one key whatever their order or formatting. A hash rather
    than the parameters themselves keeps keys short and fixed-length and keeps user data (addresses,
    emails) out of key names and `SCAN` output; sha256 rather than Python's `hash()` because that one
    is salted per process, and every worker must derive the same key; a cryptographic hash because a
    collision would serve one request's response for another.

    Raises:
        InvalidKeyPartError: `parameters` is not a mapping or holds a value JSON cannot represent.
    """
    if not isinstance(parameters, Mapping):
        raise InvalidKeyPartError(f"api parameters must be a mapping, got {parameters!r}")
    try:
        text = json.dumps(parameters, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidKeyPartError(f"api parameters {parameters!r} are not JSON: {exc}") from None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def api_cache_key(endpoint: str, parameters: Mapping[str, Any]) -> str:
    """`api:{endpoint}:{parameters_hash}`, a cached API response (a JSON string)."""
    return f"api:{validate_endpoint(endpoint)}:{parameters_hash(parameters)}"


def api_cache_ttl(endpoint: str, overrides: Mapping[str, timedelta] | None = None) -> timedelta:
    """How long a response of `endpoint` is cached: its override, else `API_CACHE_DEFAULT_TTL`.

    Args:
        endpoint: The endpoint, as in its key.
        overrides: Per-endpoint expiries, from settings.

    Raises:
        InvalidKeyPartError: `endpoint` is malformed.
        InvalidFieldError: The override for `endpoint` is shorter than one second (Redis would
            delete the key at once or not expire it at all).
    """
    validate_endpoint(endpoint)
    ttl = (overrides or {}).get(endpoint, API_CACHE_DEFAULT_TTL)
    if ttl < timedelta(seconds=1):
        raise InvalidFieldError(f"api cache expiry for `{endpoint}` is {ttl}, under one second")
    return ttl


def signal_ttl(expires_at: datetime, *, now: datetime | None = None) -> timedelta:
    """The time left until a signal expires, in whole milliseconds, for `PEXPIRE`.

    Rounded down, so the cached signal disappears at most a millisecond before its expiry and is never
    shown as active after it. A signal already expired (less than a millisecond left) raises rather
    than getting a token TTL: it does not belong among active signals, and the caller (a sink, a
    replay at full speed) should skip it visibly.

    Args:
        expires_at: The signal's expiry, timezone-aware.
        now: The present, timezone-aware; the wall clock when None (a replay passes its own clock).

    Raises:
        InvalidFieldError: A datetime is naive.
        SignalExpiredError: `expires_at` is not at least a millisecond after `now`.
    """
    _require_aware(expires_at, "expires_at")
    present = datetime.now(UTC) if now is None else _require_aware(now, "now")
    left = (expires_at - present) // timedelta(milliseconds=1)
    if left < 1:
        raise SignalExpiredError(
            f"signal expired at {_iso(expires_at)}, not after {_iso(present)}: it is no longer active"
        )
    return timedelta(milliseconds=left)


def price_fields(
    *,
    price: Decimal | float,
    updated_at: datetime,
    source: str,
    change_24h: Decimal | float | None = None,
    volume_24h: Decimal | float | None = None,
) -> dict[str, str]:
    """The `price:{token_address}` hash: price, updated_at, source, change_24h, volume_24h.

    Args:
        price: The price in USD.
        updated_at: When the price held, timezone-aware.
        source: Where it came from, e.g. `raydium`.
        change_24h: Change over 24 hours in percent; omitted when unknown.
        volume_24h: Volume over 24 hours in USD; omitted when unknown.

    Raises:
        InvalidFieldError: A number is not finite, a datetime naive, or `source` empty.
    """
    fields = {
        "price": _decimal_text(price, "price"),
        "updated_at": _iso(updated_at, "updated_at"),
        "source": _text(source, "source"),
    }
    if change_24h is not None:
        fields["change_24h"] = _decimal_text(change_24h, "change_24h")
    if volume_24h is not None:
        fields["volume_24h"] = _decimal_text(volume_24h, "volume_24h")
    return fields


def signal_fields(
    *,
    token_address: str,
    direction: str,
    confidence: Decimal | float,
    price: Decimal | float,
    strategy_id: str | uuid.UUID,
    created_at: datetime,
    expires_at: datetime,
) -> dict[str, str]:
    """The `signal:{signal_id}` hash: every one of the document's seven fields.

    Raises:
        InvalidKeyPartError: `token_address` or `strategy_id` is malformed (both are cross-store keys).
        InvalidFieldError: `direction` is not buy or sell, a number not finite, a datetime naive, or
            `expires_at` not after `created_at`.
    """
    if direction not in _DIRECTIONS:
        raise InvalidFieldError(f"signal direction must be buy or sell, got {direction!r}")
    if _require_aware(expires_at, "expires_at") <= _require_aware(created_at, "created_at"):
        raise InvalidFieldError(f"signal expires_at {_iso(expires_at)} is not after created_at {_iso(created_at)}")
    return {
        "token_address": validate_solana_address(token_address),
        "direction": direction,
        "confidence": _decimal_text(confidence, "confidence"),
        "price": _decimal_text(price, "price"),
        "strategy_id": validate_uuid(strategy_id, "strategy id"),
        "created_at": _iso(created_at),
        "expires_at": _iso(expires_at),
    }


def session_fields(
    *,
    user_id: str | uuid.UUID,
    email: str,
    role: str,
    permissions: Sequence[str],
    last_activity: datetime,
    ip_address: str,
) -> dict[str, str]:
    """The `session:{session_id}` hash: every one of the document's six fields.

    `permissions` becomes a JSON array string, `ip_address` its canonical form (`::1`, not `0::1`).

    Raises:
        InvalidKeyPartError: `user_id` is not a UUID.
        InvalidFieldError: `email` has no `@`, `role` is empty, a permission is not a string,
            `last_activity` is naive, or `ip_address` is not an IP address.
    """
    if not isinstance(email, str) or "@" not in email[1:-1]:
        raise InvalidFieldError(f"session email {email!r} is not an email address")
    if isinstance(permissions, str) or not all(isinstance(p, str) and p for p in permissions):
        raise InvalidFieldError(f"session permissions must be a sequence of non-empty strings, got {permissions!r}")
    try:
        ip = str(ipaddress.ip_address(ip_address))
    except ValueError:
        raise InvalidFieldError(f"session ip_address {ip_address!r} is not an IP address") from None
    return {
        "user_id": validate_uuid(user_id, "user id"),
        "email": email,
        "role": _text(role, "role"),
        "permissions": json.dumps(list(permissions), separators=(",", ":")),
        "last_activity": _iso(last_activity, "last_activity"),
        "ip_address": ip,
    }


def session_activity_fields(last_activity: datetime) -> dict[str, str]:
    """The fields an activity updates in `session:{session_id}`; `EXPIRE` it by `SESSION_TTL` with them."""
    return {"last_activity": _iso(last_activity, "last_activity")}


def _require_aware(moment: datetime, name: str) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidFieldError(f"{name} must be a timezone-aware datetime, got {moment!r}")
    return moment


def _iso(moment: datetime, name: str = "timestamp") -> str:
    return _require_aware(moment, name).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _text(value: str, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidFieldError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _decimal_text(value: Decimal | float, name: str) -> str:
    """A number in plain positional notation: `0.00001`, never `1e-05`; integers without a point."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float):
        raise InvalidFieldError(f"{name} must be a number, got {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidFieldError(f"{name} must be finite, got {value!r}")
        # repr gives the shortest text that reads back as the same float; Decimal keeps it exact.
        value = Decimal(repr(value))
    if not value.is_finite():
        raise InvalidFieldError(f"{name} must be finite, got {value!r}")
    return format(value, "f")
