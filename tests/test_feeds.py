"""The price feeds' parsers, the pricing precedence between feeds and trades, disagreements and missed large trades."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from quantbot.bounds import ParseConfig
from quantbot.feeds import (
    SOL_USD_FEED_ID,
    FeedMap,
    LargeTrade,
    hermes_message,
    hermes_publish_times,
    parse_birdeye_price,
    parse_birdeye_trade,
    parse_hermes,
    parse_jupiter,
)
from quantbot.models import WSOL_MINT, Activity, ActivityKind, DeadLetter, Frame, InstructionIndex, TokenAmount
from quantbot.pricing import FeedQuote, PriceBook, PriceFormatError, PricingConfig
from quantbot.steps import DecodedTransaction, PricedQuote, TradeWatch, Valuation, WatchConfig, parse_frame
from quantbot.units import NS_PER_S

NOW = 1_796_178_000
"""A fixed moment (December 2026) every time in these tests is relative to: the same on every pytest-xdist
worker, which must collect the same parametrized ids."""
NOW_NS = NOW * NS_PER_S
BOUNDS = ParseConfig()
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
BONK = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"
JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"
ETH_FEED = "ff61491a931112ddf1bd8147cd1b641375f79f5825126d665480874634fd0ace"
ETH_MINT = "7vfCXTUXx5WJV5JADk17DUJ4ksgau7utNKj4b963voxs"
MINTS = {SOL_USD_FEED_ID: WSOL_MINT, ETH_FEED: ETH_MINT}


def hermes(*entries: tuple[str, str, int, int]) -> str:
    """A Hermes update of (id, price mantissa, expo, publish_time) entries, as the stream sends it."""
    parsed = [
        {
            "id": feed_id,
            "price": {"price": mantissa, "conf": "7012345", "expo": expo, "publish_time": at},
            "ema_price": {"price": mantissa, "conf": "7012345", "expo": expo, "publish_time": at},
            "metadata": {"slot": 1, "proof_available_time": at, "prev_publish_time": at - 1},
        }
        for feed_id, mantissa, expo, at in entries
    ]
    return orjson.dumps({"binary": {"encoding": "hex", "data": ["504e4155"]}, "parsed": parsed}).decode()


def birdeye_price(token: str, close: object, at: int) -> str:
    data = {"o": 1, "h": 1, "l": 1, "c": close, "eventType": "ohlcv", "type": "1m", "unixTime": at, "v": 3.2}
    return orjson.dumps({"type": "PRICE_DATA", "data": {**data, "symbol": "X", "address": token}}).decode()


def test_hermes_price_is_mantissa_times_ten_to_expo_with_confidence_and_publish_time() -> None:
    """Hermes' `15012345678` at expo -8 is 150.12345678 USD, its conf scaled alike, timed by publish_time."""
    quotes, problems = parse_hermes(hermes((SOL_USD_FEED_ID, "15012345678", -8, NOW)), NOW_NS, MINTS, BOUNDS)

    assert problems == []
    (quote,) = quotes
    assert quote.token == WSOL_MINT and quote.source == "pyth" and quote.ts == NOW
    assert quote.price_usd == pytest.approx(150.12345678)
    assert quote.confidence == pytest.approx(0.07012345)


def test_a_hermes_message_of_several_feeds_yields_a_quote_each_and_an_unmapped_id_is_a_problem() -> None:
    """Two mapped feeds give two quotes; a feed id without a mint is a problem positioned by its id, not a crash."""
    unknown = "ab" * 32
    payload = hermes(
        (SOL_USD_FEED_ID, "15000000000", -8, NOW), ("0x" + ETH_FEED, "350000000000", -8, NOW), (unknown, "1", 0, NOW)
    )

    quotes, problems = parse_hermes(payload, NOW_NS, MINTS, BOUNDS)

    assert [(q.token, round(q.price_usd, 2)) for q in quotes] == [(WSOL_MINT, 150.0), (ETH_MINT, 3500.0)]
    assert [p.suffix for p in problems] == [f"#{unknown}"] and "not mapped" in problems[0].reason


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ("data: nope", "not JSON"),
        ("[]", "not an object"),
        ('{"binary": {"encoding": "hex", "data": []}}', "no `parsed`"),
    ],
)
def test_a_malformed_hermes_message_names_the_problem(payload: str, fragment: str) -> None:
    """A Hermes message that is not a parsed price update raises PriceFormatError saying why."""
    with pytest.raises(PriceFormatError, match=fragment):
        parse_hermes(payload, NOW_NS, MINTS, BOUNDS)


@pytest.mark.parametrize(
    ("mantissa", "at", "fragment"),
    [("n/a", NOW, "not a positive integer"), ("-5", NOW, "not a positive integer"), ("5", NOW * 1000, "milliseconds")],
)
def test_a_bad_hermes_price_is_a_problem_of_its_feed(mantissa: str, at: int, fragment: str) -> None:
    """A price that is not a positive integer, or a publish time in milliseconds, is a problem naming the feed."""
    _, (problem,) = parse_hermes(hermes((SOL_USD_FEED_ID, mantissa, -8, at)), NOW_NS, MINTS, BOUNDS)

    assert fragment in problem.reason and SOL_USD_FEED_ID in problem.reason


def test_hermes_publish_times_are_read_per_feed() -> None:
    """The source's duplicate check reads each feed's publish time (ids normalised, garbage gives none)."""
    payload = hermes((SOL_USD_FEED_ID, "1", -8, NOW), ("0x" + ETH_FEED, "2", -8, NOW - 5))

    assert hermes_publish_times(payload) == {SOL_USD_FEED_ID: NOW, ETH_FEED: NOW - 5}
    assert hermes_publish_times("garbage") == {}


def test_birdeye_price_is_the_candle_close_of_its_address() -> None:
    """A Birdeye PRICE_DATA message is the token's close at the candle's unixTime."""
    quote = parse_birdeye_price(birdeye_price(BONK, 0.0000231, NOW - 30), NOW_NS, BOUNDS)

    assert quote == FeedQuote(BONK, 0.0000231, NOW - 30, "birdeye")


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (birdeye_price(BONK, "1.2", NOW), "not a positive number"),
        (birdeye_price(BONK, 0, NOW), "not a positive number"),
        ('{"type": "TXS_DATA", "data": {}}', "is not `PRICE_DATA`"),
        ('{"type": "PRICE_DATA", "data": {"c": 1, "unixTime": 1}}', "without an `address`"),
        ('{"type": "PRICE_DATA", "da', "not JSON"),
    ],
)
def test_a_malformed_birdeye_price_names_the_problem(payload: str, fragment: str) -> None:
    """A Birdeye message that is not a usable PRICE_DATA raises PriceFormatError saying why."""
    with pytest.raises(PriceFormatError, match=fragment):
        parse_birdeye_price(payload, NOW_NS, BOUNDS)


def test_birdeye_large_trade_keeps_signature_volume_and_block_time() -> None:
    """A TXS_LARGE_TRADE_DATA message is a LargeTrade of its txHash, volumeUSD and blockUnixTime."""
    data = {"txHash": "5TDU", "volumeUSD": 12903.75, "blockUnixTime": NOW, "owner": "o", "network": "solana"}
    payload = orjson.dumps({"type": "TXS_LARGE_TRADE_DATA", "data": data}).decode()

    assert parse_birdeye_trade(payload, NOW_NS, "p@1") == LargeTrade("5TDU", 12903.75, NOW, NOW_NS, "p@1")


def test_jupiter_body_yields_a_quote_per_mint_timed_by_the_receive_second() -> None:
    """Each mint of a Price API v3 body is a quote at the frame's receive second; a `null` mint is no price."""
    body = {
        WSOL_MINT: {"usdPrice": 147.48, "blockId": 348004023, "decimals": 9, "priceChange24h": 1.29},
        JUP: {"usdPrice": 0.51, "blockId": 348004025, "decimals": 6},
        BONK: None,
        USDC: {"usdPrice": "x"},
    }

    quotes, problems = parse_jupiter(orjson.dumps(body).decode(), NOW_NS + 1)

    assert quotes == [FeedQuote(WSOL_MINT, 147.48, NOW, "jupiter"), FeedQuote(JUP, 0.51, NOW, "jupiter")]
    assert [p.suffix for p in problems] == [f"#{USDC}"]


def test_a_jupiter_body_without_receive_time_or_not_a_map_is_refused() -> None:
    """A Jupiter price has no time of its own: without a receive time, or as a non-object body, it is refused."""
    with pytest.raises(PriceFormatError, match="receive time"):
        parse_jupiter("{}", 0)
    with pytest.raises(PriceFormatError, match="not an object"):
        parse_jupiter("[1]", NOW_NS)


def test_parse_frame_dispatches_by_source_and_the_home_made_frame_still_parses() -> None:
    """pyth/birdeye/jupiter frames go to their parsers; a price frame of another source is the old home-made one."""
    legacy = Frame(NOW_NS, "feed", "price", orjson.dumps({"symbol": "SOL/USD", "price": 151.2, "ts": NOW}).decode())
    pyth = Frame(NOW_NS, "pyth", "price", hermes_message(SOL_USD_FEED_ID, 150.5, NOW), "pyth@1")
    birdeye = Frame(NOW_NS, "birdeye", "price", birdeye_price(BONK, 0.00002, NOW), "b@1")
    jupiter = Frame(NOW_NS, "jupiter", "price", orjson.dumps({JUP: {"usdPrice": 0.5}}).decode(), "j@1")

    assert parse_frame(legacy) == [FeedQuote(WSOL_MINT, 151.2, NOW, "feed")]
    (quote,) = parse_frame(pyth, feeds=FeedMap())
    assert isinstance(quote, FeedQuote) and quote.source == "pyth" and quote.price_usd == pytest.approx(150.5)
    assert parse_frame(birdeye) == [FeedQuote(BONK, 0.00002, NOW, "birdeye")]
    assert parse_frame(jupiter) == [FeedQuote(JUP, 0.5, NOW, "jupiter")]


def test_malformed_feed_frames_are_price_dead_letters_and_good_prices_beside_them_go_on() -> None:
    """A garbled pyth frame is one dead letter; an unmapped feed in a good message is a dead letter beside its quote."""
    garbled = Frame(NOW_NS, "pyth", "price", '{"parsed": [{"id": "ef0d', "pyth@7")
    mixed = Frame(NOW_NS, "pyth", "price", hermes((SOL_USD_FEED_ID, "1", 0, NOW), ("cd" * 32, "1", 0, NOW)), "pyth@8")

    (letter,) = parse_frame(garbled)
    quote, other = parse_frame(mixed)

    assert isinstance(letter, DeadLetter) and letter.stage == "price" and letter.position == "pyth@7"
    assert isinstance(quote, FeedQuote)
    assert isinstance(other, DeadLetter) and other.position == f"pyth@8#{'cd' * 32}" and other.stage == "price"


def test_a_birdeye_large_trade_frame_parses_and_a_bad_one_is_a_dead_letter() -> None:
    """A `large_trade` frame of birdeye is a LargeTrade; one without txHash is a price-stage dead letter."""
    good = orjson.dumps(
        {"type": "TXS_LARGE_TRADE_DATA", "data": {"txHash": "s", "volumeUSD": 2e4, "blockUnixTime": NOW}}
    )
    bad = orjson.dumps({"type": "TXS_LARGE_TRADE_DATA", "data": {"volumeUSD": 2e4}})

    assert parse_frame(Frame(NOW_NS, "birdeye", "large_trade", good.decode(), "b@2")) == [
        LargeTrade("s", 2e4, NOW, NOW_NS, "b@2")
    ]
    (letter,) = parse_frame(Frame(NOW_NS, "birdeye", "large_trade", bad.decode(), "b@3"))
    assert isinstance(letter, DeadLetter) and "txHash" in letter.reason


# ------------------------------------------------------------------------------------------ pricing

T0 = 1_750_000_000


def test_a_fresh_feed_is_chosen_by_precedence_and_a_stale_one_gives_way() -> None:
    """Pyth beats Birdeye while fresh; past pyth's staleness Birdeye prices; past both, the trade-derived price does."""
    config = PricingConfig(source_stale_s={"pyth": 60, "birdeye": 120})
    book = PriceBook(config)
    book.apply_quote(FeedQuote(WSOL_MINT, 150.0, T0, "pyth"))
    book.apply_quote(FeedQuote(WSOL_MINT, 151.0, T0 + 30, "birdeye"))
    book.learned.trade_sol = (149.0, T0)

    assert book.sol_usd(T0 + 60) == 150.0
    assert book.sol_usd(T0 + 61) == 151.0
    assert book.sol_usd(T0 + 151) == 149.0


def test_a_long_tail_token_takes_the_feed_while_fresh_then_the_last_trade() -> None:
    """A token quoted by Birdeye is priced by the quote while fresh, then by its last trade (within token_stale_s)."""
    book = PriceBook(PricingConfig(source_stale_s={"birdeye": 120}))
    book.learned.tokens[BONK] = (0.00002, T0)
    book.apply_quote(FeedQuote(BONK, 0.000021, T0 + 10, "birdeye"))

    assert book.token_usd(BONK, T0 + 100) == 0.000021
    assert book.token_usd(BONK, T0 + 131) == 0.00002


def test_an_unlisted_feed_ranks_after_the_listed_ones_with_feed_stale_s() -> None:
    """The home-made frame's source is not listed: Jupiter wins over it; alone it is fresh for feed_stale_s."""
    book = PriceBook(PricingConfig(feed_stale_s=300))
    book.apply_quote(FeedQuote(WSOL_MINT, 140.0, T0 + 100, "feed"))
    book.apply_quote(FeedQuote(WSOL_MINT, 141.0, T0, "jupiter"))

    assert book.feed_quote(WSOL_MINT, T0 + 110) == ("jupiter", 141.0, T0)
    assert book.feed_quote(WSOL_MINT, T0 + 350) == ("feed", 140.0, T0 + 100)
    assert book.feed_quote(WSOL_MINT, T0 + 401) is None


def swap(sol_raw: int, usdc_raw: int, at: int, venue: str = "raydium_amm_v4", signature: str = "sig") -> Activity:
    return Activity(
        signature=signature,
        slot=1,
        block_time=at,
        kind=ActivityKind.SWAP,
        index=InstructionIndex(0),
        trader="T",
        venue=venue,
        input=TokenAmount(WSOL_MINT, sol_raw, 9),
        output=TokenAmount(USDC, usdc_raw, 6),
    )


def test_a_trade_far_from_the_fresh_feed_is_a_disagreement_reported_once_a_minute() -> None:
    """A SOL/USDC trade 10 % off Pyth is a disagreement; a second one 30 s later is counted but not reported again."""
    valuation = Valuation()
    config = PricingConfig(disagreement_share=0.05, disagreement_every_s=60)
    valuation.apply(FeedQuote(WSOL_MINT, 150.0, T0, "pyth"), config)

    first = valuation.apply(DecodedTransaction("p", "a", (swap(10**9, 135 * 10**6, T0 + 1),)), config)
    second = valuation.apply(DecodedTransaction("p", "b", (swap(10**9, 135 * 10**6, T0 + 31),)), config)
    close = valuation.apply(DecodedTransaction("p", "c", (swap(10**9, 149 * 10**6, T0 + 32),)), config)

    (found,) = first.disagreements  # type: ignore[union-attr]
    assert (found.token, found.feed_source, found.chain_source) == (WSOL_MINT, "pyth", "raydium_amm_v4")
    assert found.share == pytest.approx(0.1) and found.report
    assert [d.report for d in second.disagreements] == [False]  # type: ignore[union-attr]
    assert close.disagreements == ()  # type: ignore[union-attr]


def test_a_quote_far_from_the_chains_fresh_price_is_a_disagreement() -> None:
    """A feed quote 20 % off the price learned from a fresh SOL/USDC trade is reported with the quote's tick."""
    valuation = Valuation()
    config = PricingConfig(source_stale_s={"birdeye": 120})
    valuation.apply(DecodedTransaction("p", "a", (swap(10**9, 150 * 10**6, T0),)), config)

    priced = valuation.apply(FeedQuote(WSOL_MINT, 180.0, T0 + 5, "birdeye"), config)

    assert isinstance(priced, PricedQuote) and priced.tick.source == "birdeye" and priced.tick.price_usd == 180.0
    (found,) = priced.disagreements
    assert found.feed_source == "birdeye" and found.chain_source == "chain" and found.share == pytest.approx(1 / 6)


def test_watch_declares_a_large_trade_missed_only_after_its_delay_and_not_once_seen() -> None:
    """A reported trade decoded in time is not missed; one never decoded is, once a later item passes the delay."""
    watch, config = TradeWatch(), WatchConfig(delay_s=30.0, seen_max=100)
    seen_trade = LargeTrade("seen", 5e4, T0, 1 * NS_PER_S, "b@1")
    lost_trade = LargeTrade("lost", 7e4, T0, 2 * NS_PER_S, "b@2")

    assert watch.observe(seen_trade, config) == []
    assert watch.observe(lost_trade, config) == []
    assert watch.observe(DecodedTransaction("p", "seen", (), 10 * NS_PER_S), config) == []
    assert watch.observe(DecodedTransaction("p", "other", (), 31 * NS_PER_S), config) == []
    (missed,) = watch.observe(DecodedTransaction("p", "x", (), 33 * NS_PER_S), config)

    assert missed.trade == lost_trade and missed.waited_s == pytest.approx(31.0)
    assert watch.observe(LargeTrade("x", 6e4, T0, 34 * NS_PER_S, "b@3"), config) == []  # seen before it was reported


# ------------------------------------------------------------------------------------------ settings


def test_feed_variables_are_read_under_the_providers_names_and_keys_are_secrets() -> None:
    """QUANTBOT_PYTH_URL, QUANTBOT_BIRDEYE_WS_URL and the two API keys set [feeds]; keys stay text and are masked."""
    from quantbot.settings import load_settings
    from tests.conftest import REPO_ROOT

    env = {
        "QUANTBOT_PYTH_URL": "https://hermes.example/abcdefghij0123456789token",
        "QUANTBOT_BIRDEYE_WS_URL": "wss://public-api.birdeye.so/socket/solana",
        "QUANTBOT_BIRDEYE_API_KEY": "0123456789",
        "QUANTBOT_JUPITER_API_KEY": "jup-secret",
        "QUANTBOT_FEEDS_ENABLED": '["pyth", "jupiter"]',
    }

    settings = load_settings("default", REPO_ROOT / "config", environ=env)
    shown = orjson.dumps(settings.redacted(), default=str).decode()

    assert settings.feeds.pyth_url == env["QUANTBOT_PYTH_URL"] and settings.feeds.enabled == ["pyth", "jupiter"]
    assert settings.feeds.birdeye_api_key is not None
    assert settings.feeds.birdeye_api_key.get_secret_value() == "0123456789"  # not read as a number
    assert "0123456789" not in shown and "jup-secret" not in shown and "0123456789token" not in shown
    assert settings.feeds.pyth_ids == {SOL_USD_FEED_ID: WSOL_MINT}


def test_a_feed_key_in_a_profile_or_a_bad_feed_id_is_refused_naming_the_key(tmp_path: Path) -> None:
    """A Birdeye key in a file is refused, naming QUANTBOT_BIRDEYE_API_KEY; a bad Pyth id names feeds.pyth_ids."""
    from quantbot.errors import ConfigError
    from quantbot.settings import load_settings
    from tests.conftest import REPO_ROOT

    directory = tmp_path
    (directory / "default.toml").write_text((REPO_ROOT / "config" / "default.toml").read_text())
    (directory / "keyed.toml").write_text('[feeds]\nbirdeye_api_key = "written-down"\n')
    (directory / "badid.toml").write_text(
        '[feeds]\npyth_ids = { "0xabc" = "So11111111111111111111111111111111111111112" }\n'
    )

    with pytest.raises(ConfigError, match="QUANTBOT_BIRDEYE_API_KEY"):
        load_settings("keyed", directory, environ={})
    with pytest.raises(ConfigError, match=r"feeds\.pyth_ids"):
        load_settings("badid", directory, environ={})


def test_a_flow_of_several_sources_merges_them_keeping_the_first_step_id() -> None:
    """The first source's input stays `frames` (its snapshots resume), an unnamed other's `feed_1`: both stored."""
    from bytewax.testing import TestingSink, TestingSource, run_main

    from flows.graph import FlowConfig, FlowSinks, build_flow
    from quantbot.analytics import AnalyticsConfig
    from quantbot.events import SystemEvent

    legacy = orjson.dumps({"symbol": "SOL/USD", "price": 120.0, "ts": NOW}).decode()
    chain = [Frame(NOW_NS, "feed", "price", legacy, "rec@1")]
    feed = [Frame(NOW_NS + 1, "pyth", "price", hermes_message(SOL_USD_FEED_ID, 150.0, NOW), "pyth@1")]
    events: list[SystemEvent] = []
    influx: list[object] = []
    sinks = FlowSinks(TestingSink(influx), TestingSink([]), TestingSink([]), TestingSink([]))
    config = FlowConfig(PricingConfig(), AnalyticsConfig(), on_event=events.append)

    flow = build_flow([TestingSource(chain), TestingSource(feed)], sinks, config)
    run_main(flow)

    step_ids = {step.step_id for step in flow.substeps}
    assert {"quantbot.frames", "quantbot.feed_1"} <= step_ids
    assert sorted(tick.source for tick in influx) == ["feed", "pyth"]  # type: ignore[attr-defined]


def test_a_disagreement_is_counted_always_and_written_as_an_event_when_reported() -> None:
    """Every disagreement counts in the metric; one marked `report` is a price_disagreement system event."""
    from flows.graph import _report_disagreement
    from quantbot import metrics
    from quantbot.events import EventType, SystemEvent
    from quantbot.pricing import PriceDisagreement

    events: list[SystemEvent] = []
    before = metrics.PRICE_DISAGREEMENTS.labels("pyth")._value.get()
    found = PriceDisagreement(WSOL_MINT, "pyth", 150.0, "orca_whirlpool", 135.0, T0, 0.1, report=True)

    _report_disagreement(found, events.append)
    _report_disagreement(PriceDisagreement(WSOL_MINT, "pyth", 150.0, "orca", 135.0, T0 + 1, 0.1, False), events.append)

    assert metrics.PRICE_DISAGREEMENTS.labels("pyth")._value.get() - before == 2
    (event,) = events
    assert event.event_type is EventType.PRICE_DISAGREEMENT and event.details["chain_source"] == "orca_whirlpool"
    assert "10.0% apart" in event.message
