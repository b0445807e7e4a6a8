"""Pools the flow saw trade: their latest reserves, 24 h volume, liquidity in USD and a $1,000 trade's impact.

A pool is known by the hops that went through it (`Hop.pool`); its reserves by the latest hop whose event
carried them (`Hop.reserves`: the constant-product pools). Reserves are raw amounts: they are valued in USD
at the prices of the moment they are looked at, never at the prices of the trade that reported them.

- **Liquidity** (`liquidityUsd`, `token_prices.liquidity`): the USD value of both reserves. A side whose
  price is unknown is valued at the pool's own price, where the two sides are worth the same (constant
  product); with neither side priced the liquidity is unknown.
- **Price impact of $1,000** (`priceImpact1000usd`, percent): how much worse than the pool's spot price a
  $1,000 purchase of the token executes, constant product without fees: buying with `d` of the other side
  (reserve `y`) gets `x*d/(y+d)` tokens, an average price `(y+d)/x` against the spot `y/x`, so the impact is
  `100 * d / y` with `y` the other side's value in USD.
"""

from __future__ import annotations

from collections.abc import Callable

from quantbot.analytics.slotted import Slotted
from quantbot.analytics.window import SumWindow
from quantbot.models import TokenAmount
from quantbot.pricing import KNOWN_DECIMALS

IMPACT_PROBE_USD = 1_000.0
"""The trade size of `priceImpact1000usd` (the schema's field name says it)."""

PriceOf = Callable[[str], float | None]
"""A mint's current USD price, or None."""

DecimalsOf = Callable[[str], int | None]
"""A mint's decimals where the flow knows them (token facts), or None."""


class Pool(Slotted):
    """What the flow knows of one pool.

    Attributes:
        address: the pool's account.
        venue: the program's name (`raydium_amm_v4`, `pumpswap`, ...): the exchange's `name`.
        reserves: the latest reserves seen, one amount per side; None until a hop carried them.
        units: those reserves in whole tokens, per side, where the amount carries its decimals (else None:
            the mint's facts may give them when it is valued).
        reserves_at: the feed time of those reserves.
        volume: the pool's USD volume (its hops' values) over the window.
    """

    __slots__ = ("address", "reserves", "reserves_at", "units", "venue", "volume")

    def __init__(self, address: str, venue: str) -> None:
        self.address = address
        self.venue = venue
        self.reserves: tuple[TokenAmount, TokenAmount] | None = None
        self.units: tuple[float | None, float | None] = (None, None)
        self.reserves_at = 0
        self.volume = SumWindow()

    def set_reserves(self, reserves: tuple[TokenAmount, TokenAmount], at: int) -> None:
        """Take the reserves a hop reported at feed time `at`."""
        self.reserves, self.reserves_at = reserves, at
        first, second = reserves
        # The amounts' own decimals (the decoders give them); the general `_units` at valuation otherwise.
        self.units = (
            None if first.decimals is None else first.amount / 10**first.decimals,
            None if second.decimals is None else second.amount / 10**second.decimals,
        )


def _units(amount: TokenAmount, decimals_of: DecimalsOf | None = None) -> float | None:
    """A raw amount in whole tokens: by its own decimals, else the well-known mints', else the facts'; or None."""
    decimals = amount.decimals
    if decimals is None:
        decimals = KNOWN_DECIMALS.get(amount.mint)
        if decimals is None:
            decimals = None if decimals_of is None else decimals_of(amount.mint)
            if decimals is None:
                return None
    scale: int = 10**decimals
    return amount.amount / scale


def reserve_values(pool: Pool, price_of: PriceOf, decimals_of: DecimalsOf) -> tuple[float, float] | None:
    """Both sides' USD values at current prices; an unpriced side at the pool's own price (the other side's value).

    None without reserves, or with neither side valued.
    """
    reserves = pool.reserves
    if reserves is None:
        return None
    units_first, units_second = pool.units
    first = _side_usd(reserves[0], units_first, price_of, decimals_of)
    second = _side_usd(reserves[1], units_second, price_of, decimals_of)
    if first is None:
        return None if second is None else (second, second)
    return first, first if second is None else second


def _side_usd(
    reserve: TokenAmount, units: float | None, price_of: PriceOf, decimals_of: DecimalsOf | None
) -> float | None:
    """One side of a pool in USD: its units (`units` when known, else from the reserve) at its token's price."""
    price = price_of(reserve.mint)
    if price is None:
        return None
    if units is None:
        units = _units(reserve, decimals_of)
    return None if units is None else units * price


def liquidity_usd(pool: Pool, price_of: PriceOf, decimals_of: DecimalsOf) -> float | None:
    """The USD value of the pool's latest reserves, or None (no reserves seen, or no side valued)."""
    values = reserve_values(pool, price_of, decimals_of)
    return None if values is None else values[0] + values[1]


def impact_1000_usd(pool: Pool, token: str, price_of: PriceOf, decimals_of: DecimalsOf) -> float | None:
    """Percent: a $1,000 purchase of `token` from the pool against its spot price (module docstring); or None."""
    values = reserve_values(pool, price_of, decimals_of)
    if values is None or pool.reserves is None:
        return None
    first, second = pool.reserves
    if first.mint == token:
        other = values[1]
    elif second.mint == token:
        other = values[0]
    else:
        return None
    if other <= 0:
        return None
    return 100.0 * IMPACT_PROBE_USD / other
