"""Meteora DLMM (liquidity book): swaps, liquidity changes and pair creation, from its Anchor events.

Encoding: `Swap`, `AddLiquidity`, `RemoveLiquidity` and `LbPairCreate` as CPI-event instructions
(`emit_cpi!`). Events carry amounts but not mints; those come from the instruction's accounts (every
swap variant names `token_x_mint`/`token_y_mint` at the same positions; two-sided liquidity
instructions name both reserves). Layouts: the program's IDL (`lb_clmm.json`).

Reserves: none (`Hop.reserves` is None): a liquidity book prices each bin at its own fixed price, so the
pair's token balances imply no constant-product price or impact.
"""

from __future__ import annotations

from typing import Any

from quantbot.models import Activity, ActivityKind, Hop, TokenAmount
from quantbot.solana.borsh import Layout
from quantbot.solana.context import (
    Context,
    EventHandler,
    Invocation,
    account,
    event_activities,
    event_activity,
    pool_create_handler,
    swap_handler,
)
from quantbot.solana.events import Event, ProgramEvents, anchor_event, named_event
from quantbot.solana.transaction import Instruction

PROGRAM_ID = "LBUZKhRxPF3XUpBCjp4YzTKgLccjZhTSDM9YuVaPwxo"
NAME = "meteora_dlmm"
# swap/swap2/swap_exact_out/swap_with_price_impact accounts: lb_pair, bin_array_bitmap_extension,
# reserve_x, reserve_y, user_token_in, user_token_out, token_x_mint, token_y_mint, ...
POOL_ACCOUNT, SWAP_MINT_X, SWAP_MINT_Y = 0, 6, 7
# Two-sided add/remove liquidity accounts: position, lb_pair, bin_array_bitmap_extension,
# user_token_x, user_token_y, reserve_x, reserve_y, token_x_mint, token_y_mint, ...;
# one-sided adds: position, lb_pair, bin_array_bitmap_extension, user_token, reserve, token_mint, ...
LIQUIDITY_MINT_X, LIQUIDITY_MINT_Y, ONE_SIDED_MINT = 7, 8, 5

SWAP = Layout(
    "Swap",
    [
        ("lb_pair", "pubkey"),
        ("from", "pubkey"),
        ("start_bin_id", "i32"),
        ("end_bin_id", "i32"),
        ("amount_in", "u64"),
        ("amount_out", "u64"),
        ("swap_for_y", "bool"),
        ("fee", "u64"),
        ("protocol_fee", "u64"),
        ("fee_bps", "u128"),
        ("host_fee", "u64"),
    ],
)
_LIQUIDITY = [
    ("lb_pair", "pubkey"),
    ("from", "pubkey"),
    ("position", "pubkey"),
    ("amount_x", "u64"),
    ("amount_y", "u64"),
    ("active_bin_id", "i32"),
]
ADD_LIQUIDITY = Layout("AddLiquidity", _LIQUIDITY)
REMOVE_LIQUIDITY = Layout("RemoveLiquidity", _LIQUIDITY)
LB_PAIR_CREATE = Layout(
    "LbPairCreate", [("lb_pair", "pubkey"), ("bin_step", "u16"), ("token_x", "pubkey"), ("token_y", "pubkey")]
)


EVENTS = ProgramEvents(
    PROGRAM_ID,
    NAME,
    (
        *(anchor_event(x) for x in (SWAP, ADD_LIQUIDITY, REMOVE_LIQUIDITY, LB_PAIR_CREATE)),
        # Position bookkeeping: part of a liquidity change the liquidity events already count.
        named_event("PositionCreate"),
        named_event("PositionClose"),
    ),
)


def pool_of(ix: Instruction) -> str | None:
    """The pair a swap instruction trades against."""
    return account(ix, POOL_ACCOUNT)


def decode(inv: Invocation, ctx: Context) -> list[Activity] | None:
    """Swaps, liquidity changes and pair creations of one DLMM invocation."""
    return event_activities(inv, ctx, PROGRAM_ID, HANDLERS)


def _liquidity(event: Event, ctx: Context) -> Activity | None:
    """A position's liquidity change by its `from` account, valued by its first non-zero leg."""
    f = event.fields
    leg = _liquidity_leg(f, ctx.emitter_of(event), ctx)
    if leg is None:
        return None
    trader = ctx.trader(f.get("from"))
    if event.name == "AddLiquidity":
        return event_activity(ctx, ActivityKind.LIQUIDITY_ADD, event, trader, NAME, given=leg)
    return event_activity(ctx, ActivityKind.LIQUIDITY_REMOVE, event, trader, NAME, got=leg)


def swap_hop(event: Event, ix: Instruction | None, ctx: Context) -> Hop | None:
    """The hop of a `Swap` event, with mints from the swap instruction."""
    mint_x = account(ix, SWAP_MINT_X)
    mint_y = account(ix, SWAP_MINT_Y)
    if mint_x is None or mint_y is None:
        return None
    f = event.fields
    mint_in, mint_out = (mint_x, mint_y) if f["swap_for_y"] else (mint_y, mint_x)
    return Hop(
        NAME, PROGRAM_ID, f["lb_pair"], ctx.amount(mint_in, f["amount_in"]), ctx.amount(mint_out, f["amount_out"])
    )


def _liquidity_leg(f: dict[str, Any], ix: Instruction | None, ctx: Context) -> TokenAmount | None:
    """The first non-zero leg (X, else Y) of a liquidity event, with its mint."""
    pair_mints = {a.mint for a in ctx.token_accounts.values() if a.owner == f["lb_pair"]}
    mint_x = account(ix, LIQUIDITY_MINT_X)
    mint_y = account(ix, LIQUIDITY_MINT_Y)
    amount_x, amount_y = f["amount_x"], f["amount_y"]
    if mint_x in pair_mints and mint_y in pair_mints and mint_x is not None and mint_y is not None:
        return ctx.amount(mint_x, amount_x) if amount_x else ctx.amount(mint_y, amount_y)
    one_sided = account(ix, ONE_SIDED_MINT)
    if one_sided is not None and one_sided in pair_mints:
        return ctx.amount(one_sided, amount_x or amount_y)
    return None


HANDLERS: dict[str, EventHandler] = {
    "Swap": swap_handler(NAME, swap_hop, trader_field="from"),
    "AddLiquidity": _liquidity,
    "RemoveLiquidity": _liquidity,
    "LbPairCreate": pool_create_handler(NAME),
}
