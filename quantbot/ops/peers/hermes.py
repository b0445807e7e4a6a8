"""A Pyth Hermes server on loopback: `/v2/updates/price/stream` (server-sent events) and `/v2/updates/price/latest`.

Shaped as Hermes' API reference shows: both answer a price update object
`{"binary": {"encoding": "hex", "data": [...]}, "parsed": [{"id", "price": {"price", "conf", "expo",
"publish_time"}, "ema_price": {...}, "metadata": {...}}]}` for the `ids[]` asked (with `parsed=true`); the
stream sends one such object as each event's `data`. The binary part is filler (no Wormhole VAA is built):
quantbot reads the parsed part only.

A ticker publishes a new price of every feed each `interval_s`; `published` keeps them all, so a test can
tell what a client missed. Scripted faults, set from the test's thread:

- `paused`: no new prices (the newest stays the newest);
- `drop_every_s`: each stream connection is cut (transport closed, no clean end) after this long;
- `silent`: streams stay open but send nothing (prices keep moving: a client misses them);
- `rate_limit(seconds)`: every request is answered 429 for that long (Hermes' public instance: 60 s),
  with a `Retry-After` header only when `send_retry_after`;
- `malformed_next`: the next N events carry data that is not a price update.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import orjson
from aiohttp import web

from quantbot.ops.peers.loopback import LoopbackServer

EXPO = -8
"""Hermes' exponent for USD prices of most feeds."""
CONF_SHARE = 0.0005
"""The confidence interval as a share of the price (Pyth's SOL/USD is usually about that)."""
WALK_STEPS = 41
"""The deterministic walk's prices repeat after this many ticks."""
WALK_STEP_SHARE = 0.0005
RATE_LIMIT_BODY = b"Too Many Requests"


@dataclass(frozen=True, slots=True)
class PublishedPrice:
    """One price the peer published: feed id, price in USD, publish time, and the tick's number."""

    feed_id: str
    price: float
    publish_time: int
    tick: int


class HermesPeer(LoopbackServer):
    """Hermes on loopback, publishing a deterministic price walk for each feed.

    Args:
        feeds: feed id (hex, no `0x`) -> starting USD price.
        interval_s: seconds between two ticks (Hermes publishes about every 400 ms).
    """

    def __init__(self, feeds: dict[str, float], interval_s: float = 0.2) -> None:
        super().__init__()
        self.feeds = dict(feeds)
        self.interval_s = interval_s
        self.published: list[PublishedPrice] = []
        self.drop_every_s: float | None = None
        self.paused = False
        """No new prices while set (the newest stays the newest: what a test compares a store with)."""
        self.silent = False
        self.malformed_next = 0
        self.send_retry_after = False
        self.stream_connections = 0
        self.latest_requests = 0
        self.rate_limited = 0
        self._limited_until = 0.0
        self._tick = 0
        self._listeners: set[asyncio.Queue[int]] = set()

    def rate_limit(self, seconds: float) -> None:
        """Answer every request 429 for `seconds` from now."""
        self._limited_until = time.monotonic() + seconds

    def latest(self, feed_id: str) -> PublishedPrice:
        """The newest price published of `feed_id`."""
        return next(p for p in reversed(self.published) if p.feed_id == feed_id)

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2/updates/price/stream", self._stream)
        app.router.add_get("/v2/updates/price/latest", self._latest)
        return app

    async def _started(self) -> None:
        self._publish()
        self._spawn(self._ticker())

    def _publish(self) -> None:
        now = int(time.time())
        for feed_id, base in self.feeds.items():
            step = (self._tick * 7 + sum(map(ord, feed_id))) % WALK_STEPS - WALK_STEPS // 2
            price = round(base * (1 + WALK_STEP_SHARE * step), 4)
            self.published.append(PublishedPrice(feed_id, price, now, self._tick))
        for queue in self._listeners:
            queue.put_nowait(self._tick)
        self._tick += 1

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if not self.paused:
                self._publish()

    def _update(self, ids: list[str], tick: int | None = None) -> bytes:
        """The price update object of `ids` at `tick` (None: the newest)."""
        parsed = []
        for feed_id in ids:
            prices = [p for p in self.published if p.feed_id == feed_id and (tick is None or p.tick == tick)]
            if not prices:
                continue
            latest = prices[-1]
            mantissa = round(latest.price * 10**-EXPO)
            price = {
                "price": str(mantissa),
                "conf": str(round(mantissa * CONF_SHARE)),
                "expo": EXPO,
                "publish_time": latest.publish_time,
            }
            parsed.append(
                {
                    "id": feed_id,
                    "price": price,
                    "ema_price": price,
                    "metadata": {
                        "slot": 300_000_000 + latest.tick,
                        "proof_available_time": latest.publish_time,
                        "prev_publish_time": latest.publish_time - 1,
                    },
                }
            )
        filler = bytes(latest.tick % 256 for latest in self.published[-len(ids) :]).hex()
        return orjson.dumps({"binary": {"encoding": "hex", "data": [filler]}, "parsed": parsed})

    def _ids(self, request: web.Request) -> list[str] | web.Response:
        ids = [i.lower().removeprefix("0x") for i in request.query.getall("ids[]", [])]
        unknown = [i for i in ids if i not in self.feeds]
        if not ids or unknown:
            return web.Response(status=404, text=f"Price ids not found: {', '.join(unknown) or 'none asked'}")
        return ids

    def _limited(self) -> web.Response | None:
        if time.monotonic() < self._limited_until:
            self.rate_limited += 1
            headers = {"Retry-After": str(max(1, round(self._limited_until - time.monotonic())))}
            return web.Response(status=429, body=RATE_LIMIT_BODY, headers=headers if self.send_retry_after else None)
        return None

    async def _latest(self, request: web.Request) -> web.StreamResponse:
        self.latest_requests += 1
        limited = self._limited()
        if limited is not None:
            return limited
        ids = self._ids(request)
        if isinstance(ids, web.Response):
            return ids
        return web.Response(body=self._update(ids), content_type="application/json")

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        limited = self._limited()
        if limited is not None:
            return limited
        ids = self._ids(request)
        if isinstance(ids, web.Response):
            return ids
        self.stream_connections += 1
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        queue: asyncio.Queue[int] = asyncio.Queue()
        self._listeners.add(queue)
        opened = time.monotonic()
        try:
            while not self.closing:
                try:
                    tick = await asyncio.wait_for(queue.get(), timeout=self.interval_s)
                except TimeoutError:
                    tick = None
                if self.drop_every_s is not None and time.monotonic() - opened >= self.drop_every_s:
                    if request.transport is not None:
                        request.transport.close()  # a cut connection, not a clean end of stream
                    return response
                if tick is None or self.silent:
                    continue
                if self.malformed_next > 0:
                    self.malformed_next -= 1
                    data = b'{"parsed": [{"id": "' + ids[0].encode() + b'", "price": {"price": "n/a"'
                else:
                    data = self._update(ids, tick)
                try:
                    await response.write(b"data:" + data + b"\n\n")
                except ConnectionResetError:  # the client went away
                    break
        finally:
            self._listeners.discard(queue)
        return response
