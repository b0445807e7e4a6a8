"""Meteora Dynamic Bonding Curve (DBC): curve trades and pool creation, from its Anchor events.

Encoding: `EvtSwap`/`EvtSwap2` and `EvtInitializePool` as CPI-event instructions (`emit_cpi!`). The
events carry the pool and amounts; mints come from the swap instruction's `base_mint`/`quote_mint`
accounts. Layouts: the program's IDL (`dynamic_bonding_curve.json`).

Reserves: none (`Hop.reserves` is None). The curve is a sequence of concentrated-liquidity segments in
square-root price, not a product of two reserves, and its events report the next square-root price only.
"""

from __future__ import annotations

from typing import Any

from quantbot.models import Activity, Hop
from quantbot.solana.borsh import Layout
from quantbot.solana.context import (
    Context,
    EventHandler,
    Invocation,
    account,
    event_activities,
    pool_create_handler,
    swap_handler,
)
from quantbot.solana.events import Event, ProgramEvents, anchor_event, named_event
from quantbot.solana.transaction import Instruction

PROGRAM_ID = "dbcij3LWUppWqq96dh6gJWwBifmcGfLSB5D4DuSMaqN"
NAME = "meteora_dbc"
# swap/swap2 accounts: pool_authority, config, pool, input_token_account, output_token_account,
# base_vault, quote_vault, base_mint, quote_mint, ...
POOL_ACCOUNT, BASE_MINT_ACCOUNT, QUOTE_MINT_ACCOUNT = 2, 7, 8
BASE_TO_QUOTE = 0
"""`trade_direction` of a sale of the curve's token (1 is a purchase with the quote token)."""

EVT_SWAP = Layout(
    "EvtSwap",
    [
        ("pool", "pubkey"),
        ("config", "pubkey"),
        ("trade_direction", "u8"),
        ("has_referral", "bool"),
        ("param_amount_in", "u64"),
        ("minimum_amount_out", "u64"),
        ("actual_input_amount", "u64"),
        ("output_amount", "u64"),
        ("next_sqrt_price", "u128"),
        ("trading_fee", "u64"),
        ("protocol_fee", "u64"),
        ("referral_fee", "u64"),
        ("amount_in", "u64"),
        ("current_timestamp", "u64"),
    ],
)
EVT_SWAP2 = Layout(
    "EvtSwap2",
    [
        ("pool", "pubkey"),
        ("config", "pubkey"),
        ("trade_direction", "u8"),
        ("has_referral", "bool"),
        ("amount_0", "u64"),
        ("amount_1", "u64"),
        ("swap_mode", "u8"),
        ("included_fee_input_amount", "u64"),
        ("excluded_fee_input_amount", "u64"),
        ("amount_left", "u64"),
        ("output_amount", "u64"),
        ("next_sqrt_price", "u128"),
    ],
)


EVENTS = ProgramEvents(
    PROGRAM_ID,
    NAME,
    (
        anchor_event(EVT_SWAP),
        anchor_event(EVT_SWAP2),
        named_event("EvtInitializePool"),
    ),
)


def pool_of(ix: Instruction) -> str | None:
    """The curve a swap instruction trades against."""
    return account(ix, POOL_ACCOUNT)


def decode(inv: Invocation, ctx: Context) -> list[Activity] | None:
    """Trades and pool creations of one DBC invocation."""
    return event_activities(inv, ctx, PROGRAM_ID, HANDLERS)


def swap_hop(event: Event, ix: Instruction | None, ctx: Context) -> Hop | None:
    """The hop of an `EvtSwap`/`EvtSwap2` event, with mints from the swap instruction."""
    base = account(ix, BASE_MINT_ACCOUNT)
    quote = account(ix, QUOTE_MINT_ACCOUNT)
    if base is None or quote is None:
        return None
    f: dict[str, Any] = event.fields
    mint_in, mint_out = (base, quote) if f["trade_direction"] == BASE_TO_QUOTE else (quote, base)
    amount_in = f["amount_in"] if event.name == "EvtSwap" else f["included_fee_input_amount"]
    return Hop(NAME, PROGRAM_ID, f["pool"], ctx.amount(mint_in, amount_in), ctx.amount(mint_out, f["output_amount"]))


HANDLERS: dict[str, EventHandler] = {
    "EvtSwap": swap_handler(NAME, swap_hop),
    "EvtSwap2": swap_handler(NAME, swap_hop),
    "EvtInitializePool": pool_create_handler(NAME),
}
