"""Redis keys, hash fields and TTLs: checked against the document and written to a real Redis."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import redis

from quantbot.schema.redis_keys import (
    API_CACHE_DEFAULT_TTL,
    PRICE_TTL,
    SESSION_TTL,
    InvalidFieldError,
    InvalidKeyPartError,
    SignalExpiredError,
    api_cache_key,
    api_cache_ttl,
    parameters_hash,
    price_fields,
    price_key,
    session_activity_fields,
    session_fields,
    session_key,
    signal_fields,
    signal_key,
    signal_ttl,
)
from tests.schema import document

WSOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
SYSTEM_PROGRAM = "11111111111111111111111111111111"  # 32 zero bytes
NOW = datetime(2026, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)
STRATEGY_ID = "6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f"


@pytest.fixture
def cache(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the flushed test database, answering strings."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        client.close()


def _signal(**overrides: Any) -> dict[str, str]:
    values: dict[str, Any] = {
        "token_address": WSOL,
        "direction": "buy",
        "confidence": Decimal("85.50"),
        "price": 145.75,
        "strategy_id": STRATEGY_ID,
        "created_at": NOW,
        "expires_at": NOW + timedelta(minutes=15),
    }
    values.update(overrides)
    return signal_fields(**values)


def _session(**overrides: Any) -> dict[str, str]:
    values: dict[str, Any] = {
        "user_id": uuid.UUID(STRATEGY_ID),
        "email": "ada@example.com",
        "role": "user",
        "permissions": ["read", "trade"],
        "last_activity": NOW,
        "ip_address": "2001:db8:0:0::1",
    }
    values.update(overrides)
    return session_fields(**values)


def test_known_addresses_are_valid() -> None:
    """Real mints and the all-zero system program address make keys unchanged."""
    assert price_key(WSOL) == f"price:{WSOL}"
    assert price_key(USDC) == f"price:{USDC}"
    assert price_key(SYSTEM_PROGRAM) == f"price:{SYSTEM_PROGRAM}"


@pytest.mark.parametrize(
    "address",
    [
        "",
        "So1111111111111111111111111111111111111111",  # 31 bytes
        "So111111111111111111111111111111111111111121",  # 33 bytes
        "So11111111111111111111111111111111111111O12",  # `O` is not base58
        "So11111111111111111111111111111111111111l12",  # nor is `l`
        f"{WSOL}*",
        f" {WSOL}",
        "price:x",
        "111111111111111111111111111111111",  # 33 ones: 33 zero bytes
    ],
)
def test_malformed_addresses_are_refused_naming_them(address: str) -> None:
    """A string that is not base58 of 32 bytes never becomes a key; the error names it."""
    with pytest.raises(InvalidKeyPartError) as raised:
        price_key(address)

    assert repr(address) in str(raised.value) or f"`{address}`" in str(raised.value)


def test_a_non_string_address_is_refused() -> None:
    """Bytes or numbers are not addresses, even when they would decode."""
    with pytest.raises(InvalidKeyPartError):
        price_key(WSOL.encode())  # type: ignore[arg-type]


def test_ids_are_uuids_in_canonical_form() -> None:
    """One id, one key: upper case, braces, urn and hex forms all give the canonical lower-case key."""
    value = uuid.UUID(STRATEGY_ID)
    forms: list[str | uuid.UUID] = [
        STRATEGY_ID,
        STRATEGY_ID.upper(),
        f"{{{STRATEGY_ID}}}",
        f"urn:uuid:{STRATEGY_ID}",
        value.hex,
        value,
    ]

    assert {signal_key(f) for f in forms} == {f"signal:{STRATEGY_ID}"}
    assert session_key(value) == f"session:{STRATEGY_ID}"


@pytest.mark.parametrize("value", ["", "not-a-uuid", "6f1c2d3e-4b5a-4c6d-8e7f", f"{STRATEGY_ID}:x", "*", 42])
def test_malformed_ids_are_refused(value: Any) -> None:
    """Anything but a UUID is refused for signal and session keys, with the kind of id in the message."""
    with pytest.raises(InvalidKeyPartError, match="signal id"):
        signal_key(value)
    with pytest.raises(InvalidKeyPartError, match="session id"):
        session_key(value)


def test_api_keys_hash_canonical_json_of_the_parameters() -> None:
    """The parameters hash is sha256 of sorted, compact JSON: key order and formatting do not matter."""
    expected = hashlib.sha256(b'{"limit":10,"token":"So1","window":["1h","24h"]}').hexdigest()

    first = api_cache_key("tokens/top", {"token": "So1", "limit": 10, "window": ["1h", "24h"]})
    second = api_cache_key("tokens/top", {"window": ["1h", "24h"], "limit": 10, "token": "So1"})

    assert first == second == f"api:tokens/top:{expected}"
    assert parameters_hash({"limit": 10}) != parameters_hash({"limit": 11})
    assert parameters_hash({"name": "é"}) == hashlib.sha256('{"name":"é"}'.encode()).hexdigest()


@pytest.mark.parametrize("endpoint", ["", "a:b", "tokens top", "tokens/*", "{tag}", "x?y=1", "a" * 129, "ü"])
def test_malformed_endpoints_are_refused(endpoint: str) -> None:
    """Separators, globs, hash tags, whitespace, query strings and overlong names never reach a key."""
    with pytest.raises(InvalidKeyPartError, match="endpoint"):
        api_cache_key(endpoint, {})


@pytest.mark.parametrize("parameters", [{"at": NOW}, {"x": float("nan")}, ["not", "a", "mapping"]])
def test_parameters_that_are_not_json_are_refused(parameters: Any) -> None:
    """Parameters must be a JSON object; datetimes, NaN and lists are refused rather than guessed at."""
    with pytest.raises(InvalidKeyPartError, match="api parameters"):
        parameters_hash(parameters)


def test_hash_fields_are_exactly_the_documents() -> None:
    """price, signal and session hashes carry exactly the fields the document lists."""
    patterns = document.cache_patterns()
    price = price_fields(price=1.5, updated_at=NOW, source="raydium", change_24h=-2.5, volume_24h=1000)

    assert set(price) == set(patterns["price"].fields)
    assert set(_signal()) == set(patterns["signal"].fields)
    assert set(_session()) == set(patterns["session"].fields)
    assert {p.pattern for p in patterns.values()} == {
        "price:{token_address}",
        "signal:{signal_id}",
        "session:{session_id}",
        "api:{endpoint}:{parameters_hash}",
    }


def test_field_values_are_plain_decimals_and_fixed_width_utc_timestamps() -> None:
    """Decimals are positional (never 1e-05), timestamps ISO UTC with microseconds and a Z."""
    elsewhere = NOW.astimezone(timezone(timedelta(hours=9)))

    fields = price_fields(price=1e-05, updated_at=elsewhere, source="jupiter", volume_24h=Decimal("1E+3"))

    assert fields == {
        "price": "0.00001",
        "updated_at": "2026-03-14T15:09:26.535897Z",
        "source": "jupiter",
        "volume_24h": "1000",
    }
    assert _signal()["confidence"] == "85.50"
    assert _signal()["created_at"] == "2026-03-14T15:09:26.535897Z"
    assert _signal(created_at=NOW.replace(microsecond=0))["created_at"] == "2026-03-14T15:09:26.000000Z"


def test_session_fields_canonicalise_permissions_and_address() -> None:
    """Permissions become a JSON array string, the IP address its canonical text, the user id canonical."""
    fields = _session()

    assert json.loads(fields["permissions"]) == ["read", "trade"]
    assert fields["ip_address"] == "2001:db8::1"
    assert fields["user_id"] == STRATEGY_ID


@pytest.mark.parametrize(
    "build",
    [
        lambda: price_fields(price=float("nan"), updated_at=NOW, source="x"),
        lambda: price_fields(price=True, updated_at=NOW, source="x"),
        lambda: price_fields(price=1.0, updated_at=NOW.replace(tzinfo=None), source="x"),
        lambda: price_fields(price=1.0, updated_at=NOW, source=""),
        lambda: _signal(direction="hold"),
        lambda: _signal(expires_at=NOW),
        lambda: _session(ip_address="localhost"),
        lambda: _session(email="nobody"),
        lambda: _session(permissions="read"),
    ],
    ids=[
        "nan price",
        "bool price",
        "naive time",
        "empty source",
        "bad direction",
        "expiry not after creation",
        "bad ip",
        "bad email",
        "permissions as a string",
    ],
)
def test_invalid_field_values_are_refused(build: Any) -> None:
    """Values the document's string fields cannot faithfully hold raise InvalidFieldError."""
    with pytest.raises(InvalidFieldError):
        build()


def test_signal_fields_validate_their_cross_store_ids() -> None:
    """The token address and strategy id inside a signal hash are checked like key parts."""
    with pytest.raises(InvalidKeyPartError):
        _signal(token_address="not-an-address")
    with pytest.raises(InvalidKeyPartError):
        _signal(strategy_id="strategy-1")


def test_signal_ttl_runs_to_the_expiry_rounded_down_to_milliseconds() -> None:
    """The TTL is the time left in whole milliseconds, never past the expiry."""
    ttl = signal_ttl(NOW + timedelta(minutes=15, microseconds=999), now=NOW)

    assert ttl == timedelta(minutes=15)


@pytest.mark.parametrize("left", [timedelta(0), timedelta(microseconds=999), -timedelta(hours=1)])
def test_an_expired_signal_has_no_ttl(left: timedelta) -> None:
    """A signal with less than a millisecond left is SignalExpiredError: it is not cached at all."""
    with pytest.raises(SignalExpiredError, match="expired"):
        signal_ttl(NOW + left, now=NOW)


def test_api_ttl_is_per_endpoint_with_a_default() -> None:
    """An endpoint's override wins; others get the default; sub-second overrides are refused."""
    overrides = {"tokens/top": timedelta(minutes=2)}

    assert api_cache_ttl("tokens/top", overrides) == timedelta(minutes=2)
    assert api_cache_ttl("whales/recent", overrides) == API_CACHE_DEFAULT_TTL == timedelta(seconds=30)
    with pytest.raises(InvalidFieldError):
        api_cache_ttl("fast", {"fast": timedelta(milliseconds=500)})


def test_ttls_are_the_documents() -> None:
    """30 s for prices and 24 h for sessions, as the document's Expiration lines say."""
    patterns = document.cache_patterns()

    assert patterns["price"].expiration == "30 seconds"
    assert timedelta(seconds=30) == PRICE_TTL
    assert patterns["session"].expiration.startswith("24 hours")
    assert timedelta(hours=24) == SESSION_TTL


def test_price_hash_is_written_with_a_30_second_ttl(cache: redis.Redis) -> None:
    """A price hash written by the policy holds the document's fields and expires in 30 s."""
    key = price_key(WSOL)
    fields = price_fields(price=145.75, updated_at=NOW, source="raydium", change_24h=2.5, volume_24h=1.2e9)

    with cache.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        pipe.hset(key, mapping=fields)  # type: ignore[arg-type]  # redis-py's mapping type is invariant
        pipe.pexpire(key, PRICE_TTL)
        pipe.execute()

    assert cache.hgetall(key) == fields
    assert fields["volume_24h"] == "1200000000.0"
    assert 29_000 < cache.pttl(key) <= 30_000


def test_signal_hash_expires_with_the_signal(cache: redis.Redis) -> None:
    """A signal hash's TTL is the time left to its expiry."""
    now = datetime.now(UTC)
    signal_id = uuid.uuid4()
    fields = _signal(created_at=now, expires_at=now + timedelta(minutes=10))
    key = signal_key(signal_id)

    with cache.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
        pipe.pexpire(key, signal_ttl(now + timedelta(minutes=10), now=now))
        pipe.execute()

    assert cache.hgetall(key) == fields
    # The write takes milliseconds; a second of slack keeps a loaded machine from failing the test.
    assert 599_000 < cache.pttl(key) <= 600_000


def test_session_hash_lives_24_hours_and_activity_restarts_the_clock(cache: redis.Redis) -> None:
    """A session starts with 24 h; an activity updates last_activity and restores the full 24 h."""
    key = session_key(uuid.uuid4())
    cache.hset(key, mapping=_session())  # type: ignore[arg-type]
    cache.expire(key, SESSION_TTL)
    started = cache.ttl(key)
    cache.expire(key, 60)  # as if the session had idled for all but a minute

    later = NOW + timedelta(hours=23)
    with cache.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping=session_activity_fields(later))  # type: ignore[arg-type]
        pipe.expire(key, SESSION_TTL)
        pipe.execute()

    assert started == 86_400
    assert 86_399 <= cache.ttl(key) <= 86_400
    assert cache.hget(key, "last_activity") == "2026-03-15T14:09:26.535897Z"
    assert set(cache.hgetall(key)) == set(document.cache_patterns()["session"].fields)


def test_api_response_is_a_json_string_with_its_endpoints_ttl(cache: redis.Redis) -> None:
    """A cached API response is a string under api:{endpoint}:{hash} with the endpoint's TTL."""
    key = api_cache_key("tokens/top", {"limit": 10})
    body = json.dumps({"tokens": [WSOL]})

    cache.set(key, body, ex=api_cache_ttl("tokens/top"))

    assert cache.type(key) == "string"
    assert json.loads(cache.get(key) or "") == {"tokens": [WSOL]}
    assert cache.ttl(key) == 30
