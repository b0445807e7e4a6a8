"""Raydium CLMM (concentrated liquidity, AMM v3): swaps, liquidity changes and pool creation.

Encoding: `SwapEvent`, `IncreaseLiquidityEvent`, `DecreaseLiquidityEvent` and `PoolCreatedEvent` as
`Program data:` logs (`emit!`). The swap event names the user's token accounts but not the mints; those
come from the pool vaults in the instruction (`swap` and `swap_v2` share the vault positions). Layouts:
the program's IDL (`amm_v3.json`).

Reserves: none (`Hop.reserves` is None): concentrated liquidity, as for Orca's whirlpools; its `SwapEvent`
reports the square-root price and the active liquidity, not two reserves of a constant product.
"""

from __future__ import annotations

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
from quantbot.solana.events import Event, ProgramEvents, anchor_event
from quantbot.solana.transaction import Instruction

PROGRAM_ID = "CAMMCzo5YL8w4VFF8KVHrK22GGUsp5VTaW7grrKgrWqK"
NAME = "raydium_clmm"
# swap/swap_v2 accounts: payer, amm_config, pool_state, input_token_account, output_token_account,
# input_vault, output_vault, ...
POOL_ACCOUNT, SWAP_INPUT_VAULT, SWAP_OUTPUT_VAULT = 2, 5, 6
# increase_liquidity(_v2): ..., token_vault_0 (9), token_vault_1 (10); decrease_liquidity(_v2):
# nft_owner, nft_account, personal_position, pool_state, protocol_position, token_vault_0 (5), ...
INCREASE_VAULT_0, DECREASE_VAULT_0 = 9, 5

SWAP_EVENT = Layout(
    "SwapEvent",
    [
        ("pool_state", "pubkey"),
        ("sender", "pubkey"),
        ("token_account_0", "pubkey"),
        ("token_account_1", "pubkey"),
        ("amount_0", "u64"),
        ("transfer_fee_0", "u64"),
        ("amount_1", "u64"),
        ("transfer_fee_1", "u64"),
        ("zero_for_one", "bool"),
        ("sqrt_price_x64", "u128"),
        ("liquidity", "u128"),
        ("tick", "i32"),
    ],
)
INCREASE_LIQUIDITY_EVENT = Layout(
    "IncreaseLiquidityEvent",
    [
        ("position_nft_mint", "pubkey"),
        ("liquidity", "u128"),
        ("amount_0", "u64"),
        ("amount_1", "u64"),
        ("amount_0_transfer_fee", "u64"),
        ("amount_1_transfer_fee", "u64"),
    ],
)
DECREASE_LIQUIDITY_EVENT = Layout(
    "DecreaseLiquidityEvent",
    [
        ("position_nft_mint", "pubkey"),
        ("liquidity", "u128"),
        ("decrease_amount_0", "u64"),
        ("decrease_amount_1", "u64"),
        ("fee_amount_0", "u64"),
        ("fee_amount_1", "u64"),
    ],
)
POOL_CREATED_EVENT = Layout(
    "PoolCreatedEvent",
    [
        ("token_mint_0", "pubkey"),
        ("token_mint_1", "pubkey"),
        ("tick_spacing", "u16"),
        ("pool_state", "pubkey"),
        ("sqrt_price_x64", "u128"),
        ("tick", "i32"),
        ("token_vault_0", "pubkey"),
        ("token_vault_1", "pubkey"),
    ],
)

EVENTS = ProgramEvents(
    PROGRAM_ID,
    NAME,
    tuple(
        anchor_event(layout)
        for layout in (SWAP_EVENT, INCREASE_LIQUIDITY_EVENT, DECREASE_LIQUIDITY_EVENT, POOL_CREATED_EVENT)
    ),
    emits_logs=True,
)


def pool_of(ix: Instruction) -> str | None:
    """The pool state a swap instruction trades against."""
    return account(ix, POOL_ACCOUNT)


def decode(inv: Invocation, ctx: Context) -> list[Activity] | None:
    """Swaps, liquidity changes and pool creations of one CLMM invocation."""
    return event_activities(inv, ctx, PROGRAM_ID, HANDLERS)


def _liquidity(event: Event, ctx: Context) -> Activity | None:
    """A position's liquidity change, valued by its token-0 leg (mint from the instruction's vault 0)."""
    ix = ctx.emitter_of(event)
    f = event.fields
    if event.name == "IncreaseLiquidityEvent":
        mint = ctx.mint_of(account(ix, INCREASE_VAULT_0) or "")
        if mint is None:
            return None
        given = ctx.amount(mint, f["amount_0"])
        return event_activity(ctx, ActivityKind.LIQUIDITY_ADD, event, ctx.trader(), NAME, given=given)
    mint = ctx.mint_of(account(ix, DECREASE_VAULT_0) or "")
    if mint is None:
        return None
    got = ctx.amount(mint, f["decrease_amount_0"])
    return event_activity(ctx, ActivityKind.LIQUIDITY_REMOVE, event, ctx.trader(), NAME, got=got)


def swap_hop(event: Event, ix: Instruction | None, ctx: Context) -> Hop | None:
    """The hop of a `SwapEvent`, with mints from the instruction's input and output vaults."""
    mint_in = ctx.mint_of(account(ix, SWAP_INPUT_VAULT) or "")
    mint_out = ctx.mint_of(account(ix, SWAP_OUTPUT_VAULT) or "")
    if mint_in is None or mint_out is None:
        return None
    f = event.fields
    if f["zero_for_one"]:
        amount_in, amount_out = f["amount_0"], f["amount_1"]
    else:
        amount_in, amount_out = f["amount_1"], f["amount_0"]
    return Hop(NAME, PROGRAM_ID, f["pool_state"], ctx.amount(mint_in, amount_in), ctx.amount(mint_out, amount_out))


HANDLERS: dict[str, EventHandler] = {
    "SwapEvent": swap_handler(NAME, swap_hop, trader_field="sender"),
    "IncreaseLiquidityEvent": _liquidity,
    "DecreaseLiquidityEvent": _liquidity,
    "PoolCreatedEvent": pool_create_handler(NAME),
}
