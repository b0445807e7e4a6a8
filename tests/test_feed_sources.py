"""The feed sources against their loopback peers: the providers' protocols, drops, silence, 429s, malformed messages."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import orjson
import pytest

from connectors.birdeye import ORIGIN, BirdeyeConfig, BirdeyeSource, price_subscription
from connectors.feed import FeedPartition, FeedPosition
from connectors.jupiter import JupiterConfig, JupiterSource
from connectors.pyth import PythConfig, PythSource
from quantbot import metrics
from quantbot.backoff import Backoff
from quantbot.feeds import SOL_USD_FEED_ID, FeedMap, LargeTrade
from quantbot.models import WSOL_MINT, DeadLetter, Frame
from quantbot.ops.peers.birdeye import BirdeyePeer, ScriptedTrade
from quantbot.ops.peers.hermes import HermesPeer
from quantbot.ops.peers.jupiter import JupiterPeer
from quantbot.pricing import FeedQuote
from quantbot.redaction import redact
from quantbot.steps import parse_frame

pytestmark = pytest.mark.slow

FAST = Backoff(base_s=0.05, cap_s=0.2)
"""Reconnections in milliseconds: the tests script many."""
SOL_PRICE = 150.0
BONK = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"
JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"
KEY = "k3y-5ecret-birdeye-0123456789"
DEADLINE_S = 10.0
"""How long a test waits for what it expects before failing."""


def pyth_config(url: str, **overrides: Any) -> PythConfig:
    values: dict[str, Any] = {
        "url": url,
        "ids": (SOL_USD_FEED_ID,),
        "rate_limited_wait_s": 60.0,
        "silent_after_s": 5.0,
        "request_timeout_s": 2.0,
        "backoff": FAST,
    }
    return PythConfig(**{**values, **overrides})


def drain(partition: FeedPartition, enough: Callable[[list[Frame | DeadLetter]], bool]) -> list[Frame | DeadLetter]:
    """What the partition emits until `enough` says so (or the deadline fails the test)."""
    items: list[Frame | DeadLetter] = []
    deadline = time.monotonic() + DEADLINE_S
    while not enough(items):
        assert time.monotonic() < deadline, f"gave up after {len(items)} items"
        items += partition.next_batch()
        time.sleep(0.01)
    return items


def run_for(partition: FeedPartition, seconds: float) -> list[Frame | DeadLetter]:
    """Everything the partition emits during `seconds`."""
    items: list[Frame | DeadLetter] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        items += partition.next_batch()
        time.sleep(0.01)
    return items


def drain_to_end(partition: FeedPartition) -> list[Frame | DeadLetter]:
    """What a stopped partition still emits, until it ends (or the deadline fails the test)."""
    items: list[Frame | DeadLetter] = []
    deadline = time.monotonic() + DEADLINE_S
    try:
        while True:
            assert time.monotonic() < deadline, f"the partition did not end; {len(items)} items"
            items += partition.next_batch()
            time.sleep(0.01)
    except StopIteration:
        return items


@contextmanager
def opened(source: PythSource | BirdeyeSource | JupiterSource, part: str | None = None) -> Iterator[FeedPartition]:
    """A partition of `source`, stopped and drained at the end (its `next_batch` ends with StopIteration)."""
    partition = source.build_part("feed_1", part or source.list_parts()[0], None)
    assert isinstance(partition, FeedPartition)
    try:
        yield partition
    finally:
        source.stop()
        drain_to_end(partition)
        partition.close()


def quotes(items: list[Frame | DeadLetter]) -> list[FeedQuote]:
    return [q for item in items if isinstance(item, Frame) for q in parse_frame(item) if isinstance(q, FeedQuote)]


def ticks(items: list[Frame | DeadLetter]) -> set[int]:
    """The peer's tick numbers a Hermes client received (the update's `metadata.slot` encodes it)."""
    found: set[int] = set()
    for item in items:
        if isinstance(item, Frame):
            try:
                found.update(e["metadata"]["slot"] - 300_000_000 for e in orjson.loads(item.payload)["parsed"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
    return found


# ------------------------------------------------------------------------------------------ Hermes


def test_hermes_peer_speaks_the_stream_and_latest_shapes() -> None:
    """`latest` answers a parsed price update; the stream is text/event-stream of `data:` events; unknown ids 404."""

    async def talk(url: str) -> tuple[dict[str, Any], str, list[bytes], int]:
        params = [("ids[]", SOL_USD_FEED_ID), ("parsed", "true")]
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/v2/updates/price/latest", params=params) as response:
                latest = await response.json()
            async with session.get(url + "/v2/updates/price/stream", params=params) as response:
                kind = response.headers["Content-Type"]
                lines = [await response.content.readline() for _ in range(4)]
            async with session.get(url + "/v2/updates/price/latest", params=[("ids[]", "ab" * 32)]) as response:
                missing = response.status
        return latest, kind, lines, missing

    with HermesPeer({SOL_USD_FEED_ID: SOL_PRICE}, interval_s=0.05) as peer:
        latest, kind, lines, missing = asyncio.run(talk(peer.url))

    (entry,) = latest["parsed"]
    assert entry["id"] == SOL_USD_FEED_ID and entry["price"]["expo"] == -8 and latest["binary"]["encoding"] == "hex"
    assert set(entry["price"]) == {"price", "conf", "expo", "publish_time"}
    assert kind == "text/event-stream"
    assert lines[0].startswith(b"data:") and lines[1] == b"\n" and lines[2].startswith(b"data:")
    assert orjson.loads(lines[0][len(b"data:") :])["parsed"][0]["id"] == SOL_USD_FEED_ID
    assert missing == 404


def test_pyth_source_emits_latest_then_stream_updates_as_received() -> None:
    """The first frame is the `latest` body, then one frame per SSE event; they parse to the peer's prices."""
    with (
        HermesPeer({SOL_USD_FEED_ID: SOL_PRICE}, interval_s=0.05) as peer,
        opened(PythSource(pyth_config(peer.url))) as partition,
    ):
        items = drain(partition, lambda items: len(items) >= 5)
        published = {(p.price, p.publish_time) for p in peer.published}

    assert all(isinstance(item, Frame) and item.source == "pyth" and item.kind == "price" for item in items)
    got = quotes(items)
    assert len(got) >= 5 and all(q.token == WSOL_MINT and q.source == "pyth" for q in got)
    assert {(round(q.price_usd, 4), q.ts) for q in got} <= published
    assert peer.latest_requests == 1 and peer.stream_connections == 1


def test_pyth_source_dropped_every_half_second_loses_no_more_than_its_down_time() -> None:
    """Cut every 0.5 s, the source reconnects each time; the updates it missed span no more than its down time."""
    down_before = metrics.FEED_DOWN_SECONDS.labels("pyth")._value.get()
    reconnects_before = metrics.RECONNECTS.labels("pyth")._value.get()
    interval = 0.05
    with (
        HermesPeer({SOL_USD_FEED_ID: SOL_PRICE}, interval_s=interval) as peer,
        opened(PythSource(pyth_config(peer.url))) as partition,
    ):
        peer.drop_every_s = 0.5
        drain(partition, lambda items: len(items) >= 1)
        first = peer.published[-1].tick
        items = run_for(partition, 3.0)
        last = peer.published[-1].tick
        peer.drop_every_s = None
        connections = peer.stream_connections

    down = metrics.FEED_DOWN_SECONDS.labels("pyth")._value.get() - down_before
    reconnects = metrics.RECONNECTS.labels("pyth")._value.get() - reconnects_before
    missed = set(range(first + 1, last - 1)) - ticks(items)
    assert connections >= 4 and reconnects >= 3
    assert 0 < down < 3.0
    assert len(missed) * interval <= down + interval * (reconnects + 1), (len(missed), down, reconnects)


def test_pyth_source_reconnects_a_silent_stream_and_counts_down_time_from_its_last_event() -> None:
    """A stream silent past `silent_after_s` is reconnected; the down time starts at its last event."""
    down_before = metrics.FEED_DOWN_SECONDS.labels("pyth")._value.get()
    with (
        HermesPeer({SOL_USD_FEED_ID: SOL_PRICE}, interval_s=0.05) as peer,
        opened(PythSource(pyth_config(peer.url, silent_after_s=0.5))) as partition,
    ):
        drain(partition, lambda items: len(items) >= 3)
        peer.silent = True
        deadline = time.monotonic() + DEADLINE_S
        while peer.stream_connections < 2:
            assert time.monotonic() < deadline
            partition.next_batch()
            time.sleep(0.01)
        peer.silent = False
        after = drain(partition, lambda items: len(items) >= 3)

    assert len(quotes(after)) >= 3
    assert metrics.FEED_DOWN_SECONDS.labels("pyth")._value.get() - down_before >= 0.5


def test_pyth_source_honours_hermes_429_for_its_wait() -> None:
    """Answered 429, the source does not ask again before its wait (Hermes: 60 s) is over; a shorter wait resumes it."""
    limited_before = metrics.FEED_RATE_LIMITED.labels("pyth")._value.get()
    with HermesPeer({SOL_USD_FEED_ID: SOL_PRICE}, interval_s=0.05) as peer:
        peer.rate_limit(0.3)
        with opened(PythSource(pyth_config(peer.url))) as patient:
            assert run_for(patient, 1.0) == []
        asked_while_waiting = peer.rate_limited + peer.latest_requests
        peer.rate_limit(1.0)  # the source spaces its attempts 2/3 s apart (Hermes' 3 requests/s): two are refused
        with opened(PythSource(pyth_config(peer.url, rate_limited_wait_s=0.2))) as eager:
            items = drain(eager, lambda items: len(items) >= 2)

    assert asked_while_waiting == 2  # one 429, then nothing for the rest of the 60 s
    assert 3 <= peer.rate_limited <= 4 and len(quotes(items)) >= 2
    assert metrics.FEED_RATE_LIMITED.labels("pyth")._value.get() - limited_before >= 3


def test_pyth_source_frames_malformed_events_which_the_flow_dead_letters() -> None:
    """A malformed SSE event is a frame as received; parsing makes it a `price` dead letter and the stream goes on."""
    with (
        HermesPeer({SOL_USD_FEED_ID: SOL_PRICE}, interval_s=0.05) as peer,
        opened(PythSource(pyth_config(peer.url))) as partition,
    ):
        drain(partition, lambda items: len(items) >= 1)
        peer.malformed_next = 2
        items = drain(partition, lambda items: len(items) >= 6)

    parsed = [out for item in items if isinstance(item, Frame) for out in parse_frame(item)]
    letters = [out for out in parsed if isinstance(out, DeadLetter)]
    assert len(letters) == 2 and all(letter.stage == "price" and "not JSON" in letter.reason for letter in letters)
    assert sum(isinstance(out, FeedQuote) for out in parsed) >= 4


def test_pyth_resume_drops_updates_older_than_the_snapshot() -> None:
    """Resumed from a snapshot newer than what Hermes sends, the source drops those updates and counts them."""
    duplicates_before = metrics.FEED_DUPLICATES.labels("pyth")._value.get()
    with HermesPeer({SOL_USD_FEED_ID: SOL_PRICE}, interval_s=0.05) as peer:
        source = PythSource(pyth_config(peer.url))
        ahead = FeedPosition("pyth", "pyth", {SOL_USD_FEED_ID: int(time.time()) + 3600})
        partition = source.build_part("feed_1", "pyth", ahead)
        assert isinstance(partition, FeedPartition)
        try:
            assert run_for(partition, 0.5) == []
            assert partition.snapshot() == ahead
        finally:
            source.stop()
            partition.close()
        refused = PythSource(pyth_config(peer.url))
        refused.build_part("feed_1", "pyth", FeedPosition("birdeye", "birdeye-0", {}))

    assert metrics.FEED_DUPLICATES.labels("pyth")._value.get() - duplicates_before >= 3
    assert refused.refusal is not None and "birdeye" in str(refused.refusal)


# ------------------------------------------------------------------------------------------ Birdeye


def birdeye_config(url: str, **overrides: Any) -> BirdeyeConfig:
    values: dict[str, Any] = {
        "ws_url": url,
        "api_key": KEY,
        "tokens": (BONK, JUP),
        "chart": "1m",
        "large_trade_min_usd": 0.0,
        "silent_after_s": 5.0,
        "rate_limited_wait_s": 60.0,
        "backoff": FAST,
    }
    return BirdeyeConfig(**{**values, **overrides})


BIRDEYE_TOKENS = {BONK: ("Bonk", 0.00002), JUP: ("JUP", 0.5)}


def test_birdeye_source_connects_as_documented_and_emits_prices_and_large_trades(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Key in the URL, echo-protocol, Origin; one SUBSCRIBE_PRICE query; prices and trades as frames; no key logged."""
    caplog.set_level(logging.DEBUG)
    trade = ScriptedTrade(
        "5TDU8rdEYXzmiJmGB6xeB9VsmQGXrQvefsto65jXJfgb2dZu19zt2nWxxTuhdKUCGyHPbBfyPhyuxpDgfP5Qfd3d", 5e4, 1
    )
    small = ScriptedTrade("small", 500.0, 1)
    with (
        BirdeyePeer(BIRDEYE_TOKENS, api_key=KEY, interval_s=0.05, trades=[trade, small]) as peer,
        opened(BirdeyeSource(birdeye_config(peer.ws_url, large_trade_min_usd=1000.0))) as partition,
    ):
        items = drain(partition, lambda items: len(items) >= 6)
        subscriptions = list(peer.subscriptions)

    assert peer.origins == [ORIGIN]
    assert subscriptions == [
        price_subscription((BONK, JUP), "1m"),
        {"type": "SUBSCRIBE_LARGE_TRADE_TXS", "min_volume": 1000.0},
    ]
    kinds = {item.kind for item in items if isinstance(item, Frame)}
    assert kinds == {"price", "large_trade"}
    assert {q.token for q in quotes(items)} == {BONK, JUP}
    trades = [
        out for item in items if isinstance(item, Frame) for out in parse_frame(item) if isinstance(out, LargeTrade)
    ]
    assert [t.signature for t in trades] == [trade.signature]
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("connectors", "quantbot", "flows"))]
    assert ours and not any(KEY in line for line in ours) and any("x-api-key=***" in line for line in ours)
    assert KEY not in redact(caplog.text)  # what the CLI's log formatter writes of every library's lines


def test_birdeye_source_opens_a_connection_per_hundred_tokens() -> None:
    """250 tokens are three connections of 100, 100 and 50; large trades ride on the first only."""
    tokens = tuple(f"{n:0>44}".replace("0", "A") for n in range(250))
    source = BirdeyeSource(birdeye_config("ws://127.0.0.1:9/socket/solana", tokens=tokens, large_trade_min_usd=1e4))

    groups = source.config.groups()

    assert source.list_parts() == ["birdeye-0", "birdeye-1", "birdeye-2"]
    assert [len(g) for g in groups] == [100, 100, 50] and sum(groups, ()) == tokens
    assert price_subscription(groups[2], "1m")["data"]["query"].count("address =") == 50  # type: ignore[index]


def test_birdeye_source_survives_drops_429_and_malformed_messages() -> None:
    """Cut connections are reconnected and counted down; a 429 handshake waits; a malformed message is a dead letter."""
    down_before = metrics.FEED_DOWN_SECONDS.labels("birdeye")._value.get()
    limited_before = metrics.FEED_RATE_LIMITED.labels("birdeye")._value.get()
    with BirdeyePeer(BIRDEYE_TOKENS, api_key=KEY, interval_s=0.05) as peer:
        with opened(BirdeyeSource(birdeye_config(peer.ws_url, rate_limited_wait_s=0.2))) as partition:
            peer.drop_every_s = 0.4
            run_for(partition, 1.5)
            dropped_connections = peer.connections
            peer.rate_limit(0.5)
            drain(partition, lambda _items: peer.refused >= 1)
            peer.drop_every_s = None
            peer.malformed_next = 1
            items = drain(partition, lambda items: sum(isinstance(q, FeedQuote) for q in _parsed(items)) >= 3)
        while time.monotonic() < peer._limited_until:
            time.sleep(0.05)
        with opened(BirdeyeSource(birdeye_config(peer.ws_url, api_key="wrong"))) as refused:
            assert run_for(refused, 0.5) == []

    assert dropped_connections >= 3 and peer.refused >= 2
    assert metrics.FEED_DOWN_SECONDS.labels("birdeye")._value.get() - down_before > 0
    assert metrics.FEED_RATE_LIMITED.labels("birdeye")._value.get() - limited_before >= 1
    assert any(isinstance(out, DeadLetter) and out.stage == "price" for out in _parsed(items))


def _parsed(items: list[Frame | DeadLetter]) -> list[object]:
    return [out for item in items if isinstance(item, Frame) for out in parse_frame(item)]


# ------------------------------------------------------------------------------------------ Jupiter


def test_jupiter_poller_asks_fifty_mints_a_request_at_a_bounded_rate_with_its_key() -> None:
    """60 mints are asked 50 then 10, in turn, at most `requests_per_s`; each body is a frame of several quotes."""
    mints = {f"{n:0>44}".replace("0", "B"): (6, 1.0 + n) for n in range(60)}
    with JupiterPeer(mints, api_key="jup-k3y") as peer:
        source = JupiterSource(JupiterConfig(peer.url, "jup-k3y", tuple(mints), 10.0, 2.0, FAST))
        with opened(source) as partition:
            items = run_for(partition, 1.0)
            # Stopped and drained before counting: the frame of a request answered as the second ended is
            # still on its way to the partition's queue.
            source.stop()
            items += drain_to_end(partition)
        requests = list(peer.requests)

    assert [len(ids) for ids in requests[:3]] == [50, 10, 50]
    assert 5 <= len(requests) <= 11
    assert len(items) == len(requests)
    assert len(quotes(items[:2])) == 60


def test_jupiter_poller_waits_out_429_retries_errors_and_frames_malformed_bodies() -> None:
    """A 429 waits its Retry-After, a 500 is retried, a malformed body is a frame the flow dead-letters."""
    mints = {WSOL_MINT: (9, 150.0)}
    with JupiterPeer(mints) as peer:
        peer.rate_limit(1.0)
        peer.failing_next = 0
        with opened(JupiterSource(JupiterConfig(peer.url, None, (WSOL_MINT,), 20.0, 2.0, FAST))) as partition:
            first = drain(partition, lambda items: len(items) >= 1)
            peer.failing_next = 2
            peer.malformed_next = 1
            items = drain(partition, lambda items: len(items) >= 3)

    assert peer.rate_limited == 1  # Retry-After: 1 honoured, not hammered at 20/s
    assert quotes(first)[0].price_usd > 0
    parsed = [out for item in items if isinstance(item, Frame) for out in parse_frame(item)]
    assert isinstance(parsed[0], DeadLetter) and parsed[0].stage == "price"
    assert all(isinstance(out, FeedQuote) for out in parsed[1:])


def test_feed_map_default_prices_sol_from_pyth() -> None:
    """Without configuration, Pyth's SOL/USD feed id prices wrapped SOL."""
    assert FeedMap().pyth_mints == {SOL_USD_FEED_ID: WSOL_MINT}
