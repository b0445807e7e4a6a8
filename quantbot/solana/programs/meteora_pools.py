"""Meteora Pools (dynamic AMM v1): swaps and liquidity changes, from its Anchor events.

Encoding: `Swap`, `AddLiquidity`, `RemoveLiquidity` and `PoolCreated` as `Program data:` logs
(`emit!`). Events carry amounts only; mints come from the pool's token vaults in the instruction, and
the side paid in from the protocol fee account, which holds the input token. Layouts: the program's
IDL (`amm.json`, Mercurial dynamic AMM).

Reserves: none (`Hop.reserves` is None). The pool holds its liquidity as LP shares of Meteora's dynamic
vaults, whose token accounts (those in its instructions) are shared with other pools and lending, and
stable pools trade on a stable-swap curve; the events carry no reserves.
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
    lp_activity,
    pool_create_handler,
    swap_handler,
)
from quantbot.solana.events import Event, ProgramEvents, anchor_event
from quantbot.solana.transaction import Instruction

PROGRAM_ID = "Eo7WjKq67rjJQSZxS6z3YkapzY3eMj6Xy8X5EQVn5UaB"
NAME = "meteora_pools"
# swap accounts: pool, user_source_token, user_destination_token, a_vault, b_vault, a_token_vault,
# b_token_vault, a_vault_lp_mint, b_vault_lp_mint, a_vault_lp, b_vault_lp, protocol_token_fee, ...
POOL_ACCOUNT, SWAP_A_TOKEN_VAULT, SWAP_B_TOKEN_VAULT, SWAP_PROTOCOL_FEE = 0, 5, 6, 11
# add/remove balance liquidity accounts: pool, lp_mint, user_pool_lp, a_vault_lp, b_vault_lp, a_vault,
# b_vault, a_vault_lp_mint, b_vault_lp_mint, a_token_vault, b_token_vault, ...
LIQUIDITY_LP_MINT, LIQUIDITY_A_TOKEN_VAULT = 1, 9

SWAP = Layout(
    "Swap",
    [("in_amount", "u64"), ("out_amount", "u64"), ("trade_fee", "u64"), ("protocol_fee", "u64"), ("host_fee", "u64")],
)
ADD_LIQUIDITY = Layout(
    "AddLiquidity", [("lp_mint_amount", "u64"), ("token_a_amount", "u64"), ("token_b_amount", "u64")]
)
REMOVE_LIQUIDITY = Layout(
    "RemoveLiquidity", [("lp_unmint_amount", "u64"), ("token_a_out_amount", "u64"), ("token_b_out_amount", "u64")]
)
POOL_CREATED = Layout(
    "PoolCreated",
    [
        ("lp_mint", "pubkey"),
        ("token_a_mint", "pubkey"),
        ("token_b_mint", "pubkey"),
        ("pool_type", "enum"),
        ("pool", "pubkey"),
    ],
)

EVENTS = ProgramEvents(
    PROGRAM_ID,
    NAME,
    tuple(anchor_event(x) for x in (SWAP, ADD_LIQUIDITY, REMOVE_LIQUIDITY, POOL_CREATED)),
    emits_logs=True,
)


def pool_of(ix: Instruction) -> str | None:
    """The pool a swap instruction trades against."""
    return account(ix, POOL_ACCOUNT)


def decode(inv: Invocation, ctx: Context) -> list[Activity] | None:
    """Swaps, liquidity changes and pool creations of one Meteora Pools invocation."""
    return event_activities(inv, ctx, PROGRAM_ID, HANDLERS)


def _liquidity(event: Event, ctx: Context) -> Activity | None:
    """A balanced deposit or withdrawal: token A against the pool's LP token."""
    ix = ctx.emitter_of(event)
    mint_a = ctx.mint_of(account(ix, LIQUIDITY_A_TOKEN_VAULT) or "")
    lp_mint = account(ix, LIQUIDITY_LP_MINT)
    if mint_a is None or lp_mint is None:
        return None
    f = event.fields
    if event.name == "AddLiquidity":
        token, lp = ctx.amount(mint_a, f["token_a_amount"]), ctx.amount(lp_mint, f["lp_mint_amount"])
        return lp_activity(ctx, event, ctx.trader(), NAME, added=True, token=token, lp=lp)
    token, lp = ctx.amount(mint_a, f["token_a_out_amount"]), ctx.amount(lp_mint, f["lp_unmint_amount"])
    return lp_activity(ctx, event, ctx.trader(), NAME, added=False, token=token, lp=lp)


def swap_hop(event: Event, ix: Instruction | None, ctx: Context) -> Hop | None:
    """The hop of a `Swap` event: the input mint is the protocol fee account's."""
    mint_a = ctx.mint_of(account(ix, SWAP_A_TOKEN_VAULT) or "")
    mint_b = ctx.mint_of(account(ix, SWAP_B_TOKEN_VAULT) or "")
    mint_in = ctx.mint_of(account(ix, SWAP_PROTOCOL_FEE) or "")
    if mint_a is None or mint_b is None or mint_in not in (mint_a, mint_b):
        return None
    mint_out = mint_b if mint_in == mint_a else mint_a
    f = event.fields
    pool = pool_of(ix) if ix is not None else None
    return Hop(NAME, PROGRAM_ID, pool, ctx.amount(mint_in, f["in_amount"]), ctx.amount(mint_out, f["out_amount"]))


HANDLERS: dict[str, EventHandler] = {
    "Swap": swap_handler(NAME, swap_hop),
    "AddLiquidity": _liquidity,
    "RemoveLiquidity": _liquidity,
    "PoolCreated": pool_create_handler(NAME),
}
