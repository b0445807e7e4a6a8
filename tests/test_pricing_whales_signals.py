"""Valuation, whale detection and signals on hand-built activities with known answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantbot.models import WSOL_MINT, Activity, ActivityKind, Hop, InstructionIndex, TokenAmount
from quantbot.pricing import USDC_MINT, FeedQuote, PriceBook, PriceFormatError, PricingConfig, parse_price_payload
from quantbot.signals import WhaleFollower, evaluate, load_strategies, signal_id
from quantbot.whales import WalletLabel, WhaleConfig, detect, largest_per_transaction, signal_strength

BONK = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"
WALLET = "7tN3U3EHDBhP9ETMhzG3Sd1rovFF6UfpWQ45YHyotMGC"
T0 = 1_750_000_000


def swap(
    give: TokenAmount,
    get: TokenAmount,
    *,
    signature: str = "sig1",
    at: int = T0,
    hops: tuple[Hop, ...] = (),
    trader: str = WALLET,
) -> Activity:
    return Activity(
        signature=signature,
        slot=1,
        block_time=at,
        kind=ActivityKind.SWAP,
        index=InstructionIndex(0, None),
        trader=trader,
        venue="jupiter_v6",
        input=give,
        output=get,
        hops=hops,
    )


def sol(lamports: int) -> TokenAmount:
    return TokenAmount(WSOL_MINT, lamports, 9)


def usdc(micro: int) -> TokenAmount:
    return TokenAmount(USDC_MINT, micro, 6)


def bonk(raw: int) -> TokenAmount:
    return TokenAmount(BONK, raw, 5)


def test_stable_leg_is_valued_at_face_and_teaches_sol_price() -> None:
    """Selling 10 SOL for 1,500 USDC is worth $1,500 and sets SOL/USD to 150."""
    book = PriceBook()

    valued = book.value(swap(sol(10 * 10**9), usdc(1_500 * 10**6)))

    assert valued.usd_value == pytest.approx(1_500.0)
    assert book.sol_usd(T0) == pytest.approx(150.0)
    assert [(t.token, round(t.price_usd, 6)) for t in valued.ticks] == [(WSOL_MINT, 150.0)]


def test_token_priced_through_sol_then_values_a_later_trade() -> None:
    """A BONK/SOL trade learns BONK in USD; a later BONK-only-known trade is valued with it."""
    book = PriceBook()
    book.apply_quote(FeedQuote(WSOL_MINT, 200.0, T0, "feed"))

    first = book.value(swap(sol(5 * 10**9), bonk(40_000_000 * 10**5)))  # $1,000 for 40M BONK
    later = book.value(swap(bonk(4_000_000 * 10**5), TokenAmount("Unknown111", 7, None), at=T0 + 60))

    assert first.usd_value == pytest.approx(1_000.0)
    assert book.token_usd(BONK, T0) == pytest.approx(0.000025)
    assert later.usd_value == pytest.approx(100.0)


def test_unvaluable_trade_is_kept_unvalued() -> None:
    """Two unknown tokens: no USD value, no guessed price, nothing learned."""
    book = PriceBook()

    valued = book.value(swap(TokenAmount("A111", 5, 6), TokenAmount("B111", 9, 6)))

    assert valued.usd_value is None
    assert valued.ticks == ()
    assert book.tokens == {}


def test_dust_trades_teach_no_price() -> None:
    """A trade under min_learn_usd is valued but does not move the learned SOL price."""
    book = PriceBook(PricingConfig(min_learn_usd=10.0))
    book.value(swap(sol(10 * 10**9), usdc(1_500 * 10**6)))

    dust = book.value(swap(sol(10**7), usdc(5 * 10**6), at=T0 + 1))  # 0.01 SOL for $5: a $500 SOL

    assert dust.usd_value == pytest.approx(5.0)
    assert book.sol_usd(T0 + 1) == pytest.approx(150.0)


def test_fresh_feed_quote_wins_over_trades_and_stale_one_gives_way() -> None:
    """SOL/USD comes from the feed while fresh; after feed_stale_s the trade-derived price is used."""
    book = PriceBook(PricingConfig(feed_stale_s=300))
    book.apply_quote(FeedQuote(WSOL_MINT, 180.0, T0, "feed"))
    book.value(swap(sol(10 * 10**9), usdc(1_500 * 10**6), at=T0 + 10))

    assert book.sol_usd(T0 + 10) == pytest.approx(180.0)
    assert book.sol_usd(T0 + 301) == pytest.approx(150.0)


def test_learned_prices_are_bounded() -> None:
    """Past max_tokens the least recently updated token is forgotten: memory stays flat."""
    book = PriceBook(PricingConfig(max_tokens=2))
    book.apply_quote(FeedQuote(WSOL_MINT, 100.0, T0, "feed"))
    for mint in ("M1", "M2", "M3"):
        book.value(swap(sol(10**9), TokenAmount(mint, 10**6, 6)))

    assert list(book.tokens) == ["M2", "M3"]


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ("not json", "not JSON"),
        ('{"symbol": "ETH/USD", "price": 1, "ts": 1}', "unsupported price symbol"),
        ('{"symbol": "SOL/USD", "price": -1, "ts": 1}', "not a positive number"),
        ('{"symbol": "SOL/USD", "price": 150.0}', "`ts`"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_bad_price_payload_names_the_problem(payload: str, fragment: str) -> None:
    """A malformed price frame raises PriceFormatError saying what is wrong."""
    with pytest.raises(PriceFormatError, match=fragment):
        parse_price_payload(payload, "feed")


def test_whale_document_follows_the_schema_shape() -> None:
    """A $300k swap is a `whale` with the seed document's fields, legs and a 0-10 strength."""
    book = PriceBook()
    hop = Hop("pumpswap", "pAMM", "pool1", sol(2000 * 10**9), bonk(1), price_impact_pct=1.0)
    valued = book.value(swap(usdc(300_000 * 10**6), sol(2000 * 10**9), hops=(hop,)))
    config = WhaleConfig(labels={WALLET: WalletLabel("Big Exchange", "exchange")})

    whale = detect(valued, config)

    assert whale is not None and whale.tier == "whale"
    doc = whale.document
    assert doc["_id"] == doc["signature"] == "sig1"
    assert doc["walletProfile"] == {"type": "exchange", "whaleCategory": "whale", "knownEntity": "Big Exchange"}
    assert doc["transactionType"] == "swap"
    assert doc["market"] == {"venue": "jupiter_v6", "route": "pumpswap", "priceImpact": 1.0}
    tokens = doc["tokens"]
    assert isinstance(tokens, list)
    assert [(t["address"], t["direction"], t["amount"]) for t in tokens] == [
        (USDC_MINT, "sell", 300_000.0),
        (WSOL_MINT, "buy", 2000.0),
    ]
    significance = doc["significance"]
    # strength: 7 * log10(300k / 50k) / 2 = 2.72 for size, 3 * 1.0 / 2.0 = 1.5 for impact
    assert significance == {"relativeSize": "very_large", "signalStrength": 4.2, "marketImpact": "medium"}


def test_strength_is_log_size_plus_impact() -> None:
    """At the threshold strength is 0, at 100x it is 7, plus up to 3 for impact at impact_high_pct."""
    config = WhaleConfig()
    floor = config.tiers[0][1]

    assert signal_strength(floor, None, config) == 0.0
    assert signal_strength(floor * 100, None, config) == 7.0
    assert signal_strength(floor * 1000, 5.0, config) == 10.0


def test_small_and_unvalued_trades_are_no_whales() -> None:
    """Below the first tier, or without a USD value, nothing is detected."""
    book = PriceBook()

    assert detect(book.value(swap(usdc(49_999 * 10**6), sol(10**9))), WhaleConfig()) is None
    assert detect(book.value(swap(TokenAmount("A1", 1, 0), TokenAmount("B1", 1, 0))), WhaleConfig()) is None


def test_one_whale_document_per_transaction() -> None:
    """Two whale activities in one transaction: the larger one is kept (the document is keyed by signature)."""
    book = PriceBook()
    small = detect(book.value(swap(usdc(60_000 * 10**6), sol(10**9))), WhaleConfig())
    large = detect(book.value(swap(usdc(90_000 * 10**6), sol(10**9))), WhaleConfig())
    assert small is not None and large is not None

    assert largest_per_transaction([small, large]) == [large]


STRATEGY = {
    "_id": "5b0f6a3e-5f6e-4c1a-9a3b-1d2c3e4f5a6b",
    "userId": "0d9b6c2a-1111-4222-8333-944455566677",
    "name": "Whale Follower Alpha",
    "type": "whale_follower",
    "status": "active",
    "parameters": {
        "minTransactionValueUsd": 100_000,
        "minWhaleInfluenceScore": 1,
        "followSizePercentage": 5,
        "maxPositionSizeUsd": 10_000,
        "allowedTokens": {"type": "denylist", "list": ["Deny111"]},
        "executionDelay": 60,
        "takeProfitPercent": 15,
        "stopLossPercent": 7.5,
        "timeBasedExit": {"enabled": True, "maxHoldingTimeHours": 48},
    },
    "filters": {"transactionTypes": ["swap"], "excludedWallets": ["Excluded111"], "minimumLiquidityUsd": 500_000},
}


def whale_buying_bonk(usd: float, trader: str = WALLET, token: str = BONK) -> object:
    book = PriceBook()
    book.apply_quote(FeedQuote(WSOL_MINT, 100.0, T0, "feed"))
    valued = book.value(swap(sol(int(usd / 100 * 10**9)), TokenAmount(token, 10**12, 5), trader=trader))
    return detect(valued, WhaleConfig())


def test_whale_follower_signal_fields() -> None:
    """A $500k SOL->BONK whale gives `buy BONK` with TP/SL around the implied price and a 48 h expiry."""
    (strategy,) = load_strategies([STRATEGY], default_holding_s=3600)
    whale = whale_buying_bonk(500_000)
    assert whale is not None

    signal = evaluate(strategy, whale)  # type: ignore[arg-type]

    assert signal is not None
    price = 500_000 / (10**12 / 10**5)
    assert (signal.token_address, signal.direction) == (BONK, "buy")
    assert signal.signal_id == signal_id(STRATEGY["_id"], "sig1")  # type: ignore[arg-type]
    assert signal.price == pytest.approx(price)
    assert signal.take_profit == pytest.approx(price * 1.15)
    assert signal.stop_loss == pytest.approx(price * 0.925)
    assert signal.created_at == T0
    assert signal.expires_at == T0 + 60 + 48 * 3600
    assert signal.metadata["position_size_usd"] == 10_000
    assert signal.metadata["liquidity_checked"] is False


@pytest.mark.parametrize(
    ("usd", "trader", "token", "liquidity"),
    [
        (90_000, WALLET, BONK, None),  # below minTransactionValueUsd
        (500_000, "Excluded111", BONK, None),  # excluded wallet
        (500_000, WALLET, "Deny111", None),  # denylisted token
        (500_000, WALLET, BONK, 100_000.0),  # pool below minimumLiquidityUsd
    ],
)
def test_whale_follower_rules_reject(usd: float, trader: str, token: str, liquidity: float | None) -> None:
    """Each filter of the strategy document rejects the whale it should."""
    strategy = WhaleFollower.from_document(STRATEGY, default_holding_s=3600)
    whale = whale_buying_bonk(usd, trader, token)
    if whale is None:
        return  # below every whale tier: nothing for a strategy to see, which is the rejection
    assert evaluate(strategy, whale, liquidity_usd=liquidity) is None  # type: ignore[arg-type]


def test_signal_ids_are_deterministic_and_distinct() -> None:
    """The same strategy and signature give the same id; another signature another id."""
    assert signal_id("s", "a") == signal_id("s", "a")
    assert signal_id("s", "a") != signal_id("s", "b")
    assert signal_id("s", "a") != signal_id("t", "a")


def test_ticks_carry_the_trades_natural_key() -> None:
    """Each tick names the trade it came from (signature and instruction index), whatever arrived before it."""
    book = PriceBook()
    book.apply_quote(FeedQuote(WSOL_MINT, 100.0, T0, "feed"))

    first = book.value(swap(sol(10**9), bonk(10**10), signature="a"))
    second = book.value(swap(sol(10**9), bonk(10**10), signature="b"))

    assert [(t.token, t.signature, t.index) for t in first.ticks] == [
        (BONK, "a", InstructionIndex(0, None)),
        (WSOL_MINT, "a", InstructionIndex(0, None)),
    ]
    assert [(t.token, t.signature) for t in second.ticks] == [(BONK, "b"), (WSOL_MINT, "b")]
    assert not first.ticks[0].is_quote and book.quote_tick(FeedQuote(WSOL_MINT, 1.0, T0, "feed")).is_quote


def test_settings_are_not_kept_with_the_learned_prices() -> None:
    """The valuation's snapshot holds learned prices only; one of the former layout keeps its prices, not settings."""
    import pickle

    from quantbot.analytics import Analytics
    from quantbot.pricing import LearnedPrices
    from quantbot.steps import Valuation

    valuation = Valuation()
    valuation.apply(FeedQuote(WSOL_MINT, 100.0, T0, "feed"), PricingConfig(min_learn_usd=5.0))
    assert b"PricingConfig" not in pickle.dumps(valuation)

    former = PriceBook.__new__(PriceBook)
    former.__dict__.update(
        config=PricingConfig(min_learn_usd=5.0), feed_sol=(100.0, T0), trade_sol=None, tokens={BONK: (2.0, T0)}
    )
    old = Valuation.__new__(Valuation)
    old.__dict__["book"] = former
    restored = pickle.loads(pickle.dumps(old))  # noqa: S301 - the test's own bytes, as bytewax keeps a snapshot

    assert restored.__dict__ == {
        "learned": LearnedPrices((100.0, T0), None, {BONK: (2.0, T0)}),
        "analytics": Analytics(),
    }


def test_labels_file_names_known_wallets(tmp_path: Path) -> None:
    """A labels file gives a wallet its name and type; a malformed entry is an error naming it."""
    from quantbot.whales import load_labels

    path = tmp_path / "labels.toml"
    path.write_text(f'[labels.{WALLET}]\nname = "Big Exchange"\ntype = "exchange"\n')

    assert load_labels(path) == {WALLET: WalletLabel("Big Exchange", "exchange")}

    path.write_text("[labels.Somebody]\ntype = 3\n")
    with pytest.raises(ValueError, match="Somebody"):
        load_labels(path)


def test_a_hops_impact_comes_from_its_pools_reserves_where_the_event_has_no_figure() -> None:
    """Reserves 1,100/900 after swapping 100 in for 100 out: the pool's price fell from 1.0 to 0.818, 18.18 %."""
    from quantbot.models import Hop
    from quantbot.whales import hop_impact

    def hop(impact: float | None, reserves: tuple[int, int] | None) -> Hop:
        return Hop(
            "raydium_amm_v4",
            "675kPX9MHTjS2zt1qfr1NYHuzeLXfQM9H24wFSUt1Mp8",
            "pool",
            TokenAmount("in", 100, 6),
            TokenAmount("out", 100, 6),
            impact,
            None if reserves is None else (TokenAmount("in", reserves[0], 6), TokenAmount("out", reserves[1], 6)),
        )

    assert hop_impact(hop(None, (1_100, 900))) == pytest.approx(100 * (1 - (900 / 1_100)))
    assert hop_impact(hop(-2.5, (1_100, 900))) == 2.5  # the event's own figure first
    assert hop_impact(hop(None, None)) is None
    assert hop_impact(hop(None, (50, 900))) is None  # fewer reserves than the hop put in: not this pool's
