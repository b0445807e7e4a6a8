"""Birdeye's websocket: token prices (`SUBSCRIBE_PRICE`) and large trades (`SUBSCRIBE_LARGE_TRADE_TXS`).

A connection goes to `<ws_url>?x-api-key=<key>` with the protocol's headers (subprotocol `echo-protocol`,
`Origin` and `Sec-WebSocket-Origin`), and subscribes, on every connection, the prices of at most
`TOKENS_PER_CONNECTION` tokens in one complex query (their candle's close is the price); more tokens
open more connections, one partition each. The first partition also subscribes the large trades.

Frames are the data messages exactly as received: `PRICE_DATA` (and anything else that is not a control
message, so that a malformed one becomes a dead letter in the flow) as kind `price`, `TXS_LARGE_TRADE_DATA`
as kind `large_trade`. Control messages (a JSON object whose `type` does not end in `_DATA`: welcomes,
acknowledgements, errors) are logged, not framed. The key rides in the URL: it is masked in every log line
(`quantbot.redaction`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import urllib.parse
from dataclasses import dataclass

import orjson
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.typing import Origin, Subprotocol

from connectors.feed import (
    POLL_S,
    EventSink,
    FeedError,
    FeedPartition,
    FeedPosition,
    FeedSource,
    RateLimitedError,
    retry_after_s,
)
from quantbot.backoff import Backoff
from quantbot.feeds import BIRDEYE, BIRDEYE_LARGE_TRADE, BIRDEYE_PRICE, LARGE_TRADE_KIND, birdeye_type
from quantbot.health import SourceActivity
from quantbot.models import Frame, FrameKind
from quantbot.redaction import redact, redact_url

log = logging.getLogger(__name__)

TOKENS_PER_CONNECTION = 100
"""Birdeye's limit of addresses in one complex subscription query."""
PROTOCOL = Subprotocol("echo-protocol")
ORIGIN = Origin("ws://public-api.birdeye.so")
"""The origin Birdeye's documentation has clients send (as `Origin` and `Sec-WebSocket-Origin`)."""
OPEN_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 1.0
PING_INTERVAL_S = 20.0
"""Websocket pings keep NAT and proxies from dropping a quiet connection."""
MAX_MESSAGE_BYTES = 1 << 20
"""A price or trade message is under a kilobyte; a mebibyte is a generous bound."""
HTTP_TOO_MANY_REQUESTS = 429
DATA_SUFFIX = "_DATA"


@dataclass(frozen=True)
class BirdeyeConfig:
    """What the Birdeye source needs, from `[feeds]` (`flows.feeds.birdeye_config` builds it).

    Attributes:
        ws_url: the websocket URL, without the key.
        api_key: the key, appended as `x-api-key` (None: none; a test peer needs none).
        tokens: mints whose prices are streamed.
        chart: the candle of the price subscription (`1m`).
        large_trade_min_usd: subscribe large trades from this USD value; 0: not subscribed.
        silent_after_s: a connection with no message this long is reconnected.
        rate_limited_wait_s: wait after a 429 at the handshake that says not how long.
        backoff: waits between reconnection attempts.
    """

    ws_url: str
    api_key: str | None
    tokens: tuple[str, ...]
    chart: str
    large_trade_min_usd: float
    silent_after_s: float
    rate_limited_wait_s: float
    backoff: Backoff

    def url(self) -> str:
        """The URL connected to, with the key."""
        if not self.api_key:
            return self.ws_url
        separator = "&" if urllib.parse.urlsplit(self.ws_url).query else "?"
        return f"{self.ws_url}{separator}{urllib.parse.urlencode({'x-api-key': self.api_key})}"

    def groups(self) -> list[tuple[str, ...]]:
        """The tokens of each connection (one empty group when only large trades are asked)."""
        chunks = [
            self.tokens[start : start + TOKENS_PER_CONNECTION]
            for start in range(0, len(self.tokens), TOKENS_PER_CONNECTION)
        ]
        return chunks or [()]


def price_subscription(tokens: tuple[str, ...], chart: str) -> dict[str, object]:
    """The `SUBSCRIBE_PRICE` message of `tokens` (a complex query: one message for them all)."""
    query = " OR ".join(f"(address = {token} AND chartType = {chart} AND currency = usd)" for token in tokens)
    return {"type": "SUBSCRIBE_PRICE", "data": {"queryType": "complex", "query": query}}


def large_trade_subscription(min_usd: float) -> dict[str, object]:
    """The `SUBSCRIBE_LARGE_TRADE_TXS` message from `min_usd`."""
    return {"type": "SUBSCRIBE_LARGE_TRADE_TXS", "min_volume": min_usd}


class BirdeyeSource(FeedSource):
    """Birdeye prices of the configured tokens and, optionally, its large-trade stream, live.

    Delivery: what Birdeye sent while a connection was down is lost; the time down is in
    `quantbot_feed_down_seconds_total{source="birdeye"}`. The snapshot holds each token's newest candle time
    emitted: a re-sent older candle after a restart is dropped.

    Parallelism: one partition per connection of at most 100 tokens; the first also carries the large trades.

    Args:
        config: connection and subscriptions.
        activity: where the partitions note their progress, for readiness.
        on_event: where each time the feed was down is reported as a system event.
    """

    def __init__(
        self,
        config: BirdeyeConfig,
        activity: SourceActivity | None = None,
        on_event: EventSink | None = None,
    ) -> None:
        if not config.tokens and config.large_trade_min_usd <= 0:
            raise ValueError("the Birdeye source needs tokens to price or a large-trade minimum")
        super().__init__(BIRDEYE, activity, on_event)
        self.config = config

    def list_parts(self) -> list[str]:
        """One partition per connection."""
        return [f"{BIRDEYE}-{number}" for number in range(len(self.config.groups()))]

    def _partition(self, for_part: str, resume: FeedPosition | None) -> FeedPartition:
        number = self.list_parts().index(for_part)
        return _BirdeyePartition(
            self.config, number, resume, stopping=self._stopping, activity=self.activity, on_event=self.on_event
        )


class _BirdeyePartition(FeedPartition):
    def __init__(
        self,
        config: BirdeyeConfig,
        number: int,
        resume: FeedPosition | None,
        *,
        stopping: threading.Event,
        activity: SourceActivity,
        on_event: EventSink | None,
    ) -> None:
        self._config = config
        self._tokens = config.groups()[number]
        self._large_trades = number == 0 and config.large_trade_min_usd > 0
        super().__init__(
            BIRDEYE,
            f"{BIRDEYE}-{number}",
            resume,
            stopping=stopping,
            activity=activity,
            backoff=config.backoff,
            on_event=on_event,
        )

    async def _session(self) -> None:
        config = self._config
        try:
            async with websockets.connect(
                config.url(),
                subprotocols=[PROTOCOL],
                origin=ORIGIN,
                additional_headers={"Sec-WebSocket-Origin": ORIGIN},
                max_size=MAX_MESSAGE_BYTES,
                ping_interval=PING_INTERVAL_S,
                ping_timeout=config.silent_after_s,
                open_timeout=OPEN_TIMEOUT_S,
                close_timeout=CLOSE_TIMEOUT_S,
            ) as ws:
                if self._tokens:
                    await ws.send(orjson.dumps(price_subscription(self._tokens, config.chart)).decode())
                if self._large_trades:
                    await ws.send(orjson.dumps(large_trade_subscription(config.large_trade_min_usd)).decode())
                self._connected()
                log.info(
                    "source=%s partition=%s url=%s subscribed tokens=%d large_trades=%s",
                    BIRDEYE,
                    self._key,
                    redact_url(config.url()),
                    len(self._tokens),
                    self._large_trades,
                )
                await self._read(ws)
        except websockets.exceptions.InvalidStatus as exc:
            status = exc.response.status_code
            if status == HTTP_TOO_MANY_REQUESTS:
                wait = retry_after_s(exc.response.headers.get("Retry-After"), config.rate_limited_wait_s)
                raise RateLimitedError("HTTP 429 at the websocket handshake", wait) from None
            raise FeedError(f"the websocket handshake was answered HTTP {status}") from None
        except websockets.exceptions.WebSocketException as exc:
            raise FeedError(redact(str(exc) or type(exc).__name__)) from None

    async def _read(self, ws: ClientConnection) -> None:
        while not self._stopping.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=POLL_S)
            except TimeoutError:
                self._check_silence(self._config.silent_after_s)
                continue
            self._heard()
            self._message(raw if isinstance(raw, str) else raw.decode(errors="replace"))

    def _message(self, text: str) -> None:
        kind = birdeye_type(text)
        received_ns = time.time_ns()
        position = f"{self._key}:{received_ns}"
        if kind == BIRDEYE_LARGE_TRADE:
            self._emit(Frame(received_ns, BIRDEYE, LARGE_TRADE_KIND, text, position))
            return
        if kind is not None and kind != BIRDEYE_PRICE and not kind.endswith(DATA_SUFFIX):
            level = logging.WARNING if "ERROR" in kind.upper() else logging.INFO
            log.log(level, "source=%s partition=%s control message: %s", BIRDEYE, self._key, redact(text[:200]))
            return
        self._emit(Frame(received_ns, BIRDEYE, FrameKind.PRICE.value, text, position), _candle_time(text))


def _candle_time(text: str) -> dict[str, int]:
    """{mint: unixTime} of a PRICE_DATA message (empty for anything else: it is never dropped as older)."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    body = data.get("data") if isinstance(data, dict) else None
    if isinstance(body, dict) and isinstance(body.get("address"), str) and isinstance(body.get("unixTime"), int):
        return {body["address"]: body["unixTime"]}
    return {}
