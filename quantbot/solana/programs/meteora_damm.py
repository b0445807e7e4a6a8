"""Meteora DAMM v2 (cp-amm): swaps, liquidity changes and pool creation, from its Anchor events.

Encoding: `EvtSwap`/`EvtSwap2`, `EvtAddLiquidity`, `EvtRemoveLiquidity` and `EvtInitializePool` as
CPI-event instructions (`emit_cpi!`). Events carry the pool and amounts; the mints come from the
instruction's `token_a_mint`/`token_b_mint` accounts. Layouts: the program's IDL (`cp_amm.json`);
only the leading fields are read where later versions changed the fee fields that follow.

Reserves: none (`Hop.reserves` is None). The events carry no reserves (only the next square-root price);
the pool's liquidity lives in a price range (concentrated liquidity, full range by default), and its
vaults also hold the positions' fees until they are claimed (fees do not compound), so the vault
balances are not the curve's reserves either.
"""

from __future__ import annotations

from typing import Any

from quantbot.models import Activity, ActivityKind, Hop
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

PROGRAM_ID = "cpamdpZCGKUy5JxQXB4dcpGPiikHawvSWAd6mEn1sGG"
NAME = "meteora_damm_v2"
# swap/swap2 accounts: pool_authority, pool, input_token_account, output_token_account, token_a_vault,
# token_b_vault, token_a_mint, token_b_mint, ...; add/remove liquidity: pool, position,
# token_a_account, token_b_account, token_a_vault, token_b_vault, token_a_mint, token_b_mint, ...
POOL_ACCOUNT, SWAP_MINT_A, SWAP_MINT_B = 1, 6, 7
LIQUIDITY_MINT_A, LIQUIDITY_MINT_B = 6, 7
A_TO_B = 0
"""`trade_direction` of a swap paying token A for token B (1 is B for A)."""

EVT_SWAP = Layout(
    "EvtSwap",
    [
        ("pool", "pubkey"),
        ("trade_direction", "u8"),
        ("has_referral", "bool"),
        ("amount_in", "u64"),
        ("minimum_amount_out", "u64"),
        ("output_amount", "u64"),
        ("next_sqrt_price", "u128"),
        ("lp_fee", "u64"),
        ("protocol_fee", "u64"),
        ("partner_fee", "u64"),
        ("referral_fee", "u64"),
        ("actual_amount_in", "u64"),
        ("current_timestamp", "u64"),
    ],
)
EVT_SWAP2 = Layout(
    "EvtSwap2",
    [
        ("pool", "pubkey"),
        ("trade_direction", "u8"),
        ("collect_fee_mode", "u8"),
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
_LIQUIDITY = [
    ("pool", "pubkey"),
    ("position", "pubkey"),
    ("owner", "pubkey"),
    ("liquidity_delta", "u128"),
    ("token_a_amount_threshold", "u64"),
    ("token_b_amount_threshold", "u64"),
    ("token_a_amount", "u64"),
    ("token_b_amount", "u64"),
]
EVT_ADD_LIQUIDITY = Layout("EvtAddLiquidity", _LIQUIDITY)
EVT_REMOVE_LIQUIDITY = Layout("EvtRemoveLiquidity", _LIQUIDITY)


EVENTS = ProgramEvents(
    PROGRAM_ID,
    NAME,
    (
        *(anchor_event(x) for x in (EVT_SWAP, EVT_SWAP2, EVT_ADD_LIQUIDITY, EVT_REMOVE_LIQUIDITY)),
        named_event("EvtInitializePool"),
    ),
)


def pool_of(ix: Instruction) -> str | None:
    """The pool a swap instruction trades against."""
    return account(ix, POOL_ACCOUNT)


def decode(inv: Invocation, ctx: Context) -> list[Activity] | None:
    """Swaps, liquidity changes and pool creations of one DAMM v2 invocation."""
    return event_activities(inv, ctx, PROGRAM_ID, HANDLERS)


def swap_hop(event: Event, ix: Instruction | None, ctx: Context) -> Hop | None:
    """The hop of an `EvtSwap`/`EvtSwap2` event, with mints from the swap instruction."""
    mint_a = account(ix, SWAP_MINT_A)
    mint_b = account(ix, SWAP_MINT_B)
    if mint_a is None or mint_b is None:
        return None
    f: dict[str, Any] = event.fields
    mint_in, mint_out = (mint_a, mint_b) if f["trade_direction"] == A_TO_B else (mint_b, mint_a)
    amount_in = f["actual_amount_in"] if event.name == "EvtSwap" else f["included_fee_input_amount"]
    return Hop(NAME, PROGRAM_ID, f["pool"], ctx.amount(mint_in, amount_in), ctx.amount(mint_out, f["output_amount"]))


def _liquidity(event: Event, ctx: Context) -> Activity | None:
    """A position's liquidity change by its owner, valued by its token-A leg (else token B)."""
    ix = ctx.emitter_of(event)
    f = event.fields
    mint_a = account(ix, LIQUIDITY_MINT_A)
    mint_b = account(ix, LIQUIDITY_MINT_B)
    if mint_a is None or mint_b is None:
        return None
    leg = ctx.amount(mint_a, f["token_a_amount"]) if f["token_a_amount"] else ctx.amount(mint_b, f["token_b_amount"])
    trader = ctx.trader(f["owner"])
    if event.name == "EvtAddLiquidity":
        return event_activity(ctx, ActivityKind.LIQUIDITY_ADD, event, trader, NAME, given=leg)
    return event_activity(ctx, ActivityKind.LIQUIDITY_REMOVE, event, trader, NAME, got=leg)


HANDLERS: dict[str, EventHandler] = {
    "EvtSwap": swap_handler(NAME, swap_hop),
    "EvtSwap2": swap_handler(NAME, swap_hop),
    "EvtAddLiquidity": _liquidity,
    "EvtRemoveLiquidity": _liquidity,
    "EvtInitializePool": pool_create_handler(NAME),
}
