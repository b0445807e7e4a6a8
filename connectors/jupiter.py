"""Jupiter's Price API v3, polled: `GET /price/v3?ids=<mint>,<mint>,...` for tokens no live feed covers.

At most `MINTS_PER_REQUEST` mints a request; the tokens are asked in turn, one request every
`1 / requests_per_s` seconds at most, so the poll rate is bounded whatever the number of tokens (each token's
price is then as old as one round). With a `TokenInterest` (`quantbot.interest`: the configured tokens, those
strategies hold and those whales traded lately), the tokens are read again at the start of every round;
while there are none, nothing is asked. The key, when configured, goes in the `x-api-key` header. Each
body is a frame exactly as received (source `jupiter`, kind `price`); a 429 waits `Retry-After` (or the
backoff's cap), other failures back off; the time without an answer is the feed's down time.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import aiohttp

from connectors.feed import (
    EventSink,
    FeedError,
    FeedPartition,
    FeedPosition,
    FeedSource,
    RateLimitedError,
    retry_after_s,
)
from quantbot.backoff import Backoff
from quantbot.feeds import JUPITER
from quantbot.health import SourceActivity
from quantbot.interest import TokenInterest
from quantbot.models import Frame, FrameKind
from quantbot.redaction import redact_url

log = logging.getLogger(__name__)

PRICE_PATH = "/price/v3"
MINTS_PER_REQUEST = 50
"""Jupiter's Price API v3 answers at most 50 mints a request."""
HTTP_OK = 200
HTTP_TOO_MANY_REQUESTS = 429
ERROR_BODY_CHARS = 200


@dataclass(frozen=True)
class JupiterConfig:
    """What the Jupiter poller needs, from `[feeds]` (`flows.feeds.jupiter_config` builds it).

    Attributes:
        url: the API base (`https://lite-api.jup.ag` keyless, `https://api.jup.ag` with a key).
        api_key: sent as `x-api-key` when set.
        tokens: the mints polled (without `interest`).
        requests_per_s: requests per second at most.
        request_timeout_s: a request slower than this failed.
        backoff: waits after a failed request.
        interest: where the mints of each round are read (the configured ones among them); None: `tokens`.
    """

    url: str
    api_key: str | None
    tokens: tuple[str, ...]
    requests_per_s: float
    request_timeout_s: float
    backoff: Backoff
    interest: TokenInterest | None = None

    def batches(self) -> list[tuple[str, ...]]:
        """The mints of each request of one round, in turn (none while there is nothing to poll)."""
        tokens = self.interest.tokens() if self.interest is not None else self.tokens
        return [tokens[start : start + MINTS_PER_REQUEST] for start in range(0, len(tokens), MINTS_PER_REQUEST)]


class JupiterSource(FeedSource):
    """Jupiter prices of the configured tokens (and, with an interest, of those that matter now), polled at a
    bounded rate.

    Delivery: each answer once; a price is as fresh as the last answer for its batch (a poller misses
    nothing it would have asked, only what changed between two answers). Stateless in effect: the snapshot
    names the partition only (Jupiter's prices carry no time to compare).

    Parallelism: one partition (the rate limit is the provider's, per key or address).

    Args:
        config: endpoint, tokens and rate.
        activity: where the partition notes its progress, for readiness.
        on_event: where each time the feed was down is reported as a system event.
    """

    def __init__(
        self,
        config: JupiterConfig,
        activity: SourceActivity | None = None,
        on_event: EventSink | None = None,
    ) -> None:
        if not config.tokens and config.interest is None:
            raise ValueError("the Jupiter source needs at least one token, or an interest to read them from")
        super().__init__(JUPITER, activity, on_event)
        self.config = config

    def _partition(self, for_part: str, resume: FeedPosition | None) -> FeedPartition:
        return _JupiterPartition(
            self.config, resume, stopping=self._stopping, activity=self.activity, on_event=self.on_event
        )


class _JupiterPartition(FeedPartition):
    def __init__(
        self,
        config: JupiterConfig,
        resume: FeedPosition | None,
        *,
        stopping: threading.Event,
        activity: SourceActivity,
        on_event: EventSink | None,
    ) -> None:
        self._config = config
        self._round: list[tuple[str, ...]] = []
        super().__init__(
            JUPITER, JUPITER, resume, stopping=stopping, activity=activity, backoff=config.backoff, on_event=on_event
        )

    async def _session(self) -> None:
        config = self._config
        headers = {"x-api-key": config.api_key} if config.api_key else {}
        timeout = aiohttp.ClientTimeout(total=config.request_timeout_s)
        interval = 1.0 / config.requests_per_s
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
            while not self._stopping.is_set():
                started = time.monotonic()
                if not self._round:
                    self._round = config.batches()
                if self._round:
                    await self._poll(session, self._round[0])
                    del self._round[0]  # asked: a failure above leaves it to be asked again
                elif self.connections == 0:
                    self._connected()  # nothing to poll yet is neither down nor silent
                else:
                    self._heard()
                await self._sleep(interval - (time.monotonic() - started))

    async def _poll(self, session: aiohttp.ClientSession, batch: tuple[str, ...]) -> None:
        url = self._config.url.rstrip("/") + PRICE_PATH
        try:
            async with session.get(url, params={"ids": ",".join(batch)}) as response:
                if response.status == HTTP_TOO_MANY_REQUESTS:
                    wait = retry_after_s(response.headers.get("Retry-After"), self._config.backoff.cap_s)
                    raise RateLimitedError("HTTP 429", wait)
                body = await response.text(errors="replace")
                if response.status != HTTP_OK:
                    raise FeedError(f"HTTP {response.status}: {body[:ERROR_BODY_CHARS]}")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise FeedError(f"{redact_url(url)}: {type(exc).__name__}: {exc}") from None
        if self.connections == 0 or self._down_since is not None:
            self._connected()
        self._heard()
        received_ns = time.time_ns()
        self._emit(Frame(received_ns, JUPITER, FrameKind.PRICE.value, body, f"{JUPITER}:{received_ns}"))
