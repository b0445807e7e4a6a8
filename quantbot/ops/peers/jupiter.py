"""A Jupiter Price API v3 server on loopback: `GET /price/v3?ids=<mint>,<mint>,...`.

Shaped as Jupiter's API reference shows: the answer maps each priced mint to `{"createdAt", "liquidity",
"usdPrice", "blockId", "decimals", "priceChange24h"}`; a mint without a reliable price is left out; more
than `MAX_IDS` mints is a 400. With `api_key` set, requests must carry it in `x-api-key` (401 otherwise).

Scripted faults, set from the test's thread: `rate_limit(seconds)` (429 with `Retry-After`),
`failing_next` (the next N requests answer 500), `malformed_next` (the next N bodies are not JSON).
"""

from __future__ import annotations

import time

import orjson
from aiohttp import web

from quantbot.ops.peers.loopback import LoopbackServer

MAX_IDS = 50
"""Jupiter's limit of mints per request."""
WALK_STEPS = 17
WALK_STEP_SHARE = 0.001
SLOT_BASE = 348_000_000
"""A mainnet-like slot for `blockId`."""


class JupiterPeer(LoopbackServer):
    """Jupiter's Price API v3 on loopback; each request moves the prices one step.

    Args:
        prices: mint -> (decimals, starting USD price) of the mints it prices.
        api_key: the key requests must carry (None: any).
    """

    def __init__(self, prices: dict[str, tuple[int, float]], api_key: str | None = None) -> None:
        super().__init__()
        self.prices = dict(prices)
        self.api_key = api_key
        self.requests: list[list[str]] = []
        self.failing_next = 0
        self.malformed_next = 0
        self.rate_limited = 0
        self.last_answer: dict[str, float] = {}
        self._limited_until = 0.0

    def rate_limit(self, seconds: float) -> None:
        """Answer every request 429 for `seconds` from now."""
        self._limited_until = time.monotonic() + seconds

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/price/v3", self._price)
        return app

    async def _price(self, request: web.Request) -> web.Response:
        if self.api_key is not None and request.headers.get("x-api-key") != self.api_key:
            return web.json_response({"error": "Unauthorized"}, status=401)
        if time.monotonic() < self._limited_until:
            self.rate_limited += 1
            wait = max(1, round(self._limited_until - time.monotonic()))
            return web.json_response({"error": "Too many requests"}, status=429, headers={"Retry-After": str(wait)})
        ids = [mint for mint in request.query.get("ids", "").split(",") if mint]
        if not ids or len(ids) > MAX_IDS:
            return web.json_response({"error": f"between 1 and {MAX_IDS} ids, got {len(ids)}"}, status=400)
        self.requests.append(ids)
        if self.failing_next > 0:
            self.failing_next -= 1
            return web.Response(status=500, text="Internal Server Error")
        if self.malformed_next > 0:
            self.malformed_next -= 1
            return web.Response(status=200, text='{"So111', content_type="application/json")
        answer: dict[str, object] = {}
        step = len(self.requests) % WALK_STEPS - WALK_STEPS // 2
        for mint in ids:
            if mint not in self.prices:
                continue
            decimals, base = self.prices[mint]
            price = base * (1 + WALK_STEP_SHARE * step)
            self.last_answer[mint] = price
            answer[mint] = {
                "createdAt": "2024-06-05T08:55:25.527Z",
                "liquidity": 1_000_000.0,
                "usdPrice": price,
                "blockId": SLOT_BASE + len(self.requests),
                "decimals": decimals,
                "priceChange24h": 0.5,
            }
        return web.Response(body=orjson.dumps(answer), content_type="application/json")
