"""USD valuation of trades, and the token prices the flow learns from them.

A swap is valued by one leg, the most trustworthy one it has:

1. a stablecoin leg (USDC, USDT) at face value;
2. a SOL leg (native or wrapped) at the current SOL/USD: from price-feed frames while they are fresh,
   else learned from SOL/stablecoin trades;
3. a leg whose token has a last known USD price, learned earlier in the flow.

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
from dataclasses import dataclass, field

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


_DEFAULT_BOUNDS = ParseConfig()


class PriceFormatError(ValueError):
    """A price-feed frame is not a price quote."""


@dataclass(frozen=True, slots=True)
class FeedQuote:
    """One price-feed message: a token (SOL for `SOL/USD`) at a USD price at a time."""

    token: str
    price_usd: float
    ts: int
    source: str


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
    return FeedQuote(token=token, price_usd=float(price), ts=ts, source=source)


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
        feed_sol: the last SOL/USD of a price feed.
        trade_sol: the last SOL/USD implied by a SOL/stablecoin trade.
        tokens: the last USD price of every token seen trade, least recently updated first.
    """

    feed_sol: tuple[float, int] | None = None
    trade_sol: tuple[float, int] | None = None
    tokens: OrderedDict[str, tuple[float, int]] = field(default_factory=OrderedDict)


class PriceBook:
    """Prices under a configuration: what the flow learned (`LearnedPrices`), read and extended by its settings.

    Args:
        config: the thresholds, from the settings of this start.
        learned: the prices learned so far (from a snapshot); None starts with none.
    """

    def __init__(self, config: PricingConfig | None = None, learned: LearnedPrices | None = None) -> None:
        self.config = config or PricingConfig()
        self.learned = learned if learned is not None else LearnedPrices()

    @property
    def tokens(self) -> OrderedDict[str, tuple[float, int]]:
        """The learned token prices, least recently updated first."""
        return self.learned.tokens

    def sol_usd(self, at: int) -> float | None:
        """SOL/USD at block time `at`: the feed's while fresh, else the last trade-derived one."""
        feed_sol, trade_sol = self.learned.feed_sol, self.learned.trade_sol
        if feed_sol is not None and at - feed_sol[1] <= self.config.feed_stale_s:
            return feed_sol[0]
        if trade_sol is not None:
            return trade_sol[0]
        return feed_sol[0] if feed_sol is not None else None

    def token_usd(self, mint: str, at: int) -> float | None:
        """The USD unit price of `mint` usable at block time `at`, or None."""
        if mint in self.config.stable_mints:
            return 1.0
        if mint == WSOL_MINT:
            return self.sol_usd(at)
        known = self.learned.tokens.get(mint)
        if known is None or at - known[1] > self.config.token_stale_s:
            return None
        price: float = known[0]
        return price

    def apply_quote(self, quote: FeedQuote) -> None:
        """Take a price-feed quote (newest wins)."""
        if quote.token == WSOL_MINT:
            if self.learned.feed_sol is None or quote.ts >= self.learned.feed_sol[1]:
                self.learned.feed_sol = (quote.price_usd, quote.ts)
        else:
            self._learn(quote.token, quote.price_usd, quote.ts)

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

    def value(self, activity: Activity) -> ValuedActivity:
        """Value `activity` in USD and learn from it; returns the valued activity and the prices it implies."""
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
                    if leg.mint == WSOL_MINT:
                        if reference.mint in self.config.stable_mints:
                            self.learned.trade_sol = (implied, at)
                    else:
                        self._learn(leg.mint, implied, at)
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
