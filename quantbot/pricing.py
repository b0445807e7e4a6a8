"""USD valuation of trades, and the token prices the flow learns from them.

A swap is valued by one leg, the most trustworthy one it has:

1. a stablecoin leg (USDC, USDT) at face value;
2. a SOL leg (native or wrapped) at the current SOL/USD;
3. a leg whose token has a known USD price.

**Precedence and freshness.** A token's USD price (SOL's included) is, in this order:

1. the quote of the first price feed in `feed_precedence` (default `pyth`, `birdeye`, `jupiter`; a feed
   not listed, such as the home-made frame of older recordings, comes after the listed ones) whose
   latest quote is fresh: at most `source_stale_s[source]` (default `feed_stale_s`) older than the
   trade's block time. Feeds aggregate every venue and Pyth's publishers, so a fresh one is preferred
   to the flow's own last trade, which one pool's price impact may have moved;
2. else the price the flow learned from on-chain trades (`chain`): for SOL the last SOL/stablecoin trade
   at any age, for other tokens the last valued trade of at most `token_stale_s` ago;
3. else, for SOL only, the newest feed quote whatever its age (a stale price beats none for the
   majors' valuation; a long-tail token's stale price is not used).

**Disagreement.** When a feed's quote and the chain's price of one token, both fresh, differ by more
than `disagreement_share` of the feed's price, the valuation returns a `PriceDisagreement` (counted,
and reported as a `price_disagreement` system event at most once per token every
`disagreement_every_s` of block time): the two are never averaged, the precedence above decides.

A trade with no such leg keeps `usd_value=None`: it is stored unvalued, never guessed. A valued trade
teaches the price of its other token (value / amount), unless it is too small to be trusted
(`min_learn_usd`). All times are block times, so a replay learns exactly what the first run learned.

`LearnedPrices` is the state: what the stream taught, and nothing else. The flow keeps one per worker
under a single key and snapshots it, so a restarted flow resumes with the prices it had; the settings
(`PricingConfig`) are not state, they come from the profile at every start, and a `PriceBook` joins the
two for each item.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from quantbot.bounds import ParseConfig, time_problem
from quantbot.models import (
    WSOL_MINT,
    Activity,
    ActivityKind,
    InstructionIndex,
    PriceTick,
    TokenAmount,
    ValuedActivity,
    record,
)
from quantbot.units import SECONDS_PER_DAY

USDC_MINT = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
USDT_MINT = "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB"
SOL_DECIMALS = 9
KNOWN_SYMBOLS = {WSOL_MINT: "SOL", USDC_MINT: "USDC", USDT_MINT: "USDT"}
KNOWN_DECIMALS = {WSOL_MINT: SOL_DECIMALS, USDC_MINT: 6, USDT_MINT: 6}


@dataclass(frozen=True, slots=True)
class PricingConfig:
    """Thresholds of the valuation; every one is a `[pricing]` configuration key."""

    stable_mints: frozenset[str] = frozenset({USDC_MINT, USDT_MINT})
    min_learn_usd: float = 10.0
    """Trades worth less than this teach no price: dust trades are where prices are most wrong."""
    feed_stale_s: int = 300
    """A SOL/USD feed quote older than this (in block time) gives way to trade-derived prices."""
    token_stale_s: int = SECONDS_PER_DAY
    """A learned token price older than this is not used to value a trade."""
    max_tokens: int = 200_000
    """Learned prices kept at most; the least recently updated are forgotten first (flat memory)."""
    feed_precedence: tuple[str, ...] = ("pyth", "birdeye", "jupiter")
    """Price feeds in order of trust: the first one with a fresh quote prices a token."""
    source_stale_s: Mapping[str, int] = field(default_factory=dict)
    """Per feed source, how old (in block time) its quote may be and still be used; others: `feed_stale_s`."""
    disagreement_share: float = 0.05
    """A feed and the chain differing by more than this share of the feed's price disagree."""
    disagreement_every_s: int = 60
    """A token's disagreement is reported as a system event at most once per this many seconds of block time."""

    def stale_s(self, source: str) -> int:
        """How old a quote of `source` may be and still be used."""
        return self.source_stale_s.get(source, self.feed_stale_s)


_DEFAULT_BOUNDS = ParseConfig()


class PriceFormatError(ValueError):
    """A price-feed frame is not a price quote."""


@record
class FeedQuote:
    """One price of a price-feed message: a token (SOL for `SOL/USD`) at a USD price at a time.

    `confidence` is the feed's own uncertainty of the price, in USD, where it gives one (Pyth's `conf`);
    `received_ns` is its frame's receive time (0: unknown), which is not part of what the quote says.
    """

    token: str
    price_usd: float
    ts: int
    source: str
    confidence: float | None = None
    received_ns: int = field(default=0, compare=False)


CHAIN = "chain"
"""The source of a price learned from on-chain trades, in a disagreement that does not name the venue."""


@dataclass(frozen=True, slots=True)
class PriceDisagreement:
    """A feed's quote and the chain's price of one token, both fresh, further apart than allowed.

    Attributes:
        token: the mint.
        feed_source: the feed (`pyth`, `birdeye`, ...).
        feed_price: its quote.
        chain_source: the venue whose trade implied the chain's price, or `chain`.
        chain_price: the price learned from trades.
        at: the block time (the later of the two) it was noticed at.
        share: |feed - chain| / feed.
        report: whether this one is written as a system event (one per token per `disagreement_every_s`).
    """

    token: str
    feed_source: str
    feed_price: float
    chain_source: str
    chain_price: float
    at: int
    share: float
    report: bool


def parse_price_payload(
    payload: str, source: str, received_ns: int = 0, bounds: ParseConfig | None = None
) -> FeedQuote:
    """Parse a price frame: `{"symbol": "SOL/USD" | "token": mint, "price": float, "ts": unix seconds}`.

    Args:
        payload: the frame's text.
        source: the feed, kept as the quote's source.
        received_ns: the frame's receive time (0: unknown), which `ts` may not be far ahead of.
        bounds: what `ts` may be (`quantbot.bounds.time_problem`); default `ParseConfig()`.

    Raises:
        PriceFormatError: naming what is wrong (a `ts` in milliseconds, before Solana's genesis or
            ahead of the receive time included).
    """
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PriceFormatError(f"price payload is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PriceFormatError("price payload is not a JSON object")
    symbol, token = data.get("symbol"), data.get("token")
    if symbol is not None:
        if symbol not in ("SOL/USD", "SOL/USDC", "SOL/USDT"):
            raise PriceFormatError(f"unsupported price symbol `{symbol}`")
        token = WSOL_MINT
    if not isinstance(token, str) or not token:
        raise PriceFormatError("price payload has neither `symbol` nor `token`")
    price, ts = data.get("price"), data.get("ts")
    if not isinstance(price, int | float) or isinstance(price, bool) or not price > 0:
        raise PriceFormatError(f"price `{price}` is not a positive number")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise PriceFormatError(f"`ts` `{ts}` is not an integer of Unix seconds")
    problem = time_problem(ts, "ts", received_ns, bounds or _DEFAULT_BOUNDS)
    if problem is not None:
        raise PriceFormatError(problem)
    return FeedQuote(token=token, price_usd=float(price), ts=ts, source=source, received_ns=received_ns)


def ui_amount(amount: TokenAmount) -> float | None:
    """The amount in whole tokens, or None when the mint's decimals are unknown."""
    decimals = amount.decimals if amount.decimals is not None else KNOWN_DECIMALS.get(amount.mint)
    if decimals is None:
        return None
    scale: int = 10**decimals
    return amount.amount / scale


@dataclass
class LearnedPrices:
    """What the stream taught of prices, each with the block time it held at: the valuation's state.

    Attributes:
        feed_sol: the last SOL/USD of a price feed, in snapshots taken before feeds had sources (moved
            into `quotes` under source `feed` when read).
        trade_sol: the last SOL/USD implied by a SOL/stablecoin trade.
        tokens: the last USD price of every token seen trade, least recently updated first.
        quotes: per token (least recently quoted first), per feed source, its latest quote.
        disagreed: per token, the block time its last disagreement was reported at.
    """

    feed_sol: tuple[float, int] | None = None
    trade_sol: tuple[float, int] | None = None
    tokens: OrderedDict[str, tuple[float, int]] = field(default_factory=OrderedDict)
    quotes: OrderedDict[str, dict[str, tuple[float, int]]] = field(default_factory=OrderedDict)
    disagreed: dict[str, int] = field(default_factory=dict)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a snapshot; one taken before quotes had sources has none of the newer fields."""
        self.__dict__.update({"quotes": OrderedDict(), "disagreed": {}, **state})


class PriceBook:
    """Prices under a configuration: what the flow learned (`LearnedPrices`), read and extended by its settings.

    Args:
        config: the thresholds, from the settings of this start.
        learned: the prices learned so far (from a snapshot); None starts with none.
    """

    def __init__(self, config: PricingConfig | None = None, learned: LearnedPrices | None = None) -> None:
        self.config = config or PricingConfig()
        self.learned = learned if learned is not None else LearnedPrices()
        if self.learned.feed_sol is not None:  # a snapshot of the former layout: its feed had no name
            price, at = self.learned.feed_sol
            self.learned.quotes.setdefault(WSOL_MINT, {}).setdefault("feed", (price, at))
            self.learned.feed_sol = None

    @property
    def tokens(self) -> OrderedDict[str, tuple[float, int]]:
        """The learned token prices, least recently updated first."""
        return self.learned.tokens

    def _ranked_sources(self, quoted: dict[str, tuple[float, int]]) -> list[str]:
        """The feeds quoting a token, in precedence order: the listed ones, then the others (newest first)."""
        precedence = self.config.feed_precedence
        listed = [source for source in precedence if source in quoted]
        others = sorted((s for s in quoted if s not in precedence), key=lambda s: quoted[s][1], reverse=True)
        return listed + others

    def feed_quote(self, mint: str, at: int) -> tuple[str, float, int] | None:
        """(source, price, time) of the first fresh feed quote of `mint` at block time `at`, by precedence."""
        quoted = self.learned.quotes.get(mint)
        if not quoted:
            return None
        if len(quoted) == 1:  # one feed quotes it (the usual case): no ranking to do, on every trade
            ((source, (price, ts)),) = quoted.items()
            return (source, price, ts) if at - ts <= self.config.stale_s(source) else None
        for source in self._ranked_sources(quoted):
            price, ts = quoted[source]
            if at - ts <= self.config.stale_s(source):
                return source, price, ts
        return None

    def sol_usd(self, at: int) -> float | None:
        """SOL/USD at block time `at`: a fresh feed's by precedence, else the last trade's, else a stale feed's."""
        fresh = self.feed_quote(WSOL_MINT, at)
        if fresh is not None:
            return fresh[1]
        if self.learned.trade_sol is not None:
            return self.learned.trade_sol[0]
        quoted = self.learned.quotes.get(WSOL_MINT)
        if quoted:
            return max(quoted.values(), key=lambda quote: quote[1])[0]
        return None

    def token_usd(self, mint: str, at: int) -> float | None:
        """The USD unit price of `mint` usable at block time `at`, or None."""
        if mint in self.config.stable_mints:
            return 1.0
        if mint == WSOL_MINT:
            return self.sol_usd(at)
        fresh = self.feed_quote(mint, at)
        if fresh is not None:
            return fresh[1]
        known = self.learned.tokens.get(mint)
        if known is None or at - known[1] > self.config.token_stale_s:
            return None
        price: float = known[0]
        return price

    def apply_quote(self, quote: FeedQuote) -> PriceDisagreement | None:
        """Take a price-feed quote (per source, the newest wins); returns its disagreement with the chain, if any."""
        quotes = self.learned.quotes
        quoted = quotes.setdefault(quote.token, {})
        known = quoted.get(quote.source)
        if known is None or quote.ts >= known[1]:
            quoted[quote.source] = (quote.price_usd, quote.ts)
        quotes.move_to_end(quote.token)
        while len(quotes) > self.config.max_tokens:
            quotes.popitem(last=False)
        chain = self.learned.trade_sol if quote.token == WSOL_MINT else self.learned.tokens.get(quote.token)
        if chain is None or abs(quote.ts - chain[1]) > self.config.stale_s(quote.source):
            return None
        return self._disagreement(
            quote.token, (quote.source, quote.price_usd), (CHAIN, chain[0]), max(quote.ts, chain[1])
        )

    def _disagreement(
        self, token: str, feed: tuple[str, float], chain: tuple[str, float], at: int
    ) -> PriceDisagreement | None:
        """The disagreement of a feed's (source, price) and the chain's (venue, price) of `token`, if they do."""
        (feed_source, feed_price), (chain_source, chain_price) = feed, chain
        share = abs(feed_price - chain_price) / feed_price
        if share <= self.config.disagreement_share:
            return None
        last = self.learned.disagreed.get(token)
        report = last is None or at - last >= self.config.disagreement_every_s
        if report:
            self.learned.disagreed[token] = at
            if len(self.learned.disagreed) > self.config.max_tokens:
                self.learned.disagreed.pop(next(iter(self.learned.disagreed)))
        return PriceDisagreement(token, feed_source, feed_price, chain_source, chain_price, at, share, report)

    def _check_trade(self, mint: str, implied: float, venue: str, at: int) -> PriceDisagreement | None:
        fresh = self.feed_quote(mint, at)
        if fresh is None:
            return None
        source, price, _ = fresh
        return self._disagreement(mint, (source, price), (venue, implied), at)

    def _learn(self, mint: str, price: float, at: int) -> None:
        tokens = self.learned.tokens
        tokens[mint] = (price, at)
        tokens.move_to_end(mint)
        while len(tokens) > self.config.max_tokens:
            tokens.popitem(last=False)

    def _leg_value(self, leg: TokenAmount, at: int) -> tuple[int, float] | None:
        """(rank, USD value) of a leg: rank 0 stable, 1 SOL, 2 learned token; None if unvaluable."""
        amount = ui_amount(leg)
        if amount is None:
            return None
        if leg.mint in self.config.stable_mints:
            return 0, amount
        if leg.mint == WSOL_MINT:
            sol = self.sol_usd(at)
            return None if sol is None else (1, amount * sol)
        price = self.token_usd(leg.mint, at)
        return None if price is None else (2, amount * price)

    def value(self, activity: Activity, disagreements: list[PriceDisagreement] | None = None) -> ValuedActivity:
        """Value `activity` in USD and learn from it; returns the valued activity and the prices it implies.

        Args:
            activity: the activity.
            disagreements: where a trade's implied price that disagrees with a fresh feed quote is added.
        """
        at = activity.block_time or 0
        legs = [leg for leg in (activity.input, activity.output) if leg is not None and leg.amount > 0]
        valued = [(v, leg) for leg in legs if (v := self._leg_value(leg, at)) is not None]
        if not valued:
            return ValuedActivity(activity, None, self.sol_usd(at))
        (_, usd), reference = min(valued, key=lambda item: item[0][0])
        ticks: list[PriceTick] = []
        if activity.kind is ActivityKind.SWAP:
            for leg in legs:
                amount = ui_amount(leg)
                if leg is reference or amount is None or amount <= 0 or leg.mint in self.config.stable_mints:
                    continue
                implied = usd / amount
                if usd >= self.config.min_learn_usd:
                    learned = leg.mint != WSOL_MINT or reference.mint in self.config.stable_mints
                    if leg.mint == WSOL_MINT:
                        if learned:
                            self.learned.trade_sol = (implied, at)
                    else:
                        self._learn(leg.mint, implied, at)
                    if learned and disagreements is not None:
                        found = self._check_trade(leg.mint, implied, activity.venue, at)
                        if found is not None:
                            disagreements.append(found)
                ticks.append(self._tick(activity, leg.mint, implied, usd))
            if reference.mint not in self.config.stable_mints:
                unit = self.token_usd(reference.mint, at)
                if unit is not None:
                    ticks.append(self._tick(activity, reference.mint, unit, usd))
        return ValuedActivity(activity, usd, self.sol_usd(at), tuple(ticks))

    def _tick(self, activity: Activity, mint: str, price: float, usd: float) -> PriceTick:
        block_time = activity.block_time or 0
        return PriceTick(
            token=mint,
            price_usd=price,
            block_time=block_time,
            source=activity.venue,
            volume_usd=usd,
            signature=activity.signature,
            index=activity.index,
            symbol=KNOWN_SYMBOLS.get(mint),
        )

    def quote_tick(self, quote: FeedQuote) -> PriceTick:
        """The price tick a feed quote writes (volume 0: a quote is not a trade)."""
        return PriceTick(
            token=quote.token,
            price_usd=quote.price_usd,
            block_time=quote.ts,
            source=quote.source,
            volume_usd=0.0,
            signature="",
            index=InstructionIndex(0),
            symbol=KNOWN_SYMBOLS.get(quote.token),
        )
