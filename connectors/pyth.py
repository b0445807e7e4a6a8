"""Pyth prices from a Hermes server: the server-sent-events stream `/v2/updates/price/stream`, over aiohttp.

On every connection the partition first asks `/v2/updates/price/latest` (the current prices at once, and
after a drop the newest price that was missed), then follows the stream. Each SSE event's `data` (and
the `latest` body) is a frame exactly as received, source `pyth`, kind `price`; `quantbot.feeds.parse_hermes`
reads it in the flow. Hermes' public instance answers 429 for 60 s to a client over its limit: the
partition waits that long (or what `Retry-After` says) before asking again. A stream with no event for
`silent_after_s` is dead and reconnected; Hermes itself ends a stream after 24 hours, which is a reconnection too.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass

import aiohttp

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
from quantbot.feeds import PYTH, hermes_publish_times
from quantbot.health import SourceActivity
from quantbot.models import Frame, FrameKind
from quantbot.redaction import redact_url

log = logging.getLogger(__name__)

STREAM_PATH = "/v2/updates/price/stream"
LATEST_PATH = "/v2/updates/price/latest"
HTTP_OK = 200
HTTP_TOO_MANY_REQUESTS = 429
ERROR_BODY_CHARS = 200
"""Of an unexpected answer's body, this much is logged."""
REQUESTS_PER_CONNECTION = 2
"""Each connection asks `latest`, then opens the stream."""
HERMES_REQUESTS_PER_S = 3.0
"""Hermes' public instance allows 30 requests every 10 s per address; past that it refuses for 60 s. A
stream that keeps dropping is reconnected no faster than this allows."""


@dataclass(frozen=True)
class PythConfig:
    """What the Pyth source needs, from `[feeds]` (`flows.feeds.pyth_config` builds it).

    Attributes:
        url: Hermes' base URL (may carry a provider's key: never logged unmasked).
        ids: the price feed ids followed (hex, no `0x`).
        rate_limited_wait_s: wait after a 429 that says not how long.
        silent_after_s: a stream with no event this long is reconnected.
        request_timeout_s: connection and `latest` request timeout.
        backoff: waits between reconnection attempts.
    """

    url: str
    ids: tuple[str, ...]
    rate_limited_wait_s: float
    silent_after_s: float
    request_timeout_s: float
    backoff: Backoff


class PythSource(FeedSource):
    """Pyth price updates of the configured feed ids, live from Hermes.

    Delivery: at most once per update while connected, and what Hermes sent while the stream was down is
    lost (the `latest` fetch on reconnection brings back the newest price only); the time down is in
    `quantbot_feed_down_seconds_total{source="pyth"}`. The snapshot holds each feed's newest publish time
    emitted: after a restart, re-sent older updates are dropped.

    Parallelism: one partition (one stream carries every id).

    Args:
        config: connection and limits.
        activity: where the partition notes its progress, for readiness.
        on_event: where each time the feed was down is reported as a system event.
    """

    def __init__(
        self,
        config: PythConfig,
        activity: SourceActivity | None = None,
        on_event: EventSink | None = None,
    ) -> None:
        if not config.ids:
            raise ValueError("the Pyth source needs at least one price feed id")
        super().__init__(PYTH, activity, on_event)
        self.config = config

    def _partition(self, for_part: str, resume: FeedPosition | None) -> FeedPartition:
        return _PythPartition(
            self.config, resume, stopping=self._stopping, activity=self.activity, on_event=self.on_event
        )


class _PythPartition(FeedPartition):
    def __init__(
        self,
        config: PythConfig,
        resume: FeedPosition | None,
        *,
        stopping: threading.Event,
        activity: SourceActivity,
        on_event: EventSink | None,
    ) -> None:
        self._config = config
        self._last_attempt = -float("inf")
        """When the last connection was attempted (monotonic seconds): attempts are spaced for Hermes' limit."""
        super().__init__(
            PYTH, PYTH, resume, stopping=stopping, activity=activity, backoff=config.backoff, on_event=on_event
        )

    def _query(self) -> list[tuple[str, str]]:
        return [*(("ids[]", feed_id) for feed_id in self._config.ids), ("parsed", "true")]

    async def _session(self) -> None:
        try:
            await self._follow()
        except aiohttp.ClientError as exc:  # refused, reset, cut mid-event: reconnect
            raise FeedError(f"{type(exc).__name__}: {exc}") from None

    async def _follow(self) -> None:
        config = self._config
        spacing = REQUESTS_PER_CONNECTION / HERMES_REQUESTS_PER_S
        await self._sleep(self._last_attempt + spacing - time.monotonic())
        self._last_attempt = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=None, connect=config.request_timeout_s, sock_connect=None)
        base = config.url.rstrip("/")
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await self._latest(session, base)
            async with session.get(
                base + STREAM_PATH, params=self._query(), headers={"Accept": "text/event-stream"}
            ) as response:
                await self._check(response)
                self._connected()
                log.info("source=%s url=%s streaming ids=%d", PYTH, redact_url(config.url), len(config.ids))
                await self._read(response)

    async def _check(self, response: aiohttp.ClientResponse) -> None:
        if response.status == HTTP_TOO_MANY_REQUESTS:
            wait = retry_after_s(response.headers.get("Retry-After"), self._config.rate_limited_wait_s)
            raise RateLimitedError(f"HTTP 429 from {response.url.path}", wait)
        if response.status != HTTP_OK:
            body = (await response.text(errors="replace"))[:ERROR_BODY_CHARS]
            raise FeedError(f"HTTP {response.status} from {response.url.path}: {body}")

    async def _latest(self, session: aiohttp.ClientSession, base: str) -> None:
        """The current prices, as one frame (the body as received)."""
        timeout = aiohttp.ClientTimeout(total=self._config.request_timeout_s)
        async with session.get(base + LATEST_PATH, params=self._query(), timeout=timeout) as response:
            await self._check(response)
            body = await response.text(errors="replace")
        self._frame(body)

    def _frame(self, payload: str) -> None:
        received_ns = time.time_ns()
        frame = Frame(received_ns, PYTH, FrameKind.PRICE.value, payload, f"{PYTH}:{received_ns}")
        self._emit(frame, hermes_publish_times(payload))

    async def _read(self, response: aiohttp.ClientResponse) -> None:
        """Read server-sent events until the stream ends (raise) or the source stops (return)."""
        pending = b""
        data: list[bytes] = []
        while not self._stopping.is_set():
            try:
                chunk = await asyncio.wait_for(response.content.readany(), timeout=POLL_S)
            except TimeoutError:
                self._check_silence(self._config.silent_after_s)
                continue
            if not chunk:
                raise FeedError("the stream ended")
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.removesuffix(b"\r")
                if line:
                    if line.startswith(b"data:"):
                        data.append(line[len(b"data:") :].removeprefix(b" "))
                    continue  # comments (`:`), `event:`, `id:` and `retry:` carry no price
                if data:  # a blank line ends an event
                    self._heard()
                    self._frame(b"\n".join(data).decode(errors="replace"))
                    data = []
