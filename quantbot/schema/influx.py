"""InfluxDB schema: typed builders for the four measurements, and the bucket with its retention.

One frozen dataclass per measurement of the schema document's "Time-Series Schema" section, with
exactly its tags and fields, renders itself as one line of InfluxDB line protocol: the form
`influxdb_client`'s write API accepts as a record (`write_api.write(bucket, org, record=lines)`). The
builders produce it themselves so that this module needs no client at run time; the output is
byte-for-byte what `influxdb_client.Point` renders for the same values (tags and fields sorted by key,
the same escaping, whole floats without `.0`).

Types are fixed per field, because InfluxDB refuses a point whose field changes type within a shard
(`field type conflict`): float fields are always written as floats (an `int` given for one is
converted), integer fields always with the `i` suffix, `success` as a boolean. A field left `None`
is omitted; a point needs at least one field. Timestamps are nanoseconds since the epoch, taken from
timezone-aware datetimes only.

Exceptions::

    ValueError
     └── InvalidPointError   a value that cannot become this measurement's point (naive time, NaN, ...)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from quantbot.units import NS_PER_US, SECONDS_PER_DAY

if TYPE_CHECKING:
    from influxdb_client.client.influxdb_client import InfluxDBClient

__all__ = [
    "DEFAULT_RETENTION_SECONDS",
    "NO_BUCKETS_API_NOTE",
    "InvalidPointError",
    "SystemPerformance",
    "TokenPrice",
    "TradingMetrics",
    "TradingSignalEvent",
    "ensure_bucket",
    "to_nanoseconds",
    "token_price_line",
]

logger = logging.getLogger(__name__)

DEFAULT_RETENTION_SECONDS = 90 * SECONDS_PER_DAY
"""Ninety days: a quarter of history, the longest window the platform's reports compare (24 h and
30-day figures), with margin. Older history belongs to the archival process, not the hot bucket."""

NO_BUCKETS_API_NOTE = "skipped: server has no buckets API"
"""What `ensure_bucket` returns for a server that accepts writes but has no buckets API."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT64 = 2**63
"""Line protocol timestamps are signed 64-bit nanoseconds: 1677-09-21 to 2262-04-11."""
_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})

FieldValue = float | int | bool


class InvalidPointError(ValueError):
    """A value cannot become a point of its measurement; the message names the field and value."""


def to_nanoseconds(moment: datetime) -> int:
    """Nanoseconds since the Unix epoch, exactly, for a timezone-aware datetime.

    Args:
        moment: A timezone-aware datetime.

    Returns:
        The integer timestamp line protocol expects at its default (nanosecond) precision.

    Raises:
        InvalidPointError: `moment` is naive: its instant would depend on the machine's zone; or it is
            outside the signed 64-bit nanoseconds line protocol holds (a server refuses or drops it).
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidPointError(f"timestamp `{moment.isoformat()}` is naive: give it a timezone")
    # Integer arithmetic on timedelta keeps every microsecond; float seconds would not.
    nanoseconds = (moment - _EPOCH) // timedelta(microseconds=1) * NS_PER_US
    if not -_INT64 <= nanoseconds < _INT64:
        raise InvalidPointError(f"timestamp `{moment.isoformat()}` is outside line protocol's 1677-2262 range")
    return nanoseconds


class _Measurement:
    """Shared rendering and checks; subclasses declare which attributes are tags and which fields."""

    MEASUREMENT: ClassVar[str]
    TAGS: ClassVar[tuple[str, ...]]
    OPTIONAL_TAGS: ClassVar[frozenset[str]] = frozenset()
    TAG_VALUES: ClassVar[Mapping[str, frozenset[str]]] = {}
    FLOAT_FIELDS: ClassVar[tuple[str, ...]] = ()
    INTEGER_FIELDS: ClassVar[tuple[str, ...]] = ()
    BOOLEAN_FIELDS: ClassVar[tuple[str, ...]] = ()

    time: datetime

    def __post_init__(self) -> None:
        to_nanoseconds(self.time)
        for name in self.TAGS:
            value = getattr(self, name)
            if value is None and name in self.OPTIONAL_TAGS:
                continue
            if not isinstance(value, str) or not value:
                raise InvalidPointError(f"{self.MEASUREMENT} tag `{name}` must be a non-empty string, got {value!r}")
            if value.endswith("\\"):
                raise InvalidPointError(f"{self.MEASUREMENT} tag `{name}` ends with a backslash: {value!r}")
            allowed = self.TAG_VALUES.get(name)
            if allowed is not None and value not in allowed:
                raise InvalidPointError(
                    f"{self.MEASUREMENT} tag `{name}` must be one of {sorted(allowed)}, got {value!r}"
                )
        for name in self.FLOAT_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InvalidPointError(f"{self.MEASUREMENT} field `{name}` must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        for name in self.INTEGER_FIELDS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise InvalidPointError(f"{self.MEASUREMENT} field `{name}` must be an integer, got {value!r}")
        for name in self.BOOLEAN_FIELDS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise InvalidPointError(f"{self.MEASUREMENT} field `{name}` must be a boolean, got {value!r}")
        if not self.fields():
            raise InvalidPointError(f"{self.MEASUREMENT} point at {self.time.isoformat()} has no field set")

    def tags(self) -> dict[str, str]:
        """The point's tags, absent optional ones left out."""
        return {name: value for name in self.TAGS if (value := getattr(self, name)) is not None}

    def fields(self) -> dict[str, FieldValue]:
        """The point's fields, `None` ones left out."""
        names = (*self.FLOAT_FIELDS, *self.INTEGER_FIELDS, *self.BOOLEAN_FIELDS)
        return {name: value for name in names if (value := getattr(self, name)) is not None}

    @property
    def timestamp_ns(self) -> int:
        """The point's time in nanoseconds since the epoch."""
        return to_nanoseconds(self.time)

    def to_line_protocol(self) -> str:
        """The point as one line of InfluxDB line protocol, nanosecond precision."""
        measurement = self.MEASUREMENT.translate(_ESCAPE_MEASUREMENT)
        tags = "".join(
            f",{k.translate(_ESCAPE_KEY)}={v.translate(_ESCAPE_KEY)}" for k, v in sorted(self.tags().items())
        )
        fields = ",".join(f"{k.translate(_ESCAPE_KEY)}={_render(v)}" for k, v in sorted(self.fields().items()))
        return f"{measurement}{tags} {fields} {self.timestamp_ns}"


def _render(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    text = str(value)
    # Line protocol reads a number without the `i` suffix as a float, so `2.0` may be written `2`.
    return text.removesuffix(".0")


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenPrice(_Measurement):
    """A token's price at a moment, from one source: measurement `token_prices`.

    Attributes:
        time: When the price held (timezone-aware).
        token_address: Tag: the token's mint address.
        symbol: Tag: the token's symbol; omitted when unknown.
        source: Tag: where the price came from, e.g. `raydium`, `jupiter`.
        price: The price in USD.
        volume: Traded volume in USD.
        market_cap: Market capitalisation in USD.
        liquidity: Liquidity in USD.
        price_change_24h: Price change over 24 hours, in percent.
        high_24h: Highest price over 24 hours, in USD.
        low_24h: Lowest price over 24 hours, in USD.
        nanosecond: Nanoseconds past `time` (0-999), which a `datetime` cannot hold: line protocol has
            nanosecond precision, and the flow spreads same-second trades over it (see `sinks.influx`).
    """

    MEASUREMENT: ClassVar[str] = "token_prices"
    TAGS: ClassVar[tuple[str, ...]] = ("token_address", "symbol", "source")
    # Most tokens a DEX trade touches have no symbol the flow knows; the point is still written,
    # without the tag, rather than with an invented one.
    OPTIONAL_TAGS: ClassVar[frozenset[str]] = frozenset({"symbol"})
    FLOAT_FIELDS: ClassVar[tuple[str, ...]] = (
        "price",
        "volume",
        "market_cap",
        "liquidity",
        "price_change_24h",
        "high_24h",
        "low_24h",
    )

    time: datetime
    token_address: str
    symbol: str | None
    source: str
    price: float
    volume: float | None = None
    market_cap: float | None = None
    liquidity: float | None = None
    price_change_24h: float | None = None
    high_24h: float | None = None
    low_24h: float | None = None
    nanosecond: int = 0

    def __post_init__(self) -> None:
        _Measurement.__post_init__(self)  # not super(): slotted dataclasses are rebuilt, which breaks its cell
        if isinstance(self.nanosecond, bool) or not isinstance(self.nanosecond, int) or not 0 <= self.nanosecond < 1000:
            raise InvalidPointError(f"{self.MEASUREMENT} nanosecond must be an integer 0-999, got {self.nanosecond!r}")

    @property
    def timestamp_ns(self) -> int:
        """The point's time in nanoseconds since the epoch, `nanosecond` included."""
        return to_nanoseconds(self.time) + self.nanosecond


def token_price_line(
    time_ns: int,
    token_address: str,
    symbol: str | None,
    source: str,
    *,
    price: float,
    volume: float | None,
    market_cap: float | None,
    liquidity: float | None,
    price_change_24h: float | None,
    high_24h: float | None,
    low_24h: float | None,
) -> str:
    """The `token_prices` line of these values: `TokenPrice(...).to_line_protocol()` byte for byte, without the point.

    The flow writes one `token_prices` point per trade; building and checking the generic dataclass is
    most of an Influx write's CPU. This renders the same line directly (tags and fields in the same
    sorted order, the same escaping and number forms; a test holds the two equal). Any value the fast
    path does not take as it is (a field that is not a finite `float`, a tag `TokenPrice` would refuse, a
    time outside line protocol's range) goes through `TokenPrice` itself, which converts it or raises
    its `InvalidPointError`.
    """
    fields = (
        ("high_24h", high_24h),
        ("liquidity", liquidity),
        ("low_24h", low_24h),
        ("market_cap", market_cap),
        ("price", price),
        ("price_change_24h", price_change_24h),
        ("volume", volume),
    )
    rendered: list[str] = []
    for name, value in fields:
        if value is None:
            continue
        if value.__class__ is not float or not math.isfinite(value):
            return _token_price_point(time_ns, token_address, symbol, source, fields).to_line_protocol()
        text = repr(value)
        rendered.append(f"{name}={text[:-2] if text.endswith('.0') else text}")
    if not (
        token_address.__class__ is str
        and source.__class__ is str
        and token_address
        and source
        and token_address[-1] != "\\"
        and source[-1] != "\\"
        and (symbol is None or (symbol.__class__ is str and symbol and symbol[-1] != "\\"))
        and 0 <= time_ns < _INT64
    ):
        return _token_price_point(time_ns, token_address, symbol, source, fields).to_line_protocol()
    tags = f",source={source.translate(_ESCAPE_KEY)}"
    if symbol is not None:
        tags += f",symbol={symbol.translate(_ESCAPE_KEY)}"
    return f"token_prices{tags},token_address={token_address.translate(_ESCAPE_KEY)} {','.join(rendered)} {time_ns}"


def _token_price_point(
    time_ns: int, token_address: str, symbol: str | None, source: str, fields: tuple[tuple[str, Any], ...]
) -> TokenPrice:
    """The `TokenPrice` of `token_price_line`'s values: what converts or refuses those the fast path does not take."""
    if not -_INT64 <= time_ns < _INT64:  # beyond a datetime too, past the year 9999
        raise InvalidPointError(f"timestamp {time_ns:,} ns is outside line protocol's 1677-2262 range")
    time = _EPOCH + timedelta(microseconds=time_ns // NS_PER_US)
    values: dict[str, Any] = dict(fields)
    return TokenPrice(
        time=time,
        nanosecond=time_ns % NS_PER_US,
        token_address=token_address,
        symbol=symbol,
        source=source,
        **values,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TradingMetrics(_Measurement):
    """A strategy's performance for a user at a moment: measurement `trading_metrics`.

    Attributes:
        time: When the metrics were taken (timezone-aware).
        strategy_id: Tag: the strategy's UUID string.
        user_id: Tag: the user's UUID string.
        token_address: Tag, optional: the token the figures are restricted to; omitted when None.
        pnl_percent: Profit and loss, in percent.
        pnl_absolute: Profit and loss, in USD.
        win_count: Winning trades.
        loss_count: Losing trades.
        active_positions: Positions open.
        exposure_usd: Exposure in USD.
        max_drawdown: Maximum drawdown, in percent.
        sharpe_ratio: Sharpe ratio.
        sortino_ratio: Sortino ratio.
    """

    MEASUREMENT: ClassVar[str] = "trading_metrics"
    TAGS: ClassVar[tuple[str, ...]] = ("strategy_id", "user_id", "token_address")
    OPTIONAL_TAGS: ClassVar[frozenset[str]] = frozenset({"token_address"})
    FLOAT_FIELDS: ClassVar[tuple[str, ...]] = (
        "pnl_percent",
        "pnl_absolute",
        "exposure_usd",
        "max_drawdown",
        "sharpe_ratio",
        "sortino_ratio",
    )
    INTEGER_FIELDS: ClassVar[tuple[str, ...]] = ("win_count", "loss_count", "active_positions")

    time: datetime
    strategy_id: str
    user_id: str
    token_address: str | None = None
    pnl_percent: float | None = None
    pnl_absolute: float | None = None
    win_count: int | None = None
    loss_count: int | None = None
    active_positions: int | None = None
    exposure_usd: float | None = None
    max_drawdown: float | None = None
    sharpe_ratio: float | None = None
    sortino_ratio: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemPerformance(_Measurement):
    """A service instance's operational metrics at a moment: measurement `system_performance`.

    Attributes:
        time: When the metrics were taken (timezone-aware).
        service: Tag: the service, e.g. `dataflow`.
        instance: Tag: the instance, e.g. a host or worker name.
        region: Tag: the region the instance runs in.
        cpu_usage_percent: CPU usage, in percent.
        memory_usage_percent: Memory usage, in percent.
        request_count: Requests (for the dataflow: frames) handled since the last point.
        error_count: Errors since the last point.
        response_time_ms: Response (for the dataflow: frame-to-store) time, in milliseconds.
        queue_depth: Items waiting.
        active_connections: Open connections.
        throughput: Items per second.
    """

    MEASUREMENT: ClassVar[str] = "system_performance"
    TAGS: ClassVar[tuple[str, ...]] = ("service", "instance", "region")
    FLOAT_FIELDS: ClassVar[tuple[str, ...]] = (
        "cpu_usage_percent",
        "memory_usage_percent",
        "response_time_ms",
        "throughput",
    )
    INTEGER_FIELDS: ClassVar[tuple[str, ...]] = ("request_count", "error_count", "queue_depth", "active_connections")

    time: datetime
    service: str
    instance: str
    region: str
    cpu_usage_percent: float | None = None
    memory_usage_percent: float | None = None
    request_count: int | None = None
    error_count: int | None = None
    response_time_ms: float | None = None
    queue_depth: int | None = None
    active_connections: int | None = None
    throughput: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TradingSignalEvent(_Measurement):
    """A trading signal's occurrence and, later, its outcome: measurement `trading_signals`.

    Attributes:
        time: When the signal was raised (timezone-aware).
        signal_id: Tag: the signal's UUID string.
        strategy_id: Tag: the strategy's UUID string.
        token_address: Tag: the token's mint address.
        direction: Tag: `buy` or `sell`.
        confidence: The signal's confidence.
        strength: The signal's strength.
        price: The token's price when the signal was raised, in USD.
        volume: The volume behind the signal, in USD.
        predicted_move: The predicted price move, in percent.
        actual_move_1h: The observed move after one hour, in percent.
        actual_move_24h: The observed move after 24 hours, in percent.
        success: Whether the signal proved right.
    """

    MEASUREMENT: ClassVar[str] = "trading_signals"
    TAGS: ClassVar[tuple[str, ...]] = ("signal_id", "strategy_id", "token_address", "direction")
    FLOAT_FIELDS: ClassVar[tuple[str, ...]] = (
        "confidence",
        "strength",
        "price",
        "volume",
        "predicted_move",
        "actual_move_1h",
        "actual_move_24h",
    )
    BOOLEAN_FIELDS: ClassVar[tuple[str, ...]] = ("success",)
    TAG_VALUES: ClassVar[Mapping[str, frozenset[str]]] = {"direction": frozenset({"buy", "sell"})}

    time: datetime
    signal_id: str
    strategy_id: str
    token_address: str
    direction: str
    confidence: float
    strength: float | None = None
    price: float | None = None
    volume: float | None = None
    predicted_move: float | None = None
    actual_move_1h: float | None = None
    actual_move_24h: float | None = None
    success: bool | None = None


def ensure_bucket(
    client: InfluxDBClient,
    bucket: str,
    org: str,
    retention_seconds: int = DEFAULT_RETENTION_SECONDS,
) -> str:
    """Create `bucket` in `org` with `retention_seconds` of retention, or bring its retention to that.

    Servers without a buckets API (VictoriaMetrics, which answers `400 unsupported path`; InfluxDB 3,
    which answers 404) accept writes to any bucket name, so there is nothing to create: the call
    returns `NO_BUCKETS_API_NOTE` instead of failing.

    Args:
        client: A client for the server.
        bucket: The bucket's name.
        org: The organisation's name or id.
        retention_seconds: How long points are kept; 0 keeps them forever.

    Returns:
        `created`, `retention updated`, `unchanged`, or `NO_BUCKETS_API_NOTE`.

    Raises:
        ValueError: `retention_seconds` is negative.
        influxdb_client.rest.ApiException: The server refused for another reason (e.g. permissions).
    """
    if retention_seconds < 0:
        raise ValueError(f"retention `{retention_seconds}` s is negative")
    # Half of BucketsApi is unannotated; treat it as the dynamic object it is.
    api: Any = client.buckets_api()
    try:
        found = api.find_buckets(name=bucket, org=org).buckets or []
    except Exception as exc:
        if _lacks_buckets_api(exc):
            logger.warning("schema=influx bucket=%s action=skipped reason=no_buckets_api", bucket)
            return NO_BUCKETS_API_NOTE
        raise
    # The API's own JSON names: the client serialises plain dicts as given.
    rules: list[dict[str, Any]] = [{"type": "expire", "everySeconds": retention_seconds}]
    if not found:
        api.create_bucket(bucket_name=bucket, retention_rules=rules, org=org)
        action = "created"
    else:
        existing = found[0]
        have = [getattr(rule, "every_seconds", None) for rule in existing.retention_rules or []]
        if have == [retention_seconds] or (retention_seconds == 0 and not have):
            action = "unchanged"
        else:
            existing.retention_rules = rules
            api.update_bucket(existing)
            action = "retention updated"
    logger.info(
        "schema=influx bucket=%s org=%s action=%s retention_s=%d",
        bucket,
        org,
        action.replace(" ", "_"),
        retention_seconds,
    )
    return action


def _lacks_buckets_api(exc: Exception) -> bool:
    """Whether a client error means "no such API" rather than "this request failed"."""
    # influxdb_client's ApiException carries `status` and `body`; reading them by name keeps the client
    # out of this module's runtime imports.
    status = getattr(exc, "status", None)
    body = str(getattr(exc, "body", "") or "")
    return status in {404, 405} or (status == 400 and "unsupported path" in body)
