"""The price feeds' messages, read: Pyth Hermes, Birdeye and Jupiter, each by a parser of its own.

A feed frame's payload is the message exactly as it arrived (DESIGN.md §3):

| source    | kind          | payload                                                                      |
|-----------|---------------|------------------------------------------------------------------------------|
| `pyth`    | `price`       | one SSE event's data of `/v2/updates/price/stream`, or a `latest` body       |
| `birdeye` | `price`       | one websocket text message `{"type": "PRICE_DATA", "data": {...}}`           |
| `birdeye` | `large_trade` | one websocket text message `{"type": "TXS_LARGE_TRADE_DATA", "data": {...}}` |
| `jupiter` | `price`       | one HTTP body of `/price/v3?ids=...`: a map of mint to price                 |

A message may hold several prices (Hermes' `parsed` array, Jupiter's map): it yields one quote each.
What is wrong with the whole message raises `PriceFormatError`; what is wrong with one of its prices
is a `FeedProblem` beside the good quotes (the flow makes it a dead letter, the others go on).

Pure functions: no I/O, no clock (a Jupiter price carries no time of its own: it is dated by the frame's
receive second, which a recording keeps).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from quantbot.bounds import ParseConfig, known_receive_second, time_problem
from quantbot.models import WSOL_MINT, record
from quantbot.pricing import FeedQuote, PriceFormatError

PYTH = "pyth"
BIRDEYE = "birdeye"
JUPITER = "jupiter"
FEED_SOURCES = (PYTH, BIRDEYE, JUPITER)
"""The frame sources whose payloads the parsers of this module read; any other price frame is the
home-made `{"symbol": "SOL/USD", ...}` frame of older recordings (`quantbot.pricing.parse_price_payload`)."""

SOL_USD_FEED_ID = "ef0d8b6fda2ceba41da15d4095d1da392a0d2f8ed0c6c7bc0f4cfac8c280b56d"
"""Pyth's SOL/USD price feed id (Pyth's price feed ids page; the same on every chain Hermes serves)."""
DEFAULT_PYTH_MINTS: Mapping[str, str] = {SOL_USD_FEED_ID: WSOL_MINT}

BIRDEYE_PRICE = "PRICE_DATA"
BIRDEYE_LARGE_TRADE = "TXS_LARGE_TRADE_DATA"
LARGE_TRADE_KIND = "large_trade"
"""The frame kind of a Birdeye large-trade message."""


@dataclass(frozen=True)
class FeedMap:
    """Which token each feed's price is of: Pyth feed ids (64 hex digits, no `0x`) to mints.

    Birdeye and Jupiter name the mint themselves.
    """

    pyth_mints: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_PYTH_MINTS))


@record
class FeedProblem:
    """One price of a message that could not be used: where in the message (`#<id>`) and why."""

    suffix: str
    reason: str


@record
class LargeTrade:
    """A trade Birdeye reports above its USD minimum: the flow should see its transaction too.

    Attributes:
        signature: the transaction's signature (`txHash`).
        volume_usd: Birdeye's USD value of the trade.
        block_time: the block's Unix seconds.
        received_ns: when the message arrived (the gap check's clock).
        position: the frame's position.
    """

    signature: str
    volume_usd: float
    block_time: int
    received_ns: int
    position: str


def _json_object(payload: str, what: str) -> dict[str, Any]:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PriceFormatError(f"{what} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PriceFormatError(f"{what} is a JSON {type(data).__name__}, not an object")
    return data


def _positive(value: object) -> float | None:
    """`value` as a float when it is a positive JSON number, else None."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _integer(value: object) -> int | None:
    """An integer given as a JSON number or a decimal string (Hermes sends i64 as strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return None


def _checked_time(ts: object, name: str, received_ns: int, bounds: ParseConfig) -> int:
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise PriceFormatError(f"`{name}` `{ts}` is not an integer of Unix seconds")
    problem = time_problem(ts, name, received_ns, bounds)
    if problem is not None:
        raise PriceFormatError(problem)
    return ts


def parse_hermes(
    payload: str, received_ns: int, mints: Mapping[str, str], bounds: ParseConfig
) -> tuple[list[FeedQuote], list[FeedProblem]]:
    """The quotes of a Hermes price update (`{"binary": ..., "parsed": [{"id", "price": {...}}, ...]}`).

    The price is `price × 10^expo`, the confidence `conf × 10^expo`, the time `publish_time`.

    Args:
        payload: one SSE event's data, or a `latest` body.
        received_ns: the frame's receive time (publish times may not be far ahead of it).
        mints: Pyth feed id to mint (`FeedMap.pyth_mints`).
        bounds: what a publish time may be.

    Raises:
        PriceFormatError: the message is not a parsed price update.
    """
    data = _json_object(payload, "Hermes price update")
    parsed = data.get("parsed")
    if not isinstance(parsed, list) or not parsed:
        raise PriceFormatError("Hermes price update has no `parsed` prices (was the stream asked with parsed=true?)")
    quotes: list[FeedQuote] = []
    problems: list[FeedProblem] = []
    for entry in parsed:
        feed_id = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(feed_id, str):
            problems.append(FeedProblem("#?", "Hermes parsed price without an `id`"))
            continue
        feed_id = feed_id.lower().removeprefix("0x")
        try:
            quotes.append(_hermes_quote(entry, feed_id, received_ns, mints, bounds))
        except PriceFormatError as exc:
            problems.append(FeedProblem(f"#{feed_id}", f"Pyth feed {feed_id}: {exc}"))
    return quotes, problems


def _hermes_quote(
    entry: dict[str, Any], feed_id: str, received_ns: int, mints: Mapping[str, str], bounds: ParseConfig
) -> FeedQuote:
    mint = mints.get(feed_id)
    if mint is None:
        raise PriceFormatError("is not mapped to a mint (`[feeds] pyth_ids`)")
    price = entry.get("price")
    if not isinstance(price, dict):
        raise PriceFormatError("`price` is not an object")
    mantissa, conf, expo = _integer(price.get("price")), _integer(price.get("conf")), price.get("expo")
    if mantissa is None or mantissa <= 0:
        raise PriceFormatError(f"price `{price.get('price')}` is not a positive integer")
    if not isinstance(expo, int) or isinstance(expo, bool):
        raise PriceFormatError(f"expo `{expo}` is not an integer")
    publish_time = _checked_time(price.get("publish_time"), "publish_time", received_ns, bounds)
    scale = 10.0**expo
    confidence = conf * scale if conf is not None and conf >= 0 else None
    return FeedQuote(mint, mantissa * scale, publish_time, PYTH, confidence, received_ns)


HERMES_EXPO = -8
"""The exponent Hermes gives USD prices of the majors (SOL/USD, BTC/USD, ...)."""


def hermes_message(feed_id: str, price: object, publish_time: int, conf_share: float = 0.0005) -> str:
    """A Hermes price update of one feed, shaped as the stream's `data` (`parsed=true`), for synthetic feeds.

    `price` is in USD and becomes `price × 10^8` with `expo` -8; anything but a number is written as given
    (a malformed update). The `binary` part is filler: no Wormhole VAA is built.
    """
    if isinstance(price, int | float) and not isinstance(price, bool):
        mantissa: object = str(round(price * 10**-HERMES_EXPO))
        conf: object = str(round(abs(price) * conf_share * 10**-HERMES_EXPO))
    else:
        mantissa, conf = price, "0"
    body = {"price": mantissa, "conf": conf, "expo": HERMES_EXPO, "publish_time": publish_time}
    entry = {
        "id": feed_id,
        "price": body,
        "ema_price": body,
        "metadata": {"proof_available_time": publish_time, "prev_publish_time": publish_time - 1},
    }
    return orjson.dumps({"binary": {"encoding": "hex", "data": [f"{publish_time:016x}"]}, "parsed": [entry]}).decode()


def hermes_publish_times(payload: str) -> dict[str, int]:
    """Feed id to publish time of each price a Hermes message holds (empty when it holds none readable).

    What the Pyth source keeps to drop a re-sent older price after a reconnection.
    """
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return {}
    parsed = data.get("parsed") if isinstance(data, dict) else None
    times: dict[str, int] = {}
    for entry in parsed if isinstance(parsed, list) else ():
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            continue
        price = entry.get("price")
        publish_time = price.get("publish_time") if isinstance(price, dict) else None
        if isinstance(publish_time, int):
            times[entry["id"].lower().removeprefix("0x")] = publish_time
    return times


def birdeye_type(payload: str) -> str | None:
    """The `type` of a Birdeye websocket message, or None when it is not a JSON object with one."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    kind = data.get("type") if isinstance(data, dict) else None
    return kind if isinstance(kind, str) else None


def parse_birdeye_price(payload: str, received_ns: int, bounds: ParseConfig) -> FeedQuote:
    """The quote of a Birdeye `PRICE_DATA` message: the candle's close `c` of token `address` at `unixTime`.

    Raises:
        PriceFormatError: naming what is wrong.
    """
    data = _json_object(payload, "Birdeye message")
    if data.get("type") != BIRDEYE_PRICE:
        raise PriceFormatError(f"Birdeye message of type `{data.get('type')}` is not `{BIRDEYE_PRICE}`")
    body = data.get("data")
    if not isinstance(body, dict):
        raise PriceFormatError("Birdeye PRICE_DATA without a `data` object")
    token, close = body.get("address"), _positive(body.get("c"))
    if not isinstance(token, str) or not token:
        raise PriceFormatError("Birdeye PRICE_DATA without an `address`")
    if close is None:
        raise PriceFormatError(f"Birdeye close `{body.get('c')}` is not a positive number")
    at = _checked_time(body.get("unixTime"), "unixTime", received_ns, bounds)
    return FeedQuote(token, close, at, BIRDEYE, None, received_ns)


def parse_birdeye_trade(payload: str, received_ns: int, position: str) -> LargeTrade:
    """The large trade of a Birdeye `TXS_LARGE_TRADE_DATA` message.

    Raises:
        PriceFormatError: naming what is wrong.
    """
    data = _json_object(payload, "Birdeye message")
    body = data.get("data")
    if data.get("type") != BIRDEYE_LARGE_TRADE or not isinstance(body, dict):
        raise PriceFormatError(f"Birdeye message of type `{data.get('type')}` is not `{BIRDEYE_LARGE_TRADE}`")
    signature, volume, block_time = body.get("txHash"), _positive(body.get("volumeUSD")), body.get("blockUnixTime")
    if not isinstance(signature, str) or not signature:
        raise PriceFormatError("Birdeye large trade without a `txHash`")
    if volume is None or not isinstance(block_time, int):
        raise PriceFormatError("Birdeye large trade without a positive `volumeUSD` and an integer `blockUnixTime`")
    return LargeTrade(signature, volume, block_time, received_ns, position)


def parse_jupiter(payload: str, received_ns: int) -> tuple[list[FeedQuote], list[FeedProblem]]:
    """The quotes of a Jupiter Price API v3 body: `{mint: {"usdPrice": float, "blockId": int, ...}, ...}`.

    A price carries no time: it is dated by the frame's receive second. A mint answered `null` has no
    reliable price (Jupiter's own words): it yields nothing, which is not a fault.

    Raises:
        PriceFormatError: the body is not a map of prices, or the frame's receive time is unknown.
    """
    data = _json_object(payload, "Jupiter price body")
    at = known_receive_second(received_ns)
    if at is None:
        raise PriceFormatError("a Jupiter price is dated by its frame's receive time, which is unknown")
    quotes: list[FeedQuote] = []
    problems: list[FeedProblem] = []
    for mint, entry in data.items():
        if entry is None:
            continue
        raw = entry.get("usdPrice") if isinstance(entry, dict) else entry
        price = _positive(raw)
        if price is None:
            problems.append(FeedProblem(f"#{mint}", f"Jupiter {mint}: usdPrice `{raw}` is not a positive number"))
            continue
        quotes.append(FeedQuote(mint, price, at, JUPITER, None, received_ns))
    return quotes, problems
