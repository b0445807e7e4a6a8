"""Raydium CPMM (constant product, CP-Swap): swaps and liquidity changes, from its Anchor events.

Encoding: `SwapEvent` and `LpChangeEvent` as `Program data:` logs (`emit!`). Newer `SwapEvent`s append
the mints and fees; older ones take the mints from the swap instruction's accounts. Layouts: the
program's IDL (`raydium_cp_swap.json`).

Reserves (`Hop.reserves`): `input_vault_before` and `output_vault_before` are the reserves the program
priced the swap with, before it: the vault balances less the protocol, fund and creator fees owed but not
yet collected (the program's `vault_amount_without_fee`), so they are not the vault balances (on the corpus
they differ by those fees in `8QTg427xrHug`). After the swap the input side has taken `input_amount` (less
the creator fee where it is charged on the input: `creator_fee_on_input`) and the output side has given
`output_amount` (plus the creator fee where it is charged on the output). The protocol and fund shares of
the trade fee also become owed fees, at rates set by the pool's config and reported by no event: the input
side after the swap still counts them, so it exceeds what the next swap sees by those shares of this swap's
trade fee (itself at most a few percent of the input).
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
    hop_reserves,
    swap_handler,
)
from quantbot.solana.events import Event, ProgramEvents, anchor_event
from quantbot.solana.transaction import Instruction

PROGRAM_ID = "CPMMoo8L3F4NbTegBCKVNunggL7H1ZpdTHKxQB5qKP1C"
NAME = "raydium_cpmm"
# swap_base_input/output accounts: payer, authority, amm_config, pool_state, input_token_account,
# output_token_account, input_vault, output_vault, input_token_program, output_token_program,
# input_token_mint, output_token_mint, observation_state.
POOL_ACCOUNT, SWAP_INPUT_MINT, SWAP_OUTPUT_MINT = 3, 10, 11
# deposit/withdraw accounts: owner, authority, pool_state, owner_lp_token, token_0_account,
# token_1_account, token_0_vault, token_1_vault, token_program, token_program_2022, vault_0_mint,
# vault_1_mint, lp_mint, ...
LIQUIDITY_MINT_0, LIQUIDITY_LP_MINT = 10, 12
LP_DEPOSIT, LP_WITHDRAW = 0, 1
"""`LpChangeEvent.change_type` values (the IDL's comment: 0 deposit, 1 withdraw, 2 initialise)."""

SWAP_EVENT = Layout(
    "SwapEvent",
    [
        ("pool_id", "pubkey"),
        ("input_vault_before", "u64"),
        ("output_vault_before", "u64"),
        ("input_amount", "u64"),
        ("output_amount", "u64"),
        ("input_transfer_fee", "u64"),
        ("output_transfer_fee", "u64"),
        ("base_input", "bool"),
    ],
    optional=[
        [
            ("input_mint", "pubkey"),
            ("output_mint", "pubkey"),
            ("trade_fee", "u64"),
            ("creator_fee", "u64"),
            ("creator_fee_on_input", "bool"),
        ]
    ],
)
LP_CHANGE_EVENT = Layout(
    "LpChangeEvent",
    [
        ("pool_id", "pubkey"),
        ("lp_amount_before", "u64"),
        ("token0_vault_before", "u64"),
        ("token1_vault_before", "u64"),
        ("token0_amount", "u64"),
        ("token1_amount", "u64"),
        ("token0_transfer_fee", "u64"),
        ("token1_transfer_fee", "u64"),
        ("change_type", "u8"),
    ],
)

EVENTS = ProgramEvents(PROGRAM_ID, NAME, (anchor_event(SWAP_EVENT), anchor_event(LP_CHANGE_EVENT)), emits_logs=True)


def pool_of(ix: Instruction) -> str | None:
    """The pool state a swap instruction trades against."""
    return account(ix, POOL_ACCOUNT)


def decode(inv: Invocation, ctx: Context) -> list[Activity] | None:
    """Swaps and liquidity changes of one CPMM invocation."""
    return event_activities(inv, ctx, PROGRAM_ID, HANDLERS)


def reserves_after(event: Event) -> tuple[int, int] | None:
    """The pool's reserves after a `SwapEvent`'s swap, (input side, output side), from the reserves it reports
    before the swap and the swap's amounts (see the module docstring); None for another event."""
    if event.name != "SwapEvent":
        return None
    f = event.fields
    creator_fee = f.get("creator_fee", 0)  # absent from events before the creator fee existed
    on_input = f.get("creator_fee_on_input", False)
    after_in = f["input_vault_before"] + f["input_amount"] - (creator_fee if on_input else 0)
    after_out = f["output_vault_before"] - f["output_amount"] - (0 if on_input else creator_fee)
    return (after_in, after_out) if after_in > 0 and after_out > 0 else None


def swap_hop(event: Event, ix: Instruction | None, ctx: Context) -> Hop | None:
    """The hop of a `SwapEvent`, with mints from the event or the instruction."""
    f = event.fields
    mint_in = f.get("input_mint") or account(ix, SWAP_INPUT_MINT)
    mint_out = f.get("output_mint") or account(ix, SWAP_OUTPUT_MINT)
    if mint_in is None or mint_out is None:
        return None
    given, got = ctx.amount(mint_in, f["input_amount"]), ctx.amount(mint_out, f["output_amount"])
    reserves = hop_reserves(given, got, reserves_after(event))
    return Hop(NAME, PROGRAM_ID, f["pool_id"], given, got, None, reserves)


def _liquidity(event: Event, ctx: Context) -> Activity | None:
    """An `LpChangeEvent`: a deposit, a withdrawal or (any other change type) the pool's creation,
    valued by its token-0 leg."""
    ix = ctx.emitter_of(event)
    f = event.fields
    mint_0 = account(ix, LIQUIDITY_MINT_0)
    lp_mint = account(ix, LIQUIDITY_LP_MINT)
    if mint_0 is None or lp_mint is None:
        return None
    leg = ctx.amount(mint_0, f["token0_amount"])
    trader = ctx.trader()
    if f["change_type"] == LP_DEPOSIT:
        return event_activity(ctx, ActivityKind.LIQUIDITY_ADD, event, trader, NAME, given=leg)
    if f["change_type"] == LP_WITHDRAW:
        return event_activity(ctx, ActivityKind.LIQUIDITY_REMOVE, event, trader, NAME, got=leg)
    return event_activity(ctx, ActivityKind.POOL_CREATE, event, trader, NAME, given=leg)


HANDLERS: dict[str, EventHandler] = {"SwapEvent": swap_handler(NAME, swap_hop), "LpChangeEvent": _liquidity}
