"""Raydium Launchpad (LaunchLab, bonk.fun curves): trades and pool creation, from its Anchor events.

Encoding: `TradeEvent` and `PoolCreateEvent` as CPI-event instructions (`emit_cpi!`). The trade event
carries no mints; they come from the trade instruction's accounts. Later versions append the creator
fee and `exact_in`. Layouts: the program's IDL (`raydium_launchpad.json`).

Reserves (`Hop.reserves`): a constant-product curve trades along x·y=k on its curve reserves, the base side
`virtual_base - real_base` and the quote side `virtual_quote + real_quote` (Raydium's SDK,
`LaunchPadConstantProductCurve`); `TradeEvent` carries the virtual amounts and the real ones after the trade,
so those are the reserves after it. Like Pump.fun's, they include the curve's virtual offset: they are the
depth the curve prices with. A pool may instead use a fixed-price or linear curve, which the event does not
name: a trade is taken for a constant-product one only when it kept the product of the curve reserves, to
within the program's rounding (`CURVE_ROUNDING_UNITS`); otherwise the hop has no reserves.
"""

from __future__ import annotations

from quantbot.models import Activity, Hop
from quantbot.solana.borsh import Layout
from quantbot.solana.context import (
    Context,
    EventHandler,
    Invocation,
    account,
    event_activities,
    hop_reserves,
    pool_create_handler,
    swap_handler,
)
from quantbot.solana.events import Event, EventSpec, ProgramEvents, event_discriminator, named_event
from quantbot.solana.transaction import Instruction

PROGRAM_ID = "LanMV9sAd7wArD4vJFi2qDdfnVhFxYSUg6eADduJ3uj"
NAME = "raydium_launchpad"
# buy_exact_in/buy_exact_out/sell_exact_in/sell_exact_out accounts: payer, authority, global_config,
# platform_config, pool_state, user_base_token, user_quote_token, base_vault, quote_vault,
# base_token_mint, quote_token_mint, ...
POOL_ACCOUNT, BASE_MINT_ACCOUNT, QUOTE_MINT_ACCOUNT = 4, 9, 10
DIRECTION_BUY = 0
"""`TradeDirection::Buy` (quote in, base out); 1 is `Sell`."""

_TRADE_FIELDS = [
    ("pool_state", "pubkey"),
    ("total_base_sell", "u64"),
    ("virtual_base", "u64"),
    ("virtual_quote", "u64"),
    ("real_base_before", "u64"),
    ("real_quote_before", "u64"),
    ("real_base_after", "u64"),
    ("real_quote_after", "u64"),
    ("amount_in", "u64"),
    ("amount_out", "u64"),
    ("protocol_fee", "u64"),
    ("platform_fee", "u64"),
]
TRADE_EVENT = Layout(
    "TradeEvent",
    [
        *_TRADE_FIELDS,
        ("creator_fee", "u64"),
        ("share_fee", "u64"),
        ("trade_direction", "enum"),
        ("pool_status", "enum"),
        ("exact_in", "bool"),
    ],
)
TRADE_EVENT_V1 = Layout(
    "TradeEvent",
    [*_TRADE_FIELDS, ("share_fee", "u64"), ("trade_direction", "enum"), ("pool_status", "enum")],
)
CURVE_ROUNDING_UNITS = 2
"""How many raw units of either amount the program's rounding may be off by on a constant-product trade; each
unit moves the product of the curve reserves by about the other side's reserve. Rounding favours the pool
(the product never shrinks); on the corpus a trade is off by under one unit (`3USu3YAsg2qB`: 0.68). A
fixed-price or linear curve's trade moves the product by a share of its size, far beyond this."""
_CURRENT_TRADE_SIZE = 32 + 13 * 8 + 3
"""Payload size of the current `TradeEvent` (pool key, 13 u64s, two enums and a bool)."""


def _decode_trade(data: bytes, offset: int) -> dict[str, object] | None:
    """Decode either `TradeEvent` version: the current one is recognised by its payload size."""
    if len(data) - offset >= _CURRENT_TRADE_SIZE:
        return TRADE_EVENT.decode(data, offset)
    return TRADE_EVENT_V1.decode(data, offset)


EVENTS = ProgramEvents(
    PROGRAM_ID,
    NAME,
    (
        EventSpec("TradeEvent", event_discriminator("TradeEvent"), _decode_trade),
        named_event("PoolCreateEvent"),
    ),
)


def pool_of(ix: Instruction) -> str | None:
    """The pool state a trade instruction trades against."""
    return account(ix, POOL_ACCOUNT)


def decode(inv: Invocation, ctx: Context) -> list[Activity] | None:
    """Trades and pool creations of one Launchpad invocation."""
    return event_activities(inv, ctx, PROGRAM_ID, HANDLERS)


def reserves_after(event: Event) -> tuple[int, int] | None:
    """The curve reserves after a `TradeEvent`'s trade, (input side, output side): quote first for a buy; None
    for another event, or for a trade that did not keep the constant product (see the module docstring)."""
    if event.name != "TradeEvent":
        return None
    f = event.fields
    virtual_base, virtual_quote = f["virtual_base"], f["virtual_quote"]
    base_before, quote_before = virtual_base - f["real_base_before"], virtual_quote + f["real_quote_before"]
    base, quote = virtual_base - f["real_base_after"], virtual_quote + f["real_quote_after"]
    if base <= 0 or quote <= 0 or base_before <= 0 or quote_before <= 0:
        return None
    growth = base * quote - base_before * quote_before
    if not 0 <= growth <= CURVE_ROUNDING_UNITS * (base + quote):
        return None
    return (quote, base) if f["trade_direction"] == DIRECTION_BUY else (base, quote)


def trade_hop(event: Event, ix: Instruction | None, ctx: Context) -> Hop | None:
    """The hop of a `TradeEvent`, with mints from the trade instruction."""
    base = account(ix, BASE_MINT_ACCOUNT)
    quote = account(ix, QUOTE_MINT_ACCOUNT)
    if base is None or quote is None:
        return None
    f = event.fields
    mint_in, mint_out = (quote, base) if f["trade_direction"] == DIRECTION_BUY else (base, quote)
    given, got = ctx.amount(mint_in, f["amount_in"]), ctx.amount(mint_out, f["amount_out"])
    reserves = hop_reserves(given, got, reserves_after(event))
    return Hop(NAME, PROGRAM_ID, f["pool_state"], given, got, None, reserves)


HANDLERS: dict[str, EventHandler] = {
    "TradeEvent": swap_handler(NAME, trade_hop),
    "PoolCreateEvent": pool_create_handler(NAME),
}
