"""A Birdeye websocket server on loopback: `/socket/solana`, prices and large trades.

Shaped as Birdeye's websocket documentation shows: the client connects with `?x-api-key=KEY`, subprotocol
`echo-protocol` and an `Origin`; it sends `{"type": "SUBSCRIBE_PRICE", "data": {"queryType": "complex",
"query": "(address = <mint> AND chartType = 1m AND currency = usd) OR ..."}}` (or `queryType: "simple"` with
`address`) and `{"type": "SUBSCRIBE_LARGE_TRADE_TXS", "min_volume": N}`; the server sends
`{"type": "PRICE_DATA", "data": {"o", "h", "l", "c", "eventType": "ohlcv", "type": "1m", "unixTime",
"v", "symbol", "address"}}` for each subscribed token every `interval_s`, and `{"type":
"TXS_LARGE_TRADE_DATA", "data": {"blockUnixTime", "owner", "source", "poolAddress", "txHash", "volumeUSD",
"network", "from", "to"}}` for each scripted large trade at or above the minimum.

Scripted faults, set from the test's thread: `drop_every_s` (the connection is cut after this long),
`silent` (nothing is sent), `rate_limit(seconds)` (the handshake is answered 429), `malformed_next` (the
next N messages are not JSON). A wrong key is answered 401.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

import orjson
from aiohttp import WSMsgType, web

from quantbot.ops.peers.loopback import LoopbackServer
from quantbot.units import SECONDS_PER_MINUTE

PROTOCOL = "echo-protocol"
WALK_STEPS = 23
WALK_STEP_SHARE = 0.002
_ADDRESS = re.compile(r"address\s*=\s*([1-9A-HJ-NP-Za-km-z]+)")


@dataclass(frozen=True, slots=True)
class ScriptedTrade:
    """A large trade the peer reports to large-trade subscribers."""

    signature: str
    volume_usd: float
    block_time: int


@dataclass(eq=False)
class _Client:
    ws: web.WebSocketResponse
    tokens: list[str] = field(default_factory=list)
    large_trades_from: float | None = None


@dataclass(frozen=True, slots=True)
class SentPrice:
    """One price the peer sent: token, close, candle time, and when (monotonic seconds)."""

    token: str
    close: float
    unix_time: int
    sent_at: float


class BirdeyePeer(LoopbackServer):
    """Birdeye's websocket on loopback.

    Args:
        tokens: mint -> (symbol, starting USD price) of the tokens it can price.
        api_key: the key a client must present (None: any).
        interval_s: seconds between two price messages of a token.
        trades: large trades reported to large-trade subscribers, once per subscription.
    """

    def __init__(
        self,
        tokens: dict[str, tuple[str, float]],
        api_key: str | None = None,
        interval_s: float = 0.2,
        trades: list[ScriptedTrade] | None = None,
    ) -> None:
        super().__init__()
        self.tokens = dict(tokens)
        self.api_key = api_key
        self.interval_s = interval_s
        self.trades = list(trades or [])
        self.drop_every_s: float | None = None
        self.silent = False
        self.paused = False
        self.malformed_next = 0
        self.connections = 0
        self.refused = 0
        self.origins: list[str | None] = []
        self.subscriptions: list[dict[str, object]] = []
        self.sent: list[SentPrice] = []
        self._limited_until = 0.0
        self._tick = 0
        self._clients: set[_Client] = set()

    @property
    def ws_url(self) -> str:
        """`ws://127.0.0.1:<port>/socket/solana`."""
        return f"ws://127.0.0.1:{self.port}/socket/solana"

    def rate_limit(self, seconds: float) -> None:
        """Answer every handshake 429 for `seconds` from now."""
        self._limited_until = time.monotonic() + seconds

    def latest(self, token: str) -> SentPrice:
        """The newest price sent of `token`."""
        return next(p for p in reversed(self.sent) if p.token == token)

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/socket/solana", self._socket)
        return app

    async def _started(self) -> None:
        self._spawn(self._ticker())

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if self.paused:
                continue
            self._tick += 1
            for client in list(self._clients):
                for token in client.tokens:
                    await self._send_price(client, token)

    def _price(self, token: str) -> float:
        _, base = self.tokens[token]
        step = (self._tick * 5 + sum(map(ord, token))) % WALK_STEPS - WALK_STEPS // 2
        return base * (1 + WALK_STEP_SHARE * step)

    async def _send(self, client: _Client, text: str) -> None:
        if self.silent or client.ws.closed:
            return
        if self.malformed_next > 0:
            self.malformed_next -= 1
            text = text[: len(text) // 2]  # a message cut in half: not JSON
        try:
            await client.ws.send_str(text)
        except ConnectionResetError:  # the client went away; its handler ends on its own
            return

    async def _send_price(self, client: _Client, token: str) -> None:
        symbol, _ = self.tokens[token]
        close = self._price(token)
        now = int(time.time())
        minute = now - now % SECONDS_PER_MINUTE
        data = {
            "o": close,
            "h": close,
            "l": close,
            "c": close,
            "eventType": "ohlcv",
            "type": "1m",
            "unixTime": minute,
            "v": 1000.0,
            "symbol": symbol,
            "address": token,
        }
        if not self.silent:
            self.sent.append(SentPrice(token, close, minute, time.monotonic()))
        await self._send(client, orjson.dumps({"type": "PRICE_DATA", "data": data}).decode())

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        if time.monotonic() < self._limited_until:
            self.refused += 1
            return web.Response(status=429, text="Too many requests")
        if self.api_key is not None and request.query.get("x-api-key") != self.api_key:
            self.refused += 1
            return web.Response(status=401, text="Unauthorized")
        ws = web.WebSocketResponse(protocols=(PROTOCOL,), heartbeat=None)
        await ws.prepare(request)
        self.connections += 1
        self.origins.append(request.headers.get("Origin"))
        client = _Client(ws)
        self._clients.add(client)
        opened = time.monotonic()
        try:
            while not ws.closed and not self.closing:
                if self.drop_every_s is not None and time.monotonic() - opened >= self.drop_every_s:
                    if request.transport is not None:
                        request.transport.close()
                    break
                try:
                    message = await ws.receive(timeout=self.interval_s)
                except TimeoutError:
                    continue
                if message.type != WSMsgType.TEXT:
                    if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                        break
                    continue
                await self._subscribe(client, message.data)
        finally:
            self._clients.discard(client)
        return ws

    async def _subscribe(self, client: _Client, text: str) -> None:
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            await client.ws.send_str(orjson.dumps({"type": "ERROR", "data": "message is not JSON"}).decode())
            return
        self.subscriptions.append(request)
        kind = request.get("type")
        if kind == "SUBSCRIBE_PRICE":
            data = request.get("data") or {}
            if data.get("queryType") == "complex":
                addresses = _ADDRESS.findall(str(data.get("query", "")))
            else:
                addresses = [str(data.get("address"))]
            client.tokens = [a for a in addresses if a in self.tokens]
        elif kind == "SUBSCRIBE_LARGE_TRADE_TXS":
            minimum = float(request.get("min_volume", 0))
            client.large_trades_from = minimum
            for trade in self.trades:
                if trade.volume_usd >= minimum:
                    await self._send(client, _trade_message(trade))
        else:
            await client.ws.send_str(orjson.dumps({"type": "ERROR", "data": f"unknown type {kind}"}).decode())


def _trade_message(trade: ScriptedTrade) -> str:
    sol = {
        "symbol": "SOL",
        "decimals": 9,
        "address": "So11111111111111111111111111111111111111112",
        "uiAmount": trade.volume_usd / 150.0,
        "price": None,
        "nearestPrice": 150.0,
        "uiChangeAmount": -trade.volume_usd / 150.0,
    }
    usdc = {
        "symbol": "USDC",
        "decimals": 6,
        "address": "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
        "uiAmount": trade.volume_usd,
        "price": None,
        "nearestPrice": 1.0,
        "uiChangeAmount": trade.volume_usd,
    }
    data = {
        "blockUnixTime": trade.block_time,
        "blockHumanTime": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(trade.block_time)),
        "owner": "7wWGFsrUnCjDS5mSxSZVgqqX2KBvS7muUTgAyB3pZQ4s",
        "source": "raydium",
        "poolAddress": "58oQChx4yWmvKdwLLZzBi4ChoCc2fqCUWBkwMihLYQo2",
        "txHash": trade.signature,
        "volumeUSD": trade.volume_usd,
        "network": "solana",
        "from": sol,
        "to": usdc,
    }
    return orjson.dumps({"type": "TXS_LARGE_TRADE_DATA", "data": data}).decode()
