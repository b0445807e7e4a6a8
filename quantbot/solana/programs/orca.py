"""Orca Whirlpool: swaps, liquidity changes and pool initialisation.

Encoding: `Traded`, `LiquidityIncreased`, `LiquidityDecreased` and `PoolInitialized` as `Program data:`
logs (`emit!`, since 2025). Events name the whirlpool but not its mints; those are the mints of the
token accounts the whirlpool owns (its vaults), ordered as the program orders them (mint A's bytes sort
below mint B's). Older swaps emit no event: they are read from the token transfers the swap made.
Layouts: the program's IDL (`whirlpool.json`).

Reserves: none (`Hop.reserves` is None). A whirlpool is concentrated liquidity: its vaults hold every
position's tokens over all price ranges, which no constant product prices trades with, and `Traded`
reports square-root prices, not reserves.
"""

from __future__ import annotations

from quantbot.models import Activity, ActivityKind, Hop
from quantbot.solana.borsh import Layout
from quantbot.solana.codec import b58decode
from quantbot.solana.context import (
    Context,
    EventHandler,
    Invocation,
    account,
    event_activities,
    event_activity,
    hop_swap,
    pool_create_handler,
)
from quantbot.solana.events import Event, ProgramEvents, anchor_event, instruction_discriminator
from quantbot.solana.programs import generic
from quantbot.solana.transaction import Instruction

PROGRAM_ID = "whirLbMiicVdio4qvUfM5KAg6Ct8VwpYzGff3uctyCc"
NAME = "orca_whirlpool"
# swap accounts: token_program, token_authority, whirlpool, ...; swap_v2: token_program_a,
# token_program_b, memo_program, token_authority, whirlpool, ...
SWAP_WHIRLPOOL, SWAP_V2_WHIRLPOOL = 2, 4
SWAP = instruction_discriminator("swap")
SWAP_V2 = instruction_discriminator("swap_v2")
TWO_HOP_SWAP = instruction_discriminator("two_hop_swap")
TWO_HOP_SWAP_V2 = instruction_discriminator("two_hop_swap_v2")
SWAPS = frozenset({SWAP, SWAP_V2, TWO_HOP_SWAP, TWO_HOP_SWAP_V2})
POOL_TOKENS = 2
"""A whirlpool holds two tokens, A and B, each in a vault the pool owns."""

TRADED = Layout(
    "Traded",
    [
        ("whirlpool", "pubkey"),
        ("a_to_b", "bool"),
        ("pre_sqrt_price", "u128"),
        ("post_sqrt_price", "u128"),
        ("input_amount", "u64"),
        ("output_amount", "u64"),
        ("input_transfer_fee", "u64"),
        ("output_transfer_fee", "u64"),
        ("lp_fee", "u64"),
        ("protocol_fee", "u64"),
    ],
)
_LIQUIDITY_FIELDS = [
    ("whirlpool", "pubkey"),
    ("position", "pubkey"),
    ("tick_lower_index", "i32"),
    ("tick_upper_index", "i32"),
    ("liquidity", "u128"),
    ("token_a_amount", "u64"),
    ("token_b_amount", "u64"),
    ("token_a_transfer_fee", "u64"),
    ("token_b_transfer_fee", "u64"),
]
LIQUIDITY_INCREASED = Layout("LiquidityIncreased", _LIQUIDITY_FIELDS)
LIQUIDITY_DECREASED = Layout("LiquidityDecreased", _LIQUIDITY_FIELDS)
POOL_INITIALIZED = Layout(
    "PoolInitialized",
    [
        ("whirlpool", "pubkey"),
        ("whirlpools_config", "pubkey"),
        ("token_mint_a", "pubkey"),
        ("token_mint_b", "pubkey"),
        ("tick_spacing", "u16"),
        ("token_program_a", "pubkey"),
        ("token_program_b", "pubkey"),
        ("decimals_a", "u8"),
        ("decimals_b", "u8"),
        ("initial_sqrt_price", "u128"),
    ],
)

EVENTS = ProgramEvents(
    PROGRAM_ID,
    NAME,
    tuple(anchor_event(x) for x in (TRADED, LIQUIDITY_INCREASED, LIQUIDITY_DECREASED, POOL_INITIALIZED)),
    emits_logs=True,
)


def pool_of(ix: Instruction) -> str | None:
    """The whirlpool a `swap`/`swap_v2` instruction trades against (None for other instructions)."""
    head = ix.data[: len(SWAP)]
    if head == SWAP:
        return account(ix, SWAP_WHIRLPOOL)
    if head == SWAP_V2:
        return account(ix, SWAP_V2_WHIRLPOOL)
    return None


def pool_mints(ctx: Context, whirlpool: str) -> tuple[str, str] | None:
    """Mints A and B of a whirlpool: the mints of the two token accounts it owns, in byte order."""
    mints = sorted({a.mint for a in ctx.token_accounts.values() if a.owner == whirlpool})
    if len(mints) != POOL_TOKENS:
        return None  # not exactly the pool's two vaults in the balances
    first, second = mints
    try:
        ordered = b58decode(first) < b58decode(second)
    except ValueError:
        return None
    return (first, second) if ordered else (second, first)


def decode(inv: Invocation, ctx: Context) -> list[Activity] | None:
    """Swaps, liquidity changes and pool creations of one Whirlpool invocation."""
    found = event_activities(inv, ctx, PROGRAM_ID, HANDLERS)
    if found is None and inv.instruction.data[: len(SWAP)] in SWAPS:
        # Swaps before the `Traded` event existed: read what moved.
        swap = generic.swap_from_transfers(ctx, inv, NAME, pool_of(inv.instruction))
        return None if swap is None else [swap]
    return found


def _traded(event: Event, ctx: Context) -> Activity | None:
    """A `Traded` event: a swap through the whirlpool, whose mints its vaults' balances name."""
    mints = pool_mints(ctx, event.fields["whirlpool"])
    if mints is None:
        return None
    return hop_swap(ctx, (event.outer, event.inner), ctx.trader(), NAME, traded_hop(event, ctx, mints))


def _liquidity(event: Event, ctx: Context) -> Activity | None:
    """A position's liquidity change, valued by its token-A leg (else token B)."""
    f = event.fields
    mints = pool_mints(ctx, f["whirlpool"])
    if mints is None:
        return None
    mint_a, mint_b = mints
    leg = ctx.amount(mint_a, f["token_a_amount"]) if f["token_a_amount"] else ctx.amount(mint_b, f["token_b_amount"])
    if event.name == "LiquidityIncreased":
        return event_activity(ctx, ActivityKind.LIQUIDITY_ADD, event, ctx.trader(), NAME, given=leg)
    return event_activity(ctx, ActivityKind.LIQUIDITY_REMOVE, event, ctx.trader(), NAME, got=leg)


def traded_hop(event: Event, ctx: Context, mints: tuple[str, str]) -> Hop:
    """The hop of a `Traded` event given the pool's mints A and B."""
    f = event.fields
    mint_in, mint_out = mints if f["a_to_b"] else (mints[1], mints[0])
    return Hop(
        NAME,
        PROGRAM_ID,
        f["whirlpool"],
        ctx.amount(mint_in, f["input_amount"]),
        ctx.amount(mint_out, f["output_amount"]),
    )


HANDLERS: dict[str, EventHandler] = {
    "Traded": _traded,
    "LiquidityIncreased": _liquidity,
    "LiquidityDecreased": _liquidity,
    "PoolInitialized": pool_create_handler(NAME),
}
