"""The analytics state on hand-built streams with known answers: windows, snapshots, follow-ups, signals, strategies."""

from __future__ import annotations

import math
import pickle
import random
import statistics
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest

from quantbot import metrics
from quantbot.analytics import (
    Analytics,
    AnalyticsConfig,
    MarketSnapshot,
    Output,
    SignalUpdate,
    StrategyMetrics,
    StrategyPerformance,
    TokenDocument,
    TokenRequest,
    WhaleUpdate,
)
from quantbot.analytics.strategies import StrategyBook
from quantbot.models import (
    WSOL_MINT,
    Activity,
    ActivityKind,
    Hop,
    InstructionIndex,
    PriceTick,
    Signal,
    TokenAmount,
    ValuedActivity,
    WhaleTransaction,
)
from quantbot.pricing import USDC_MINT, FeedQuote, PriceBook
from quantbot.signals import WhaleFollower
from quantbot.tokens import TokenFacts
from quantbot.units import SECONDS_PER_DAY, SECONDS_PER_HOUR

T0 = 1_750_032_000
"""A UTC midnight (2025-06-16): a multiple of every bucket, snapshot interval and day used here."""
TOKEN_A = "AAAAzd4PdBzDGvGMEXJcPZVBRUGakVCHDxBaeGtmpump"
TOKEN_B = "BBBBq9bTk3r8GgPfnkdxJbKGNQkYRkEDRVeR6u2QMpump"
TOKEN_C = "CCCCbLEFBRbYMW3MP7XNAXG3Zh6ZT3ifsXyUAfhNpump"
TOKEN_D = "DDDDgWmWLpR6uu5T3Kz4sv8EnKQCzRgSYh3mLHbQpump"
WALLET = "7tN3U3EHDBhP9ETMhzG3Sd1rovFF6UfpWQ45YHyotMGC"
OTHER_WALLET = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM"
POOL = "58oQChx4yWmvKdwLLZzBi4ChoCc2fqCUWBkwMihLYQo2"
SOL_USD = 150.0
TOKEN_DECIMALS = 6
SOL_DECIMALS = 9
STRATEGY_ID = "0c6f7b53-4b63-4a53-9d5e-2f5f0c1b9a11"
USER_ID = "5f1d7c2e-8a9b-4c3d-b2e1-0a9f8e7d6c5b"


# ---- building blocks


def tokens(mint: str, usd: float, price: float) -> TokenAmount:
    """`usd` worth of `mint` at `price` (SOL at 9 decimals, others at 6)."""
    decimals = SOL_DECIMALS if mint == WSOL_MINT else TOKEN_DECIMALS
    return TokenAmount(mint, round(usd / price * 10**decimals), decimals)


def swap(
    signature: str,
    at: int,
    token: str,
    price: float,
    usd: float,
    *,
    buy: bool = True,
    trader: str = WALLET,
    pool: str | None = None,
    reserves: tuple[float, float] | None = None,
    program: str = "raydium_amm_v4",
    sol_usd: float = SOL_USD,
    quote: str = WSOL_MINT,
) -> ValuedActivity:
    """A valued one-hop swap of `token` against SOL (or `quote`), with both legs' ticks as the valuation makes them.

    `reserves`, where given, are the pool's (token units, quote units) after the hop.
    """
    quote_price = sol_usd if quote == WSOL_MINT else 1.0
    token_leg, quote_leg = tokens(token, usd, price), tokens(quote, usd, quote_price)
    given, got = (quote_leg, token_leg) if buy else (token_leg, quote_leg)
    pool_reserves = None
    if reserves is not None:
        token_side = TokenAmount(token, round(reserves[0] * 10**TOKEN_DECIMALS), TOKEN_DECIMALS)
        quote_decimals = quote_leg.decimals or 0
        quote_side = TokenAmount(quote, round(reserves[1] * 10**quote_decimals), quote_decimals)
        pool_reserves = (quote_side, token_side) if buy else (token_side, quote_side)
    hop = Hop(program, "program-id", pool, given, got, None, pool_reserves)
    index = InstructionIndex(0)
    activity = Activity(signature, 1, at, ActivityKind.SWAP, index, trader, program, given, got, (hop,))
    ticks = [PriceTick(token, price, at, program, usd, signature, index)]
    if quote == WSOL_MINT:
        ticks.append(PriceTick(WSOL_MINT, sol_usd, at, program, usd, signature, index))
    return ValuedActivity(activity, usd, sol_usd, tuple(ticks))


def at(moment: int) -> datetime:
    """Feed time `moment` as the documents write it."""
    return datetime.fromtimestamp(moment, tz=UTC)


def quote_tick(token: str, price: float, at: int, source: str = "pyth") -> PriceTick:
    """A price feed's quote of `token`."""
    return PriceTick(token, price, at, source, 0.0, "", InstructionIndex(0))


def strategy(*, default_holding_s: int = SECONDS_PER_DAY, **parameters: object) -> WhaleFollower:
    """A whale follower of every swap of $50k or more: 60 s delay, TP 10 %, SL 5 %, 2 h exit, unless overridden."""
    params: dict[str, object] = {
        "minTransactionValueUsd": 50_000,
        "executionDelay": 60,
        "takeProfitPercent": 10,
        "stopLossPercent": 5,
        "timeBasedExit": {"enabled": True, "maxHoldingTimeHours": 2},
        "followSizePercentage": 1,
        "maxPositionSizeUsd": 1_000,
    }
    params.update(parameters)
    document = {
        "_id": STRATEGY_ID,
        "userId": USER_ID,
        "name": "test follower",
        "type": "whale_follower",
        "parameters": {k: v for k, v in params.items() if v is not None},
    }
    return WhaleFollower.from_document(document, default_holding_s)


def facts(mint: str, supply_whole: int = 1_000_000_000, symbol: str = "TKA") -> TokenFacts:
    """A mint's facts: 6 decimals, `supply_whole` tokens, renounced."""
    return TokenFacts(
        mint=mint,
        program="spl_token",
        decimals=TOKEN_DECIMALS,
        supply=supply_whole * 10**TOKEN_DECIMALS,
        mint_authority=None,
        freeze_authority=None,
        name="Token A",
        symbol=symbol,
    )


OutputT = TypeVar("OutputT")

Item = ValuedActivity | PriceTick | TokenFacts | tuple[ValuedActivity, ...]


class Runner:
    """Feeds items to one `Analytics` under one config; keeps every output and every returned tick."""

    def __init__(self, config: AnalyticsConfig, analytics: Analytics | None = None) -> None:
        self.config = config
        self.analytics = analytics if analytics is not None else Analytics()
        self.outputs: list[Output] = []
        self.ticks: list[PriceTick] = []

    def feed(self, *items: Item) -> list[Output]:
        """Observe `items` in order; returns the outputs they caused."""
        caused: list[Output] = []
        for item in items:
            if isinstance(item, PriceTick):
                tick, out = self.analytics.observe_quote(item, self.config)
                self.ticks.append(tick)
            elif isinstance(item, TokenFacts):
                out = self.analytics.observe_facts(item, self.config)
            else:
                valued = item if isinstance(item, tuple) else (item,)
                result, out = self.analytics.observe_trade(valued[0].activity.signature, valued, self.config)
                self.ticks.extend(t for v in result for t in v.ticks)
            caused.extend(out)
        self.outputs.extend(caused)
        return caused

    def last_stats(self, token: str) -> PriceTick:
        """The newest returned tick of `token`."""
        return next(t for t in reversed(self.ticks) if t.token == token)


def of_type(outputs: Iterable[Output], kind: type[OutputT]) -> list[OutputT]:
    return [o for o in outputs if isinstance(o, kind)]


def updates(outputs: Iterable[Output]) -> list[SignalUpdate]:
    return [o for o in outputs if isinstance(o, SignalUpdate)]


def signals(outputs: Iterable[Output]) -> list[Signal]:
    return [o for o in outputs if isinstance(o, Signal)]


def snapshots(outputs: Iterable[Output]) -> list[dict[str, object]]:
    return [o.document for o in outputs if isinstance(o, MarketSnapshot)]


def _config(**settings: Any) -> AnalyticsConfig:
    """The analytics' settings, token documents rewritten at every snapshot boundary (unless said otherwise)."""
    interval = settings.get("snapshot_interval_s", AnalyticsConfig().snapshot_interval_s)
    return AnalyticsConfig(**{"token_document_every_s": interval, **settings})


HOUR_WINDOW = _config(window_s=SECONDS_PER_HOUR, bucket_s=300)
"""A one-hour window of twelve 5-minute buckets: small enough to reckon by hand."""


# ---- the window


def test_a_repeated_transaction_counts_once_and_sets_nothing_off() -> None:
    """A transaction seen again (a duplicated line) adds no volume, no whale and no tick: the first one stands."""
    run = Runner(_config())
    first = run.feed(swap("whale", T0, TOKEN_A, 1.0, 300_000.0), facts(TOKEN_A))
    ticks_before = len(run.ticks)
    again = run.feed(swap("whale", T0, TOKEN_A, 1.0, 300_000.0))
    ticks_after = len(run.ticks)
    run.feed(swap("small", T0 + 1, TOKEN_A, 1.0, 10.0))

    assert of_type(first, WhaleTransaction) and again == []
    assert ticks_after == ticks_before  # the repeat's activities came back without their ticks
    stats = run.last_stats(TOKEN_A).stats
    assert stats is not None and stats.volume_24h_usd == pytest.approx(300_010.0)


def test_window_statistics_by_hand() -> None:
    """High, low, volume and the change from the price before the window, bucket by bucket, as reckoned by hand."""
    run = Runner(HOUR_WINDOW)

    run.feed(swap("s1", T0, TOKEN_A, 1.0, 100.0), swap("s2", T0 + 100, TOKEN_A, 1.5, 50.0))
    run.feed(swap("s3", T0 + 400, TOKEN_A, 0.8, 10.0))
    early = run.last_stats(TOKEN_A).stats
    run.feed(swap("s4", T0 + 3_610, TOKEN_A, 1.2, 5.0))  # bucket T0 left the window: its close 1.5 is "before"
    hour = run.last_stats(TOKEN_A).stats
    run.feed(swap("s5", T0 + 3_910, TOKEN_A, 1.0, 7.0))  # bucket T0+300 left: "before" is 0.8
    later = run.last_stats(TOKEN_A).stats

    assert early is not None and hour is not None and later is not None
    assert (early.high_24h, early.low_24h, early.volume_24h_usd, early.change_24h_pct) == (1.5, 0.8, 160.0, None)
    assert (hour.high_24h, hour.low_24h, hour.volume_24h_usd) == (1.2, 0.8, 15.0)
    assert hour.change_24h_pct == pytest.approx(-20.0)
    assert (later.high_24h, later.low_24h, later.volume_24h_usd) == (1.2, 1.0, 12.0)
    assert later.change_24h_pct == pytest.approx(25.0)


def test_late_tick_counts_in_its_own_bucket() -> None:
    """A tick older than the newest lands in its own bucket while that bucket is in the window, else nowhere."""
    run = Runner(HOUR_WINDOW)
    run.feed(swap("s1", T0 + 3_610, TOKEN_A, 1.0, 10.0), swap("s2", T0 + 3_910, TOKEN_A, 1.1, 10.0))

    run.feed(swap("late", T0 + 3_650, TOKEN_A, 2.0, 5.0))
    late = run.last_stats(TOKEN_A).stats
    run.feed(swap("ancient", T0 + 100, TOKEN_A, 9.0, 1_000.0))
    ancient = run.last_stats(TOKEN_A).stats

    assert late is not None and ancient is not None
    assert (late.high_24h, late.low_24h, late.volume_24h_usd) == (2.0, 1.0, 25.0)
    assert (ancient.high_24h, ancient.volume_24h_usd) == (2.0, 25.0)


def test_quotes_price_sol_through_the_same_window() -> None:
    """Feed quotes of SOL have a window like any token: high, low and change, no volume, no liquidity."""
    run = Runner(HOUR_WINDOW)
    run.feed(quote_tick(WSOL_MINT, 150.0, T0 + 10), quote_tick(WSOL_MINT, 160.0, T0 + 200))
    run.feed(quote_tick(WSOL_MINT, 140.0, T0 + 3_700))

    stats = run.last_stats(WSOL_MINT).stats

    assert stats is not None
    assert (stats.high_24h, stats.low_24h, stats.volume_24h_usd, stats.liquidity_usd) == (140.0, 140.0, 0.0, None)
    assert stats.change_24h_pct == pytest.approx((140.0 / 160.0 - 1) * 100)


# ---- pools, liquidity, market cap, token documents


def test_liquidity_market_cap_and_exchanges_from_reserves_and_facts() -> None:
    """Reserves valued at current prices give liquidity and a $1,000 impact; facts give market cap and the document."""
    run = Runner(_config())
    # The pool after the trade holds 500,000 A at $0.30 and 1,000 SOL at $150: $150k a side.
    run.feed(swap("s1", T0 + 10, TOKEN_A, 0.3, 600.0, pool=POOL, reserves=(500_000, 1_000)))
    before_facts = run.last_stats(TOKEN_A).stats
    sol_stats = run.last_stats(WSOL_MINT).stats

    documents = run.feed(facts(TOKEN_A))
    run.feed(swap("s2", T0 + 20, TOKEN_A, 0.3, 400.0, pool=POOL, reserves=(500_000, 1_000)))
    after_facts = run.last_stats(TOKEN_A).stats

    assert before_facts is not None and sol_stats is not None and after_facts is not None
    assert before_facts.liquidity_usd == pytest.approx(300_000.0)
    assert before_facts.market_cap_usd is None
    assert sol_stats.liquidity_usd is None and sol_stats.market_cap_usd is None
    assert after_facts.market_cap_usd == pytest.approx(0.3 * 1_000_000_000)
    [document] = documents
    assert isinstance(document, TokenDocument) and document.mint == TOKEN_A
    assert document.document["exchanges"] == [
        {
            "name": "raydium_amm_v4",
            "address": POOL,
            "liquidityUsd": 300_000.0,
            "volume24h": 600.0,
            "priceImpact1000usd": round(100 * 1_000 / 150_000, 4),
        }
    ]
    assert document.document["decimals"] == TOKEN_DECIMALS


def test_changed_exchanges_are_documented_at_the_boundary_for_tokens_with_facts() -> None:
    """At a snapshot boundary, the tokens traded since their last document (and with facts) get a new one."""
    run = Runner(_config())
    run.feed(swap("s1", T0 + 10, TOKEN_A, 0.3, 600.0, pool=POOL), facts(TOKEN_A))
    run.feed(swap("s2", T0 + 20, TOKEN_A, 0.3, 400.0, pool=POOL))
    run.feed(swap("s3", T0 + 30, TOKEN_B, 2.0, 100.0, pool="PoolB"))  # no facts: no document

    at_boundary = run.feed(quote_tick(WSOL_MINT, SOL_USD, T0 + 301))
    quiet_boundary = run.feed(quote_tick(WSOL_MINT, SOL_USD, T0 + 601))

    documents = of_type(at_boundary, TokenDocument)
    assert [d.mint for d in documents] == [TOKEN_A]
    document = documents[0].document
    assert document["updatedAt"] == at(T0 + 300)
    assert document["createdAt"] == at(T0 + 10)
    assert document["exchanges"] == [{"name": "raydium_amm_v4", "address": POOL, "volume24h": 1_000.0}]
    assert of_type(quiet_boundary, TokenDocument) == []


def test_token_documents_wait_for_the_boundaries_of_their_own_interval() -> None:
    """Traded tokens' documents are rewritten only at boundaries that are multiples of `token_document_every_s`."""
    run = Runner(AnalyticsConfig(snapshot_interval_s=300, token_document_every_s=SECONDS_PER_HOUR))
    first_hour = (T0 // SECONDS_PER_HOUR + 1) * SECONDS_PER_HOUR
    run.feed(swap("s1", first_hour - 900, TOKEN_A, 0.3, 600.0, pool=POOL), facts(TOKEN_A))
    written = []
    for n, second in enumerate(range(first_hour - 600, first_hour + 301, 300)):
        # The trade just past a boundary moves the clock over it: the boundary's outputs come with it.
        out = run.feed(swap(f"t{n}", second + 1, TOKEN_A, 0.3, 100.0, pool=POOL))
        written.append(len(of_type(out, TokenDocument)))
    # Boundaries first_hour - 600, - 300 (none), first_hour (one: traded since), first_hour + 300 (none).
    assert written == [0, 0, 1, 0]


def test_token_requests_are_made_once_per_refresh_and_not_with_fresh_facts() -> None:
    """A traded mint without facts is asked for once per `token_refresh_s`; facts stop the asking until they age."""
    config = _config(token_refresh_s=SECONDS_PER_HOUR)
    run = Runner(config)

    first = run.feed(swap("s1", T0 + 10, TOKEN_A, 1.0, 100.0))
    again_soon = run.feed(swap("s2", T0 + 20, TOKEN_A, 1.0, 100.0))
    run.feed(facts(TOKEN_A))
    an_hour_later = run.feed(swap("s3", T0 + 3_615, TOKEN_A, 1.0, 100.0))
    facts_aged = run.feed(swap("s4", T0 + 3_625, TOKEN_A, 1.0, 100.0))

    def asked(outputs: list[Output]) -> list[str]:
        return [o.mint for o in outputs if isinstance(o, TokenRequest)]

    assert asked(first) == [WSOL_MINT, TOKEN_A]
    assert asked(again_soon) == []
    assert asked(an_hour_later) == [WSOL_MINT]  # SOL's request aged; A's facts arrived at T0+20
    assert asked(facts_aged) == [TOKEN_A]


def test_facts_before_any_trade_are_documented_at_the_first_boundary_and_not_asked_for() -> None:
    """Facts with no feed time yet: no document dated 1970, one at the first boundary; the mint is not asked for."""
    run = Runner(_config())

    early = run.feed(facts(TOKEN_A))
    first_trade = run.feed(swap("s1", T0 + 10, TOKEN_A, 1.0, 100.0, pool=POOL))
    boundary = run.feed(quote_tick(WSOL_MINT, SOL_USD, T0 + 301))

    assert early == []
    assert [o.mint for o in of_type(first_trade, TokenRequest)] == [WSOL_MINT]
    [document] = of_type(boundary, TokenDocument)
    assert (document.mint, document.document["createdAt"], document.document["updatedAt"]) == (
        TOKEN_A,
        at(T0 + 10),
        at(T0 + 300),
    )


# ---- the market snapshot


def test_snapshots_fall_on_boundaries_of_feed_time() -> None:
    """A snapshot per boundary the clock passes, before the item that passed it; a gap yields the first one only."""
    run = Runner(_config(snapshot_interval_s=300))

    assert run.feed(quote_tick(WSOL_MINT, 150.0, T0 + 17), quote_tick(WSOL_MINT, 151.0, T0 + 250)) == []
    assert run.feed(quote_tick(WSOL_MINT, 152.0, T0 + 300)) == []  # at the boundary: not past it yet
    passed = run.feed(quote_tick(WSOL_MINT, 153.0, T0 + 301))
    gap = run.feed(quote_tick(WSOL_MINT, 154.0, T0 + 1_000))
    run.feed(quote_tick(WSOL_MINT, 155.0, T0 + 1_200))
    after_gap = run.feed(quote_tick(WSOL_MINT, 156.0, T0 + 1_201))

    assert [s["_id"] for s in snapshots(passed)] == ["2025-06-16T00:05:00+00:00"]
    assert snapshots(passed)[0]["timestamp"] == datetime(2025, 6, 16, 0, 5, tzinfo=UTC)
    assert snapshots(passed)[0]["globalMetrics"] == {"solanaPrice": 152.0}  # as of the boundary, not after it
    assert [s["_id"] for s in snapshots(gap)] == ["2025-06-16T00:10:00+00:00"]
    assert [s["_id"] for s in snapshots(after_gap)] == ["2025-06-16T00:20:00+00:00"]


def test_snapshot_content_movers_whales_dex_volume_and_reserves() -> None:
    """Top movers by |change| above the volume floor, whale count/volume/net flow, volume per DEX, known reserves."""
    config = _config(window_s=SECONDS_PER_HOUR, bucket_s=300, top_movers=2, mover_min_volume_usd=1_000.0)
    run = Runner(config)
    run.feed(
        swap("a1", T0 + 10, TOKEN_A, 1.0, 600.0),
        swap("b1", T0 + 10, TOKEN_B, 2.0, 600.0, program="orca_whirlpool"),
        swap("c1", T0 + 10, TOKEN_C, 1.0, 100.0),
        swap("d1", T0 + 10, TOKEN_D, 1.0, 5_000.0),
    )
    run.feed(
        swap("a2", T0 + 3_610, TOKEN_A, 1.5, 1_200.0),  # +50 %, $1,200 in the window
        swap("b2", T0 + 3_620, TOKEN_B, 1.0, 1_500.0, program="orca_whirlpool"),  # -50 %
        swap("c2", T0 + 3_630, TOKEN_C, 3.0, 100.0),  # +200 % on $100: under the floor
        swap("d2", T0 + 3_640, TOKEN_D, 1.1, 5_000.0),  # +10 %: third, cut
        swap("w1", T0 + 3_700, TOKEN_A, 1.5, 60_000.0, pool=POOL, reserves=(100_000, 2_000)),  # whale buy of A
        swap("w2", T0 + 3_710, TOKEN_B, 1.0, 70_000.0, buy=False, program="orca_whirlpool"),  # whale sell of B
        swap("w3", T0 + 3_720, USDC_MINT, 1.0, 80_000.0, trader=OTHER_WALLET),  # SOL -> USDC: neither side counts
    )

    [snapshot] = snapshots(run.feed(quote_tick(WSOL_MINT, SOL_USD, T0 + 3_901)))

    assert snapshot["_id"] == "2025-06-16T01:05:00+00:00"
    assert snapshot["topMovers"] == [
        {"tokenAddress": TOKEN_A, "priceChangePercent": 50.0, "volume24h": 61_200.0},
        {"tokenAddress": TOKEN_B, "priceChangePercent": -50.0, "volume24h": 71_500.0},
    ]
    assert snapshot["whaleActivity"] == {
        "largeTransactionCount": 3,
        "largeTransactionVolumeUsd": 210_000.0,
        "netFlowUsd": -10_000.0,
    }
    assert snapshot["liquidityMetrics"] == {
        # The window holds buckets from T0+600: the first trades are out of it.
        "topDexVolume": {"raydium_amm_v4": 60_000.0 + 1_200 + 100 + 5_000 + 80_000, "orca_whirlpool": 71_500.0},
        "totalValueLockedUsd": 100_000 * 1.5 + 2_000 * SOL_USD,
    }
    assert snapshot["globalMetrics"] == {"solanaPrice": SOL_USD}


# ---- whales: follow-ups, related transactions, influence


def test_follow_up_sets_the_move_three_hours_later_from_the_price_then() -> None:
    """The follow-up fires before the item that passes whale time + 3 h, with the price at that moment."""
    run = Runner(_config(snapshot_interval_s=SECONDS_PER_DAY))
    run.feed(swap("whale", T0 + 10, TOKEN_A, 2.0, 60_000.0))
    run.feed(swap("later", T0 + 5_000, TOKEN_A, 2.2, 100.0))
    assert run.feed(swap("at-due", T0 + 10_810, TOKEN_A, 2.5, 100.0)) == []

    caused = run.feed(swap("after", T0 + 10_811, TOKEN_A, 3.0, 100.0))

    assert isinstance(caused[0], WhaleUpdate)
    assert caused[0].signature == "whale"
    assert caused[0].fields == {"significance.priceMoveAfter3h": pytest.approx(25.0)}


def test_follow_up_without_a_price_then_sets_nothing() -> None:
    """A followed token forgotten by the time of its follow-up gets no move (none is invented)."""
    run = Runner(_config(max_tokens=2))
    run.feed(swap("whale", T0 + 10, TOKEN_A, 2.0, 60_000.0))
    run.feed(swap("b", T0 + 20, TOKEN_B, 1.0, 100.0), swap("c", T0 + 30, TOKEN_C, 1.0, 100.0))

    caused = run.feed(swap("after", T0 + 10_811, TOKEN_B, 1.0, 100.0))

    assert of_type(caused, WhaleUpdate) == []
    assert list(run.analytics.tokens) == [TOKEN_B, WSOL_MINT]  # A went first: the least recently traded


def test_related_transactions_and_historical_influence() -> None:
    """A wallet's whales list each other within the window; its influence comes from its completed follow-ups."""
    config = _config(related_window_s=6 * SECONDS_PER_HOUR, influence_full_move_pct=10.0)
    run = Runner(config)
    first = run.feed(swap("w1", T0 + 10, TOKEN_A, 1.0, 60_000.0))
    run.feed(swap("w-other", T0 + 20, TOKEN_B, 1.0, 60_000.0, trader=OTHER_WALLET))
    run.feed(swap("up", T0 + 3_000, TOKEN_A, 1.05, 100.0))
    run.feed(swap("tick", T0 + 10_900, TOKEN_C, 1.0, 100.0))  # past w1's follow-up: +5 % after a buy

    second = run.feed(swap("w2", T0 + 4 * SECONDS_PER_HOUR, TOKEN_C, 1.0, 70_000.0))
    third = run.feed(swap("w3", T0 + 9 * SECONDS_PER_HOUR, TOKEN_C, 1.0, 70_000.0))

    [whale1] = of_type(first, WhaleTransaction)
    assert whale1.document["relatedTransactions"] == []
    assert whale1.document["walletProfile"] == {"type": "unknown", "whaleCategory": "large"}
    [whale2] = of_type(second, WhaleTransaction)
    assert whale2.document["relatedTransactions"] == ["w1"]
    assert whale2.document["walletProfile"] == {"type": "unknown", "whaleCategory": "large", "historicalInfluence": 5.0}
    assert [(u.signature, u.related) for u in of_type(second, WhaleUpdate)] == [("w1", ("w2",))]
    [whale3] = of_type(third, WhaleTransaction)
    assert whale3.document["relatedTransactions"] == ["w2"]  # w1 is 9 h before


def test_outputs_of_one_trade_come_in_order() -> None:
    """Due timers, then exits its prices cause, its whale, the related updates, its signals, then token requests."""
    config = _config(strategies=(strategy(),), follow_up_s=100, snapshot_interval_s=SECONDS_PER_HOUR)
    run = Runner(config)
    run.feed(swap("w1", T0 + 10, TOKEN_A, 1.0, 60_000.0))  # signal entered at T0+70, follow-up due T0+110
    entered = run.feed(swap("tick", T0 + 100, TOKEN_A, 1.0, 100.0))
    small_a = swap("w2", T0 + 120, TOKEN_A, 1.2, 100.0)  # reaches w1's take profit (1.1)
    whale_b = swap("w2", T0 + 120, TOKEN_B, 2.0, 60_000.0)

    caused = run.feed((small_a, whale_b))

    assert [(type(o).__name__, o.status) for o in updates(entered)] == [("SignalUpdate", "active")]
    assert [type(o).__name__ for o in caused] == [
        "WhaleUpdate",
        "SignalUpdate",
        "WhaleTransaction",
        "WhaleUpdate",
        "Signal",
        "TokenRequest",
    ]
    follow_up, exit_, whale, related, signal, request = caused
    assert isinstance(follow_up, WhaleUpdate) and follow_up.fields == {"significance.priceMoveAfter3h": 0.0}
    assert isinstance(exit_, SignalUpdate) and (exit_.status, exit_.exit_reason) == ("closed", "take_profit")
    assert isinstance(whale, WhaleTransaction) and whale.valued.activity.output is not None
    assert whale.valued.activity.output.mint == TOKEN_B
    assert isinstance(related, WhaleUpdate) and (related.signature, related.related) == ("w1", ("w2",))
    assert isinstance(signal, Signal) and signal.token_address == TOKEN_B
    assert request == TokenRequest(TOKEN_B)


def test_a_transaction_seen_twice_is_not_its_own_relative_nor_followed_twice() -> None:
    """A repeated whale (at-least-once delivery) is not observed again: no relation to itself, one follow-up and one
    signal (the first time's stand in the stores)."""
    run = Runner(_config(strategies=(strategy(),), snapshot_interval_s=SECONDS_PER_DAY))
    [whale] = of_type(run.feed(swap("w1", T0 + 10, TOKEN_A, 1.0, 60_000.0)), WhaleTransaction)

    again = run.feed(swap("w1", T0 + 10, TOKEN_A, 1.0, 60_000.0))

    assert whale.document["relatedTransactions"] == []
    assert again == []
    assert (len(run.analytics.follow_ups), len(run.analytics.signals)) == (1, 1)


# ---- signals' lifecycle


def test_signal_is_entered_after_its_delay_then_takes_profit() -> None:
    """Pending until the delay, active at the price then, closed at the first price at or above take profit."""
    run = Runner(_config(strategies=(strategy(),), snapshot_interval_s=SECONDS_PER_DAY))
    [signal] = signals(run.feed(swap("w", T0 + 10, TOKEN_A, 1.0, 60_000.0)))
    run.feed(swap("t1", T0 + 50, TOKEN_A, 1.02, 100.0))

    entered = updates(run.feed(swap("t2", T0 + 100, TOKEN_A, 1.03, 100.0)))
    closed = updates(run.feed(swap("t3", T0 + 200, TOKEN_A, 1.12, 100.0)))

    assert (signal.take_profit, signal.stop_loss) == (pytest.approx(1.1), pytest.approx(0.95))
    assert [(u.status, u.entry_price, u.processed_at) for u in entered] == [("active", 1.02, T0 + 70)]
    [close] = closed
    assert (close.status, close.exit_reason, close.exit_price, close.processed_at) == (
        "closed",
        "take_profit",
        1.12,
        T0 + 200,
    )
    assert close.pnl_percent == pytest.approx((1.12 / 1.02 - 1) * 100)
    assert close.success is True and close.entry_price == 1.02


def test_sell_signal_stops_out_when_the_price_rises() -> None:
    """A sell signal's stop loss is above its price: a rise to it closes the signal at a loss."""
    run = Runner(_config(strategies=(strategy(),), snapshot_interval_s=SECONDS_PER_DAY))
    [signal] = signals(run.feed(swap("w", T0 + 10, TOKEN_A, 1.0, 60_000.0, buy=False)))
    run.feed(swap("t1", T0 + 100, TOKEN_A, 1.0, 100.0))

    [close] = updates(run.feed(swap("t2", T0 + 200, TOKEN_A, 1.06, 100.0)))

    assert signal.direction == "sell"
    assert (signal.take_profit, signal.stop_loss) == (pytest.approx(0.9), pytest.approx(1.05))
    assert (close.status, close.exit_reason, close.success) == ("closed", "stop_loss", False)
    assert close.pnl_percent == pytest.approx(-6.0)


def test_signal_closes_at_its_time_exit_at_the_price_then() -> None:
    """With neither level reached, the signal closes at `expires_at`, stamped then, at the price then."""
    run = Runner(_config(strategies=(strategy(),), snapshot_interval_s=SECONDS_PER_DAY))
    [signal] = signals(run.feed(swap("w", T0 + 10, TOKEN_A, 1.0, 60_000.0)))
    run.feed(swap("t1", T0 + 100, TOKEN_A, 1.0, 100.0), swap("t2", T0 + 3_000, TOKEN_A, 1.04, 100.0))

    hour, close = updates(run.feed(swap("t3", signal.expires_at + 1, TOKEN_A, 1.5, 100.0)))

    assert signal.expires_at == T0 + 70 + 2 * SECONDS_PER_HOUR
    assert (hour.status, hour.actual_move_1h, hour.processed_at) == ("active", pytest.approx(4.0), T0 + 70)
    assert close.actual_move_1h == pytest.approx(4.0)
    assert (close.status, close.exit_reason, close.exit_price, close.processed_at) == (
        "closed",
        "time_exit",
        1.04,
        signal.expires_at,
    )
    assert close.pnl_percent == pytest.approx(4.0)


def test_signal_expires_without_time_to_hold() -> None:
    """A strategy without a time exit and no default holding time: the signal expires at its entry time."""
    follower = strategy(timeBasedExit={"enabled": False}, default_holding_s=0)
    run = Runner(_config(strategies=(follower,), snapshot_interval_s=SECONDS_PER_DAY))
    run.feed(swap("w", T0 + 10, TOKEN_A, 1.0, 60_000.0))

    [expired] = updates(run.feed(swap("t1", T0 + 100, TOKEN_A, 1.0, 100.0)))

    assert (expired.status, expired.processed_at, expired.entry_price, expired.success) == (
        "expired",
        T0 + 70,
        None,
        None,
    )


def test_signal_expires_without_a_price_at_entry() -> None:
    """A token forgotten (no price) when the delay has passed: the signal expires, never entered."""
    run = Runner(_config(strategies=(strategy(),), max_tokens=2, snapshot_interval_s=SECONDS_PER_DAY))
    run.feed(swap("w", T0 + 10, TOKEN_A, 1.0, 60_000.0))
    run.feed(swap("b", T0 + 20, TOKEN_B, 1.0, 100.0))

    [expired] = updates(run.feed(swap("c", T0 + 100, TOKEN_C, 1.0, 100.0)))

    assert (expired.status, expired.entry_price) == ("expired", None)


def test_moves_after_one_hour_and_one_day_carry_the_whole_picture() -> None:
    """1 h and 24 h after the signal its token's move from the signal price is set, with the status of the moment."""
    follower = strategy(
        takeProfitPercent=None, stopLossPercent=None, timeBasedExit={"enabled": True, "maxHoldingTimeHours": 48}
    )
    run = Runner(_config(strategies=(follower,), snapshot_interval_s=SECONDS_PER_DAY))
    run.feed(swap("w", T0 + 10, TOKEN_A, 1.0, 60_000.0), swap("t1", T0 + 1_000, TOKEN_A, 1.3, 100.0))

    hour = updates(run.feed(swap("t2", T0 + 3_611, TOKEN_A, 0.5, 100.0)))
    run.feed(swap("t3", T0 + 50_000, TOKEN_A, 0.9, 100.0))
    day = updates(run.feed(swap("t4", T0 + 86_411, TOKEN_A, 2.0, 100.0)))

    assert [(u.status, u.actual_move_1h, u.actual_move_24h) for u in hour] == [("active", pytest.approx(30.0), None)]
    assert [(u.status, u.actual_move_1h, u.actual_move_24h, u.entry_price) for u in day] == [
        ("active", pytest.approx(30.0), pytest.approx(-10.0), 1.0)
    ]


# ---- strategies


def test_strategy_metrics_and_performance_by_hand() -> None:
    """Three closed trades (+20 %, -10 %, +25 %) and one open position, reckoned by hand at the boundary."""
    config = _config(strategies=(strategy(),), snapshot_interval_s=SECONDS_PER_HOUR)
    run = Runner(config)
    run.feed(
        swap("wa", T0 + 10, TOKEN_A, 1.0, 60_000.0),  # $600 position (1 %)
        swap("wb", T0 + 20, TOKEN_B, 1.0, 100_000.0),  # $1,000
        swap("wc", T0 + 30, TOKEN_C, 2.0, 200_000.0),  # $2,000 capped at $1,000
    )
    run.feed(swap("ta", T0 + 100, TOKEN_A, 1.0, 10.0))  # all three entered at their whale's price
    run.feed(
        swap("xa", T0 + 200, TOKEN_A, 1.2, 10.0),
        swap("xb", T0 + 210, TOKEN_B, 0.9, 10.0),
        swap("xc", T0 + 220, TOKEN_C, 2.5, 10.0),
    )
    run.feed(swap("wd", T0 + 300, TOKEN_D, 1.0, 60_000.0), swap("td", T0 + 400, TOKEN_D, 1.0, 10.0))

    boundary = run.feed(quote_tick(WSOL_MINT, SOL_USD, T0 + 3_601))

    returns = [0.2, -0.1, 0.25]
    mean = statistics.mean(returns)
    [point] = of_type(boundary, StrategyMetrics)
    assert isinstance(point, StrategyMetrics)
    assert (point.strategy_id, point.user_id, point.at) == (STRATEGY_ID, USER_ID, T0 + 3_600)
    assert point.fields == {
        "pnl_percent": round(270 / 2_600 * 100, 4),
        "pnl_absolute": 270.0,
        "win_count": 2,
        "loss_count": 1,
        "active_positions": 1,
        "exposure_usd": 600.0,
        "max_drawdown": pytest.approx(10.0),
        "sharpe_ratio": round(mean / statistics.stdev(returns), 4),
        "sortino_ratio": round(mean / math.sqrt(0.1**2 / 3), 4),
    }
    [performance] = of_type(boundary, StrategyPerformance)
    assert isinstance(performance, StrategyPerformance)
    window = {
        "tradesTotal": 3,
        "winRate": 0.6667,
        "profitPercent": round(270 / 2_600 * 100, 4),
        "sharpeRatio": round(mean / statistics.stdev(returns), 4),
    }
    assert performance.performance == {"allTime": window, "last30Days": window}


def test_strategy_book_before_any_trade_and_over_thirty_days() -> None:
    """No trade: zero P&L and no ratios; the last 30 days keep only trades of the 30 UTC days up to today."""
    book = StrategyBook()
    empty_fields = book.metrics()
    empty_performance = book.performance(T0, 30)
    book.close("s1", T0, 10.0, 100.0, 30)
    book.close("s2", T0 + 15 * SECONDS_PER_DAY, -5.0, 100.0, 30)
    book.close("s3", T0 + 40 * SECONDS_PER_DAY + 5, 20.0, 100.0, 30)

    performance = book.performance(T0 + 40 * SECONDS_PER_DAY + 10, 30)

    assert empty_fields == {
        "pnl_percent": 0.0,
        "pnl_absolute": 0.0,
        "win_count": 0,
        "loss_count": 0,
        "active_positions": 0,
        "exposure_usd": 0.0,
        "max_drawdown": 0.0,
    }
    assert empty_performance["allTime"] == {"tradesTotal": 0, "winRate": 0.0, "profitPercent": 0.0}
    assert performance["allTime"] == {
        "tradesTotal": 3,
        "winRate": 0.6667,
        "profitPercent": round(25 / 3, 4),
        "sharpeRatio": round(statistics.mean([0.1, -0.05, 0.2]) / statistics.stdev([0.1, -0.05, 0.2]), 4),
    }
    assert performance["last30Days"] == {"tradesTotal": 2, "winRate": 0.5, "profitPercent": 7.5}  # no ratio of two


def test_strategy_user_id_comes_from_the_document() -> None:
    """`userId` of the strategy document is the follower's `user_id`; a document without one gives None."""
    assert strategy().user_id == USER_ID
    assert WhaleFollower.from_document({"_id": "s", "type": "whale_follower"}, 0).user_id is None


# ---- bounds


def settled(kind: str) -> float:
    """The settled-early counter of `kind` so far."""
    value: float = metrics.ANALYTICS_SETTLED_EARLY.labels(kind)._value.get()
    return value


def test_pending_beyond_the_bound_settles_the_oldest_first() -> None:
    """Beyond `max_pending` the oldest waiting follow-up or signal is settled early and counted; pending, it expires."""
    run = Runner(_config(strategies=(strategy(),), max_pending=3, snapshot_interval_s=SECONDS_PER_DAY))
    follow_ups_before, signals_before = settled("follow_up"), settled("signal")
    run.feed(swap("w1", T0 + 10, TOKEN_A, 1.0, 60_000.0))
    run.feed(swap("w2", T0 + 20, TOKEN_B, 1.0, 60_000.0))

    third = run.feed(swap("w3", T0 + 30, TOKEN_C, 1.0, 60_000.0))

    assert settled("follow_up") - follow_ups_before == 2
    assert settled("signal") - signals_before == 1
    [expired] = updates(third)
    assert (expired.signal.metadata["whale_signature"], expired.status) == ("w1", "expired")
    assert list(run.analytics.follow_ups) == ["w3"]
    assert len(run.analytics.signals) == 2


def test_tokens_wallets_and_pools_stay_within_their_bounds() -> None:
    """The least recently seen token, wallet and pool are forgotten beyond `max_tokens`, `max_wallets`, `max_pools`."""
    run = Runner(_config(max_tokens=3, max_wallets=2, max_pools=2))
    for number, (token, trader) in enumerate(
        [(TOKEN_A, WALLET), (TOKEN_B, OTHER_WALLET), (TOKEN_C, "Wallet3"), (TOKEN_D, "Wallet4")]
    ):
        run.feed(swap(f"w{number}", T0 + number, token, 1.0, 60_000.0, trader=trader, pool=f"pool{number}"))

    assert list(run.analytics.tokens) == [TOKEN_C, TOKEN_D, WSOL_MINT]
    assert list(run.analytics.wallets) == ["Wallet3", "Wallet4"]
    assert list(run.analytics.pools) == ["pool2", "pool3"]


# ---- determinism and recovery


WALLETS = [WALLET, OTHER_WALLET, "Wallet3", "Wallet4", "Wallet5"]


def scripted_stream(count: int, seed: int) -> list[Item]:
    """A day and a half of feed time: SOL quotes, four tokens' random walks traded in pools with reserves
    (one in twenty a whale), and token facts; valued by the real valuation (`PriceBook`)."""
    rng = random.Random(seed)
    book = PriceBook()
    walk = {TOKEN_A: 1.0, TOKEN_B: 0.02, TOKEN_C: 5.0, TOKEN_D: 0.3}
    sol = SOL_USD
    items: list[Item] = []
    at = T0 + 5
    for number in range(count):
        at += rng.randint(5, 90)
        if number % 10 == 0:
            sol *= math.exp(rng.gauss(0, 0.002))
            quote = FeedQuote(WSOL_MINT, sol, at, "pyth")
            book.apply_quote(quote)
            items.append(book.quote_tick(quote))
            continue
        if number % 500 == 7:
            items.append(facts(rng.choice(list(walk))))
        token = rng.choice(list(walk))
        walk[token] *= math.exp(rng.gauss(0, 0.03))
        usd = rng.uniform(60_000, 300_000) if rng.random() < 0.05 else rng.uniform(10, 20_000)
        pool = f"pool-{token[:4]}"
        depth = 2_000_000.0
        built = swap(
            f"sig{number}",
            at,
            token,
            walk[token],
            usd,
            buy=rng.random() < 0.5,
            trader=rng.choice(WALLETS),
            pool=pool,
            reserves=(depth / walk[token], depth / sol),
            program=rng.choice(["raydium_amm_v4", "pumpswap"]),
            sol_usd=sol,
        )
        items.append(book.value(built.activity))
    return items


STREAM_CONFIG = _config(
    strategies=(strategy(), strategy(takeProfitPercent=30, stopLossPercent=20, executionDelay=0)),
    mover_min_volume_usd=1_000.0,
)


def test_scripted_stream_exercises_every_output() -> None:
    """The recovery tests' stream reaches every kind of output and every exit, and keeps its timers bounded."""
    run = Runner(STREAM_CONFIG)
    run.feed(*scripted_stream(3_000, seed=7))

    kinds = {type(o).__name__ for o in run.outputs}
    reasons = {u.exit_reason for u in updates(run.outputs)}
    assert kinds >= {
        "MarketSnapshot",
        "TokenDocument",
        "WhaleTransaction",
        "WhaleUpdate",
        "Signal",
        "SignalUpdate",
        "StrategyMetrics",
        "StrategyPerformance",
        "TokenRequest",
    }
    assert reasons >= {"take_profit", "stop_loss", "time_exit"}
    assert any(s["topMovers"] for s in snapshots(run.outputs))
    assert any("significance.priceMoveAfter3h" in u.fields for u in run.outputs if isinstance(u, WhaleUpdate))
    live = len(run.analytics.follow_ups) + len(run.analytics.signals)
    assert len(run.analytics.timers) <= 2 * live + 1_024


def test_pickled_mid_stream_the_state_resumes_with_identical_outputs() -> None:
    """Pickled and restored every 250 items (as a recovery snapshot is), the state gives an unbroken run's outputs."""
    items = scripted_stream(3_000, seed=11)
    unbroken = Runner(STREAM_CONFIG)
    unbroken.feed(*items)

    resumed = Runner(STREAM_CONFIG)
    for start in range(0, len(items), 250):
        resumed.analytics = pickle.loads(pickle.dumps(resumed.analytics))  # noqa: S301 - the state just pickled
        resumed.feed(*items[start : start + 250])

    assert resumed.outputs == unbroken.outputs
    assert resumed.ticks == unbroken.ticks
    assert resumed.analytics == unbroken.analytics
    assert len(unbroken.outputs) > 1_000


def test_same_input_twice_gives_identical_outputs() -> None:
    """Two fresh states fed the same stream emit the same outputs and ticks, in the same order."""
    items = scripted_stream(2_000, seed=3)
    first, second = Runner(STREAM_CONFIG), Runner(STREAM_CONFIG)

    first.feed(*items)
    second.feed(*items)

    assert first.outputs == second.outputs
    assert first.ticks == second.ticks


def test_snapshot_of_the_state_is_compact() -> None:
    """The pickled state of a day and a half of four tokens stays small (sparse buckets stored as arrays)."""
    run = Runner(STREAM_CONFIG)
    run.feed(*scripted_stream(3_000, seed=5))

    assert len(pickle.dumps(run.analytics)) < 200_000
