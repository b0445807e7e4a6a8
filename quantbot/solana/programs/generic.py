"""Trades that no event describes: read from token transfers or from the trader's balance changes.

Two readings, both balance-based:

- `swap_from_transfers`: inside one invocation of a known program that publishes no event (Lifinity,
  Phoenix, Obric, old Whirlpool swaps), the trader's outgoing and incoming transfers give the trade;
- `decode_balances`: for a transaction whose top-level program is unknown, a trader whose balances
  moved in exactly one mint down and one mint up (native SOL folded into wSOL) traded one for the other.
"""

from __future__ import annotations

from quantbot.models import WSOL_MINT, Activity, ActivityKind, Hop
from quantbot.solana.context import (
    ASSOCIATED_TOKEN_PROGRAM,
    SYSTEM_PROGRAM,
    TOKEN_PROGRAMS,
    Context,
    Invocation,
    activity,
    hop_swap,
)
from quantbot.solana.transaction import program_ids_of

COMPUTE_BUDGET_PROGRAM = "ComputeBudget111111111111111111111111111111"
MEMO_PROGRAMS = frozenset(
    {"MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr", "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo"}
)
PLUMBING = frozenset(
    {SYSTEM_PROGRAM, ASSOCIATED_TOKEN_PROGRAM, COMPUTE_BUDGET_PROGRAM, *TOKEN_PROGRAMS, *MEMO_PROGRAMS}
)
"""Programs that move or prepare funds but never trade: their presence alone says nothing."""
NAME = "generic"


def swap_from_transfers(ctx: Context, inv: Invocation, venue: str, pool: str | None) -> Activity | None:
    """The trader's swap inside one invocation, from the transfers it made, or None if it is not one."""
    trader = ctx.trader()
    gave: dict[str, int] = {}
    got: dict[str, int] = {}
    for transfer in ctx.transfers(inv):
        mint = transfer.mint
        if mint is None:
            continue
        if transfer.program_id == SYSTEM_PROGRAM:
            from_trader = transfer.source == trader
            destination = ctx.token_account(transfer.destination)
            to_trader = transfer.destination == trader or (destination is not None and destination.owner == trader)
        else:
            source = ctx.token_account(transfer.source)
            destination = ctx.token_account(transfer.destination)
            from_trader = transfer.authority == trader or (source is not None and source.owner == trader)
            to_trader = destination is not None and destination.owner == trader
        if from_trader and not to_trader:
            gave[mint] = gave.get(mint, 0) + transfer.amount
        elif to_trader and not from_trader:
            got[mint] = got.get(mint, 0) + transfer.amount
    if len(gave) != 1 or len(got) != 1:
        return None
    (mint_in, amount_in), (mint_out, amount_out) = next(iter(gave.items())), next(iter(got.items()))
    if mint_in == mint_out:
        return None
    hop = Hop(venue, inv.program_id, pool, ctx.amount(mint_in, amount_in), ctx.amount(mint_out, amount_out))
    return hop_swap(ctx, (inv.outer, inv.inner), trader, venue, hop)


def decode_balances(ctx: Context) -> list[Activity]:
    """A swap by the fee payer through an unknown program, read from the fee payer's net balance changes."""
    tx = ctx.tx
    outer = next((i for i, pid in enumerate(program_ids_of(tx.instructions)) if pid not in PLUMBING), None)
    if outer is None:
        return []
    trader = ctx.trader()
    deltas = ctx.deltas(trader)
    sol = deltas.get(WSOL_MINT, 0)
    down = [m for m, d in deltas.items() if d < 0 and m != WSOL_MINT]
    up = [m for m, d in deltas.items() if d > 0 and m != WSOL_MINT]
    if len(down) == 1 and len(up) == 1:
        mint_in, mint_out = down[0], up[0]
    elif len(down) == 1 and not up and sol > 0:
        mint_in, mint_out = down[0], WSOL_MINT
    elif len(up) == 1 and not down and sol < 0:
        mint_in, mint_out = WSOL_MINT, up[0]
    else:
        return []
    program_id = program_ids_of(tx.instructions)[outer]
    given = ctx.amount(mint_in, -deltas[mint_in])
    got = ctx.amount(mint_out, deltas[mint_out])
    hop = Hop(NAME, program_id, None, given, got)
    return [activity(ctx, ActivityKind.SWAP, (outer, None), trader, program_id, given=given, got=got, hops=(hop,))]
